import { strict as assert } from 'node:assert';
import { createHash, randomBytes } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import * as path from 'node:path';
import type { TLSSocket } from 'node:tls';
import { CaStore } from '../../lib/pki/ca-store';
import { startUpdateServer, RunningUpdateServer, UpdateEvent, ImageSource, ImageOffer, UpdateServerOptions } from '../../lib/firmware/update-server';
import { tempDir } from '../support/temp-dir';
import { deviceIdentity, localServerOptions } from '../support/update-server';
import { rawRequest, RawResponse } from '../support/raw-https';

const A = '84f3eb0000a1';
const OLD = 'ESP8266_WEMOS_D1MINIPRO-00.00.07.a';
const NEW = 'ESP8266_WEMOS_D1MINIPRO-00.00.08.f';
/** Offered a 24 MB image: more than loopback socket buffers hold, so a paused client really stalls. */
const BIG_FROM = 'ESP8266_WEMOS_D1MINIPRO-00.00.06.a';

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
async function until(what: string, ok: () => boolean, ms = 10_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!ok()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(20);
  }
}

/**
 * The progress events of one finished download, checked against what the client received:
 * strictly rising, each a further 5 % step, the last 100 % with bytes = total = the body, all
 * between download-start and download-complete.
 */
function assertFullProgress(events: UpdateEvent[], received: number): UpdateEvent[] {
  const types = events.map((e) => e.type);
  const progress = events.filter((e) => e.type === 'download-progress');
  assert.ok(progress.length >= 2 && progress.length <= 20, `${progress.length} progress events`);
  assert.ok(types.indexOf('download-start') < types.indexOf('download-progress'), types.join(','));
  assert.equal(types.lastIndexOf('download-progress'), types.indexOf('download-complete') - 1, types.join(','));
  const start = events.find((e) => e.type === 'download-start')!;
  let step = 0;
  let bytes = 0;
  for (const p of progress) {
    assert.equal(p.total, received);
    assert.ok(p.bytes! > bytes, `bytes rise: ${progress.map((e) => e.bytes).join(',')}`);
    assert.equal(p.percent, Math.floor((p.bytes! * 100) / p.total!));
    // Each event crosses at least one further 5 % step.
    const now = Math.floor((p.bytes! * 20) / p.total!);
    assert.ok(now > step, `steps rise: ${progress.map((e) => e.percent).join(',')}`);
    [step, bytes] = [now, p.bytes!];
    assert.deepEqual([p.status, p.image, p.sha256, p.deviceId, p.certificateSerial !== undefined], [200, NEW, start.sha256, A, true]);
  }
  const last = progress[progress.length - 1];
  assert.deepEqual([last.percent, last.bytes, last.total], [100, received, received]);
  return progress;
}

