import { strict as assert } from 'node:assert';
import { createHash, randomBytes } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import * as path from 'node:path';
import type { TLSSocket } from 'node:tls';
import { CaStore } from '../../lib/pki/ca-store';
import { startUpdateServer, RunningUpdateServer, UpdateEvent, ImageSource, ImageOffer, UpdateServerOptions } from '../../lib/firmware/update-server';
import type { WorkerInfo } from '../../lib/firmware/update-server';
import { tempDir } from '../support/temp-dir';
import { deviceIdentity, localServerOptions } from '../support/update-server';
import { rawRequest, ClientIdentity, RawResponse } from '../support/raw-https';

const A = '84f3eb0000a1';
const B = '84f3eb0000b2';
const OLD = 'ESP8266_WEMOS_D1MINIPRO-00.00.07.a';
const NEW = 'ESP8266_WEMOS_D1MINIPRO-00.00.08.f';
/** Offered a 24 MB image: more than loopback socket buffers hold, so a paused client really stalls. */
const BIG_FROM = 'ESP8266_WEMOS_D1MINIPRO-00.00.06.a';

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
const alive = (pid: number): boolean => {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
};
async function until(what: string, ok: () => boolean, ms = 10_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!ok()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(20);
  }
}

describe('the update server with worker processes (workers > 1, real HTTPS and client certificates)', function () {
  this.timeout(60_000);
  const tmp = tempDir('update-workers');
  let store: CaStore;
  let server: RunningUpdateServer;
  let offer: ImageOffer;
  let bigOffer: ImageOffer;
  /** What the catalogue of this test says is the newest image (changed by a test). */
  let newest = NEW;
  const events: UpdateEvent[] = [];
  const workerInfo: WorkerInfo[] = [];
  const id = (device?: string): ClientIdentity => deviceIdentity(store, device);

  const images: ImageSource = {
    next: async ({ currentImage }) => {
      if (currentImage === BIG_FROM) return { kind: 'offer', image: bigOffer };
      if (currentImage === newest) return { kind: 'none', reason: 'up-to-date', detail: 'already the newest' };
      return { kind: 'offer', image: offer };
    },
  };

  async function start(overrides: Partial<UpdateServerOptions> = {}): Promise<void> {
    await server?.close();
    server = await startUpdateServer({
      ...(await localServerOptions(store)),
      deviceConfig: (device) => ({ mqttserver: 'broker.local', statusinterval: device === A ? 15000 : 60000 }),
      images,
      workers: 2,
      onEvent: (e) => events.push(e),
      onWorker: (w) => workerInfo.push(w),
      ...overrides,
    });
  }

  /**
   * Sends a request, steering it towards `worker`. For this process (0) the worker is stopped
   * (SIGSTOP) meanwhile, so this process accepts it. For the worker this process blocks its
   * event loop while the connection waits to be accepted, which lets the worker take it about
   * every other time (the kernel wakes both; callers try again until the worker answered).
   */
  async function to<T>(worker: number, send: (host: string) => Promise<T>): Promise<T> {
    const [pid] = server.workerPids();
    if (worker === 0) {
      process.kill(pid!, 'SIGSTOP');
      try {
        return await send('127.0.0.1');
      } finally {
        process.kill(pid!, 'SIGCONT');
      }
    }
    const sent = send('127.0.0.1');
    // The connect() of an IP address goes out on the next tick; then this process stops accepting.
    await new Promise((r) => setImmediate(r));
    Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 100);
    return sent;
  }
  /** Settles once no event has arrived for 150 ms (at most 3 s). */
  async function quiet(): Promise<void> {
    const deadline = Date.now() + 3_000;
    for (let n = -1; n !== events.length && Date.now() < deadline; ) {
      n = events.length;
      await new Promise((r) => setTimeout(r, 150));
    }
  }
  /** A request answered by `worker`, and its events. */
  async function from(worker: number, device: string, p: string): Promise<{ r: RawResponse; events: UpdateEvent[] }> {
    for (let i = 0; i < 40; i++) {
      // A worker's last events of the previous request may still be on their way over IPC: let
      // them land first, so they are not taken for this request's.
      await quiet();
      const before = events.length;
      const r = await to(worker, (host) => rawRequest(server.port, id(device), `GET ${p} HTTP/1.0\r\nHost: localhost\r\nConnection: close\r\n\r\n`, { host }));
      // A worker's events arrive over IPC, a moment after its answer.
      await until('the events of a request', () => events.slice(before).some((e) => e.type !== 'check'), 5_000);
      const mine = events.slice(before);
      if (mine.every((e) => e.worker === worker)) return { r, events: mine };
      assert.notEqual(worker, 0, 'with the worker stopped, this process answers');
    }
    throw new Error(`40 requests and none answered by process ${worker}`);
  }

  before(async () => {
    store = await CaStore.open({ dir: path.join(tmp.path, 'ca') });
    await store.issueServer({ commonName: 'localhost' });
    await store.issueDevice(A);
    await store.issueDevice(B);
    const image = Buffer.concat([Buffer.from([0xe9]), randomBytes(200_000)]);
    writeFileSync(path.join(tmp.path, 'new.bin'), image);
    offer = { name: NEW, size: image.length, sha256: createHash('sha256').update(image).digest('hex'), md5: createHash('md5').update(image).digest('hex'), path: path.join(tmp.path, 'new.bin') };
    const big = Buffer.alloc(24 * 1024 * 1024, 0x5a);
    big[0] = 0xe9;
    writeFileSync(path.join(tmp.path, 'big.bin'), big);
    bigOffer = { name: NEW, size: big.length, sha256: createHash('sha256').update(big).digest('hex'), md5: createHash('md5').update(big).digest('hex'), path: path.join(tmp.path, 'big.bin') };
    await start();
  });
  beforeEach(() => {
    events.length = 0;
    newest = NEW;
  });
  after(async () => {
    await server.close();
    tmp.remove();
  });

  it('forks a worker that serves on the same port; its events arrive with device id, serial, image and sha256', async () => {
    assert.equal(server.workerPids().length, 1);
    assert.ok(alive(server.workerPids()[0]!));
    const config = await from(1, A, '/fw/config.json');
    assert.equal(JSON.parse(config.r.body.toString()).statusinterval, 15000, "the device's own config, asked of the first process");
    const dl = await from(1, A, `/fw/firmware.bin?curimage=${OLD}`);
    assert.equal(dl.r.status, 200);
    assert.equal(dl.r.headers['x-md5'], offer.md5);
    assert.equal(createHash('md5').update(dl.r.body).digest('hex'), offer.md5);
    await until('download-complete', () => events.some((e) => e.type === 'download-complete' && e.worker === 1));
    const done = events.find((e) => e.type === 'download-complete' && e.worker === 1)!;
    assert.deepEqual([done.deviceId, done.image, done.sha256, done.bytes, done.authenticated], [A, NEW, offer.sha256, offer.size, true]);
    assert.match(done.certificateSerial!, /^[0-9A-F]+$/);
    // The first process answers too.
    assert.equal((await from(0, B, `/fw/firmware.bin?curimage=${NEW}`)).r.status, 304);
  });

  it('asks the first process for every answer: a catalogue change reaches the worker at once', async () => {
    assert.equal((await from(1, A, `/fw/firmware.bin?curimage=${NEW}`)).r.status, 304);
    newest = 'ESP8266_WEMOS_D1MINIPRO-00.00.09.a';
    const r = await from(1, A, `/fw/firmware.bin?curimage=${NEW}`);
    assert.equal(r.r.status, 200);
    assert.ok(r.events.some((e) => e.type === 'download-start'));
  });

  it('holds one download cap across the processes: 503 with Retry-After from either', async () => {
    await start({ maxConcurrentDownloads: 2, retryAfterSeconds: 9 });
    // Two clients stall mid-download; whichever processes serve them, both slots are taken.
    const stalled: TLSSocket[] = [];
    const pending = [A, B].map((d) =>
      rawRequest(server.port, id(d), `GET /fw/firmware.bin?curimage=${BIG_FROM} HTTP/1.0\r\n\r\n`, {
        onData: (socket, received) => {
          if (received > 20_000 && !stalled.includes(socket)) {
            stalled.push(socket);
            socket.pause();
          }
        },
      }).catch(() => undefined),
    );
    await until('two stalled downloads', () => stalled.length === 2);
    for (const worker of [0, 1]) {
      const busy = await from(worker, A, `/fw/firmware.bin?curimage=${OLD}`);
      assert.equal(busy.r.status, 503, `process ${worker}`);
      assert.equal(busy.r.headers['retry-after'], '9');
      assert.match(busy.r.body.toString(), /2 downloads under way \(limit 2\)/);
    }
    for (const s of stalled) s.destroy();
    await Promise.all(pending);
    await until('both aborted', () => events.filter((e) => e.type === 'download-aborted').length === 2);
    assert.equal((await from(1, A, `/fw/firmware.bin?curimage=${OLD}`)).r.status, 200, 'the slots are free again');
    await start();
  });

  it('applies a new CRL in the workers too: a revoked device is refused by every process', async () => {
    const C = '84f3eb0000c3';
    const issued = await store.issueDevice(C);
    assert.equal((await from(1, C, '/fw/config.json')).r.status, 200);
    await store.revoke(issued.record.serial, 'keyCompromise');
    await server.setCrl(await store.crlPem());
    const refusedBy = (w: number): boolean => events.some((e) => e.type === 'rejected' && e.worker === w && /TLS handshake/.test(e.reason ?? ''));
    for (let i = 0; i < 40 && !(refusedBy(0) && refusedBy(1)); i++) {
      await assert.rejects(
        to(refusedBy(0) ? 1 : 0, (host) => rawRequest(server.port, id(C), 'GET /fw/config.json HTTP/1.0\r\n\r\n', { host })),
        /revoked|certificate|socket hang up|ECONNRESET|no HTTP response|alert/,
      );
      await sleep(20);
    }
    await until('refusals from both processes', () => [0, 1].every((w) => events.some((e) => e.type === 'rejected' && e.worker === w && /TLS handshake/.test(e.reason ?? ''))));
  });

  it('starts a worker again when it dies, and reports the downloads it was serving as aborted', async () => {
    await start({ maxConcurrentDownloads: 1 });
    workerInfo.length = 0;
    const [pid] = server.workerPids();
    // A download stalled in the worker holds the only slot.
    let stalled: TLSSocket | undefined;
    for (let i = 0; i < 40; i++) {
      events.length = 0;
      let socket: TLSSocket | undefined;
      const done = to(1, (host) =>
        rawRequest(server.port, id(A), `GET /fw/firmware.bin?curimage=${BIG_FROM} HTTP/1.0\r\n\r\n`, {
          host,
          onData: (s, received) => {
            if (received > 20_000 && !socket) {
              socket = s;
              s.pause();
            }
          },
        }),
      ).catch(() => undefined);
      await until('a stalled download', () => socket !== undefined && events.some((e) => e.type === 'download-start'));
      if (events.find((e) => e.type === 'download-start')!.worker === 1) {
        stalled = socket;
        break;
      }
      socket!.destroy();
      await done;
      await until('the slot back', () => events.some((e) => e.type === 'download-aborted'));
    }
    assert.ok(events.some((e) => e.type === 'download-start' && e.worker === 1), 'a download in the worker');
    process.kill(pid!, 'SIGKILL');
    await until('the restart', () => workerInfo.some((w) => w.event === 'started'));
    const exited = workerInfo.find((w) => w.event === 'exited')!;
    assert.deepEqual([exited.worker, exited.pid, exited.signal], [1, pid, 'SIGKILL']);
    const aborted = events.find((e) => e.type === 'download-aborted')!;
    assert.deepEqual([aborted.deviceId, aborted.image, aborted.sha256, aborted.worker], [A, NEW, bigOffer.sha256, 1]);
    assert.match(aborted.reason!, /worker 1 .* exited/);
    // Nothing of that download after its download-aborted (late IPC of the dead worker included).
    await sleep(200);
    assert.ok(!events.slice(events.indexOf(aborted) + 1).some((e) => e.type === 'download-progress'), events.map((e) => e.type).join(','));
    const [again] = server.workerPids();
    assert.ok(again !== pid && alive(again!));
    stalled?.destroy();
    // The dead worker's slot is free: the new worker serves a download.
    assert.equal((await from(1, B, `/fw/firmware.bin?curimage=${OLD}`)).r.status, 200);
    await start();
  });

  it('stops its workers when closed', async () => {
    const pids = server.workerPids();
    await server.close();
    await until('the workers gone', () => pids.every((p) => !alive(p)), 5_000);
    assert.deepEqual(server.workerPids(), []);
    await start();
  });
});
