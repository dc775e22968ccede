import { strict as assert } from 'node:assert';
import { generateKeyPairSync, KeyObject } from 'node:crypto';
import { promises as fs } from 'node:fs';
import * as net from 'node:net';
import * as path from 'node:path';
import fc from 'fast-check';
import { CaStore } from '../../lib/pki/ca-store';
import { identity } from '../../lib/pki/identity';
import { buildCsr } from '../../lib/pki/csr-builder';
import { EnrollmentDesk } from '../../lib/enroll/enrollment-desk';
import { parseEnrollPolicy } from '../../lib/enroll/enroll-policy';
import { startEstListener, RunningEstListener, EstConnectionEvent } from '../../lib/enroll/http/est-listener';
import { tempDir } from '../support/temp-dir';
import { estRequest } from '../support/est-request';
import { recordAttack } from './support/attack-tally';
import { HttpConnection } from './support/http-connection';

const ec = (): KeyObject => generateKeyPairSync('ec', { namedCurve: 'prime256v1' }).privateKey;
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** A raw POST on one connection, with exactly these header lines. */
function post(route: string, body: Buffer | string, headers: string[]): string {
  const b = Buffer.isBuffer(body) ? body : Buffer.from(body);
  return `POST /.well-known/est/${route} HTTP/1.1\r\nHost: localhost\r\n${headers.map((h) => `${h}\r\n`).join('')}Content-Length: ${b.length}\r\n\r\n${b.toString('latin1')}`;
}

