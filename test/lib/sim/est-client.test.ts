import { strict as assert } from 'node:assert';
import { generateKeyPairSync, X509Certificate } from 'node:crypto';
import * as path from 'node:path';
import { CaStore } from '../../../lib/pki/ca-store';
import { identity } from '../../../lib/pki/identity';
import { EnrollmentDesk } from '../../../lib/enroll/enrollment-desk';
import { parseEnrollPolicy } from '../../../lib/enroll/enroll-policy';
import { startEstListener, RunningEstListener } from '../../../lib/enroll/http/est-listener';
import { bootstrapLine, simpleEnroll, simpleReenroll, EstTarget } from '../../../lib/sim/est-client';
import { DeviceEnrollment, EnrollHost } from '../../../lib/sim/device-enrollment';
import { FAST_TIMING, scaled } from '../../../lib/sim/device-timing';
import { failureDelayMs } from '../../../lib/device/enrollment';
import type { EnrollState } from '../../../lib/device/enrollment';
import { tempDir } from '../../support/temp-dir';

const DAY = 86_400_000;

/** A host for the steps with real (abortable) waits and no watchdog. */
function testHost(): EnrollHost {
  return {
    pause: (ms, signal) =>
      new Promise((resolve, reject) => {
        if (signal.aborted) return reject(new Error('aborted'));
        const onAbort = (): void => (clearTimeout(t), reject(new Error('aborted')));
        const t = setTimeout(() => (signal.removeEventListener('abort', onAbort), resolve()), ms);
        signal.addEventListener('abort', onAbort, { once: true });
      }),
    watch: () => undefined,
    feed: () => undefined,
    log: () => undefined,
  };
}

