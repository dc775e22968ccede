import { strict as assert } from 'node:assert';
import * as path from 'node:path';
import { X509Certificate, createPrivateKey, createPublicKey } from 'node:crypto';
import { CaStore } from '../../../lib/pki/ca-store';
import { identity } from '../../../lib/pki/identity';
import { EmbeddedBroker } from '../../../lib/broker/embedded-broker';
import { runIssuerAction } from '../../../lib/issuer/issuer-actions';
import { tempDir } from '../../support/temp-dir';

const keyMatches = (cert: string, key: string): boolean =>
  new X509Certificate(cert).publicKey.export({ type: 'spki', format: 'der' }).equals(createPublicKey(createPrivateKey(key)).export({ type: 'spki', format: 'der' }));

/** Valid server certificates per DNS name. */
function serversByName(store: CaStore): Map<string, string[]> {
  const names = new Map<string, string[]>();
  for (const r of store.list({ kind: 'server' })) for (const n of r.dnsNames ?? []) names.set(n, [...(names.get(n) ?? []), r.serial]);
  return names;
}

describe('one identity, one certificate (lib/pki/identity)', function () {
  this.timeout(60_000);
  const tmp = tempDir('identity');
  after(() => tmp.remove());
  let n = 0;
  const freshStore = (): Promise<CaStore> => CaStore.open({ dir: path.join(tmp.path, `ca${n++}`) });

  it('twenty callers asking for the same server identity at once get one certificate with its own key', async () => {
    const store = await freshStore();
    const got = await Promise.all(Array.from({ length: 20 }, () => identity(store, { kind: 'server', commonName: 'localhost' })));
    assert.equal(got.filter((g) => g.issued).length, 1);
    assert.equal(new Set(got.map((g) => g.record.serial)).size, 1);
    for (const g of got) assert.ok(keyMatches(g.cert, g.key), 'certificate and key of one issuance');
    assert.equal(store.list({ kind: 'server' }).length, 1);
  });

  it('a broker and an update server starting together on the same host name share one certificate', async () => {
    const store = await freshStore();
    const [broker, server] = await Promise.all([
      EmbeddedBroker.start({ store, port: 0, host: '127.0.0.1', serverNames: ['localhost'] }),
      identity(store, { kind: 'server', commonName: 'localhost' }),
    ]);
    try {
      assert.deepEqual([...serversByName(store)], [['localhost', [server.record.serial]]]);
    } finally {
      await broker.close();
    }
  });

  it('a request for more names replaces the overlapping certificate: each name keeps exactly one valid certificate', async () => {
    const store = await freshStore();
    const first = await identity(store, { kind: 'server', commonName: 'localhost' });
    const wider = await identity(store, { kind: 'server', commonName: 'fleet.home.arpa', dnsNames: ['localhost'] });
    assert.equal(wider.issued, true);
    assert.deepEqual(new X509Certificate(wider.cert).subjectAltName?.split(', ').sort(), ['DNS:fleet.home.arpa', 'DNS:localhost']);
    assert.equal(store.findBySerial(first.record.serial).revocationReason, 'superseded');
    for (const [, serials] of serversByName(store)) assert.deepEqual(serials, [wider.record.serial]);
    // The narrower request is now served by the wider certificate instead of a new one.
    const again = await identity(store, { kind: 'server', commonName: 'localhost' });
    assert.equal(again.issued, false);
    assert.equal(again.record.serial, wider.record.serial);
  });

  it('reissues when the files on disk are not the certificate and key the CA counts valid', async () => {
    const store = await freshStore();
    const first = await identity(store, { kind: 'backend', commonName: 'node-red' });
    // A key from another issuance (what the first-deploy race left behind).
    const other = await store.issueDevice('a0a0a0a0a0a1');
    const { promises: fs } = await import('node:fs');
    await fs.writeFile(store.identityFiles('backend', 'node-red').privateKey, other.privateKeyPem!);
    const next = await identity(store, { kind: 'backend', commonName: 'node-red' });
    assert.equal(next.issued, true);
    assert.notEqual(next.record.serial, first.record.serial);
    assert.ok(keyMatches(next.cert, next.key));
  });

  it('device: an id with a valid certificate is refused and nothing is issued; replace: true revokes the old one', async () => {
    const store = await freshStore();
    const id = 'a0a0a0a0a0a2';
    const first = await runIssuerAction(store, 'device', id);
    const count = store.issuedCount;
    await assert.rejects(runIssuerAction(store, 'device', { id }), /already holds a valid certificate .* replace: true/);
    assert.equal(store.issuedCount, count);
    const replaced = await runIssuerAction(store, 'device', { id, replace: true });
    assert.ok('serial' in first && 'serial' in replaced);
    assert.equal(store.findBySerial(first.serial).revocationReason, 'superseded');
    assert.deepEqual(store.list({ kind: 'device' }).map((r) => r.serial), [replaced.serial]);
  });

  it('device: two concurrent issues of one id give one certificate, the other is refused', async () => {
    const store = await freshStore();
    const results = await Promise.allSettled([store.issueDevice('a0a0a0a0a0a3'), store.issueDevice('A0:A0:A0:A0:A0:A3')]);
    assert.deepEqual(results.map((r) => r.status).sort(), ['fulfilled', 'rejected']);
    assert.equal(store.list({ kind: 'device' }).length, 1);
  });

  it('everIssued remembers revoked devices, so enrolment code does not bring them back', async () => {
    const store = await freshStore();
    const issued = await store.issueDevice('a0a0a0a0a0a4');
    await store.revoke(issued.record.serial, 'keyCompromise');
    assert.equal(store.currentIdentity('device', 'a0a0a0a0a0a4'), undefined);
    assert.equal(store.everIssued('device', 'a0a0a0a0a0a4'), true);
    assert.equal(store.everIssued('device', 'a0a0a0a0a0a5'), false);
  });
});