describe('security: the enrollment listener against an attacker on the LAN', function () {
  this.timeout(120_000);
  const tmp = tempDir('est-attack');
  let store: CaStore;
  let desk: EnrollmentDesk;
  let est: RunningEstListener;
  let credential: string;
  const connectionEvents: EstConnectionEvent[] = [];
  const ca = (): string => store.caCertificatePem;
  const basic = (cred: string): string => `Authorization: Basic ${Buffer.from(cred).toString('base64')}`;

  before(async () => {
    store = await CaStore.open({ dir: path.join(tmp.path, 'ca') });
    // Manual policy: nothing an attacker sends can be issued without a person, so "issuedCount unchanged" is exact.
    desk = await EnrollmentDesk.open({ store, policy: parseEnrollPolicy('manual', ''), rate: { burst: 100_000, refillMs: 1 }, failureRate: { burst: 100_000, refillMs: 1 } });
    const s = desk.showBootstrap()!;
    credential = `${s.user}:${s.password}`;
    const server = await identity(store, { kind: 'server', commonName: 'localhost' });
    est = await startEstListener({
      desk,
      port: 0,
      host: '127.0.0.1',
      tls: { cert: server.cert, key: server.key, ca: ca(), crl: await store.crlPem() },
      handshakeTimeoutMs: 800,
      headersTimeoutMs: 1_000,
      maxConnectionsPerAddress: 8,
      onEvent: (e) => connectionEvents.push(e),
    });
    store.onCrlChange((crl) => est.setCrl(crl));
  });
  after(async () => {
    await est?.close();
    await desk?.idle();
    await store?.idle();
    tmp.remove();
  });

  /** The listener still enrolls a good request after an attack. */
  async function stillServing(): Promise<void> {
    const a = await estRequest(est.port, 'cacerts', { ca: ca() });
    assert.equal(a.status, 200, 'the listener kept serving');
  }

  it('fuzzed CSR bodies with the right credential: a clear 4xx, no crash, nothing issued, nothing pending', async () => {
    const before = store.issuedCount;
    const good = buildCsr({ commonName: 'dd0000000001', privateKey: ec() });
    let tried = 0;
    await fc.assert(
      fc.asyncProperty(
        fc.oneof(
          fc.uint8Array({ maxLength: 600 }).map((b) => Buffer.from(b)),
          // One byte of a valid CSR changed: the signature, a length, a tag, the CN.
          fc.tuple(fc.nat(good.length - 1), fc.integer({ min: 1, max: 255 })).map(([i, x]) => {
            const b = Buffer.from(good);
            b[i] ^= x;
            return b;
          }),
          fc.nat(good.length - 1).map((n) => good.subarray(0, n)),
          fc.string({ maxLength: 400 }).map((s) => Buffer.from(s)),
        ),
        fc.boolean(),
        async (body, asBase64) => {
          tried++;
          const a = await estRequest(est.port, 'simpleenroll', { ca: ca(), auth: credential, body: asBase64 ? body.toString('base64') : body });
          assert.ok([400, 413].includes(a.status) || (a.status === 202 && a.body.includes('waiting')), `status ${a.status}: ${a.body}`);
          assert.ok(!/\n\s+at /.test(a.body) && a.body.length < 400, 'a short reason, no stack');
        },
      ),
      { seed: 14014, numRuns: 300 },
    );
    // Any change to a signed CSR breaks its encoding or its signature: nothing can become a request.
    assert.equal(store.issuedCount, before, 'nothing issued');
    assert.deepEqual(desk.pending(), [], 'no request stored');
    recordAttack('enrollment', 'refused', tried);
    await stillServing();
  });

  it('fuzzed Authorization headers never enroll: 401 with a Basic challenge', async () => {
    const body = buildCsr({ commonName: 'dd0000000002', privateKey: ec() }).toString('base64');
    let tried = 0;
    await fc.assert(
      fc.asyncProperty(
        fc.oneof(
          fc.string({ maxLength: 80 }).map((s) => Buffer.from(s).toString('base64')),
          fc.constantFrom('', '=', '====', 'Zm9v', Buffer.from(`fleet:${credential.slice(6, -1)}`).toString('base64'), Buffer.from(credential.toUpperCase()).toString('base64')),
        ),
        async (b64) => {
          tried++;
          const conn = await HttpConnection.open(est.port, { ca: ca() });
          conn.send(post('simpleenroll', body, ['Content-Type: application/pkcs10', `Authorization: Basic ${b64}`, 'Connection: close']));
          const a = await conn.next({ timeoutMs: 5_000 });
          conn.close();
          assert.equal(a?.status, 401, a?.body.toString());
          assert.match(a!.headers['www-authenticate'] ?? '', /^Basic realm=/);
        },
      ),
      { seed: 14015, numRuns: 150 },
    );
    assert.deepEqual(desk.pending(), []);
    recordAttack('enrollment', 'refused', tried);
  });

  it('guessing the bootstrap credential from one address is locked out after 5 wrong tries (429), others are not', async () => {
    const strict = await EnrollmentDesk.open({ store, policy: parseEnrollPolicy('manual', '') });
    const server = await identity(store, { kind: 'server', commonName: 'localhost' });
    const guarded = await startEstListener({ desk: strict, port: 0, host: '127.0.0.1', tls: { cert: server.cert, key: server.key, ca: ca() } });
    try {
      const body = buildCsr({ commonName: 'dd0000000003', privateKey: ec() }).toString('base64');
      const statuses: number[] = [];
      for (let i = 0; i < 12; i++) statuses.push((await estRequest(guarded.port, 'simpleenroll', { ca: ca(), auth: `fleet:guess-${i}`, body })).status);
      assert.deepEqual(statuses, [401, 401, 401, 401, 401, 429, 429, 429, 429, 429, 429, 429]);
      const right = await estRequest(guarded.port, 'simpleenroll', { ca: ca(), auth: credential, body });
      assert.equal(right.status, 429, 'the locked address is locked for the right credential too');
      assert.ok(Number(right.headers['retry-after']) > 0);
      const elsewhere = await estRequest(guarded.port, 'simpleenroll', { ca: ca(), auth: credential, body, localAddress: '127.0.0.2' });
      assert.equal(elsewhere.status, 202, 'another address still enrolls');
      recordAttack('enrollment', 'refused', 12);
    } finally {
      await guarded.close();
      await strict.idle();
    }
  });

  it('oversized bodies, oversized headers, other methods and paths: refused, nothing stored', async () => {
    const cases: [string, string | Buffer, number][] = [
      ['64 KiB body', post('simpleenroll', 'A'.repeat(64 * 1024), [basic(credential)]), 413],
      ['a huge header', `POST /.well-known/est/simpleenroll HTTP/1.1\r\nHost: localhost\r\nX-Big: ${'a'.repeat(20_000)}\r\nContent-Length: 0\r\n\r\n`, 431],
      ['PUT', `PUT /.well-known/est/simpleenroll HTTP/1.1\r\nHost: localhost\r\nContent-Length: 0\r\n\r\n`, 404],
      ['path traversal', `GET /.well-known/est/../../ca/ca.key HTTP/1.1\r\nHost: localhost\r\n\r\n`, 404],
      ['encoded traversal', `GET /.well-known/est/%2e%2e/%2e%2e/ca.key HTTP/1.1\r\nHost: localhost\r\n\r\n`, 404],
      ['the update server path', `GET /fw/84f3eb012345.key HTTP/1.1\r\nHost: localhost\r\n\r\n`, 404],
      ['a CA label (RFC 7030 §3.2.2), not offered', `GET /.well-known/est/other/cacerts HTTP/1.1\r\nHost: localhost\r\n\r\n`, 404],
    ];
    for (const [why, raw, status] of cases) {
      const conn = await HttpConnection.open(est.port, { ca: ca() });
      conn.send(raw);
      const a = await conn.next({ timeoutMs: 5_000 });
      conn.close();
      assert.equal(a?.status, status, why);
      assert.ok(!/\n\s+at /.test(a!.body.toString()), `${why}: no stack`);
    }
    assert.deepEqual(desk.pending(), []);
    recordAttack('enrollment', 'refused', cases.length);
    await stillServing();
  });

  it('a socket that never finishes its handshake is closed at the deadline; connections per address are capped', async () => {
    const idle = Array.from({ length: 12 }, () => net.connect({ host: '127.0.0.1', port: est.port }));
    const closed = idle.map((s) => new Promise<number>((r) => s.once('close', () => r(Date.now()))));
    for (const s of idle) s.on('error', () => undefined);
    const t0 = Date.now();
    const all = await Promise.race([Promise.all(closed), sleep(5_000).then(() => undefined)]);
    assert.ok(all, 'every idle socket was closed');
    assert.ok(Math.max(...all!) - t0 < 3_000, 'within the handshake deadline (0.8 s) plus slack');
    assert.ok(connectionEvents.some((e) => /handshake not finished/.test(e.reason)));
    assert.ok(connectionEvents.some((e) => /connections open from this address/.test(e.reason)), 'beyond 8 from one address refused at once');
    recordAttack('enrollment', 'refused', idle.length);
    await stillServing();
  });

  it('a body that trickles is cut at the headers deadline', async () => {
    const conn = await HttpConnection.open(est.port, { ca: ca() });
    conn.send(`POST /.well-known/est/simpleenroll HTTP/1.1\r\nHost: localhost\r\n${basic(credential)}\r\nContent-Length: 400\r\n\r\nMII`);
    const t = setInterval(() => conn.send('A'), 300);
    try {
      const answered = await Promise.race([conn.closed, sleep(6_000).then(() => undefined)]);
      assert.ok(answered, 'closed by the server');
    } finally {
      clearInterval(t);
      conn.close();
    }
    recordAttack('enrollment', 'refused', 1);
  });

  it('revoking a certificate closes its open connection to the listener at once; it cannot re-enroll', async () => {
    const id = 'dd0000000009';
    const issued = await store.issueDevice(id, { keyType: 'ec' });
    const conn = await HttpConnection.open(est.port, { ca: ca(), cert: issued.certificatePem, key: issued.privateKeyPem });
    conn.get('/.well-known/est/cacerts');
    assert.equal((await conn.next())?.status, 200);
    await store.revoke(issued.record.serial, 'keyCompromise');
    const closedAt = await Promise.race([conn.closed, sleep(3_000).then(() => undefined)]);
    assert.ok(closedAt, 'the open connection was closed on revocation');
    const count = store.issuedCount;
    const again = await estRequest(est.port, 'simplereenroll', { ca: ca(), cert: issued.certificatePem, key: issued.privateKeyPem, body: buildCsr({ commonName: id, privateKey: ec() }).toString('base64') });
    assert.equal(again.status, 403);
    assert.equal(store.issuedCount, count);
    recordAttack('enrollment', 'refused', 2);
  });

  it('a leaked bootstrap credential cannot take over an existing device, nor re-enroll another device with one device certificate', async () => {
    const victim = 'dd000000000a';
    const thief = 'dd000000000b';
    await store.issueDevice(victim, { keyType: 'ec' });
    const mine = await store.issueDevice(thief, { keyType: 'ec' });
    const count = store.issuedCount;
    const takeover = await estRequest(est.port, 'simpleenroll', { ca: ca(), auth: credential, body: buildCsr({ commonName: victim, privateKey: ec() }).toString('base64') });
    assert.equal(takeover.status, 403);
    const crossover = await estRequest(est.port, 'simplereenroll', { ca: ca(), cert: mine.certificatePem, key: mine.privateKeyPem, body: buildCsr({ commonName: victim, privateKey: ec() }).toString('base64') });
    assert.equal(crossover.status, 403);
    assert.match(crossover.body, /the CSR is for dd000000000a, the certificate for dd000000000b/);
    assert.equal(store.issuedCount, count);
    const audit = await fs.readFile(path.join(store.dir, 'enrollment', 'audit.log'), 'utf8');
    assert.match(audit, /"reason":"held/);
    assert.match(audit, /"reason":"not-yours/);
    recordAttack('enrollment', 'refused', 2);
  });
});