async function until(what: string, ok: () => boolean, ms = 10_000): Promise<void> {
  const end = Date.now() + ms;
  while (!ok()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

describe('simulator EST client (lib/sim/est-client.ts) against the real enrollment listener', function () {
  this.timeout(30_000);
  const tmp = tempDir('sim-est');
  let skewMs = 0;
  let store: CaStore;
  let foreign: CaStore;
  let desk: EnrollmentDesk;
  let est: RunningEstListener;
  let credential: string;
  let target: EstTarget;
  let n = 0;
  const auto = (): string => `c0ffee0${(++n).toString(16).padStart(5, '0')}`; // on the allowlist
  const manual = (): string => `d00d00${(++n).toString(16).padStart(6, '0')}`;
  const ec = () => generateKeyPairSync('ec', { namedCurve: 'prime256v1' }).privateKey;

  before(async () => {
    store = await CaStore.open({ dir: path.join(tmp.path, 'ca'), now: () => new Date(Date.now() - skewMs) });
    foreign = await CaStore.open({ dir: path.join(tmp.path, 'foreign') });
    // Retry-After 10 s (the device's floor): 100 ms with the fast timing.
    desk = await EnrollmentDesk.open({ store, policy: parseEnrollPolicy('allowlist', 'c0ffee0*'), retryAfterS: 10, rate: { burst: 1000, refillMs: 1 } });
    const b = desk.showBootstrap()!;
    credential = `${b.user}:${b.password}`;
    const server = await identity(store, { kind: 'server', commonName: 'localhost' });
    est = await startEstListener({ desk, port: 0, host: '127.0.0.1', tls: { cert: server.cert, key: server.key, ca: store.caCertificatePem, crl: await store.crlPem() } });
    target = { host: '127.0.0.1', port: est.port, servername: 'localhost' };
  });
  after(async () => {
    await est?.close();
    await desk?.idle();
    await Promise.all([store?.idle(), foreign?.idle()]);
    tmp.remove();
  });

  it('simpleenroll: a P-256 CSR with the bootstrap credential gets a certificate for that key and id, signed by the CA', async () => {
    const id = auto();
    const key = ec();
    const got = await simpleEnroll(target, { id, key, ca: store.caCertificatePem, credential });
    assert.equal(got.kind, 'issued', JSON.stringify(got));
    const cert = new X509Certificate((got as { certificatePem: string }).certificatePem);
    assert.equal(cert.subject, `CN=${id}`);
    assert.ok(cert.checkPrivateKey(key));
    assert.ok(cert.verify(new X509Certificate(store.caCertificatePem).publicKey));
    assert.ok(store.currentIdentity('device', id), 'the CA holds it as the device certificate');
  });

  it('202 with Retry-After while pending; after approve the same key gets its certificate', async () => {
    const id = manual();
    const key = ec();
    const first = await simpleEnroll(target, { id, key, ca: store.caCertificatePem, credential });
    assert.deepEqual(first, { kind: 'pending', retryAfter: '10' });
    assert.ok(desk.pending().some((r) => r.id === id));
    await desk.approve(id);
    const second = await simpleEnroll(target, { id, key, ca: store.caCertificatePem, credential });
    assert.equal(second.kind, 'issued');
  });

  it('a wrong or missing credential is refused with the status and the reason; nothing is issued', async () => {
    const before = store.issuedCount;
    const wrong = await simpleEnroll(target, { id: auto(), key: ec(), ca: store.caCertificatePem, credential: 'fleet:not-the-password' });
    assert.deepEqual(wrong, { kind: 'refused', status: 401, reason: 'enroll: HTTP 401: wrong bootstrap credential' });
    const none = await simpleEnroll(target, { id: auto(), key: ec(), ca: store.caCertificatePem });
    assert.equal(none.kind, 'refused');
    assert.equal(store.issuedCount, before);
  });

  it('the CA is pinned: a listener whose certificate is not from ca.crt gets no request at all', async () => {
    const before = store.issuedCount;
    const audit: string[] = [];
    const off = desk.subscribe((e) => audit.push(e.event));
    try {
      const got = await simpleEnroll(target, { id: auto(), key: ec(), ca: foreign.caCertificatePem, credential });
      assert.equal(got.kind, 'refused');
      assert.equal((got as { status: number }).status, 0);
      assert.match((got as { reason: string }).reason, /does not match ca\.crt/);
    } finally {
      off();
    }
    assert.deepEqual(audit, [], 'the desk never saw it');
    assert.equal(store.issuedCount, before);
  });

  it('simplereenroll with the current certificate and the same key gets a new one; without a certificate nothing is sent', async () => {
    const id = auto();
    const key = ec();
    const first = await simpleEnroll(target, { id, key, ca: store.caCertificatePem, credential });
    assert.equal(first.kind, 'issued');
    const pem = (first as { certificatePem: string }).certificatePem;
    const renewed = await simpleReenroll(target, { id, key, ca: store.caCertificatePem, certificatePem: pem });
    assert.equal(renewed.kind, 'issued', JSON.stringify(renewed));
    assert.notEqual(new X509Certificate((renewed as { certificatePem: string }).certificatePem).serialNumber, new X509Certificate(pem).serialNumber);
    assert.deepEqual(await simpleReenroll(target, { id, key, ca: store.caCertificatePem }), { kind: 'refused', status: 0, reason: 'no current certificate to renew with' });
  });

  it('bootstrap.txt is one line user:password, as the firmware core reads it', () => {
    assert.equal(bootstrapLine('fleet:s3cret\n'), 'fleet:s3cret');
    assert.equal(bootstrapLine('fleet:a:b\r\n\n'), 'fleet:a:b');
    assert.throws(() => bootstrapLine(''), /empty/);
    assert.throws(() => bootstrapLine('fleet'), /must be user:password/);
    assert.throws(() => bootstrapLine(':pw'), /no user/);
    assert.throws(() => bootstrapLine('fleet:pw\nmore'), /one line/);
    assert.throws(() => bootstrapLine('fleet:p\tw'), /control character/);
    assert.throws(() => bootstrapLine(`fleet:${'x'.repeat(200)}`), /longer than 160/);
  });

  describe('the device steps (lib/sim/device-enrollment.ts, fast timing)', () => {
    it('key → enroll → pending, polling after the scaled Retry-After; approve → enrolled with a certificate for its own key', async () => {
      const id = manual();
      const states: EnrollState[] = [];
      const e = new DeviceEnrollment({ id, ca: store.caCertificatePem, setup: { server: target, credential }, timing: FAST_TIMING }, (s) => states.push(s));
      const abort = new AbortController();
      const done = e.untilEnrolled(abort.signal, testHost());
      try {
        await until('a pending request', () => desk.pending().some((r) => r.id === id));
        await until('two polls', () => states.filter((s) => s === 'pending').length >= 2);
        assert.equal(e.identity, undefined);
        await desk.approve(id);
        await done;
      } finally {
        abort.abort();
      }
      assert.deepEqual(states.slice(0, 4), ['key', 'enroll', 'pending', 'enroll']);
      assert.equal(states.at(-1), 'enrolled');
      assert.equal(e.failures, 0);
      const cert = new X509Certificate(e.identity!.cert);
      assert.equal(cert.subject, `CN=${id}`);
      assert.equal(e.identity!.key.includes('PRIVATE KEY'), true);
      // Renewal at two thirds of the lifetime, that distance scaled like every other wait.
      const from = Date.parse(cert.validFrom);
      const renewAt = from + (2 * (Date.parse(cert.validTo) - from)) / 3;
      const expected = scaled(FAST_TIMING, renewAt - Date.now());
      assert.ok(Math.abs(e.renewInMs() - expected) < 1_000, `renewal in ${e.renewInMs()} ms, expected about ${expected}`);
    });

    it('rejected: it backs off, the delay doubling, and never holds a certificate', async () => {
      const id = manual();
      const states: EnrollState[] = [];
      const e = new DeviceEnrollment({ id, ca: store.caCertificatePem, setup: { server: target, credential }, timing: FAST_TIMING }, (s) => states.push(s));
      const abort = new AbortController();
      const done = e.untilEnrolled(abort.signal, testHost());
      try {
        await until('a pending request', () => desk.pending().some((r) => r.id === id));
        await desk.reject(id);
        // 300 ms, then 600 ms (30 s and 60 s scaled): three refusals within about a second.
        await until('three refusals', () => e.failures >= 3, 5_000);
      } finally {
        abort.abort();
      }
      await assert.rejects(done, /aborted/);
      assert.equal(e.identity, undefined);
      assert.match(e.lastReason, /HTTP 403: the request of .* was rejected/);
      assert.ok(states.includes('backoff') && !states.includes('enrolled'));
      assert.equal(store.currentIdentity('device', id), undefined);
    });

    it('renewal: due once two thirds of the lifetime are over; simplereenroll renews with the same key; cert command from enrolled only', async () => {
      const id = auto();
      skewMs = 600 * DAY; // the CA issues as if 600 of the 825 days were over
      const e = new DeviceEnrollment({ id, ca: store.caCertificatePem, setup: { server: target, credential }, timing: FAST_TIMING });
      const abort = new AbortController();
      try {
        await e.untilEnrolled(abort.signal, testHost());
      } finally {
        skewMs = 0;
      }
      const old = new X509Certificate(e.identity!.cert);
      assert.equal(e.renewInMs(), 0, 'due now');
      assert.equal(e.state, 'enrolled');
      const result = await e.renew('renew-due', abort.signal, testHost());
      assert.deepEqual(result, { kind: 'renewed' });
      const next = new X509Certificate(e.identity!.cert);
      assert.notEqual(next.serialNumber, old.serialNumber);
      assert.equal(next.publicKey.export({ type: 'spki', format: 'der' }).equals(old.publicKey.export({ type: 'spki', format: 'der' })), true, 'same key');
      assert.ok(e.renewInMs() > 0, 'the next renewal is ahead');
      assert.deepEqual(await e.renew('timer', abort.signal, testHost()), { kind: 'not-now', reason: 'not enrolled yet, or a renewal is under way' });
      assert.deepEqual(await e.renew('cert-command', abort.signal, testHost()), { kind: 'renewed' });
    });

    it('a refused renewal keeps the old certificate and backs off, doubling; an expired certificate goes back to simpleenroll', async () => {
      const abort = new AbortController();
      const e = new DeviceEnrollment({ id: auto(), ca: store.caCertificatePem, setup: { server: target, credential }, timing: FAST_TIMING });
      await e.untilEnrolled(abort.signal, testHost());
      const held = e.identity!.cert;
      await store.revoke(new X509Certificate(held).serialNumber, 'keyCompromise');
      const first = await e.renew('cert-command', abort.signal, testHost());
      assert.equal(first.kind, 'failed');
      assert.equal(first.kind === 'failed' && first.delayMs, scaled(FAST_TIMING, failureDelayMs(1)));
      assert.equal(e.state, 'renew-backoff');
      assert.equal(e.identity!.cert, held, 'the old certificate is kept while renewal fails');
      const second = await e.renew('timer', abort.signal, testHost());
      assert.equal(second.kind === 'failed' && second.delayMs, scaled(FAST_TIMING, failureDelayMs(2)), 'the delay doubles');

      const late = new DeviceEnrollment({ id: auto(), ca: store.caCertificatePem, setup: { server: target, credential }, timing: FAST_TIMING });
      skewMs = 826 * DAY; // the CA issues a certificate that has run out by today
      try {
        await late.untilEnrolled(abort.signal, testHost());
      } finally {
        skewMs = 0;
      }
      const expired = new X509Certificate(late.identity!.cert);
      assert.equal(late.expiresInMs(), 0);
      assert.deepEqual(await late.renew('renew-due', abort.signal, testHost()), { kind: 'expired' });
      assert.equal(late.state, 'enroll');
      await late.untilEnrolled(abort.signal, testHost());
      const fresh = new X509Certificate(late.identity!.cert);
      assert.notEqual(fresh.serialNumber, expired.serialNumber);
      assert.ok(late.expiresInMs() > 0, 'valid again, through simpleenroll with the bootstrap credential');
      assert.ok(fresh.publicKey.export({ type: 'spki', format: 'der' }).equals(expired.publicKey.export({ type: 'spki', format: 'der' })), 'the same device key');
    });
  });
});