describe('the update server reports download progress (real HTTPS and client certificates)', function () {
  this.timeout(60_000);
  const tmp = tempDir('update-progress');
  let store: CaStore;
  let server: RunningUpdateServer | undefined;
  let offer: ImageOffer;
  let bigOffer: ImageOffer;
  const events: UpdateEvent[] = [];

  const images: ImageSource = {
    next: ({ currentImage }) => {
      if (currentImage === BIG_FROM) return { kind: 'offer', image: bigOffer };
      if (currentImage === NEW) return { kind: 'none', reason: 'up-to-date', detail: 'already the newest' };
      return { kind: 'offer', image: offer };
    },
  };
  async function start(overrides: Partial<UpdateServerOptions> = {}): Promise<RunningUpdateServer> {
    await server?.close();
    server = await startUpdateServer({
      ...(await localServerOptions(store)),
      deviceConfig: () => ({ mqttserver: 'broker.local' }),
      images,
      onEvent: (e) => events.push(e),
      ...overrides,
    });
    return server;
  }
  const download = (s: RunningUpdateServer, from: string, method = 'GET'): Promise<RawResponse> =>
    rawRequest(s.port, deviceIdentity(store, A), `${method} /fw/firmware.bin?curimage=${from} HTTP/1.0\r\nHost: localhost\r\nConnection: close\r\n\r\n`, { host: '127.0.0.1' });

  before(async () => {
    store = await CaStore.open({ dir: path.join(tmp.path, 'ca') });
    await store.issueServer({ commonName: 'localhost' });
    await store.issueDevice(A);
    // 1 MB: 16 slices of 64 KiB, so the 5 % steps fall inside the download, not only at its end.
    const image = Buffer.concat([Buffer.from([0xe9]), randomBytes(1_000_000)]);
    writeFileSync(path.join(tmp.path, 'new.bin'), image);
    offer = { name: NEW, size: image.length, sha256: createHash('sha256').update(image).digest('hex'), md5: createHash('md5').update(image).digest('hex'), path: path.join(tmp.path, 'new.bin') };
    const big = Buffer.alloc(24 * 1024 * 1024, 0x5a);
    big[0] = 0xe9;
    writeFileSync(path.join(tmp.path, 'big.bin'), big);
    bigOffer = { name: NEW, size: big.length, sha256: createHash('sha256').update(big).digest('hex'), md5: createHash('md5').update(big).digest('hex'), path: path.join(tmp.path, 'big.bin') };
  });
  beforeEach(() => (events.length = 0));
  afterEach(async () => {
    await server?.close();
    server = undefined;
  });
  after(() => tmp.remove());

  it('a full download: progress rises strictly to exactly 100 % of the bytes the client received', async () => {
    const s = await start();
    const r = await download(s, OLD);
    assert.equal(r.status, 200);
    assert.equal(r.body.length, offer.size);
    await until('download-complete', () => events.some((e) => e.type === 'download-complete'));
    const progress = assertFullProgress(events, r.body.length);
    assert.ok(progress.every((p) => p.sha256 === offer.sha256 && p.worker === undefined));
    // A 1 MB image in 64 KiB slices crosses most of the 20 steps one by one.
    assert.ok(progress.length >= 12, `${progress.length} progress events`);
  });

  it('a client that stops reading and goes away: progress up to what it was sent, then download-aborted, nothing after', async () => {
    const s = await start();
    let stalled: TLSSocket | undefined;
    let received = 0;
    // Reads 30 % of the 24 MB image, then stops reading.
    const req = rawRequest(s.port, deviceIdentity(store, A), `GET /fw/firmware.bin?curimage=${BIG_FROM} HTTP/1.0\r\nHost: localhost\r\n\r\n`, {
      host: '127.0.0.1',
      onData: (socket, n) => {
        received = n;
        if (!stalled && n > bigOffer.size * 0.3) {
          stalled = socket;
          socket.pause();
        }
      },
    }).catch(() => undefined);
    await until('the client to read 30 %', () => stalled !== undefined, 20_000);
    // The socket buffers fill and the server stops flushing: progress stops short of the end.
    let seen = -1;
    for (let i = 0; i < 50 && seen !== events.length; i++) {
      seen = events.length;
      await sleep(200);
    }
    const before = events.filter((e) => e.type === 'download-progress');
    assert.ok(before.length >= 6, `progress through the 30 % read: ${before.map((e) => e.percent).join(',')}`);
    // The client has read what it received; the server has flushed at least that much.
    const last = before[before.length - 1];
    assert.ok(last.bytes! < bigOffer.size && last.percent! < 100, `stalled at ${last.percent} %`);
    assert.ok(Math.floor((received * 20) / bigOffer.size) <= Math.floor((last.bytes! * 20) / bigOffer.size), `the client got ${received} bytes, progress says ${last.bytes}`);
    stalled!.destroy();
    await until('download-aborted', () => events.some((e) => e.type === 'download-aborted'));
    await req;
    // Time for any late write callback to fire (there must be none).
    await sleep(300);
    const types = events.map((e) => e.type);
    const aborted = events.find((e) => e.type === 'download-aborted')!;
    assert.equal(types.lastIndexOf('download-progress'), types.indexOf('download-aborted') - 1, types.join(','));
    assert.equal(events.filter((e) => e.type === 'download-progress').length, before.length);
    assert.ok(last.bytes! <= aborted.bytes!, `progress ${last.bytes} beyond the ${aborted.bytes} bytes written`);
    let bytes = 0;
    for (const p of before) {
      assert.ok(p.bytes! > bytes);
      bytes = p.bytes!;
      assert.equal(p.total, bigOffer.size);
    }
  });

  it('a HEAD request has no progress', async () => {
    const s = await start();
    const head = await download(s, OLD, 'HEAD');
    assert.equal(head.status, 200);
    assert.equal(head.headers['content-length'], String(offer.size));
    // The control: a GET right after it does report progress, so the events had time to come.
    const r = await download(s, OLD);
    await until('download-complete', () => events.some((e) => e.type === 'download-complete'));
    assert.deepEqual(
      events.filter((e) => e.type !== 'check').map((e) => e.type)[0],
      'download-start',
      `the HEAD left no download event: ${events.map((e) => e.type).join(',')}`,
    );
    assertFullProgress(events.slice(events.findIndex((e) => e.type === 'download-start') - 1), r.body.length);
  });

  it('with 2 processes: a worker reports the progress of the downloads it serves, with its number', async () => {
    const s = await start({ workers: 2 });
    const seen = new Set<number>();
    for (let i = 0; i < 40 && !seen.has(1); i++) {
      events.length = 0;
      // Steers the connection to the worker: this process stops accepting for 100 ms
      // (test/integration/update-workers.test.ts); whichever answers, its events must say so.
      const sent = download(s, OLD);
      await new Promise((r) => setImmediate(r));
      Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 100);
      const r = await sent;
      assert.equal(r.status, 200);
      await until('download-complete', () => events.some((e) => e.type === 'download-complete'));
      const worker = events.find((e) => e.type === 'download-start')!.worker!;
      assert.ok(worker === 0 || worker === 1, `worker ${worker}`);
      const progress = assertFullProgress(events, r.body.length);
      assert.ok(progress.every((p) => p.worker === worker), progress.map((p) => p.worker).join(','));
      seen.add(worker);
    }
    assert.ok(seen.has(1), 'a download served by the worker');
  });
});
