import { strict as assert } from 'node:assert';
import { readFileSync } from 'node:fs';
import * as path from 'node:path';
import { CaStore } from '../../lib/pki/ca-store';
import { recordAttack } from './support/attack-tally';
import { HttpConnection } from './support/http-connection';
import { rawRequest, ClientIdentity } from '../support/raw-https';
import { opensslOk } from '../support/openssl';
import { UpdateTarget, A, B, OLD, until } from './support/update-target';

// The attacks that held when the issue was filed, kept as regression tests: certificates that
// are not the fleet's, device A reading device B's files, path traversal in many encodings,
// and request smuggling. Each is refused, audited, and leaves the server serving.

/** Traversal attempts from device A towards B's key, the CA's key and files outside the folder (~30 encodings). */
const TRAVERSALS = [
  '/fw/../ca/ca.key',
  '/fw/../../ca/ca.key',
  '/fw/..%2fca%2fca.key',
  '/fw/..%2Fca%2Fca.key',
  '/fw/%2e%2e/ca/ca.key',
  '/fw/%2E%2E%2Fca%2Fca.key',
  '/fw/%252e%252e/ca/ca.key',
  '/fw/%252e%252e%252fca%252fca.key',
  '/fw/.%2e/ca/ca.key',
  '/fw/%2e./ca/ca.key',
  '/fw/..%5cca%5cca.key',
  '/fw/..\\ca\\ca.key',
  '/fw/%2e%2e%5cca.key',
  '/fw/....//ca/ca.key',
  '/fw/..;/ca/ca.key',
  '/fw/%u002e%u002e/ca/ca.key',
  '/fw/%ef%bc%8e%ef%bc%8e/ca/ca.key',
  '/fw/%e2%80%a5/ca/ca.key',
  '/fw/%e3%80%82%e3%80%82/ca/ca.key',
  `/fw/${B}.key%00.crt`,
  `/fw/${A}.crt%00/../${B}.key`,
  `/fw/./${B}.key`,
  `/fw//${B}.key`,
  `/fw/%2f${B}.key`,
  `/fw/${B.toUpperCase()}.key`,
  `/fw/${B}.KEY`,
  `/fw/${B}.key.`,
  `/fw/${B}.key/`,
  `/fw/%38%34f3eb0000b2.key`,
  `/fw/firmware.bin/../${B}.key`,
  `/update/../fw/${B}.key`,
  `/fw/config.json/../${B}.key`,
  '/fw/firmware.bin?curimage=../../../../ca/ca.key',
  '/fw/firmware.bin?curimage=%2e%2e%2f%2e%2e%2fca%2fca.key',
  '/%2e%2e/%2e%2e/etc/passwd',
];

