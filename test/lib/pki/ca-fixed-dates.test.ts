import { strict as assert } from 'node:assert';
import * as path from 'node:path';
import { CaStore } from '../../../lib/pki/ca-store';
import { tempDir } from '../../support/temp-dir';
import { openssl, opensslOk } from '../../support/openssl';

const DAY = 86_400_000;
const T0 = Date.parse('2030-01-01T00:00:00Z');
const DEVICE = '84f3eb0a0001';

/** A clock the test moves by hand: the CA reads no other. */
function handClock(start: number): { now: () => Date; set(t: number): void } {
  let t = start;
  return { now: () => new Date(t), set: (next) => (t = next) };
}

/** `openssl x509|crl -noout -<fields>` as a map of field → value. */
function fields(args: string[]): Record<string, string> {
  const out: Record<string, string> = {};
  for (const line of opensslOk(args).trim().split('\n')) {
    const i = line.indexOf('=');
    out[line.slice(0, i)] = line.slice(i + 1);
  }
  return out;
}

/** `openssl verify` at a given moment (-attime), with the store's CRL. */
function verifyAt(store: CaStore, certFile: string, at: number): string {
  const r = openssl(['verify', '-attime', String(Math.floor(at / 1000)), '-CAfile', path.join(store.dir, 'ca.crt'), '-crl_check', '-CRLfile', store.crlFile, certFile]);
  return r.stdout + r.stderr;
}

