import { strict as assert } from 'node:assert';
import * as net from 'node:net';
import * as tls from 'node:tls';
import { SERVING_LIMITS } from '../../lib/firmware/update-server';
import { recordAttack } from './support/attack-tally';
import { HttpConnection } from './support/http-connection';
import { UpdateTarget, A, B, OLD, BIG_FROM, sleep, until } from './support/update-target';

// Finding: sockets that never send a ClientHello were held 120 s with no cap on their number,
// and slow headers took ~40 s to drop. Now connections are capped in total and per source
// address from the moment they are accepted, the TLS handshake has a hard deadline, headers a
// deadline checked every second, and keep-alive connections a bound on their requests.

interface IdleSocket {
  socket: net.Socket;
  openedAt: number;
  closedAt?: number;
}

/** `n` TCP connections to the server that send nothing (or, with `trickle`, one byte now and then). */
async function idleSockets(port: number, n: number, localAddress: string, trickle?: Buffer): Promise<IdleSocket[]> {
  const out = await Promise.all(
    Array.from(
      { length: n },
      () =>
        new Promise<IdleSocket>((resolve, reject) => {
          const socket = net.connect({ host: '127.0.0.1', port, localAddress });
          const s: IdleSocket = { socket, openedAt: Date.now() };
          socket.once('connect', () => {
            s.openedAt = Date.now();
            resolve(s);
          });
          // Only a failed connect fails the set-up; resets of refused sockets are the point.
          socket.once('error', reject);
          socket.on('error', () => undefined);
          socket.once('close', () => (s.closedAt = Date.now()));
        }),
    ),
  );
  if (trickle) {
    for (const s of out) {
      let i = 0;
      const t = setInterval(() => {
        if (s.closedAt !== undefined || i >= trickle.length) return clearInterval(t);
        s.socket.write(trickle.subarray(i, ++i));
      }, 250);
      s.socket.once('close', () => clearInterval(t));
    }
  }
  return out;
}

const stillOpen = (sockets: IdleSocket[]): IdleSocket[] => sockets.filter((s) => s.closedAt === undefined);

/** config.json for device `device` from `localAddress` over a fresh connection: the status, or the error. */
async function configFrom(target: UpdateTarget, device: string, localAddress: string): Promise<number | string> {
  try {
    const conn = await HttpConnection.open(target.port, target.id(device), { localAddress });
    conn.get('/fw/config.json');
    const r = await conn.next({ timeoutMs: 5_000 });
    conn.close();
    return r?.status ?? 'closed without an answer';
  } catch (err) {
    return (err as Error).message;
  }
}

