import { strict as assert } from 'node:assert';
import { generateKeyPairSync, KeyObject, X509Certificate } from 'node:crypto';
import { promises as fs } from 'node:fs';
import * as path from 'node:path';
import { CaStore } from '../../../lib/pki/ca-store';
import { buildCsr } from '../../../lib/pki/csr-builder';
import { EnrollmentDesk, EnrollAnswer, AuditEntry, EnrollmentDeskOptions } from '../../../lib/enroll/enrollment-desk';
import { parseEnrollPolicy } from '../../../lib/enroll/enroll-policy';
import { tempDir } from '../../support/temp-dir';
import { opensslOk } from '../../support/openssl';

const ec = (): KeyObject => generateKeyPairSync('ec', { namedCurve: 'prime256v1' }).privateKey;
const csrOf = (id: string, key: KeyObject = ec()): Buffer => buildCsr({ commonName: id, privateKey: key });

describe('enrollment desk (lib/enroll/enrollment-desk.ts, docs/enrollment.md)', function () {
  this.timeout(60_000);
  const tmp = tempDir('enroll-desk');
  let store: CaStore;
  let n = 0;
  let cas = 0;
  const open = async (policy = parseEnrollPolicy('manual', ''), more: Partial<EnrollmentDeskOptions> = {}): Promise<{ desk: EnrollmentDesk; audit: AuditEntry[]; cred: { user: string; password: string } }> => {
    const desk = await EnrollmentDesk.open({ store, policy, ...more });
    const audit: AuditEntry[] = [];
    desk.subscribe((e) => audit.push(e));
    const s = desk.showBootstrap()!;
    return { desk, audit, cred: { user: s.user, password: s.password } };
  };
  /** A fresh id per test, so no test leans on another's requests. */
  const freshId = (): string => `a0b1c2${(++n).toString(16).padStart(6, '0')}`;
  const issued = (a: EnrollAnswer): X509Certificate => {
    assert.equal(a.kind, 'issued', JSON.stringify(a));
    return new X509Certificate((a as { certificateDer: Buffer }).certificateDer);
  };

  // A CA of its own per test: no test sees another's requests, credential or certificates.
  beforeEach(async () => {
    store = await CaStore.open({ dir: path.join(tmp.path, `ca-${++cas}`) });
  });
  afterEach(() => store.idle());
  after(() => tmp.remove());

  it('manual: a new device waits (202), is approved, and its repeated request gets the certificate of its own key', async () => {
    const { desk, audit, cred } = await open();
    const id = freshId();
    const key = ec();
    const csr = csrOf(id, key);
    const first = await desk.enroll({ csrDer: csr, credential: cred, address: '10.0.0.5' });
    assert.deepEqual(first, { kind: 'pending', retryAfterS: 60 });
    assert.deepEqual(await desk.enroll({ csrDer: csr, credential: cred, address: '10.0.0.5' }), { kind: 'pending', retryAfterS: 60 });
    assert.equal(store.currentIdentity('device', id), undefined, 'nothing issued while pending');
    assert.deepEqual(desk.pending().map((r) => [r.id, r.keyType, r.address]), [[id, 'ec', '10.0.0.5']]);
    const { serial } = await desk.approve(id);
    const cert = issued(await desk.enroll({ csrDer: csr, credential: cred, address: '10.0.0.5' }));
    assert.equal(cert.subject, `CN=${id}`);
    assert.equal(cert.serialNumber, serial);
    assert.ok(cert.checkPrivateKey(key), 'certifies the key the device made');
    assert.equal(desk.pending().length, 0);
    const events = audit.filter((e) => e.id === id).map((e) => `${e.event}${e.repeat ? '*' : ''}`);
    assert.deepEqual(events, ['request', 'request*', 'approved', 'issued', 'request*']);
  });

  it('an id holding a valid certificate cannot simpleenroll again, even with the bootstrap credential', async () => {
    const { desk, cred } = await open(parseEnrollPolicy('open', ''));
    const id = freshId();
    issued(await desk.enroll({ csrDer: csrOf(id), credential: cred, address: '10.0.0.6' }));
    const before = store.issuedCount;
    const again = await desk.enroll({ csrDer: csrOf(id), credential: cred, address: '10.0.0.66' });
    assert.equal(again.kind === 'refused' && again.reason, 'held');
    assert.equal(store.issuedCount, before, 'nothing issued');
  });

  it('while a request is pending, the same id with another key is refused; the first one stands', async () => {
    const { desk, cred } = await open();
    const id = freshId();
    const key = ec();
    await desk.enroll({ csrDer: csrOf(id, key), credential: cred, address: '10.0.0.7' });
    const other = await desk.enroll({ csrDer: csrOf(id), credential: cred, address: '10.0.0.8' });
    assert.equal(other.kind === 'refused' && other.reason, 'pending-other-key');
    assert.equal(desk.pending().find((r) => r.id === id)?.address, '10.0.0.7');
  });

  it('reject: the same request stays out; approve of a rejected id is an error', async () => {
    const { desk, cred } = await open();
    const id = freshId();
    const csr = csrOf(id);
    await desk.enroll({ csrDer: csr, credential: cred, address: '10.0.0.9' });
    await desk.reject(id, 'not ours');
    const again = await desk.enroll({ csrDer: csr, credential: cred, address: '10.0.0.9' });
    assert.equal(again.kind === 'refused' && again.reason, 'rejected');
    await assert.rejects(desk.approve(id), /no request .* waiting/);
    assert.equal(store.currentIdentity('device', id), undefined);
  });

  it('allowlist: listed ids and prefixes at once, the rest wait', async () => {
    const { desk, cred } = await open(parseEnrollPolicy('allowlist', 'bbbbbb000001, cccccc*'));
    issued(await desk.enroll({ csrDer: csrOf('bbbbbb000001'), credential: cred, address: '10.0.1.1' }));
    issued(await desk.enroll({ csrDer: csrOf('cccccc00abcd'), credential: cred, address: '10.0.1.1' }));
    assert.equal((await desk.enroll({ csrDer: csrOf('bbbbbb000002'), credential: cred, address: '10.0.1.1' })).kind, 'pending');
  });

  it('refused with nothing stored: no or wrong credential, revoked credential, CN not a device id, bad CSR, wrong curve, RSA-1024', async () => {
    const { desk, cred } = await open(parseEnrollPolicy('open', ''), { rate: { burst: 1000, refillMs: 1 }, failureRate: { burst: 1000, refillMs: 1 } });
    const before = store.issuedCount;
    const files = await fs.readdir(store.deviceFilesDir).catch(() => []);
    const reason = (a: EnrollAnswer): string => (a.kind === 'refused' ? a.reason : a.kind);
    const id = freshId();
    assert.equal(reason(await desk.enroll({ csrDer: csrOf(id), address: 'x' })), 'no-credential');
    assert.equal(reason(await desk.enroll({ csrDer: csrOf(id), credential: { user: 'fleet', password: 'guess' }, address: 'x' })), 'bad-credential');
    assert.equal(reason(await desk.enroll({ csrDer: csrOf(id), credential: { user: 'other', password: cred.password }, address: 'x' })), 'bad-credential');
    assert.equal(reason(await desk.enroll({ csrDer: csrOf('node-red'), credential: cred, address: 'x' })), 'not-a-device');
    assert.equal(reason(await desk.enroll({ csrDer: csrOf('84:F3:EB:01:23:45'), credential: cred, address: 'x' })), 'not-a-device');
    const tampered = csrOf(id);
    tampered[tampered.length - 5] ^= 0x01;
    assert.equal(reason(await desk.enroll({ csrDer: tampered, credential: cred, address: 'x' })), 'bad-csr');
    assert.equal(reason(await desk.enroll({ csrDer: Buffer.from('not a csr'), credential: cred, address: 'x' })), 'bad-csr');
    for (const curve of ['secp384r1', 'secp256k1']) {
      // buildCsr makes P-256 only, as a device does: openssl makes the others.
      const keyFile = path.join(tmp.path, `${curve}.key`);
      await fs.writeFile(keyFile, generateKeyPairSync('ec', { namedCurve: curve }).privateKey.export({ type: 'pkcs8', format: 'pem' }));
      const pem = opensslOk(['req', '-new', '-key', keyFile, '-subj', `/CN=${id}`]);
      const der = Buffer.from(pem.replace(/-----[^-]+-----|\s+/g, ''), 'base64');
      assert.equal(reason(await desk.enroll({ csrDer: der, credential: cred, address: 'x' })), 'key-refused', curve);
    }
    const rsa1024 = generateKeyPairSync('rsa', { modulusLength: 1024 }).privateKey;
    assert.equal(reason(await desk.enroll({ csrDer: csrOf(id, rsa1024), credential: cred, address: 'x' })), 'key-refused');
    await desk.revokeBootstrap();
    assert.equal(reason(await desk.enroll({ csrDer: csrOf(id), credential: cred, address: 'x' })), 'no-bootstrap');
    assert.equal(store.issuedCount, before);
    assert.deepEqual(await fs.readdir(store.deviceFilesDir).catch(() => []), files);
    assert.equal(desk.pending().length, 0);
    const next = await desk.rotateBootstrap();
    assert.notEqual(next.password, cred.password);
    assert.equal(reason(await desk.enroll({ csrDer: csrOf(id), credential: cred, address: 'x' })), 'bad-credential', 'the old one is gone after a rotation');
    issued(await desk.enroll({ csrDer: csrOf(id), credential: next, address: 'x' }));
  });

  it('rate limits per address: wrong credentials stop guessing, plain requests are capped too', async () => {
    const { desk, cred } = await open(parseEnrollPolicy('manual', ''), { rate: { burst: 3, refillMs: 60_000 }, failureRate: { burst: 2, refillMs: 60_000 } });
    const wrong = { user: 'fleet', password: 'nope' };
    const reasons: string[] = [];
    for (let i = 0; i < 4; i++) {
      const a = await desk.enroll({ csrDer: csrOf(freshId()), credential: wrong, address: '10.9.9.9' });
      reasons.push(a.kind === 'refused' ? a.reason : a.kind);
    }
    assert.deepEqual(reasons, ['bad-credential', 'bad-credential', 'rate-limited', 'rate-limited']);
    const ok = await desk.enroll({ csrDer: csrOf(freshId()), credential: cred, address: '10.9.9.9' });
    assert.equal(ok.kind === 'refused' && ok.reason, 'rate-limited', 'the right credential too, once the address is locked');
    const other: string[] = [];
    for (let i = 0; i < 4; i++) {
      const a = await desk.enroll({ csrDer: csrOf(freshId()), credential: cred, address: '10.9.9.10' });
      other.push(a.kind === 'refused' ? a.reason : a.kind);
    }
    assert.deepEqual(other, ['pending', 'pending', 'pending', 'rate-limited']);
    const limited = await desk.enroll({ csrDer: csrOf(freshId()), credential: cred, address: '10.9.9.10' });
    assert.ok(limited.kind === 'refused' && limited.retryAfterS! > 0);
  });

  it('the hook may only refuse; one that throws refuses', async () => {
    const { desk, cred } = await open(parseEnrollPolicy('open', ''), { mayEnroll: (c) => (c.address === '10.0.2.2' ? 'not from the guest network' : true) });
    const a = await desk.enroll({ csrDer: csrOf(freshId()), credential: cred, address: '10.0.2.2' });
    assert.deepEqual(a.kind === 'refused' && [a.reason, a.text], ['policy', 'not from the guest network']);
    issued(await desk.enroll({ csrDer: csrOf(freshId()), credential: cred, address: '10.0.2.3' }));
    const throwing = await open(parseEnrollPolicy('open', ''), {
      mayEnroll: () => {
        throw new Error('rule bug');
      },
    });
    const b = await throwing.desk.enroll({ csrDer: csrOf(freshId()), credential: throwing.cred, address: '10.0.2.4' });
    assert.equal(b.kind === 'refused' && b.reason, 'policy');
  });

  it('too many pending requests: the next new one is refused, waiting ones still answer', async () => {
    const { desk, cred } = await open(parseEnrollPolicy('manual', ''), { maxPending: 2, rate: { burst: 100, refillMs: 1 } });
    const ids = [freshId(), freshId(), freshId()];
    const answers = [];
    for (const id of ids) answers.push(await desk.enroll({ csrDer: csrOf(id), credential: cred, address: '10.0.3.1' }));
    assert.deepEqual(answers.map((a) => (a.kind === 'refused' ? a.reason : a.kind)), ['pending', 'pending', 'too-many-pending']);
  });

  it('pending requests and the credential survive a restart; the audit log has every decision', async () => {
    const first = await open();
    const id = freshId();
    await first.desk.enroll({ csrDer: csrOf(id), credential: first.cred, address: '10.0.4.1' });
    await first.desk.idle();
    const again = await open();
    assert.deepEqual(again.cred, first.cred);
    assert.ok(again.desk.pending().some((r) => r.id === id));
    await again.desk.approve(id);
    await again.desk.idle();
    const lines = (await fs.readFile(path.join(store.dir, 'enrollment', 'audit.log'), 'utf8')).trim().split('\n').map((l) => JSON.parse(l) as AuditEntry);
    assert.deepEqual(lines.filter((l) => l.id === id).map((l) => l.event), ['request', 'approved', 'issued']);
    assert.equal((await fs.stat(path.join(store.dir, 'enrollment', 'bootstrap.json'))).mode & 0o777, 0o600);
  });

  it('simplereenroll: the holder of a valid certificate renews with it; a revoked one, another CN or none is refused', async () => {
    const { desk, cred } = await open(parseEnrollPolicy('open', ''));
    const id = freshId();
    const key = ec();
    const cert = issued(await desk.enroll({ csrDer: csrOf(id, key), credential: cred, address: '10.0.5.1' }));
    const renewed = issued(await desk.reenroll({ csrDer: csrOf(id, key), peer: { serial: cert.serialNumber, commonName: id }, address: '10.0.5.1' }));
    assert.notEqual(renewed.serialNumber, cert.serialNumber);
    assert.equal(renewed.subject, `CN=${id}`);
    const reason = (a: EnrollAnswer): string => (a.kind === 'refused' ? a.reason : a.kind);
    assert.equal(reason(await desk.reenroll({ csrDer: csrOf(freshId()), peer: { serial: renewed.serialNumber, commonName: id }, address: '10.0.5.1' })), 'not-yours');
    assert.equal(reason(await desk.reenroll({ csrDer: csrOf(id), address: '10.0.5.1' })), 'no-certificate');
    await store.revoke(renewed.serialNumber, 'keyCompromise');
    const count = store.issuedCount;
    assert.equal(reason(await desk.reenroll({ csrDer: csrOf(id), peer: { serial: renewed.serialNumber, commonName: id }, address: '10.0.5.1' })), 'certificate-refused');
    assert.equal(store.issuedCount, count);
  });
});
