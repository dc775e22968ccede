import { strict as assert } from 'node:assert';
import * as path from 'node:path';
import { X509Certificate } from 'node:crypto';
import { x509, toPem } from '../../../lib/pki/x509';
import { CaStore } from '../../../lib/pki/ca-store';
import { revokedSerials } from '../../../lib/pki/crl-serials';
import { tempDir } from '../../support/temp-dir';

describe('revokedSerials: the serials a CRL lists', function () {
  this.timeout(30_000);
  const tmp = tempDir('crl-serials');
  after(() => tmp.remove());

  it("reads the CA store's CRL as @peculiar/x509 does, formatted as Node formats serialNumber", async () => {
    const store = await CaStore.open({ dir: path.join(tmp.path, 'ca') });
    assert.equal(revokedSerials(await store.crlPem()).size, 0, 'an empty CRL');
    const issued = await Promise.all(['84f3eb000001', '84f3eb000002', '84f3eb000003'].map((id) => store.issueDevice(id)));
    await store.revoke(issued[0].record.serial);
    await store.revoke(issued[2].record.serial);
    const pem = await store.crlPem();
    const serials = revokedSerials(pem);
    const node = issued.map((i) => new X509Certificate(i.certificatePem).serialNumber);
    assert.deepEqual([...serials].sort(), [node[0], node[2]].sort());
    const peculiar = new x509.X509Crl(pem).entries.map((e) => e.serialNumber.replace(/^(00)+(?=..)/, '').toUpperCase());
    assert.deepEqual([...serials].sort(), peculiar.sort());
    await store.idle();
  });

  it('drops leading zero bytes of a serial with its high bit set, and reads every CRL of the text', async () => {
    const keys = await crypto.subtle.generateKey({ name: 'RSASSA-PKCS1-v1_5', hash: 'SHA-256', publicExponent: new Uint8Array([1, 0, 1]), modulusLength: 2048 }, false, ['sign', 'verify']);
    const make = (serials: string[]): Promise<x509.X509Crl> =>
      x509.X509CrlGenerator.create({ issuer: 'CN=test', thisUpdate: new Date(), signingKey: keys.privateKey, signingAlgorithm: { name: 'RSASSA-PKCS1-v1_5', hash: 'SHA-256' }, entries: serials.map((serialNumber) => ({ serialNumber, revocationDate: new Date() })) });
    const one = await make(['00ff01', '1002']);
    const two = await make(['0a']);
    assert.deepEqual([...revokedSerials(toPem('X509 CRL', one.rawData) + '\n' + toPem('X509 CRL', two.rawData))].sort(), ['0A', '1002', 'FF01']);
  });

  it('refuses text without a CRL and a damaged CRL', () => {
    assert.throws(() => revokedSerials('hello'), /no PEM/);
    assert.throws(() => revokedSerials('-----BEGIN X509 CRL-----\nMAMCAQA=\n-----END X509 CRL-----'), /unreadable CRL|tbsCertList/);
  });
});
