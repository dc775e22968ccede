import { strict as assert } from 'node:assert';
import { X509Certificate } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import * as path from 'node:path';
import fc from 'fast-check';
import { certsOnly, certificatesOf } from '../../../lib/pki/pkcs7';
import { openssl, opensslOk } from '../../support/openssl';
import { tempDir } from '../../support/temp-dir';

const derOfPem = (pem: string): Buffer => Buffer.from(new X509Certificate(pem).raw);
const pemsIn = (text: string): string[] => text.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g) ?? [];

describe('PKCS#7 certs-only (lib/pki/pkcs7)', function () {
  this.timeout(30_000);
  const tmp = tempDir('pkcs7');
  /** An EC P-256 and an RSA certificate made by openssl itself, so neither side judges its own work. */
  const certs: { file: string; der: Buffer }[] = [];

  before(() => {
    for (const [name, newkey] of [
      ['ec', ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1']],
      ['rsa', ['-newkey', 'rsa:2048']],
    ] as const) {
      const file = path.join(tmp.path, `${name}.crt`);
      opensslOk(['req', '-x509', ...newkey, '-nodes', '-keyout', path.join(tmp.path, `${name}.key`), '-subj', `/CN=${name}-test`, '-days', '2', '-out', file]);
      certs.push({ file, der: derOfPem(readFileSync(file, 'utf8')) });
    }
  });
  after(() => tmp.remove());

  it('openssl pkcs7 -print_certs reads what certsOnly makes: the same certificate bytes, in order', () => {
    for (const chosen of [[certs[0]], [certs[0], certs[1]], [certs[1], certs[0]]]) {
      const file = path.join(tmp.path, 'out.p7');
      writeFileSync(file, certsOnly(chosen.map((c) => c.der)));
      const printed = pemsIn(opensslOk(['pkcs7', '-inform', 'DER', '-in', file, '-print_certs']));
      assert.deepEqual(
        printed.map((p) => derOfPem(p).toString('hex')),
        chosen.map((c) => c.der.toString('hex')),
      );
      // And openssl sees a SignedData with no signers (what RFC 7030 §4.1.3 asks for).
      const asn1 = opensslOk(['asn1parse', '-inform', 'DER', '-in', file]);
      assert.match(asn1, /:pkcs7-signedData/);
      assert.match(asn1, /:pkcs7-data/);
    }
  });

  it('certsOnly with no certificates is still a message openssl reads, and certificatesOf reads it back as empty', () => {
    const file = path.join(tmp.path, 'empty.p7');
    writeFileSync(file, certsOnly([]));
    const r = openssl(['pkcs7', '-inform', 'DER', '-in', file, '-print_certs']);
    assert.equal(r.status, 0, r.stderr);
    assert.deepEqual(certificatesOf(readFileSync(file)), []);
  });

  it('certificatesOf reads what openssl crl2pkcs7 -nocrl makes', () => {
    const file = path.join(tmp.path, 'openssl.p7');
    opensslOk(['crl2pkcs7', '-nocrl', '-certfile', certs[0].file, '-certfile', certs[1].file, '-outform', 'DER', '-out', file]);
    const read = certificatesOf(readFileSync(file));
    assert.deepEqual(
      read.map((d) => d.toString('hex')),
      certs.map((c) => c.der.toString('hex')),
    );
  });

  it('certsOnly refuses something that is not a certificate', () => {
    assert.throws(() => certsOnly([Buffer.from('3003020101', 'hex')]));
    assert.throws(() => certsOnly([Buffer.concat([certs[0].der, Buffer.from([0])])]), /trailing/);
  });

  it('truncated, extended and garbage inputs throw a short Error (fast-check, fixed seed)', () => {
    const good = certsOnly(certs.map((c) => c.der));
    const mutated = fc.oneof(
      fc.integer({ min: 0, max: good.length - 1 }).map((n) => good.subarray(0, n)),
      fc.uint8Array({ minLength: 1, maxLength: 8 }).map((tail) => Buffer.concat([good, tail])),
      fc.uint8Array({ maxLength: 600 }).map((b) => Buffer.from(b)),
      // One byte of the outline (the first 40 bytes: ContentInfo and SignedData headers) changed.
      fc.tuple(fc.integer({ min: 0, max: 39 }), fc.integer({ min: 0, max: 255 })).map(([at, v]) => {
        const copy = Buffer.from(good);
        copy[at] = copy[at] === v ? v ^ 0xff : v;
        return copy;
      }),
    );
    let threw = 0;
    fc.assert(
      fc.property(mutated, (input) => {
        let out: Buffer[] | undefined;
        try {
          out = certificatesOf(input);
        } catch (err) {
          threw++;
          assert.ok(err instanceof Error);
          assert.match(err.message, /^not a PKCS#7 certificate bundle: /);
          assert.ok(err.message.length < 120 && !err.message.includes('\n'), err.message);
          return;
        }
        // A changed byte may still be a valid message (a different version number, say): then
        // what comes out must still be whole certificates.
        for (const der of out) assert.doesNotThrow(() => new X509Certificate(der));
      }),
      { seed: 71401, numRuns: 1500 },
    );
    assert.ok(threw > 1000, `only ${threw} inputs were refused`);
  });
});
