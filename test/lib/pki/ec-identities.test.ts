import { strict as assert } from 'node:assert';
import { createPrivateKey, createPublicKey, generateKeyPairSync, KeyObject, X509Certificate } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import * as path from 'node:path';
import { CaStore } from '../../../lib/pki/ca-store';
import { buildCsr } from '../../../lib/pki/csr-builder';
import { toPem } from '../../../lib/pki/x509';
import { runIssuerAction } from '../../../lib/issuer/issuer-actions';
import type { IssuedOutput } from '../../../lib/issuer/issuer-actions';
import { openssl, opensslOk } from '../../support/openssl';
import { tempDir } from '../../support/temp-dir';
import { treeSnapshot } from '../../support/fleet-state';

const DAY = 86_400_000;
const spkiOfCert = (pem: string): Buffer => new X509Certificate(pem).publicKey.export({ type: 'spki', format: 'der' });
const spkiOfKey = (key: KeyObject): Buffer => createPublicKey(key).export({ type: 'spki', format: 'der' });
const p256 = (): KeyObject => generateKeyPairSync('ec', { namedCurve: 'prime256v1' }).privateKey;
const csrPem = (commonName: string, privateKey: KeyObject): string => toPem('CERTIFICATE REQUEST', buildCsr({ commonName, privateKey }));

