import { strict as assert } from 'node:assert';
import { spawnSync } from 'node:child_process';
import { createHash, createPrivateKey, createPublicKey, X509Certificate } from 'node:crypto';
import { promises as fs, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import * as path from 'node:path';
import { CaStore } from '../../../lib/pki/ca-store';
import { runIssuerAction } from '../../../lib/issuer/issuer-actions';
import type { P12Result } from '../../../lib/pki/p12-export';
import { buildPkcs12 } from '../../../lib/pki/pkcs12';
import { openssl, opensslOk } from '../../support/openssl';
import { tempDir } from '../../support/temp-dir';

const PASSWORD = 'correct horse battery';
const DEVICE = '84f3eb0a0b0c';

/** Every file under `dir` with its content hash, mode and mtime: any write shows. */
function snapshot(dir: string): string {
  const out: string[] = [];
  const walk = (d: string): void => {
    for (const name of readdirSync(d).sort()) {
      const full = path.join(d, name);
      const st = statSync(full);
      if (st.isDirectory()) walk(full);
      else out.push(`${path.relative(dir, full)} ${st.mode.toString(8)} ${st.mtimeMs} ${createHash('sha256').update(readFileSync(full)).digest('hex')}`);
    }
  };
  walk(dir);
  return out.join('\n');
}

const spkiOf = (pem: string): Buffer => createPublicKey(createPrivateKey(pem)).export({ type: 'spki', format: 'der' });
const certOf = (text: string): X509Certificate[] => (text.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g) ?? []).map((p) => new X509Certificate(p));

