import { strict as assert } from 'node:assert';
import { promises as fs, appendFileSync, existsSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import * as path from 'node:path';
import { X509Certificate, createPrivateKey, createPublicKey } from 'node:crypto';
import { CaStore } from '../../../lib/pki/ca-store';
import { writeMosquittoConfig } from '../../../lib/mosquitto/folders';
import { tempDir } from '../../support/temp-dir';
import { openssl, opensslOk } from '../../support/openssl';

const DEVICE = '84f3eb012345';

/** Everything a failed operation must leave untouched: index, CRL and the file list. */
function snapshot(dir: string): string {
  const files: string[] = [];
  const walk = (d: string): void => {
    for (const name of readdirSync(d).sort()) {
      const p = path.join(d, name);
      if (statSync(p).isDirectory()) walk(p);
      else files.push(`${path.relative(dir, p)}:${readFileSync(p).length}`);
    }
  };
  walk(dir);
  return JSON.stringify({ files, journal: readFileSync(path.join(dir, 'journal.jsonl'), 'utf8'), crl: readFileSync(path.join(dir, 'crl.pem'), 'utf8') });
}

function text(certFile: string): string {
  return opensslOk(['x509', '-in', certFile, '-noout', '-text']);
}

function verify(dir: string, certFile: string, crl = false): { status: number | null; out: string } {
  const args = ['verify', '-CAfile', path.join(dir, 'ca.crt')];
  if (crl) args.push('-crl_check', '-CRLfile', path.join(dir, 'crl.pem'));
  const r = openssl([...args, certFile]);
  return { status: r.status, out: r.stdout + r.stderr };
}

describe('CaStore', function () {
  this.timeout(60_000);
  const tmp = tempDir('ca');
  let dir: string;
  let store: CaStore;

  before(async () => {
    dir = path.join(tmp.path, 'store');
    store = await CaStore.open({ dir, commonName: 'Test Fleet CA', organization: 'Hobby Lab' });
  });
  after(() => tmp.remove());

  describe('the CA itself', () => {
    it('is a proper CA certificate, self-signed, with its key readable by the owner only', () => {
      const t = text(path.join(dir, 'ca.crt'));
      assert.match(t, /Subject: O ?= ?Hobby Lab, CN ?= ?Test Fleet CA\n/);
      assert.match(t, /X509v3 Basic Constraints: critical\s+CA:TRUE, pathlen:0/);
      assert.match(t, /X509v3 Key Usage: critical\s+Certificate Sign, CRL Sign/);
      assert.equal(verify(dir, path.join(dir, 'ca.crt')).status, 0);
      assert.equal(statSync(path.join(dir, 'ca.key')).mode & 0o777, 0o600);
      const days = (store.caNotAfter.getTime() - Date.now()) / 86_400_000;
      assert.ok(days > 3640 && days < 3660, `CA valid for ~10 years, got ${days}`);
    });

    it('is loaded, never regenerated, when the store is opened again', async () => {
      const before = readFileSync(path.join(dir, 'ca.crt'), 'utf8');
      const again = await CaStore.open({ dir, commonName: 'Another Name', keySize: 4096 });
      assert.equal(again.caCertificatePem, before);
      assert.equal(readFileSync(path.join(dir, 'ca.crt'), 'utf8'), before);
    });

    it('refuses to open when ca.key is gone instead of making a new CA', async () => {
      const other = path.join(tmp.path, 'lost-key');
      await CaStore.open({ dir: other });
      await fs.rm(path.join(other, 'ca.key'));
      await assert.rejects(CaStore.open({ dir: other }), /has no ca\.key.*never regenerated/);
      assert.equal(readdirSync(other).includes('ca.key'), false);
    });
  });

  describe('passphrase', () => {
    it('encrypts the CA key at rest and refuses a wrong or missing passphrase', async () => {
      const d = path.join(tmp.path, 'encrypted');
      await CaStore.open({ dir: d, passphrase: 'correct horse' });
      assert.match(readFileSync(path.join(d, 'ca.key'), 'utf8'), /BEGIN ENCRYPTED PRIVATE KEY/);
      const ca = readFileSync(path.join(d, 'ca.crt'), 'utf8');
      await assert.rejects(CaStore.open({ dir: d }), /passphrase/);
      await assert.rejects(CaStore.open({ dir: d, passphrase: 'wrong' }), /passphrase/);
      const reopened = await CaStore.open({ dir: d, passphrase: 'correct horse' });
      assert.equal(reopened.caCertificatePem, ca);
    });
  });

  it('reports any wrong passphrase as such, also one that decrypts to bytes that are no key (1 in ~256)', async () => {
    const { readRsaPrivateKey, exportPrivateKeyPem } = await import('../../../lib/pki/keys');
    const { generateKeyPairSync } = await import('node:crypto');
    const pem = exportPrivateKeyPem(generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey, 'right');
    const messages = new Set<string>();
    for (let i = 0; i < 1500; i++) {
      try {
        readRsaPrivateKey(pem, `wrong-${i}`);
        messages.add('read with a wrong passphrase');
      } catch (err) {
        messages.add((err as Error).message);
      }
    }
    assert.deepEqual([...messages], ['cannot read the CA private key: wrong or missing passphrase']);
  });

  describe('import', () => {
    const makeCa = (name: string): { cert: string; key: string } => {
      const d = path.join(tmp.path, `openssl-${name}`);
      opensslOk(['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', `${d}.key`, '-out', `${d}.crt`, '-subj', `/CN=${name}`, '-days', '30', '-addext', 'basicConstraints=critical,CA:TRUE']);
      return { cert: readFileSync(`${d}.crt`, 'utf8'), key: readFileSync(`${d}.key`, 'utf8') };
    };

    it('uses an existing CA: certificates it issues verify against that CA', async () => {
      const own = makeCa('Imported CA');
      const d = path.join(tmp.path, 'imported');
      const imported = await CaStore.open({ dir: d, importPem: { certificate: own.cert, privateKey: own.key } });
      const device = await imported.issueDevice('aa:bb:cc:dd:ee:01');
      writeFileSync(path.join(tmp.path, 'imported-ca.crt'), own.cert);
      const r = openssl(['verify', '-CAfile', path.join(tmp.path, 'imported-ca.crt'), device.files.certificate]);
      assert.equal(r.status, 0, r.stderr);
    });

    it('refuses a key that does not belong to the certificate, and writes nothing', async () => {
      const a = makeCa('A');
      const b = makeCa('B');
      const d = path.join(tmp.path, 'mismatch');
      await assert.rejects(CaStore.open({ dir: d, importPem: { certificate: a.cert, privateKey: b.key } }), /does not belong/);
      assert.deepEqual(readdirSync(d), []);
    });

    it('refuses a certificate that is not a CA', async () => {
      const d = path.join(tmp.path, 'not-ca');
      const leaf = await store.issueBackend({ commonName: 'leafy' });
      const key = readFileSync(leaf.files.privateKey!, 'utf8');
      await assert.rejects(CaStore.open({ dir: d, importPem: { certificate: leaf.certificatePem, privateKey: key } }), /not a CA certificate/);
    });

    it('never replaces the CA of a folder that already has one', async () => {
      const other = makeCa('Intruder');
      const before = readFileSync(path.join(dir, 'ca.crt'), 'utf8');
      await assert.rejects(CaStore.open({ dir, importPem: { certificate: other.cert, privateKey: other.key } }), /already holds another CA/);
      assert.equal(readFileSync(path.join(dir, 'ca.crt'), 'utf8'), before);
    });
  });

  describe('issuing', () => {
    it('issues a device certificate: CN = normalised MAC, clientAuth, files for the update server', async () => {
      const issued = await store.issueDevice('84:F3:EB:01:23:45');
      assert.equal(issued.record.commonName, DEVICE);
      const t = text(issued.files.certificate);
      assert.match(t, /Subject: CN ?= ?84f3eb012345/);
      assert.match(t, /Extended Key Usage:\s+TLS Web Client Authentication\n/);
      assert.doesNotMatch(t, /Server Authentication/);
      assert.match(t, /Basic Constraints: critical\s+CA:FALSE/);
      assert.match(t, /Key Usage: critical\s+Digital Signature, Key Encipherment/);
      assert.equal(verify(dir, issued.files.certificate).status, 0);
      assert.equal(issued.files.certificate, path.join(dir, 'devices', `${DEVICE}.crt`));
      assert.equal(statSync(issued.files.privateKey!).mode & 0o777, 0o600);
      assert.equal(readFileSync(issued.files.ca!, 'utf8'), store.caCertificatePem);
      // The key on disk is the one the certificate certifies.
      const keySpki = createPublicKey(createPrivateKey(readFileSync(issued.files.privateKey!))).export({ type: 'spki', format: 'der' });
      assert.deepEqual(keySpki, new X509Certificate(issued.certificatePem).publicKey.export({ type: 'spki', format: 'der' }));
      // Fingerprints in openssl's colon form.
      const sha1 = opensslOk(['x509', '-in', issued.files.certificate, '-noout', '-fingerprint', '-sha1']).trim();
      assert.equal(sha1.toUpperCase(), `SHA1 FINGERPRINT=${issued.fingerprints.sha1}`);
      const sha256 = opensslOk(['x509', '-in', issued.files.certificate, '-noout', '-fingerprint', '-sha256']).trim();
      assert.equal(sha256.toUpperCase(), `SHA256 FINGERPRINT=${issued.fingerprints.sha256}`);
      assert.equal(opensslOk(['x509', '-in', issued.files.certificate, '-noout', '-serial']).trim(), `serial=${issued.record.serial}`);
    });

    it('issues a server certificate with serverAuth and DNS (+ IP, with a warning) SANs', async () => {
      const issued = await store.issueServer({ commonName: 'broker.local', dnsNames: 'mqtt.home.arpa', ipAddresses: ['192.0.2.10', '2001:db8::1'] });
      const t = text(issued.files.certificate);
      assert.match(t, /Extended Key Usage:\s+TLS Web Server Authentication\n/);
      assert.match(t, /DNS:broker\.local, DNS:mqtt\.home\.arpa, IP Address:192\.0\.2\.10, IP Address:2001:DB8:0:0:0:0:0:1\n/);
      assert.equal(verify(dir, issued.files.certificate).status, 0);
      assert.equal(opensslOk(['verify', '-CAfile', path.join(dir, 'ca.crt'), '-purpose', 'sslserver', '-verify_hostname', 'mqtt.home.arpa', issued.files.certificate]).trim(), `${issued.files.certificate}: OK`);
      assert.equal(issued.warnings.length, 1);
      assert.match(issued.warnings[0], /DNS names, not IP/);
    });

    it('issues the backend identity as a client certificate', async () => {
      const issued = await store.issueBackend({ commonName: 'node-red' });
      const t = text(issued.files.certificate);
      assert.match(t, /Subject: CN ?= ?node-red/);
      assert.match(t, /TLS Web Client Authentication/);
      const r = openssl(['verify', '-CAfile', path.join(dir, 'ca.crt'), '-purpose', 'sslclient', issued.files.certificate]);
      assert.equal(r.status, 0, r.stderr);
    });

    it('a certificate of another CA does not verify against ours', async () => {
      const other = await CaStore.open({ dir: path.join(tmp.path, 'other-ca') });
      const foreign = await other.issueDevice('0123456789ab');
      const r = verify(dir, foreign.files.certificate);
      assert.notEqual(r.status, 0);
      assert.match(r.out, /unable to get local issuer certificate/);
    });

    it('rejects bad input with a clear error and changes nothing stored', async () => {
      const before = snapshot(dir);
      await assert.rejects(store.issueDevice('84:F3:EB:01:23'), /invalid device id/);
      await assert.rejects(store.issueDevice('84f3eb01234g'), /invalid device id/);
      await assert.rejects(store.issueDevice('84:f3-eb:01:23:45'), /invalid device id/);
      await assert.rejects(store.issueDevice({ id: DEVICE }), /invalid device id/);
      await assert.rejects(store.issueServer({ commonName: '../../etc/passwd' }), /invalid DNS name/);
      await assert.rejects(store.issueServer({ commonName: 'ok.local', ipAddresses: ['999.1.1.1'] }), /invalid IP address/);
      await assert.rejects(store.issueBackend({ commonName: 'node/red' }), /invalid backend name/);
      await assert.rejects(store.issueBackend({ commonName: 'a#b' }), /invalid backend name/);
      await assert.rejects(store.issueBackend({ commonName: 'AABBCCDDEEFF' }), /looks like a device id/);
      await assert.rejects(store.issueDevice(DEVICE, { validityDays: -3 }), /invalid validity/);
      assert.equal(snapshot(dir), before);
    });
  });

  describe('CSR signing', () => {
    const csr = (name: string, subj: string, keyArgs = ['-newkey', 'rsa:2048']): string => {
      const base = path.join(tmp.path, name);
      opensslOk(['req', '-new', ...keyArgs, '-nodes', '-keyout', `${base}.key`, '-out', `${base}.csr`, '-subj', subj]);
      return readFileSync(`${base}.csr`, 'utf8');
    };

    it('signs a device CSR whose CN is the expected id, keeping the device key', async () => {
      const pem = csr('good', '/CN=a0b1c2d3e4f5');
      const issued = await store.signCsr(pem, { deviceId: 'A0-B1-C2-D3-E4-F5' });
      assert.equal(issued.record.keySource, 'csr');
      assert.equal(issued.privateKeyPem, undefined);
      assert.equal(issued.files.privateKey, undefined);
      assert.equal(verify(dir, issued.files.certificate).status, 0);
      const csrKey = opensslOk(['req', '-in', path.join(tmp.path, 'good.csr'), '-noout', '-pubkey']);
      const certKey = opensslOk(['x509', '-in', issued.files.certificate, '-noout', '-pubkey']);
      assert.equal(certKey, csrKey);
    });

    it('removes a key made here earlier when the device switches to its own key (CSR)', async () => {
      const id = 'a0b1c2d3e4f7';
      const made = await store.issueDevice(id);
      assert.ok(readFileSync(made.files.privateKey!));
      // One device, one valid certificate: switching keys replaces (and revokes) the old one.
      await assert.rejects(store.signCsr(csr('switch', `/CN=${id}`), { deviceId: id }), /already holds a valid certificate/);
      const issued = await store.signCsr(csr('switch', `/CN=${id}`), { deviceId: id, replace: true });
      assert.equal(store.findBySerial(made.record.serial).revocationReason, 'superseded');
      assert.equal(existsSync(path.join(dir, 'devices', `${id}.key`)), false, 'a stale key must never be served');
      assert.equal(readFileSync(path.join(dir, 'devices', `${id}.crt`), 'utf8'), issued.certificatePem);
    });

    it('refuses a CSR for another CN, a tampered CSR, a P-384 key and non-CSR text; nothing changes', async () => {
      const wrongCn = csr('wrong', '/CN=a0b1c2d3e4f6');
      const ec = csr('ec', '/CN=a0b1c2d3e4f5', ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-384']);
      // Change the CN inside the signed part to the expected id: only the signature can tell.
      const der = Buffer.from(csr('tamper', '/CN=a0b1c2d3e4f4').replace(/-----[^-]+-----|\s/g, ''), 'base64');
      const at = der.indexOf('a0b1c2d3e4f4');
      der.write('a0b1c2d3e4f5', at, 'latin1');
      const tampered = `-----BEGIN CERTIFICATE REQUEST-----\n${der.toString('base64')}\n-----END CERTIFICATE REQUEST-----\n`;
      const before = snapshot(dir);
      await assert.rejects(store.signCsr(wrongCn, { deviceId: 'a0b1c2d3e4f5' }), /CN "a0b1c2d3e4f6", expected device a0b1c2d3e4f5/);
      await assert.rejects(store.signCsr(tampered, { deviceId: 'a0b1c2d3e4f5' }), /the CSR signature does not verify/);
      await assert.rejects(store.signCsr(tampered.replace(/[A-Za-z0-9+/]{10}\n/, '!!!\n'), { deviceId: 'a0b1c2d3e4f5' }), /cannot parse the CSR|cannot read the CSR public key|does not verify/);
      await assert.rejects(store.signCsr(ec, { deviceId: 'a0b1c2d3e4f5' }), /the CSR key is EC on curve secp384r1; only P-256/);
      await assert.rejects(store.signCsr('hello', { deviceId: 'a0b1c2d3e4f5' }), /PEM certificate request/);
      await assert.rejects(store.signCsr(wrongCn, { deviceId: 'nonsense' }), /invalid device id/);
      assert.equal(snapshot(dir), before);
    });
  });

  describe('renewal', () => {
    it('renews with the same key: new serial, same public key, old one still valid', async () => {
      const first = await store.issueDevice('020000000001');
      const renewed = await store.renew({ serial: first.record.serial });
      assert.notEqual(renewed.record.serial, first.record.serial);
      assert.equal(renewed.record.renewedFrom, first.record.serial);
      const spki = (pem: string): Buffer => new X509Certificate(pem).publicKey.export({ type: 'spki', format: 'der' });
      assert.deepEqual(spki(renewed.certificatePem), spki(first.certificatePem));
      assert.equal(renewed.privateKeyPem, undefined);
      assert.equal(store.findBySerial(first.record.serial).revokedAt, undefined);
    });

    it('renews with a new key and can revoke the old certificate as superseded', async () => {
      const first = await store.issueDevice('020000000002');
      const renewed = await store.renew({ commonName: '02:00:00:00:00:02', newKey: true, revokeOld: true });
      assert.ok(renewed.privateKeyPem);
      assert.notDeepEqual(renewed.certificatePem, first.certificatePem);
      assert.equal(readFileSync(renewed.files.privateKey!, 'utf8'), renewed.privateKeyPem);
      assert.equal(store.findBySerial(first.record.serial).revocationReason, 'superseded');
      const oldFile = path.join(tmp.path, 'superseded.crt');
      writeFileSync(oldFile, first.certificatePem);
      assert.notEqual(verify(dir, oldFile, true).status, 0);
      assert.equal(verify(dir, renewed.files.certificate, true).status, 0);
    });

    it('refuses to renew something unknown or revoked', async () => {
      await assert.rejects(store.renew({ serial: 'FFFFFF' }), /no certificate with serial FFFFFF/);
      await assert.rejects(store.renew({ commonName: 'nobody.local' }), /no valid certificate/);
      await assert.rejects(store.renew({}), /needs a serial or a commonName/);
    });
  });

  describe('revocation and the CRL', () => {
    it('revokes: the CRL lists the serial with its reason and openssl rejects the certificate', async () => {
      const victim = await store.issueDevice('020000000003');
      const bystander = await store.issueDevice('020000000004');
      assert.equal(verify(dir, victim.files.certificate, true).status, 0);
      const revoked = await store.revoke(victim.record.serial, 'keyCompromise');
      assert.ok(revoked.revokedAt);
      const crl = opensslOk(['crl', '-in', path.join(dir, 'crl.pem'), '-noout', '-text']);
      assert.match(crl, new RegExp(`Serial Number: ${victim.record.serial}\\s+Revocation Date: [^\\n]+\\s+CRL entry extensions:\\s+X509v3 CRL Reason Code:\\s+Key Compromise`));
      assert.match(crl, /X509v3 CRL Number:\s+\d+/);
      opensslOk(['crl', '-in', path.join(dir, 'crl.pem'), '-CAfile', path.join(dir, 'ca.crt'), '-noout']);
      const r = verify(dir, victim.files.certificate, true);
      assert.notEqual(r.status, 0);
      assert.match(r.out, /certificate revoked/);
      assert.equal(verify(dir, bystander.files.certificate, true).status, 0);
    });

    it('keeps nextUpdate well ahead and re-signs the CRL before it lapses', async () => {
      const next = store.crlNextUpdateAt!;
      const days = (next.getTime() - Date.now()) / 86_400_000;
      assert.ok(days > 170 && days <= 180, `nextUpdate ${days} days ahead`);
      assert.equal(await store.refreshCrlIfDue(), false);
      const number = (): number => Number(/CRL Number:\s+(\d+)/.exec(opensslOk(['crl', '-in', path.join(dir, 'crl.pem'), '-noout', '-text']))![1]);
      const before = number();
      // 130 days on, less than a third of the 180 days remain: the CRL is re-signed.
      assert.equal(await store.refreshCrlIfDue(new Date(Date.now() + 130 * 86_400_000)), true);
      assert.equal(number(), before + 1);
    });

    it('does not re-sign a fresh CRL when the store is opened again', async () => {
      const crl = readFileSync(path.join(dir, 'crl.pem'), 'utf8');
      const reopened = await CaStore.open({ dir });
      assert.equal(readFileSync(path.join(dir, 'crl.pem'), 'utf8'), crl);
      assert.equal(reopened.crlNextUpdateAt?.getTime(), store.crlNextUpdateAt?.getTime());
    });

    it('rejects revoking an unknown serial, twice, or with an unknown reason; nothing changes', async () => {
      const target = store.list({ kind: 'device' })[0];
      await store.revoke(target.serial, 'cessationOfOperation');
      const before = snapshot(dir);
      await assert.rejects(store.revoke('ABCDEF01'), /no certificate with serial ABCDEF01/);
      await assert.rejects(store.revoke(target.serial), /already revoked/);
      await assert.rejects(store.revoke(store.list()[0].serial, 'becauseISaidSo'), /unknown revocation reason/);
      await assert.rejects(store.revoke('xyz'), /invalid serial/);
      assert.equal(snapshot(dir), before);
    });
  });

  describe('mosquitto folder', () => {
    it('keeps the broker identity, ACL and CRL of a written folder current', async () => {
      const mdir = path.join(tmp.path, 'mosq-current');
      const setup = await writeMosquittoConfig(store, { dir: mdir, serverName: 'mqtt.example.test', port: 8884 });
      const serverCrt = readFileSync(path.join(mdir, 'server.crt'), 'utf8');
      assert.equal(statSync(path.join(mdir, 'server.key')).mode & 0o777, 0o600);
      const renewed = await store.renew({ commonName: 'mqtt.example.test', newKey: true });
      assert.notEqual(readFileSync(path.join(mdir, 'server.crt'), 'utf8'), serverCrt);
      assert.equal(readFileSync(path.join(mdir, 'server.crt'), 'utf8'), renewed.certificatePem);
      assert.equal(readFileSync(path.join(mdir, 'server.key'), 'utf8'), renewed.privateKeyPem);
      const newDevice = await store.issueDevice('0d0000000001');
      assert.match(readFileSync(setup.aclFile, 'utf8'), /^user 0d0000000001\ntopic write \/status\/0d0000000001\ntopic write \/will\/0d0000000001\/will\ntopic read \/command\/0d0000000001\/#$/m);
      await store.revoke(newDevice.record.serial, 'cessationOfOperation');
      assert.doesNotMatch(readFileSync(setup.aclFile, 'utf8'), /0d0000000001/);
      assert.equal(readFileSync(setup.crlFile, 'utf8'), readFileSync(path.join(dir, 'crl.pem'), 'utf8'));
    });
  });

  describe('ACL per topic scheme', () => {
    it('lets ESP32-scheme devices write their status, will and log, and read their own prefix', async () => {
      const mdir = path.join(tmp.path, 'mosq-esp32');
      await store.issueDevice('0d0000000032');
      const setup = await writeMosquittoConfig(store, { dir: mdir, serverName: 'mqtt32.example.test', scheme: 'secure-esp32' });
      const acl = readFileSync(setup.aclFile, 'utf8');
      assert.match(acl, /^user 0d0000000032\ntopic write \/esp\/0d0000000032\/status\ntopic write \/esp\/0d0000000032\/will\ntopic write \/esp\/0d0000000032\/log\ntopic read \/esp\/0d0000000032\/#$/m);
      assert.match(acl, /^user node-red\ntopic read \/esp\/\+\/status\ntopic read \/esp\/\+\/will\ntopic read \/esp\/\+\/log\ntopic read homeassistant\/\+\/\+\/config\n/m);
      assert.match(acl, /\ntopic write \/esp\/\+\/#\ntopic write homeassistant\/update\/esp-fleet\/\+\/config\n/);
      await assert.rejects(writeMosquittoConfig(store, { dir: mdir, scheme: 'zigbee' }), /unknown topic scheme "zigbee"/);
      // Later changes keep the folder's own scheme.
      await store.issueDevice('0d0000000033');
      assert.match(readFileSync(setup.aclFile, 'utf8'), /topic write \/esp\/0d0000000033\/log/);
    });
  });

  describe('queries', () => {
    it('lists valid certificates and those expiring within N days', async () => {
      const soon = await store.issueDevice('020000000005', { validityDays: 10 });
      const expiring = store.expiring(30).map((r) => r.serial);
      assert.deepEqual(expiring, [soon.record.serial]);
      assert.deepEqual(store.expiring(5), []);
      const all = store.list({ includeRevoked: true });
      const valid = store.list();
      assert.ok(all.length > valid.length);
      assert.ok(valid.every((r) => !r.revokedAt));
      assert.ok(store.list({ kind: 'server' }).every((r) => r.kind === 'server'));
    });
  });

  describe('concurrency and crashes', () => {
    const journalOf = (d: string): { t: string; r?: { serial: string } }[] =>
      readFileSync(path.join(d, 'journal.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l) as { t: string; r?: { serial: string } });

    it('50 issuances at once get 50 distinct serials and a consistent journal on disk', async () => {
      const d = path.join(tmp.path, 'concurrent');
      const s = await CaStore.open({ dir: d });
      const ids = Array.from({ length: 50 }, (_, i) => `0a00000000${i.toString(16).padStart(2, '0')}`);
      const issued = await Promise.all(ids.map((id) => s.issueDevice(id)));
      const serials = new Set(issued.map((c) => c.record.serial));
      assert.equal(serials.size, 50);
      await s.idle();
      const onDisk = journalOf(d).filter((e) => e.t === 'cert').map((e) => e.r!.serial);
      assert.equal(onDisk.length, 50, 'each certificate is journalled exactly once');
      assert.deepEqual(new Set(onDisk), serials);
      const reopened = await CaStore.open({ dir: d });
      assert.equal(reopened.list().length, 50);
      const next = await reopened.issueDevice('0b0000000001');
      assert.ok(!serials.has(next.record.serial));
      assert.equal(readdirSync(d).filter((n) => n.endsWith('.tmp')).length, 0);
    });

    it('drops a journal line torn by a crash, keeps the rest, and never reuses a serial', async () => {
      const d = path.join(tmp.path, 'torn');
      const s = await CaStore.open({ dir: d });
      const a = await s.issueDevice('0c0000000001');
      await s.idle();
      // A crash mid-append leaves the start of a line; that issuance was never answered.
      appendFileSync(path.join(d, 'journal.jsonl'), '{"t":"cert","r":{"serial":"10');
      writeFileSync(path.join(d, '.ca.key.deadbeef.tmp'), 'half a key');
      const reopened = await CaStore.open({ dir: d });
      assert.deepEqual(reopened.list().map((r) => r.serial), [a.record.serial]);
      const b = await reopened.issueDevice('0c0000000002');
      assert.ok(parseInt(b.record.serial, 16) > parseInt(a.record.serial, 16));
      assert.equal(journalOf(d).filter((e) => e.t === 'cert').length, 2);
    });

    it('refuses to open a journal damaged anywhere but its last line', async () => {
      const d = path.join(tmp.path, 'damaged');
      const s = await CaStore.open({ dir: d });
      await s.issueDevice('0c0000000005');
      await s.idle();
      const file = path.join(d, 'journal.jsonl');
      writeFileSync(file, `garbage\n${readFileSync(file, 'utf8')}`);
      await assert.rejects(CaStore.open({ dir: d }), /line 1 is not JSON: restore it from a backup/);
    });

    it('rebuilds from the identity folders when the journal is lost, and never reuses a serial', async () => {
      const d = path.join(tmp.path, 'lost');
      const s = await CaStore.open({ dir: d });
      const a = await s.issueDevice('0c0000000003');
      const b = await s.issueServer({ commonName: 'lost.example.test' });
      await s.idle();
      await fs.rm(path.join(d, 'journal.jsonl'));
      const reopened = await CaStore.open({ dir: d });
      assert.deepEqual(reopened.list().map((r) => [r.serial, r.kind]).sort(), [[a.record.serial, 'device'], [b.record.serial, 'server']].sort());
      const c = await reopened.issueDevice('0c0000000004');
      assert.ok(parseInt(c.record.serial, 16) > parseInt(b.record.serial, 16));
    });
  });
});