describe('the CA on fixed dates (injected clock, judged by openssl)', function () {
  this.timeout(60_000);
  const tmp = tempDir('ca-fixed');
  const clock = handClock(T0);
  let store: CaStore;

  before(async () => {
    store = await CaStore.open({ dir: path.join(tmp.path, 'ca'), now: clock.now });
  });
  after(async () => {
    await store?.idle();
    tmp.remove();
  });

  it('dates the CA itself by the injected clock: 10 minutes back, 3650 days on', () => {
    const f = fields(['x509', '-in', path.join(store.dir, 'ca.crt'), '-noout', '-startdate', '-enddate']);
    assert.equal(f.notBefore, 'Dec 31 23:50:00 2029 GMT');
    assert.equal(f.notAfter, 'Dec 30 00:00:00 2039 GMT');
    assert.equal(store.caNotAfter.toISOString(), '2039-12-30T00:00:00.000Z');
  });

  it('signs the first CRL at open: lastUpdate 10 minutes back, nextUpdate 180 days on', () => {
    const f = fields(['crl', '-in', store.crlFile, '-noout', '-lastupdate', '-nextupdate']);
    assert.equal(f.lastUpdate, 'Dec 31 23:50:00 2029 GMT');
    assert.equal(f.nextUpdate, 'Jun 30 00:00:00 2030 GMT');
    assert.equal(store.crlNextUpdateAt?.toISOString(), '2030-06-30T00:00:00.000Z');
  });

  it('issues a device certificate with exact notBefore/notAfter, valid at 2030-01-01 and not the day before', async () => {
    const issued = await store.issueDevice(DEVICE);
    assert.equal(issued.record.notBefore, '2029-12-31T23:50:00.000Z');
    assert.equal(issued.record.notAfter, '2032-04-05T00:00:00.000Z');
    const f = fields(['x509', '-in', issued.files.certificate, '-noout', '-startdate', '-enddate']);
    assert.equal(f.notBefore, 'Dec 31 23:50:00 2029 GMT');
    assert.equal(f.notAfter, 'Apr  5 00:00:00 2032 GMT');
    assert.match(verifyAt(store, issued.files.certificate, T0), /: OK/);
    // Before notBefore: openssl refuses it.
    assert.match(verifyAt(store, issued.files.certificate, T0 - DAY), /not yet valid/);
    // currentIdentity counts it valid by the CA's clock.
    assert.equal(store.currentIdentity('device', DEVICE)?.serial, issued.record.serial);
  });

  it('expiring() answers by the injected clock', async () => {
    const soon = await store.issueDevice('84f3eb0a0002', { validityDays: 10 });
    assert.equal(soon.record.notAfter, '2030-01-11T00:00:00.000Z');
    assert.deepEqual(store.expiring(30).map((r) => r.serial), [soon.record.serial]);
    assert.deepEqual(store.expiring(5), []);
    // Asked with the system's time (years before 2030): nothing expires within 30 days of it.
    assert.deepEqual(store.expiring(30, new Date(Date.now())), []);
    clock.set(Date.parse('2030-01-10T00:00:00Z'));
    assert.deepEqual(store.expiring(1).map((r) => r.serial), [soon.record.serial]);
    clock.set(Date.parse('2030-01-12T00:00:00Z'));
    assert.deepEqual(store.expiring(30), [], 'expired certificates are not "expiring"');
    assert.equal(store.currentIdentity('device', '84f3eb0a0002'), undefined, 'nor current');
    clock.set(T0);
  });

  it('records the revocation date from the injected clock, in the record and in the CRL', async () => {
    const { serial } = store.currentIdentity('device', DEVICE)!;
    const certFile = store.identityFiles('device', DEVICE).certificate;
    clock.set(Date.parse('2030-02-01T12:00:00Z'));
    const revoked = await store.revoke(serial, 'keyCompromise');
    assert.equal(revoked.revokedAt, '2030-02-01T12:00:00.000Z');
    const text = opensslOk(['crl', '-in', store.crlFile, '-noout', '-text']);
    assert.match(text, new RegExp(`Serial Number: ${serial}\\s+Revocation Date: Feb  1 12:00:00 2030 GMT\\s+CRL entry extensions:\\s+X509v3 CRL Reason Code:\\s+Key Compromise`));
    assert.match(text, /Last Update: Feb  1 11:50:00 2030 GMT/);
    assert.match(text, /Next Update: Jul 31 12:00:00 2030 GMT/);
    assert.match(verifyAt(store, certFile, Date.parse('2030-02-02T00:00:00Z')), /certificate revoked/);
    clock.set(T0);
  });

  it('refreshCrlIfDue() re-signs only once less than a third of the CRL validity is left by the injected clock', async () => {
    // The CRL now runs to 2030-07-31T12:00:00Z (the revocation above); a third of 180 days is 60.
    assert.equal(store.crlNextUpdateAt?.toISOString(), '2030-07-31T12:00:00.000Z');
    const before = opensslOk(['crl', '-in', store.crlFile, '-noout', '-lastupdate']);
    clock.set(Date.parse('2030-05-31T11:00:00Z')); // 61 days and 1 hour left
    assert.equal(await store.refreshCrlIfDue(), false);
    assert.equal(opensslOk(['crl', '-in', store.crlFile, '-noout', '-lastupdate']), before);
    clock.set(Date.parse('2030-06-02T00:00:00Z')); // 59.5 days left
    assert.equal(await store.refreshCrlIfDue(), true);
    const f = fields(['crl', '-in', store.crlFile, '-noout', '-lastupdate', '-nextupdate']);
    assert.equal(f.lastUpdate, 'Jun  1 23:50:00 2030 GMT');
    assert.equal(f.nextUpdate, 'Nov 29 00:00:00 2030 GMT');
    assert.equal(store.crlNextUpdateAt?.toISOString(), '2030-11-29T00:00:00.000Z');
    // The re-signed CRL still lists the revocation with its original date.
    assert.match(opensslOk(['crl', '-in', store.crlFile, '-noout', '-text']), /Revocation Date: Feb  1 12:00:00 2030 GMT/);
    clock.set(T0);
  });

  it('open re-signs a CRL that is due by the injected clock, and keeps one that is not', async () => {
    await store.idle();
    const crl = opensslOk(['crl', '-in', store.crlFile, '-noout', '-text']);
    clock.set(Date.parse('2030-09-01T00:00:00Z')); // 89 days left: kept
    const kept = await CaStore.open({ dir: store.dir, now: clock.now });
    assert.equal(opensslOk(['crl', '-in', kept.crlFile, '-noout', '-text']), crl);
    await kept.idle();
    clock.set(Date.parse('2030-10-15T00:00:00Z')); // 45 days left: due
    const resigned = await CaStore.open({ dir: store.dir, now: clock.now });
    const f = fields(['crl', '-in', resigned.crlFile, '-noout', '-lastupdate', '-nextupdate']);
    assert.equal(f.lastUpdate, 'Oct 14 23:50:00 2030 GMT');
    assert.equal(f.nextUpdate, 'Apr 13 00:00:00 2031 GMT');
    await resigned.idle();
    clock.set(T0);
  });
});