describe('PKCS#12 export (lib/pki/pkcs12, issuer action p12)', function () {
  this.timeout(60_000);
  const tmp = tempDir('p12');
  const caDir = path.join(tmp.path, 'user', 'ca');
  const userDir = path.join(tmp.path, 'user');
  let store: CaStore;

  /** The action as a msg gives it; a second argument (even undefined) replaces the password. */
  const p12 = async (payload: Record<string, unknown>, ...password: unknown[]): Promise<P12Result> =>
    (await runIssuerAction(store, 'p12', { ...payload, password: password.length ? password[0] : PASSWORD }, {}, { userDir })) as P12Result;
  /** openssl's reading of a .p12, as users run it: no -legacy, the password on the command line. */
  const info = (file: string, password = PASSWORD) => openssl(['pkcs12', '-info', '-nodes', '-in', file, '-passin', `pass:${password}`]);

  before(async () => {
    store = await CaStore.open({ dir: caDir });
    await store.issueBackend({ commonName: 'node-red' });
    await store.issueServer({ commonName: 'broker.local' });
    await store.issueDevice(DEVICE);
  });
  after(async () => {
    await store.idle();
    tmp.remove();
  });

  for (const [kind, name] of [['backend', 'node-red'], ['server', 'broker.local'], ['device', '84:F3:EB:0A:0B:0C']] as const) {
    it(`a ${kind} identity: openssl 3 reads it without -legacy, with the store's certificate, its key and the CA`, async () => {
      const out = await p12({ kind, name });
      const commonName = kind === 'device' ? DEVICE : name;
      assert.equal(out.commonName, commonName);
      assert.ok(Buffer.isBuffer(out.p12));
      assert.equal(out.file, undefined, 'no file unless asked for');
      const file = path.join(tmp.path, `${kind}.p12`);
      writeFileSync(file, out.p12);
      const r = info(file);
      assert.equal(r.status, 0, r.stderr);
      // The algorithms OpenSSL 3 itself writes, none that needs -legacy.
      assert.match(r.stderr, /MAC: sha256, Iteration 2048/);
      assert.match(r.stderr, /Shrouded Keybag: PBES2, PBKDF2, AES-256-CBC, Iteration 2048, PRF hmacWithSHA256/);
      assert.doesNotMatch(r.stderr, /RC2|3DES|TripleDES|pbeWithSHA1/i);
      assert.match(r.stdout, new RegExp(`friendlyName: ${commonName.replace(/\./g, '\\.')}`));

      const files = store.identityFiles(kind, commonName);
      const storeCert = new X509Certificate(readFileSync(files.certificate, 'utf8'));
      const [leaf, ca] = certOf(r.stdout);
      assert.equal(leaf.serialNumber, storeCert.serialNumber);
      assert.equal(leaf.serialNumber.replace(/^0+/, ''), out.serial.replace(/^0+/, ''));
      assert.equal(leaf.fingerprint256, storeCert.fingerprint256);
      assert.equal(ca.fingerprint256, new X509Certificate(store.caCertificatePem).fingerprint256, 'the CA is the chain entry');
      const key = /-----BEGIN PRIVATE KEY-----[\s\S]+?-----END PRIVATE KEY-----/.exec(r.stdout)![0];
      assert.ok(spkiOf(key).equals(storeCert.publicKey.export({ type: 'spki', format: 'der' })), 'the key inside is the certificate’s');
      assert.ok(spkiOf(key).equals(spkiOf(readFileSync(files.privateKey, 'utf8'))), 'and the store’s key file');
    });
  }

  it('a wrong password fails in openssl (MAC check), the right one works', async () => {
    const file = path.join(tmp.path, 'wrong.p12');
    writeFileSync(file, (await p12({ kind: 'backend', name: 'node-red' })).p12);
    const r = info(file, 'correct horse battery!');
    assert.notEqual(r.status, 0);
    assert.match(r.stderr, /mac verify/i);
    assert.equal(info(file).status, 0);
  });

  it('a non-ASCII password is encoded as OpenSSL and Node expect (BMPString for the MAC, UTF-8 for the key)', () => {
    const files = store.identityFiles('backend', 'node-red');
    const password = 'grüße-aus-köln';
    const der = buildPkcs12({ certificatePem: readFileSync(files.certificate, 'utf8'), privateKeyPem: readFileSync(files.privateKey, 'utf8'), caCertificatePem: store.caCertificatePem, friendlyName: 'node-red' }, password);
    const file = path.join(tmp.path, 'utf8.p12');
    writeFileSync(file, der);
    // -passin env: hands openssl the UTF-8 bytes, whatever the locale of the test run.
    const withEnv = spawnSync('openssl', ['pkcs12', '-info', '-nodes', '-in', file, '-passin', 'env:P12PW'], { env: { ...process.env, P12PW: password }, encoding: 'utf8' });
    assert.equal(withEnv.status, 0, withEnv.stderr);
    assert.match(withEnv.stdout, /BEGIN PRIVATE KEY/);
  });

  it('refuses an empty, missing or short password before reading anything, without echoing it', async () => {
    for (const password of [undefined, '', 'seven77', 12345678]) {
      await assert.rejects(p12({ kind: 'backend', name: 'node-red' }, password), (err: Error) => {
        assert.match(err.message, /needs a password|at least 8 characters/);
        if (typeof password === 'string' && password) assert.ok(!err.message.includes(password), 'the password is not in the error');
        return true;
      });
    }
    assert.ok((await p12({ kind: 'backend', name: 'node-red' }, 'eight888')).p12.length > 0, '8 characters are enough');
  });

  it('writes the file atomically with mode 0600 relative to the user directory, and refuses names that leave it or are no .p12', async () => {
    const out = await p12({ kind: 'device', name: DEVICE, file: 'certs/device.p12' });
    assert.equal(out.file, path.join(userDir, 'certs', 'device.p12'));
    assert.ok(readFileSync(out.file).equals(out.p12));
    assert.equal(statSync(out.file).mode & 0o777, 0o600);
    assert.deepEqual(readdirSync(path.join(userDir, 'certs')), ['device.p12'], 'no temp file left');
    writeFileSync(path.join(userDir, 'flows.json'), '[]');
    await assert.rejects(p12({ kind: 'device', name: DEVICE, file: '../outside.p12' }), /leaves the Node-RED user directory/);
    await assert.rejects(p12({ kind: 'device', name: DEVICE, file: 'flows.json' }), /ends in \.p12 or \.pfx/);
    await assert.rejects(p12({ kind: 'device', name: DEVICE, file: 'ca/ca.key' }), /ends in \.p12 or \.pfx/);
    assert.equal(readFileSync(path.join(userDir, 'flows.json'), 'utf8'), '[]');
  });

  it('refuses revoked, CSR-signed and unknown identities, and a refused call changes nothing in the CA folder', async () => {
    const revokedId = 'a0a0a0a0a0a1';
    const revoked = await store.issueDevice(revokedId);
    await store.revoke(revoked.record.serial, 'keyCompromise');
    const csrId = 'a0a0a0a0a0a2';
    const base = path.join(tmp.path, 'csr');
    opensslOk(['req', '-new', '-newkey', 'rsa:2048', '-nodes', '-keyout', `${base}.key`, '-out', `${base}.csr`, '-subj', `/CN=${csrId}`]);
    await store.signCsr(readFileSync(`${base}.csr`, 'utf8'), { deviceId: csrId });
    await store.idle();
    const before = snapshot(caDir);
    const userBefore = readdirSync(userDir).sort();

    await assert.rejects(p12({ kind: 'device', name: revokedId, file: 'revoked.p12' }), /no valid device certificate for "a0a0a0a0a0a1": its certificates are revoked or expired/);
    await assert.rejects(p12({ kind: 'device', name: csrId, file: 'csr.p12' }), /has no private key in the CA folder: its certificate was signed from a CSR/);
    await assert.rejects(p12({ kind: 'backend', name: 'nobody' }), /no valid backend certificate for "nobody": this CA never issued one/);
    // A name that would walk out of the identity folders never reaches a path: only issued names do.
    await assert.rejects(p12({ kind: 'backend', name: '../ca' }), /this CA never issued one/);
    await assert.rejects(p12({ kind: 'backend', name: 'node-red/../../ca' }), /this CA never issued one/);
    await assert.rejects(p12({ kind: 'admin', name: 'node-red' }), /kind must be backend, device or server/);
    await assert.rejects(p12({ kind: 'device', name: 'not-a-mac' }), /invalid device id/);
    await assert.rejects(p12({ kind: 'server', name: 'broker.local', file: '/' }), /ends in \.p12 or \.pfx/);

    await store.idle();
    assert.equal(snapshot(caDir), before, 'the CA folder is as it was');
    assert.deepEqual(readdirSync(userDir).sort(), userBefore, 'no file written');
  });

  it('refuses a certificate whose key file does not belong to it', async () => {
    const files = store.identityFiles('server', 'broker.local');
    const otherKey = await fs.readFile(store.identityFiles('backend', 'node-red').privateKey, 'utf8');
    assert.throws(() => buildPkcs12({ certificatePem: readFileSync(files.certificate, 'utf8'), privateKeyPem: otherKey, caCertificatePem: store.caCertificatePem, friendlyName: 'x' }, PASSWORD), /does not belong to the certificate/);
  });
});