describe('security: the update server caps connections and drops slow clients', function () {
  this.timeout(60_000);
  const target = new UpdateTarget();
  let sockets: IdleSocket[] = [];

  before(async () => {
    await target.open();
  });
  beforeEach(() => (target.events.length = 0));
  afterEach(() => {
    for (const s of sockets) s.socket.destroy();
    sockets = [];
  });
  after(async () => {
    await target.close();
  });

  it('300 sockets that never send a ClientHello: 32 held from their address, the rest closed at once, all dropped at the handshake deadline; a device from 127.0.0.2 still gets its config', async () => {
    await target.start({ handshakeTimeoutMs: 2_000 });
    sockets = await idleSockets(target.port, 300, '127.0.0.1');
    const openedAt = Math.max(...sockets.map((s) => s.openedAt));
    await until('the refused sockets to close', () => stillOpen(sockets).length <= SERVING_LIMITS.maxConnectionsPerAddress, 5_000);
    await sleep(200);
    assert.equal(stillOpen(sockets).length, SERVING_LIMITS.maxConnectionsPerAddress, 'exactly the per-address cap is held');
    // Meanwhile a device from another address gets through.
    assert.equal(await configFrom(target, A, '127.0.0.2'), 200);
    assert.equal(target.rejected(/from this address \(limit 32\)/).length, 300 - 32, 'an audit event for each refused socket');
    assert.ok(target.rejected(/from this address/).every((e) => e.remoteAddress === '127.0.0.1' && e.status === 0));
    // The held ones go at the deadline, not before.
    await until('the handshake deadline', () => stillOpen(sockets).length === 0, 5_000);
    const held = sockets.filter((s) => s.closedAt! - openedAt > 1_000);
    assert.equal(held.length, 32);
    for (const s of held) assert.ok(s.closedAt! - s.openedAt <= 3_000, `dropped ${s.closedAt! - s.openedAt} ms after connecting (deadline 2000 ms)`);
    assert.equal(target.rejected(/TLS handshake not finished within 2 s/).length, 32);
    assert.equal(await configFrom(target, A, '127.0.0.1'), 200, 'the address is served again once they are gone');
    recordAttack('update-server', 'refused', 300);
  });

  it('the total cap holds across addresses, and frees up at the handshake deadline', async () => {
    await target.start({ maxConnections: 50, maxConnectionsPerAddress: 1000, handshakeTimeoutMs: 2_000 });
    sockets = await idleSockets(target.port, 300, '127.0.0.1');
    await until('the refused sockets to close', () => stillOpen(sockets).length <= 50, 5_000);
    await sleep(200);
    assert.equal(stillOpen(sockets).length, 50);
    assert.notEqual(await configFrom(target, A, '127.0.0.2'), 200, 'the total cap refuses every address while full');
    assert.equal(target.rejected(/connections open \(limit 50\)/).length, 250 + 1);
    await until('the handshake deadline', () => stillOpen(sockets).length === 0, 5_000);
    assert.equal(await configFrom(target, A, '127.0.0.2'), 200);
    recordAttack('update-server', 'refused', 300);
  });

  it('a ClientHello trickled a byte at a time does not hold the handshake open past its deadline', async () => {
    await target.start({ handshakeTimeoutMs: 2_000 });
    // The start of a TLS 1.2 ClientHello record (RFC 5246 section 6.2.1), one byte every 250 ms:
    // Node's own handshakeTimeout restarts on every byte and would never fire.
    const hello = Buffer.from('160301020001000200030300000000000000000000000000000000000000000000000000', 'hex');
    sockets = await idleSockets(target.port, 5, '127.0.0.1', hello);
    await until('the handshake deadline', () => stillOpen(sockets).length === 0, 6_000);
    for (const s of sockets) assert.ok(s.closedAt! - s.openedAt >= 1_500 && s.closedAt! - s.openedAt <= 3_000, `dropped after ${s.closedAt! - s.openedAt} ms`);
    assert.equal(target.rejected(/TLS handshake not finished/).length, 5);
    recordAttack('update-server', 'refused', 5);
  });

  it('slow headers (a slowloris sending a byte at a time) are dropped with 408 at the default header deadline', async () => {
    await target.start();
    const limit = SERVING_LIMITS.headersTimeoutMs;
    const conn = await HttpConnection.open(target.port, target.id(A));
    const secureAt = Date.now();
    conn.send('GET /fw/config.json HTTP/1.1\r\nHost: localhost\r\n');
    const drip = setInterval(() => conn.send('a'), 250);
    try {
      conn.send('X-Slow: ');
      await Promise.race([conn.closed, sleep(limit + 5_000)]);
    } finally {
      clearInterval(drip);
    }
    assert.ok(conn.closedAt, 'the connection was closed');
    const after = conn.closedAt! - secureAt;
    assert.ok(after >= limit - 500 && after <= limit + 1_500, `closed ${after} ms after the handshake (deadline ${limit} ms)`);
    const r = await conn.next({ timeoutMs: 100 });
    assert.equal(r?.status, 408);
    assert.equal(r!.headers['content-type'], 'text/plain; charset=utf-8');
    assert.ok(target.rejected(/not complete within 10 s/).some((e) => e.status === 408 && e.deviceId === A));
    recordAttack('update-server', 'refused');
  });

  it('a keep-alive connection carries at most 100 requests; the 100th answer says Connection: close', async () => {
    await target.start();
    const conn = await HttpConnection.open(target.port, target.id(A));
    const answers: { status: number; connection?: string }[] = [];
    for (let i = 0; i < 150; i++) {
      conn.get('/fw/config.json');
      const r = await conn.next({ timeoutMs: 5_000 });
      if (!r) break;
      answers.push({ status: r.status, connection: r.headers.connection });
    }
    await Promise.race([conn.closed, sleep(2_000)]);
    conn.close();
    assert.equal(answers.length, SERVING_LIMITS.maxRequestsPerConnection);
    assert.ok(answers.every((a) => a.status === 200));
    assert.equal(answers[answers.length - 1].connection, 'close');
    assert.equal(answers[answers.length - 2].connection, 'keep-alive');
    recordAttack('update-server', 'refused');
  });

  it('pipelined requests beyond the bound are not served (503 and an audit event)', async () => {
    await target.start({ maxRequestsPerConnection: 5 });
    const conn = await HttpConnection.open(target.port, target.id(A));
    conn.send('GET /fw/config.json HTTP/1.1\r\nHost: localhost\r\n\r\n'.repeat(8));
    const statuses: number[] = [];
    for (let i = 0; i < 8; i++) {
      const r = await conn.next({ timeoutMs: 3_000 });
      if (!r) break;
      statuses.push(r.status);
    }
    conn.close();
    assert.equal(statuses.filter((s) => s === 200).length, 5, `answers: ${statuses.join(' ')}`);
    const dropped = statuses.filter((s) => s === 503).length;
    if (dropped) await until('their events', () => target.rejected(/more than 5 requests on one connection/).length === dropped);
    recordAttack('update-server', 'refused');
  });

  it('an idle keep-alive connection is closed after the keep-alive timeout', async () => {
    await target.start({ keepAliveTimeoutMs: 1_000 });
    const conn = await HttpConnection.open(target.port, target.id(A));
    conn.get('/fw/config.json');
    const r = await conn.next();
    const answeredAt = Date.now();
    assert.equal(r?.status, 200);
    assert.match(r!.headers['keep-alive'] ?? '', /timeout=1/);
    await Promise.race([conn.closed, sleep(5_000)]);
    assert.ok(conn.closedAt, 'closed');
    // Node adds one second to the advertised timeout before it closes (lib/_http_server.js).
    const idle = conn.closedAt! - answeredAt;
    assert.ok(idle >= 900 && idle <= 2_600, `closed after ${idle} ms idle`);
  });

  it('a download the device stopped reading is closed after the idle timeout, and frees its slot', async () => {
    await target.start({ idleTimeoutMs: 1_500, maxConcurrentDownloads: 1 });
    let paused = false;
    const socket = tls.connect({ host: '127.0.0.1', port: target.port, ...target.id(A), servername: 'localhost' });
    socket.on('error', () => undefined);
    socket.once('secureConnect', () => socket.write(`GET /fw/firmware.bin?curimage=${BIG_FROM} HTTP/1.0\r\nHost: localhost\r\n\r\n`));
    let received = 0;
    let pausedAt = 0;
    socket.on('data', (c: Buffer) => {
      received += c.length;
      if (received > 100_000 && !paused) {
        paused = true;
        pausedAt = Date.now();
        socket.pause();
      }
    });
    try {
      await until('the download to start and stall', () => paused, 10_000);
      // The paused client reads nothing, not even the close: the server's own event says when it gave up.
      await until('the aborted event', () => target.events.some((e) => e.type === 'download-aborted'), 10_000);
    } finally {
      socket.destroy();
    }
    const aborted = target.events.find((e) => e.type === 'download-aborted')!;
    assert.match(aborted.reason ?? '', /no byte moved for 1.5 s/);
    // No sooner than the idle timeout after the client stopped (the socket buffers fill first).
    assert.ok(Date.parse(aborted.at) - pausedAt >= 1_400, `closed ${Date.parse(aborted.at) - pausedAt} ms after the client paused`);
    assert.ok(aborted.bytes! < target.bigOffer.size);
    const next = await HttpConnection.open(target.port, target.id(B));
    next.get(`/fw/firmware.bin?curimage=${OLD}`);
    assert.equal((await next.next())?.status, 200, 'the slot is free again');
    next.close();
    recordAttack('update-server', 'refused');
  });
});
