import { strict as assert } from 'node:assert';
import { generateKeyPairSync, createPublicKey } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import * as path from 'node:path';
import { buildCsr } from '../../../lib/pki/csr-builder';
import { readVerifiedCsr } from '../../../lib/pki/csr';
import { readTlv, childrenOf } from '../../../lib/pki/der';
import { toPem } from '../../../lib/pki/x509';
import { openssl } from '../../support/openssl';
import { tempDir } from '../../support/temp-dir';

const DEVICE = '84f3eb0a0b0c';

describe('PKCS#10 requests (lib/pki/csr-builder)', function () {
  this.timeout(30_000);
  const tmp = tempDir('csr-builder');
  after(() => tmp.remove());

  const keys = {
    'EC P-256': generateKeyPairSync('ec', { namedCurve: 'prime256v1' }).privateKey,
    'RSA 2048': generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey,
  };

  for (const [name, privateKey] of Object.entries(keys)) {
    it(`${name}: openssl req -verify accepts it, with CN only and the key`, () => {
      const der = buildCsr({ commonName: DEVICE, privateKey });
      const file = path.join(tmp.path, 'req.der');
      writeFileSync(file, der);
      const r = openssl(['req', '-inform', 'DER', '-in', file, '-verify', '-noout', '-text']);
      assert.equal(r.status, 0, r.stderr);
      assert.match(r.stdout + r.stderr, /verify OK/i);
      assert.match(r.stdout, new RegExp(`Subject: CN\\s?=\\s?${DEVICE}\\n`));
      assert.match(r.stdout, name.startsWith('EC') ? /ecdsa-with-SHA256[\s\S]*prime256v1|prime256v1[\s\S]*ecdsa-with-SHA256/ : /sha256WithRSAEncryption/);
      assert.match(r.stdout, /Attributes:\s*(\(none\)|a0:00)/);
    });

    it(`${name}: readVerifiedCsr reads back the CN and the key`, () => {
      const csr = readVerifiedCsr(toPem('CERTIFICATE REQUEST', buildCsr({ commonName: DEVICE, privateKey })));
      assert.equal(csr.commonName, DEVICE);
      assert.deepEqual(csr.spki, createPublicKey(privateKey).export({ type: 'spki', format: 'der' }));
    });
  }

  it('a request whose signature byte was changed no longer verifies (openssl and readVerifiedCsr)', () => {
    const der = buildCsr({ commonName: DEVICE, privateKey: keys['EC P-256'] });
    der[der.length - 5] ^= 0x01;
    const file = path.join(tmp.path, 'bad.der');
    writeFileSync(file, der);
    // openssl 3.0 exits 0 here and only says so: read what it says.
    const r = openssl(['req', '-inform', 'DER', '-in', file, '-verify', '-noout']);
    assert.doesNotMatch(r.stdout + r.stderr, /verify OK/i);
    assert.match(r.stdout + r.stderr, /verify failure/i);
    assert.throws(() => readVerifiedCsr(toPem('CERTIFICATE REQUEST', der)), /signature does not verify/);
  });

  it('refuses keys it does not sign with (P-384, Ed25519, a public key)', () => {
    assert.throws(() => buildCsr({ commonName: DEVICE, privateKey: generateKeyPairSync('ec', { namedCurve: 'secp384r1' }).privateKey }), /P-256 or RSA/);
    assert.throws(() => buildCsr({ commonName: DEVICE, privateKey: generateKeyPairSync('ed25519').privateKey }), /P-256 or RSA/);
    assert.throws(() => buildCsr({ commonName: DEVICE, privateKey: createPublicKey(keys['EC P-256']) }), /private key/);
  });

  it('one encoding per request: unused signature bits, trailing bytes and changed algorithm parameters are refused', () => {
    // Found by the enrollment fuzzer: a flipped unused-bits byte of the signature left the signature intact.
    for (const key of [generateKeyPairSync('ec', { namedCurve: 'prime256v1' }).privateKey, generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey]) {
      const der = buildCsr({ commonName: '84f3eb0000c5', privateKey: key });
      assert.equal(readVerifiedCsr(toPem('CERTIFICATE REQUEST', der)).commonName, '84f3eb0000c5');
      const outer = readTlv(der, 0);
      const [, alg, sig] = childrenOf(der, outer);
      const unused = Buffer.from(der);
      unused[sig!.contentStart] = 1;
      assert.throws(() => readVerifiedCsr(toPem('CERTIFICATE REQUEST', unused)), /no unused bits/);
      assert.throws(() => readVerifiedCsr(toPem('CERTIFICATE REQUEST', Buffer.concat([der, Buffer.from([0])]))), /bytes after the request/);
      const params = childrenOf(der, alg!);
      if (params.length === 2) {
        const changed = Buffer.from(der);
        changed[params[1]!.start] = 0x04; // NULL → an empty OCTET STRING
        assert.throws(() => readVerifiedCsr(toPem('CERTIFICATE REQUEST', changed)), /parameters other than NULL/);
      }
    }
  });
});