describe('security: the attacks on the update server that held, as regression tests', function () {
  this.timeout(60_000);
  const target = new UpdateTarget();
  let bKey: string;
  let caKey: string;

  before(async () => {
    await target.open();
    await target.start();
    bKey = readFileSync(path.join(target.store.deviceFilesDir, `${B}.key`), 'utf8');
    caKey = readFileSync(path.join(target.store.dir, 'ca.key'), 'utf8');
  });
  beforeEach(() => (target.events.length = 0));
  after(async () => {
    await target.close();
  });

  /** Nothing secret of anyone but A in `text`. */
  const noSecrets = (text: string): void => {
    assert.ok(!text.includes(bKey.split('\n')[1]), "B's key");
    assert.ok(!text.includes(caKey.split('\n')[1]), "the CA's key");
    assert.ok(!/PRIVATE KEY|root:x:0:0/.test(text), 'no key, no system file');
  };
  const serving = async (): Promise<void> => {
    assert.equal((await rawRequest(target.port, target.id(A), 'GET /fw/config.json HTTP/1.0\r\nHost: localhost\r\n\r\n', { host: '127.0.0.1' })).status, 200);
  };
  const handshakeRefused = async (id: ClientIdentity, what: string): Promise<void> => {
    const r = await rawRequest(target.port, id, 'GET /fw/config.json HTTP/1.0\r\nHost: localhost\r\n\r\n', { host: '127.0.0.1' }).catch((err: Error) => err);
    assert.ok(r instanceof Error, `${what}: refused in the handshake (got ${r instanceof Error ? '' : r.status})`);
    await until('the audit event', () => target.rejected(/TLS handshake/).length > 0, 2_000);
    await serving();
    recordAttack('update-server', 'refused');
  };

  it('refuses a client without a certificate, with an audit event', async () => {
    await handshakeRefused(target.id(undefined), 'no certificate');
  });

  it("refuses a certificate of another CA with the device's id", async () => {
    const foreign = await CaStore.open({ dir: path.join(target.dir, 'foreign') });
    await foreign.issueDevice(A);
    await handshakeRefused({ ca: target.store.caCertificatePem, cert: readFileSync(path.join(foreign.deviceFilesDir, `${A}.crt`), 'utf8'), key: readFileSync(path.join(foreign.deviceFilesDir, `${A}.key`), 'utf8') }, 'foreign CA');
  });

  it('refuses a self-signed certificate with the device id as CN', async () => {
    const key = path.join(target.dir, 'self.key');
    const crt = path.join(target.dir, 'self.crt');
    opensslOk(['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', key, '-out', crt, '-subj', `/CN=${A}`, '-days', '2']);
    await handshakeRefused({ ca: target.store.caCertificatePem, cert: readFileSync(crt, 'utf8'), key: readFileSync(key, 'utf8') }, 'self-signed');
  });

  it('refuses a revoked certificate at the handshake', async () => {
    const device = '84f3eb00f6f6';
    const issued = await target.store.issueDevice(device);
    await target.store.revoke(issued.record.serial, 'keyCompromise');
    await handshakeRefused(target.id(device), 'revoked');
  });

  it("device A cannot read B's certificate or key (403, audited with A's identity)", async () => {
    for (const file of [`${B}.key`, `${B}.crt`]) {
      const r = await rawRequest(target.port, target.id(A), `GET /fw/${file} HTTP/1.0\r\nHost: localhost\r\n\r\n`, { host: '127.0.0.1' });
      assert.equal(r.status, 403);
      noSecrets(r.body.toString());
    }
    const audit = target.rejected(/only for the device whose certificate says so/);
    assert.equal(audit.length, 2);
    assert.ok(audit.every((e) => e.deviceId === A && e.authenticated === true));
    recordAttack('update-server', 'refused', 2);
  });

  it(`path traversal in ${TRAVERSALS.length} encodings: never a file outside A's own, each audited`, async () => {
    const statuses: string[] = [];
    for (const p of TRAVERSALS) {
      const before = target.events.length;
      const r = await rawRequest(target.port, target.id(A), `GET ${p} HTTP/1.0\r\nHost: localhost\r\n\r\n`, { host: '127.0.0.1' });
      statuses.push(`${r.status} ${p}`);
      assert.ok([400, 403, 404].includes(r.status), `${p}: ${r.status}`);
      noSecrets(r.body.toString('latin1'));
      assert.ok(target.events.slice(before).some((e) => e.type === 'rejected' && e.status === r.status), `${p}: audited`);
    }
    await serving();
    recordAttack('update-server', 'refused', TRAVERSALS.length);
  });

  /** [what, bytes on one connection]: each tries to get a second request for B's key past the parser. */
  const SMUGGLING: [string, string][] = [
    ['CL.TE', `POST /fw/config.json HTTP/1.1\r\nHost: l\r\nContent-Length: 51\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /fw/${B}.key HTTP/1.1\r\nHost: l\r\n\r\n`],
    ['TE.CL', `POST /fw/config.json HTTP/1.1\r\nHost: l\r\nTransfer-Encoding: chunked\r\nContent-Length: 4\r\n\r\n2e\r\nGET /fw/${B}.key HTTP/1.1\r\nHost: l\r\n\r\n\r\n0\r\n\r\n`],
    ['TE.TE (obfuscated second header)', `POST /fw/config.json HTTP/1.1\r\nHost: l\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: x\r\n\r\n0\r\n\r\nGET /fw/${B}.key HTTP/1.1\r\nHost: l\r\n\r\n`],
    ['TE with a space before the colon', `POST /fw/config.json HTTP/1.1\r\nHost: l\r\nTransfer-Encoding : chunked\r\n\r\n0\r\n\r\nGET /fw/${B}.key HTTP/1.1\r\nHost: l\r\n\r\n`],
    ['two Content-Length', `GET /fw/config.json HTTP/1.1\r\nHost: l\r\nContent-Length: 0\r\nContent-Length: 40\r\n\r\nGET /fw/${B}.key HTTP/1.1\r\nHost: l\r\n\r\n`],
    ['a request inside a GET body', `GET /fw/config.json HTTP/1.1\r\nHost: l\r\nContent-Length: 40\r\n\r\nGET /fw/${B}.key HTTP/1.1\r\nHost: l\r\n\r\n`],
    ['bare LF line ends', `GET /fw/config.json HTTP/1.1\nHost: l\n\nGET /fw/${B}.key HTTP/1.1\nHost: l\n\n`],
    ['a chunk size overflow', `POST /fw/config.json HTTP/1.1\r\nHost: l\r\nTransfer-Encoding: chunked\r\n\r\nffffffffffffffffffff\r\n\r\nGET /fw/${B}.key HTTP/1.1\r\nHost: l\r\n\r\n`],
    ['pipelined: a plain second request', `GET /fw/config.json HTTP/1.1\r\nHost: l\r\n\r\nGET /fw/${B}.key HTTP/1.1\r\nHost: l\r\n\r\n`],
  ];
  for (const [what, bytes] of SMUGGLING) {
    it(`request smuggling (${what}) gets no one else's file`, async () => {
      const conn = await HttpConnection.open(target.port, target.id(A));
      conn.send(bytes);
      const answers: number[] = [];
      for (let i = 0; i < 4; i++) {
        const r = await conn.next({ timeoutMs: 1_500 });
        if (!r) break;
        answers.push(r.status);
        noSecrets(r.body.toString('latin1'));
        assert.notEqual(r.status >= 500 ? r.status : 0, 500);
      }
      conn.close();
      // A request for B's key that got through the parser is refused by the handlers: 403 either way.
      assert.ok(answers.length > 0, 'an answer');
      assert.ok(answers.every((s) => [200, 400, 403, 405].includes(s)), `answers ${answers.join(' ')}`);
      assert.ok(!target.events.some((e) => e.type === 'file' && (e.bytes ?? 0) > 1000), 'no key file was sent');
      await serving();
      recordAttack('update-server', 'refused');
    });
  }

  it("a NUL byte after the running image's name gets no image (404)", async () => {
    const r = await rawRequest(target.port, target.id(A), `GET /fw/firmware.bin?curimage=${OLD}%00 HTTP/1.0\r\nHost: localhost\r\n\r\n`, { host: '127.0.0.1' });
    assert.equal(r.status, 404);
    recordAttack('update-server', 'refused');
  });
});