describe('EC P-256 identities in the CA (lib/pki keys, issuing, ca-store)', function () {
  this.timeout(60_000);
  const tmp = tempDir('ec-identities');
  const dir = path.join(tmp.path, 'ca');
  let clockOffset = 0;
  let store: CaStore;
  const file = (name: string, text: string): string => {
    const f = path.join(tmp.path, name);
    writeFileSync(f, text);
    return f;
  };
  const verify = (certPem: string) => openssl(['verify', '-CAfile', path.join(dir, 'devices', 'ca.crt'), file('leaf.crt', certPem)]);
  const text = (certPem: string): string => opensslOk(['x509', '-in', file('leaf.crt', certPem), '-noout', '-text']);
  /** A CSR made by openssl itself with `-newkey <keyArgs>`, PEM. */
  const opensslCsr = (name: string, cn: string, keyArgs: string[]): string => {
    const out = path.join(tmp.path, `${name}.csr`);
    opensslOk(['req', '-new', ...keyArgs, '-nodes', '-keyout', path.join(tmp.path, `${name}.key`), '-subj', `/CN=${cn}`, '-out', out]);
    return readFileSync(out, 'utf8');
  };
  /** Runs `refused`, which must reject matching `message`, and checks nothing was stored. */
  const refusedWithNothingStored = async (refused: () => Promise<unknown>, message: RegExp): Promise<void> => {
    await store.idle();
    const count = store.issuedCount;
    const before = await treeSnapshot(dir);
    await assert.rejects(refused(), message);
    await store.idle();
    assert.equal(store.issuedCount, count, 'a refused call issued a certificate');
    assert.deepEqual(await treeSnapshot(dir), before, 'a refused call wrote to the CA folder');
  };

  before(async () => {
    store = await CaStore.open({ dir, now: () => new Date(Date.now() + clockOffset) });
    await store.issueDevice('0a0000000000'); // writes devices/ca.crt
  });
  after(async () => {
    await store.idle();
    tmp.remove();
  });

  describe('a fresh EC key made here (issueDevice keyType ec)', () => {
    it('openssl verifies the certificate against the CA; it holds a P-256 key with digitalSignature only (critical)', async () => {
      const issued = await store.issueDevice('0a0000000001', { keyType: 'ec' });
      const v = verify(issued.certificatePem);
      assert.equal(v.status, 0, v.stderr + v.stdout);
      const t = text(issued.certificatePem);
      assert.match(t, /Public Key Algorithm: id-ecPublicKey/);
      assert.match(t, /ASN1 OID: prime256v1/);
      assert.match(t, /X509v3 Key Usage: critical\n\s+Digital Signature\n/);
      assert.doesNotMatch(t, /Key Encipherment/);
      assert.match(t, /TLS Web Client Authentication/);
      // The key file is the PKCS#8 P-256 key of that certificate.
      const keyPem = readFileSync(issued.files.privateKey!, 'utf8');
      assert.equal(keyPem, issued.privateKeyPem);
      assert.match(keyPem, /^-----BEGIN PRIVATE KEY-----\n/);
      assert.match(opensslOk(['pkey', '-in', issued.files.privateKey!, '-noout', '-text']), /prime256v1/);
      assert.deepEqual(spkiOfKey(createPrivateKey(keyPem)), spkiOfCert(issued.certificatePem));
      assert.equal(issued.record.keySource, 'generated');
    });

    it('RSA stays the default and keeps digitalSignature + keyEncipherment', async () => {
      const issued = await store.issueDevice('0a0000000002');
      const t = text(issued.certificatePem);
      assert.match(t, /Public Key Algorithm: rsaEncryption/);
      assert.match(t, /Digital Signature, Key Encipherment/);
      assert.equal(createPrivateKey(issued.privateKeyPem!).asymmetricKeyType, 'rsa');
    });

    it('an unknown keyType is refused with nothing stored', async () => {
      for (const keyType of ['ecdsa', 'EC-384', 'ed25519', 7, { curve: 'P-256' }]) {
        await refusedWithNothingStored(() => store.issueDevice('0a0000000003', { keyType }), /unknown keyType .*: use "rsa" or "ec" \(P-256\)/);
      }
    });

    it('renew with newKey and keyType ec gives the identity a P-256 key; the old certificate stays valid', async () => {
      const first = await store.issueDevice('0a0000000004');
      const renewed = await store.renew({ serial: first.record.serial, newKey: true, keyType: 'ec' });
      assert.equal(createPrivateKey(renewed.privateKeyPem!).asymmetricKeyDetails?.namedCurve, 'prime256v1');
      assert.deepEqual(spkiOfKey(createPrivateKey(renewed.privateKeyPem!)), spkiOfCert(renewed.certificatePem));
      assert.equal(renewed.record.renewedFrom, first.record.serial);
      assert.equal(store.findBySerial(first.record.serial).revokedAt, undefined);
      assert.equal(verify(renewed.certificatePem).status, 0);
      await refusedWithNothingStored(() => store.renew({ serial: first.record.serial, keyType: 'ec' }), /keyType needs newKey: true/);
    });
  });

  describe('CSRs with the device key (signCsr)', () => {
    it('signs a P-256 CSR: the certificate holds the CSR key, digitalSignature only, verifies', async () => {
      const key = p256();
      const issued = await store.signCsr(csrPem('0a0000000010', key), { deviceId: '0a0000000010', keyType: 'ec' });
      assert.deepEqual(spkiOfCert(issued.certificatePem), spkiOfKey(key));
      assert.equal(issued.record.keySource, 'csr');
      assert.equal(issued.privateKeyPem, undefined);
      assert.equal(verify(issued.certificatePem).status, 0);
      assert.match(text(issued.certificatePem), /X509v3 Key Usage: critical\n\s+Digital Signature\n/);
    });

    it('signs an openssl-made P-256 CSR and an RSA 2048 CSR without keyType', async () => {
      const ec = await store.signCsr(opensslCsr('ec-ok', '0a0000000011', ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256']), { deviceId: '0a0000000011' });
      assert.match(text(ec.certificatePem), /prime256v1/);
      const rsa = await store.signCsr(opensslCsr('rsa-ok', '0a0000000012', ['-newkey', 'rsa:2048']), { deviceId: '0a0000000012' });
      assert.match(text(rsa.certificatePem), /Digital Signature, Key Encipherment/);
    });

    const id = '0a0000000013';
    const refusals: [string, () => string, Record<string, unknown>, RegExp][] = [
      ['RSA-1024', () => opensslCsr('rsa1024', id, ['-newkey', 'rsa:1024']), {}, /the CSR key is RSA of 1024 bits; use 2048 to 4096/],
      ['P-384', () => opensslCsr('p384', id, ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-384']), {}, /the CSR key is EC on curve secp384r1; only P-256/],
      ['secp256k1', () => opensslCsr('k1', id, ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:secp256k1']), {}, /the CSR key is EC on curve secp256k1; only P-256/],
      ['Ed25519', () => opensslCsr('ed', id, ['-newkey', 'ed25519']), {}, /the CSR key is ed25519; use EC P-256 or RSA 2048 to 4096/],
      [
        'a tampered signature',
        () => {
          const der = buildCsr({ commonName: id, privateKey: p256() });
          der[der.length - 3] ^= 0x01;
          return toPem('CERTIFICATE REQUEST', der);
        },
        {},
        /the CSR signature does not verify/,
      ],
      ['an EC key where keyType rsa is asked', () => csrPem(id, p256()), { keyType: 'rsa' }, /the CSR key is EC P-256, not the RSA asked for \(keyType\)/],
      ['an RSA key where keyType ec is asked', () => opensslCsr('rsa-not-ec', id, ['-newkey', 'rsa:2048']), { keyType: 'ec' }, /the CSR key is RSA, not the EC P-256 asked for \(keyType\)/],
      ['an unknown keyType', () => csrPem(id, p256()), { keyType: 'p256' }, /unknown keyType/],
    ];
    for (const [name, make, extra, message] of refusals) {
      it(`refuses ${name}, with nothing stored`, async () => {
        const pem = make();
        await refusedWithNothingStored(() => store.signCsr(pem, { deviceId: id, ...extra }), message);
        assert.equal(store.everIssued('device', id), false);
      });
    }
  });

  describe('renewWithCsr (what EST simplereenroll calls)', () => {
    it('issues for the same identity with the CSR key; renewedFrom is the old serial, which stays valid', async () => {
      const oldKey = p256();
      const old = await store.signCsr(csrPem('0a0000000020', oldKey), { deviceId: '0a0000000020' });
      const newKey = p256();
      const renewed = await store.renewWithCsr({ serial: old.record.serial, csrPem: csrPem('0a0000000020', newKey) });
      assert.equal(renewed.record.commonName, '0a0000000020');
      assert.equal(renewed.record.kind, 'device');
      assert.equal(renewed.record.renewedFrom, old.record.serial);
      assert.equal(renewed.record.keySource, 'csr');
      assert.notEqual(renewed.record.serial, old.record.serial);
      assert.deepEqual(spkiOfCert(renewed.certificatePem), spkiOfKey(newKey));
      assert.equal(store.findBySerial(old.record.serial).revokedAt, undefined);
      assert.equal(verify(renewed.certificatePem).status, 0);
      assert.equal(readFileSync(path.join(dir, 'devices', '0a0000000020.crt'), 'utf8'), renewed.certificatePem);
      // Same key again is fine too (a device re-enrolling with the key it has).
      const again = await store.renewWithCsr({ serial: renewed.record.serial.toLowerCase(), csrPem: csrPem('0a0000000020', newKey) });
      assert.equal(again.record.renewedFrom, renewed.record.serial);
    });

    it('renews an RSA identity made here to an EC key from its CSR', async () => {
      const old = await store.issueDevice('0a0000000021');
      const key = p256();
      const renewed = await store.renewWithCsr({ serial: old.record.serial, csrPem: csrPem('0a0000000021', key) });
      assert.deepEqual(spkiOfCert(renewed.certificatePem), spkiOfKey(key));
      assert.match(text(renewed.certificatePem), /Digital Signature\n/);
    });

    it('refuses a revoked serial, an unknown serial, an expired certificate, a CN mismatch, a bad CSR; nothing stored', async () => {
      const revoked = await store.issueDevice('0a0000000022', { keyType: 'ec' });
      await store.revoke(revoked.record.serial, 'keyCompromise');
      await refusedWithNothingStored(() => store.renewWithCsr({ serial: revoked.record.serial, csrPem: csrPem('0a0000000022', p256()) }), /is revoked; it cannot be renewed/);
      await refusedWithNothingStored(() => store.renewWithCsr({ serial: 'FFFFFF', csrPem: csrPem('0a0000000022', p256()) }), /no certificate with serial FFFFFF/);
      await refusedWithNothingStored(() => store.renewWithCsr({ serial: 'not hex', csrPem: csrPem('0a0000000022', p256()) }), /serial/);

      const held = await store.issueDevice('0a0000000023', { keyType: 'ec' });
      await refusedWithNothingStored(() => store.renewWithCsr({ serial: held.record.serial, csrPem: csrPem('0a0000000024', p256()) }), /the CSR is for CN "0a0000000024", expected "0a0000000023"/);
      const tampered = buildCsr({ commonName: '0a0000000023', privateKey: p256() });
      tampered[tampered.length - 3] ^= 0x01;
      await refusedWithNothingStored(() => store.renewWithCsr({ serial: held.record.serial, csrPem: toPem('CERTIFICATE REQUEST', tampered) }), /the CSR signature does not verify/);
      await refusedWithNothingStored(
        () => store.renewWithCsr({ serial: held.record.serial, csrPem: opensslCsr('renew-p384', '0a0000000023', ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-384']) }),
        /secp384r1; only P-256/,
      );
      await refusedWithNothingStored(() => store.renewWithCsr({ serial: held.record.serial, csrPem: 42 }), /PEM certificate request/);

      // Past its notAfter (the CA's clock moved on) it no longer speaks for the identity.
      clockOffset = 900 * DAY;
      try {
        await refusedWithNothingStored(() => store.renewWithCsr({ serial: held.record.serial, csrPem: csrPem('0a0000000023', p256()) }), /has expired; it cannot be renewed/);
      } finally {
        clockOffset = 0;
      }
    });
  });

  describe('issuer actions take keyType from msg.payload', () => {
    it('device, csr and renew', async () => {
      const device = (await runIssuerAction(store, 'device', { id: '0a0000000030', keyType: 'ec' })) as IssuedOutput;
      assert.match(text(device.certificate.pem), /prime256v1/);
      const key = p256();
      const signed = (await runIssuerAction(store, 'csr', { csr: csrPem('0a0000000031', key), deviceId: '0a0000000031', keyType: 'ec' })) as IssuedOutput;
      assert.deepEqual(spkiOfCert(signed.certificate.pem), spkiOfKey(key));
      await assert.rejects(runIssuerAction(store, 'csr', { csr: csrPem('0a0000000032', key), deviceId: '0a0000000032', keyType: 'rsa' }), /not the RSA asked for/);
      const renewed = (await runIssuerAction(store, 'renew', { serial: device.serial, newKey: true, keyType: 'ec' })) as IssuedOutput;
      assert.match(text(renewed.certificate.pem), /prime256v1/);
      assert.notDeepEqual(spkiOfCert(renewed.certificate.pem), spkiOfCert(device.certificate.pem));
    });
  });
});
