import { strict as assert } from 'node:assert';
import * as path from 'node:path';
import * as tls from 'node:tls';
import { readFileSync } from 'node:fs';
import { CaStore } from '../../../lib/pki/ca-store';
import { peerCertificateOfSession } from '../../../lib/pki/peer-certificate';
import { tempDir } from '../../support/temp-dir';
import { deviceIdentity } from '../../support/update-server';

describe('the peer certificate read from a TLS session', function () {
  this.timeout(30_000);
  const tmp = tempDir('peer-cert');
  after(() => tmp.remove());

  it('gives the CN and serial getPeerCertificate() gives, over TLS 1.2 and 1.3, and undefined for other bytes', async () => {
    const store = await CaStore.open({ dir: path.join(tmp.path, 'ca') });
    await store.issueServer({ commonName: 'localhost' });
    const devices = ['84f3eb0000a1', '84f3eb0000b2', '84f3eb0000c3'];
    for (const d of devices) await store.issueDevice(d);
    const files = store.identityFiles('server', 'localhost');
    const seen: [unknown, string | undefined, string][] = [];
    const server = tls.createServer({ key: readFileSync(files.privateKey), cert: readFileSync(files.certificate), ca: store.caCertificatePem, requestCert: true, rejectUnauthorized: true }, (socket) => {
      const c = socket.getPeerCertificate();
      seen.push([peerCertificateOfSession(socket.getSession()!), c.subject.CN as string | undefined, c.serialNumber]);
      socket.end();
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    try {
      for (const maxVersion of ['TLSv1.2', 'TLSv1.3'] as const) {
        for (const d of devices) {
          const id = deviceIdentity(store, d);
          await new Promise<void>((resolve, reject) => {
            const s = tls.connect({ host: '127.0.0.1', port: (server.address() as { port: number }).port, servername: 'localhost', ...id, maxVersion });
            s.on('error', reject);
            s.on('close', () => resolve());
            s.resume();
          });
        }
      }
    } finally {
      server.close();
    }
    assert.equal(seen.length, 6);
    for (const [fromSession, cn, serial] of seen) assert.deepEqual(fromSession, { commonName: cn, serialNumber: serial });
    assert.equal(peerCertificateOfSession(Buffer.from('not a session')), undefined);
    assert.equal(peerCertificateOfSession(Buffer.from([0x30, 0x03, 0x02, 0x01, 0x01])), undefined, 'a session without a peer certificate');
  });
});
