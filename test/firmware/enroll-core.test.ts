import { strict as assert } from 'node:assert';
import { createPublicKey } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import * as path from 'node:path';
import { recordAttack } from '../security/support/attack-tally';
import { tempDir } from '../support/temp-dir';
import { CORE_DIR, requireCoreTools, run } from '../support/firmware-core';

const ENROLL_TOOL = path.join(CORE_DIR, 'build', 'enroll_tool');

/**
 * The device side of enrollment (docs/enrollment.md) against openssl: CSRs the firmware core
 * builds for P-256 keys made and signed by BearSSL (firmware/core/test/enroll_tool.cpp) must pass
 * `openssl req -verify`, and the core must read the certificate out of what `openssl crl2pkcs7`
 * makes. Keys and certificates are made here, in a temporary folder, and removed afterwards.
 */
describe('firmware/core enrollment: BearSSL CSRs and PKCS#7 answers checked with openssl', function () {
  this.timeout(120_000);
  const dir = tempDir('enroll-core');
  const file = (name: string) => path.join(dir.path, name);

  async function openssl(args: string[]): Promise<string> {
    const r = await run('openssl', args);
    assert.equal(r.code, 0, `openssl ${args.join(' ')} failed:\n${r.stdout}${r.stderr}`);
    return r.stdout + r.stderr;
  }

  // A tiny CA (RSA, as the fleet's CA is) issuing leaf certificates for CSRs.
  async function issue(csrDer: string, name: string, days: number): Promise<string> {
    await openssl(['req', '-inform', 'DER', '-in', csrDer, '-out', file(`${name}.csr.pem`)]);
    await openssl(['x509', '-req', '-in', file(`${name}.csr.pem`), '-CA', file('ca.crt'), '-CAkey', file('ca.key'), '-days', String(days), '-out', file(`${name}.crt`)]);
    return file(`${name}.crt`);
  }

  async function csr(id: string, name: string): Promise<{ der: string; point: string }> {
    const der = file(`${name}.der`);
    const r = await run(ENROLL_TOOL, ['csr', id, der]);
    assert.equal(r.code, 0, `enroll_tool csr: ${r.stdout}${r.stderr}`);
    const point = /^point ([0-9a-f]{130})$/m.exec(r.stdout);
    assert.ok(point, r.stdout);
    return { der, point: point[1] };
  }

  async function certsOnly(certFiles: string[], name: string, lineLength: number, eol: string): Promise<string> {
    const args = ['crl2pkcs7', '-nocrl', '-outform', 'DER', '-out', file(`${name}.p7b`)];
    for (const c of certFiles) args.push('-certfile', c);
    await openssl(args);
    const b64 = readFileSync(file(`${name}.p7b`)).toString('base64');
    const lines = lineLength ? (b64.match(new RegExp(`.{1,${lineLength}}`, 'g')) ?? []) : [b64];
    writeFileSync(file(`${name}.b64`), lines.join(eol) + eol);
    return file(`${name}.b64`);
  }

  before(async () => {
    requireCoreTools();
    const r = await run('make', ['-C', CORE_DIR, 'build/enroll_tool']);
    assert.equal(r.code, 0, `building enroll_tool failed:\n${r.stdout}\n${r.stderr}`);
    await openssl(['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', file('ca.key'), '-subj', '/CN=ESP Fleet CA', '-days', '40000', '-out', file('ca.crt')]);
  });
  after(() => dir.remove());

  const IDS = ['84f3eb012345', '000000000000', 'ffffffffffff', 'a020a6123456', '5ccf7f00abcd', '84f3eb000001', 'dc4f22fedcba', '2cf43210c0de'];

  it(`openssl req -verify accepts the CSR the core builds (${IDS.length} BearSSL keys and ids)`, async () => {
    for (const [i, id] of IDS.entries()) {
      const { der, point } = await csr(id, `csr-${i}`);
      const out = await openssl(['req', '-inform', 'DER', '-in', der, '-verify', '-noout', '-subject']);
      assert.match(out, /verify OK/, `${id}: ${out}`);
      assert.doesNotMatch(out, /fail/i, `${id}: ${out}`);
      assert.match(out, new RegExp(`^subject=CN ?= ?${id}$`, 'm'), `${id}: ${out}`);
      // The key in the CSR is the one BearSSL made: id-ecPublicKey on prime256v1.
      const pem = await openssl(['req', '-inform', 'DER', '-in', der, '-noout', '-pubkey']);
      const key = createPublicKey(pem);
      assert.equal(key.asymmetricKeyType, 'ec');
      assert.equal(key.asymmetricKeyDetails?.namedCurve, 'prime256v1');
      const spki = key.export({ type: 'spki', format: 'der' });
      assert.equal(spki.subarray(spki.length - 65).toString('hex'), point, `${id}: public key`);
      // The base64 body for EST (RFC 7030 §4.2.1) is the same DER.
      assert.deepEqual(Buffer.from(readFileSync(`${der}.b64`, 'utf8'), 'base64'), readFileSync(der));
    }
  });

  it('openssl refuses a CSR of the core whose signature was changed (the check above can fail)', async () => {
    const { der } = await csr('84f3eb012345', 'csr-bad');
    const bytes = readFileSync(der);
    bytes[bytes.length - 3] ^= 0x01; // inside s of the ECDSA signature
    writeFileSync(der, bytes);
    const r = await run('openssl', ['req', '-inform', 'DER', '-in', der, '-verify', '-noout']);
    // openssl 3.0 prints the failure but may still exit 0: the text decides.
    assert.doesNotMatch(r.stdout + r.stderr, /verify OK/, `openssl accepted a changed signature: ${r.stdout}${r.stderr}`);
    assert.match(r.stdout + r.stderr, /verify fail/);
  });

  it('reads the first certificate and its validity from openssl crl2pkcs7 answers (UTCTime and GeneralizedTime, line breaks)', async () => {
    const { der } = await csr('84f3eb0a0b0c', 'leaf');
    const short = await issue(der, 'short', 30); // UTCTime both
    const long = await issue(der, 'long', 30_000); // notAfter past 2049: GeneralizedTime
    const cases = [
      { certs: [short], lines: 64, eol: '\n' },
      { certs: [long], lines: 76, eol: '\r\n' },
      { certs: [long, file('ca.crt')], lines: 0, eol: '' },
      { certs: [short, file('ca.crt')], lines: 60, eol: '\r\n' },
    ];
    for (const [i, c] of cases.entries()) {
      const answer = await certsOnly(c.certs, `answer-${i}`, c.lines, c.eol);
      const r = await run(ENROLL_TOOL, ['pkcs7', answer]);
      assert.equal(r.code, 0, `case ${i}: ${r.stdout}${r.stderr}`);
      const m = /^ok (\d+) (\d+) ([0-9a-f]+)$/m.exec(r.stdout);
      assert.ok(m, r.stdout);
      const first = c.certs[0];
      const expectedDer = await run('openssl', ['x509', '-in', first, '-outform', 'DER', '-out', file(`first-${i}.der`)]);
      assert.equal(expectedDer.code, 0);
      assert.equal(m[3], readFileSync(file(`first-${i}.der`)).toString('hex'), `case ${i}: certificate bytes`);
      const dates = await openssl(['x509', '-in', first, '-noout', '-startdate', '-enddate']);
      const notBefore = Date.parse(/notBefore=(.+)$/m.exec(dates)![1]) / 1000;
      const notAfter = Date.parse(/notAfter=(.+)$/m.exec(dates)![1]) / 1000;
      assert.equal(Number(m[1]), notBefore, `case ${i}: notBefore (${dates.trim()})`);
      assert.equal(Number(m[2]), notAfter, `case ${i}: notAfter (${dates.trim()})`);
      if (first === long) assert.ok(notAfter > Date.UTC(2050, 0, 1) / 1000, 'the long certificate uses GeneralizedTime');
    }
  });

  it('refuses a PKCS#7 without certificates, a PEM certificate and a bare DER certificate', async () => {
    await openssl(['crl2pkcs7', '-nocrl', '-outform', 'DER', '-out', file('empty.p7b')]);
    writeFileSync(file('empty.b64'), readFileSync(file('empty.p7b')).toString('base64'));
    writeFileSync(file('pem.b64'), readFileSync(file('ca.crt')));
    await openssl(['x509', '-in', file('ca.crt'), '-outform', 'DER', '-out', file('ca.der')]);
    writeFileSync(file('bare.b64'), readFileSync(file('ca.der')).toString('base64'));
    for (const [name, reason] of [['empty', 'no certificate in the PKCS#7'], ['pem', 'the answer is not base64 or too big'], ['bare', 'not a PKCS#7 SignedData']]) {
      const r = await run(ENROLL_TOOL, ['pkcs7', file(`${name}.b64`)]);
      assert.equal(r.code, 1, `${name}: ${r.stdout}${r.stderr}`);
      assert.equal(r.stdout.trim(), `fail: ${reason}`);
    }
    recordAttack('firmware pkcs7 reader', 'refused', 3);
  });

  it('refuses every truncation and survives 2 x 600 mutated answers under ASan/UBSan', async () => {
    const { der } = await csr('84f3eb0d0e0f', 'fuzz');
    const leaf = await issue(der, 'fuzz', 30_000);
    const answer = await certsOnly([leaf, file('ca.crt')], 'fuzz', 64, '\n');
    const size = readFileSync(file('fuzz.p7b')).length;
    for (const seed of [1, 20261201]) {
      const r = await run(ENROLL_TOOL, ['fuzz', answer, String(seed), '600']);
      assert.equal(r.code, 0, `seed ${seed}: ${r.stdout}${r.stderr}`);
      const m = /^fuzz 600 accepted (\d+) refused (\d+) truncations (\d+)$/m.exec(r.stdout);
      assert.ok(m, r.stdout);
      assert.equal(Number(m[3]), size, 'every shorter prefix was tried (and refused)');
      assert.ok(Number(m[2]) > 300, `most mutations refused: ${r.stdout}`);
      recordAttack('firmware pkcs7 reader', 'refused', Number(m[2]) + Number(m[3]));
    }
  });
});
