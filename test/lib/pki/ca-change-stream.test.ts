import { strict as assert } from 'node:assert';
import { readFileSync } from 'node:fs';
import * as path from 'node:path';
import { CaStore, CaChange } from '../../../lib/pki/ca-store';
import { tempDir } from '../../support/temp-dir';

const T0 = Date.parse('2030-01-01T00:00:00Z');

/** What a change says, in a form to compare. */
function summary(c: CaChange): string {
  if (c.type === 'crl') return `crl ${c.nextUpdate.toISOString()}`;
  return `${c.type} ${c.record.kind} ${c.record.commonName} ${c.record.serial}${c.record.revokedAt ? ` ${c.record.revokedAt}` : ''}`;
}

describe('the CA change stream (issued, revoked, crl)', function () {
  this.timeout(60_000);
  const tmp = tempDir('ca-stream');
  let store: CaStore;
  let t = T0;

  before(async () => {
    store = await CaStore.open({ dir: path.join(tmp.path, 'ca'), now: () => new Date(t) });
  });
  after(async () => {
    await store?.idle();
    tmp.remove();
  });

  it('delivers issued, then revoked, then the new CRL, in the order they happened, each once on disk', async () => {
    const seen: CaChange[] = [];
    const onDisk: boolean[] = [];
    const stop = store.subscribe((c) => {
      seen.push(c);
      // Each change is announced once it is on disk: the CRL file holds the CRL announced.
      if (c.type === 'crl') onDisk.push(readFileSync(store.crlFile, 'utf8') === c.pem);
      if (c.type === 'issued') onDisk.push(readFileSync(store.identityFiles('device', c.record.commonName).certificate, 'utf8').includes('BEGIN CERTIFICATE'));
    });
    const a = await store.issueDevice('84f3eb0b0001');
    const b = await store.issueDevice('84f3eb0b0002');
    t = Date.parse('2030-01-02T00:00:00Z');
    await store.revoke(a.record.serial, 'cessationOfOperation');
    stop();
    await store.issueDevice('84f3eb0b0003');
    assert.deepEqual(seen.map(summary), [
      `issued device 84f3eb0b0001 ${a.record.serial}`,
      `issued device 84f3eb0b0002 ${b.record.serial}`,
      `revoked device 84f3eb0b0001 ${a.record.serial} 2030-01-02T00:00:00.000Z`,
      'crl 2030-07-01T00:00:00.000Z',
    ]);
    assert.deepEqual(onDisk, [true, true, true]);
    const crl = seen[3] as Extract<CaChange, { type: 'crl' }>;
    assert.equal(crl.der.toString('base64'), crl.pem.replace(/-----[^-]+-----|\s/g, ''));
    assert.equal(crl.nextUpdate.getTime(), store.crlNextUpdateAt?.getTime());
  });

  it('a replace is announced as issued (new) then revoked (old) then crl', async () => {
    const seen: string[] = [];
    const stop = store.subscribe((c) => void seen.push(c.type === 'crl' ? 'crl' : `${c.type} ${c.record.serial}`));
    const old = store.currentIdentity('device', '84f3eb0b0002')!;
    const fresh = await store.issueDevice('84f3eb0b0002', { replace: true });
    stop();
    assert.deepEqual(seen, [`issued ${fresh.record.serial}`, `revoked ${old.serial}`, 'crl']);
  });

  it('an operation settles only after the promises its subscribers returned', async () => {
    let finished = 0;
    const stop = store.subscribe(() => new Promise<void>((resolve) => setTimeout(() => (finished++, resolve()), 40)));
    await store.issueDevice('84f3eb0b0004');
    assert.equal(finished, 1, 'issueDevice resolved after its subscriber finished');
    await store.revoke(store.currentIdentity('device', '84f3eb0b0004')!.serial);
    assert.equal(finished, 3, 'revoke resolved after revoked and crl were handled');
    stop();
  });

  it("a subscriber's failure rejects the operation, but the change stands and other subscribers still hear it", async () => {
    const heard: string[] = [];
    const stopBad = store.subscribe(() => {
      throw new Error('subscriber broke');
    });
    const stopGood = store.subscribe((c) => void heard.push(c.type));
    await assert.rejects(store.issueDevice('84f3eb0b0005'), /subscriber broke/);
    stopBad();
    stopGood();
    assert.deepEqual(heard, ['issued']);
    assert.ok(store.currentIdentity('device', '84f3eb0b0005'), 'the certificate was issued and recorded');
  });

  it('onCrlChange hears each re-signed CRL (built on the stream) and stops when unsubscribed', async () => {
    const pems: string[] = [];
    const stop = store.onCrlChange((pem) => pems.push(pem));
    await store.revoke(store.currentIdentity('device', '84f3eb0b0003')!.serial);
    t = Date.parse('2030-06-01T00:00:00Z');
    assert.equal(await store.refreshCrlIfDue(), true);
    stop();
    await store.revoke(store.currentIdentity('device', '84f3eb0b0005')!.serial);
    assert.equal(pems.length, 2);
    assert.notEqual(pems[0], pems[1]);
    assert.notEqual(pems[1], await store.crlPem(), 'the third CRL was not delivered');
  });
});
