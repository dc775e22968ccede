import { strict as assert } from 'node:assert';
import { createHash, randomBytes } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import * as path from 'node:path';
import { CaStore } from '../../lib/pki/ca-store';
import { startUpdateServer, RunningUpdateServer, UpdateEvent, ImageSource, ImageOffer, UpdateServerOptions } from '../../lib/firmware/update-server';
import { tempDir } from '../support/temp-dir';
import { deviceIdentity, localServerOptions } from '../support/update-server';
import { rawRequest, RawResponse } from '../support/raw-https';

// Range requests and the strong ETag of images (RFC 9110 sections 13-14; docs/wire-contract.md,
// Range requests and ETag), on the real HTTPS server with a device certificate, on both routes
// of an image (firmware.bin?curimage= and /update), through the fast path, the express app and a
// worker process.

const A = '84f3eb0000a1';
const OLD = 'RANGE_BOARD-1.0.0';
const NEW = 'RANGE_BOARD-1.1.0';
const NEWER = 'RANGE_BOARD-1.2.0';
const SIZE = 200_000;

const sha256 = (b: Buffer): string => createHash('sha256').update(b).digest('hex');

describe('the update server answers Range requests with a strong ETag (real HTTPS and client certificates)', function () {
  this.timeout(60_000);
  const tmp = tempDir('update-ranges');
  let store: CaStore;
  let server: RunningUpdateServer | undefined;
  const events: UpdateEvent[] = [];
  /** What the catalogue of this test offers a device on OLD (a test publishes a newer one). */
  let current: { offer: ImageOffer; data: Buffer };

  const publish = (name: string): { offer: ImageOffer; data: Buffer } => {
    const data = Buffer.concat([Buffer.from([0xe9]), randomBytes(SIZE - 1)]);
    const file = path.join(tmp.path, `${name}.bin`);
    writeFileSync(file, data);
    return { data, offer: { name, size: data.length, sha256: sha256(data), md5: createHash('md5').update(data).digest('hex'), path: file } };
  };
  const images: ImageSource = {
    next: ({ currentImage }) =>
      currentImage === OLD ? { kind: 'offer', image: current.offer } : { kind: 'none', reason: 'up-to-date', detail: `nothing newer than ${currentImage}` },
  };
  async function start(overrides: Partial<UpdateServerOptions> = {}): Promise<RunningUpdateServer> {
    await server?.close();
    server = await startUpdateServer({ ...(await localServerOptions(store)), deviceConfig: () => ({}), images, onEvent: (e) => events.push(e), ...overrides });
    return server;
  }
  const get = (headers: string, p = `/fw/firmware.bin?curimage=${OLD}`, method = 'GET', onData?: Parameters<typeof rawRequest>[3]): Promise<RawResponse> =>
    rawRequest(server!.port, deviceIdentity(store, A), `${method} ${p} HTTP/1.0\r\nHost: localhost\r\n${headers}Connection: close\r\n\r\n`, onData);
  const etag = (): string => `"${current.offer.sha256}"`;

  before(async () => {
    store = await CaStore.open({ dir: path.join(tmp.path, 'ca') });
    await store.issueServer({ commonName: 'localhost' });
    await store.issueDevice(A);
  });
  beforeEach(async () => {
    events.length = 0;
    current = publish(NEW);
    if (!server) await start();
  });
  after(async () => {
    await server?.close();
    tmp.remove();
  });

  it('sends every image with ETag "<sha256>" and Accept-Ranges: bytes, on both routes and on HEAD', async () => {
    for (const [p, version] of [
      [`/fw/firmware.bin?curimage=${OLD}`, ''],
      ['/update', `x-ESP8266-version: ${OLD}\r\n`],
    ]) {
      const r = await get(version, p);
      assert.equal(r.status, 200, p);
      assert.equal(r.headers.etag, etag(), p);
      assert.equal(r.headers['accept-ranges'], 'bytes', p);
      assert.ok(r.body.equals(current.data), p);
      const h = await get(`${version}Range: bytes=0-9\r\n`, p, 'HEAD');
      // RFC 9110 section 14.2: Range is for GET only; HEAD tells the whole image.
      assert.deepEqual([h.status, h.headers.etag, h.headers['accept-ranges'], h.headers['content-length'], h.headers['content-range'], h.body.length], [200, etag(), 'bytes', String(SIZE), undefined, 0], p);
    }
  });

  it('answers a-b, a- and -n with 206, Content-Range and exactly that slice', async () => {
    const cases: [string, number, number][] = [
      ['bytes=0-0', 0, 0],
      ['bytes=100-199', 100, 199],
      ['bytes=150000-', 150000, SIZE - 1],
      [`bytes=${SIZE - 1}-`, SIZE - 1, SIZE - 1],
      ['bytes=-500', SIZE - 500, SIZE - 1],
      // A suffix longer than the image is all of it; a last position past the end is the end.
      [`bytes=-${SIZE * 3}`, 0, SIZE - 1],
      [`bytes=199990-${SIZE * 10}`, 199990, SIZE - 1],
      // The unit is case-insensitive (RFC 9110 section 14.1).
      ['BYTES=5-9', 5, 9],
    ];
    for (const [range, first, last] of cases) {
      for (const [p, version] of [
        [`/fw/firmware.bin?curimage=${OLD}`, ''],
        ['/update', `x-ESP8266-version: ${OLD}\r\n`],
      ]) {
        const r = await get(`${version}Range: ${range}\r\n`, p);
        assert.equal(r.status, 206, `${range} ${p}`);
        assert.equal(r.headers['content-range'], `bytes ${first}-${last}/${SIZE}`, range);
        assert.equal(r.headers['content-length'], String(last - first + 1), range);
        assert.equal(r.headers.etag, etag());
        // The MD5 stays the whole image's: ESP8266httpUpdate checks the image it assembled.
        assert.equal(r.headers['x-md5'], current.offer.md5);
        assert.ok(r.body.equals(current.data.subarray(first, last + 1)), `${range}: the exact slice`);
      }
    }
  });

  it('answers a range starting at or past the end with 416 and Content-Range: bytes */size, and keeps serving', async () => {
    for (const range of [`bytes=${SIZE}-`, `bytes=${SIZE}-${SIZE + 10}`, `bytes=${SIZE * 5}-`, 'bytes=-0']) {
      events.length = 0;
      const r = await get(`Range: ${range}\r\n`);
      assert.equal(r.status, 416, range);
      assert.equal(r.headers['content-range'], `bytes */${SIZE}`, range);
      assert.match(r.body.toString(), /starts at or past the end of the 200000 bytes/);
      // No download started, no slot taken.
      assert.deepEqual(events.map((e) => [e.type, e.status]), [['check', 0], ['rejected', 416]], range);
    }
    assert.equal((await get('')).status, 200);
  });

  it('serves the whole image with 200 for several ranges, another unit or a malformed Range', async () => {
    for (const range of ['bytes=0-1,5-6', 'bytes=0-1, 10-', 'items=0-1', 'bytes=5-2', 'bytes=abc', 'bytes=', 'bytes 0-1', 'bytes=--1', 'bytes=1-2-3']) {
      const r = await get(`Range: ${range}\r\n`);
      assert.equal(r.status, 200, range);
      assert.equal(r.headers['content-range'], undefined, range);
      assert.ok(r.body.equals(current.data), range);
    }
  });

  it('honours If-Range only with the current strong ETag: a stale or weak tag, or a date, gets the whole image', async () => {
    const match = await get(`Range: bytes=10-19\r\nIf-Range: ${etag()}\r\n`);
    assert.equal(match.status, 206);
    assert.ok(match.body.equals(current.data.subarray(10, 20)));
    for (const ifRange of [`"${'0'.repeat(64)}"`, `W/${etag()}`, 'Tue, 01 Dec 2026 17:00:00 GMT', current.offer.sha256]) {
      const r = await get(`Range: bytes=10-19\r\nIf-Range: ${ifRange}\r\n`);
      assert.equal(r.status, 200, ifRange);
      assert.ok(r.body.equals(current.data), ifRange);
    }
  });

  it('resumes an interrupted download with Range: bytes=N- and If-Range: the parts join to the image byte for byte', async () => {
    // The first download is cut by the client after about 60 000 bytes of body.
    let cut = 0;
    const first = await get('', undefined, 'GET', {
      onData: (socket, received) => {
        if (received > 60_000 && cut === 0) {
          cut = received;
          socket.destroy();
        }
      },
    });
    assert.equal(first.status, 200);
    const tag = first.headers.etag;
    const n = first.body.length;
    assert.ok(n > 0 && n < SIZE, `${n} bytes before the cut`);
    await until(() => events.some((e) => e.type === 'download-aborted'));
    events.length = 0;
    const rest = await get(`Range: bytes=${n}-\r\nIf-Range: ${tag}\r\n`);
    assert.equal(rest.status, 206);
    assert.equal(rest.headers['content-range'], `bytes ${n}-${SIZE - 1}/${SIZE}`);
    const joined = Buffer.concat([first.body, rest.body]);
    assert.equal(sha256(joined), current.offer.sha256);
    assert.ok(joined.equals(current.data));
    // The slice's events: bytes of the slice, placed by offset and total; percent of the whole image.
    const startEvent = events.find((e) => e.type === 'download-start')!;
    assert.deepEqual([startEvent.status, startEvent.bytes, startEvent.offset, startEvent.total], [206, SIZE - n, n, SIZE]);
    await until(() => events.some((e) => e.type === 'download-complete'));
    const complete = events.find((e) => e.type === 'download-complete')!;
    assert.deepEqual([complete.status, complete.bytes, complete.offset, complete.total], [206, SIZE - n, n, SIZE]);
    const progress = events.filter((e) => e.type === 'download-progress');
    assert.ok(progress.length >= 1 && progress.length <= 20);
    for (const p of progress) assert.equal(p.percent, Math.floor(((n + p.bytes!) * 100) / SIZE));
    assert.ok(progress[0].percent! >= Math.floor((n * 100) / SIZE), 'percent goes on from where the cut left it');
    assert.deepEqual([progress.at(-1)!.percent, progress.at(-1)!.bytes], [100, SIZE - n]);
  });

  it('a slice that stops short of the end never reports 100 %', async () => {
    const r = await get('Range: bytes=0-99999\r\n');
    assert.equal(r.status, 206);
    await until(() => events.some((e) => e.type === 'download-complete'));
    const progress = events.filter((e) => e.type === 'download-progress');
    assert.deepEqual([progress.at(-1)!.bytes, progress.at(-1)!.percent], [100_000, 50]);
  });

  it('a resume with the ETag of an image replaced since gets the whole new image with 200, never a splice', async () => {
    const old = await get('Range: bytes=0-49999\r\n');
    assert.equal(old.status, 206);
    const staleTag = old.headers.etag;
    const before = current;
    current = publish(NEWER);
    assert.notEqual(`"${current.offer.sha256}"`, staleTag);
    const r = await get(`Range: bytes=50000-\r\nIf-Range: ${staleTag}\r\n`);
    assert.equal(r.status, 200);
    assert.equal(r.headers.etag, etag());
    assert.equal(r.headers['content-range'], undefined);
    assert.ok(r.body.equals(current.data));
    assert.ok(!Buffer.concat([old.body, r.body.subarray(50_000)]).equals(before.data));
  });

  it('the version rules choose the image first: a device with nothing newer gets 304 whatever its Range', async () => {
    const r = await get(`Range: bytes=0-9\r\nIf-Range: ${etag()}\r\n`, `/fw/firmware.bin?curimage=${NEW}`);
    assert.equal(r.status, 304);
    assert.equal(r.body.length, 0);
  });

  it('answers Range the same on the express route (another spelling of firmware.bin)', async () => {
    const r = await get('Range: bytes=7-70\r\n', `/fw/firmware.bin/?curimage=${OLD}`);
    assert.equal(r.status, 206);
    assert.equal(r.headers['content-range'], `bytes 7-70/${SIZE}`);
    assert.ok(r.body.equals(current.data.subarray(7, 71)));
    assert.equal(events.find((e) => e.type === 'download-start')?.path, '/fw/firmware.bin/');
  });

  it('a worker process answers Range and If-Range alike, and its events place the slice', async () => {
    await start({ workers: 2 });
    try {
      // The kernel hands connections to either process: ask until the worker has answered one (bounded).
      let fromWorker: UpdateEvent | undefined;
      for (let i = 0; i < 40 && !fromWorker; i++) {
        events.length = 0;
        const r = await get(`Range: bytes=1000-\r\nIf-Range: ${etag()}\r\n`);
        assert.equal(r.status, 206);
        assert.equal(r.headers.etag, etag());
        assert.ok(r.body.equals(current.data.subarray(1000)));
        await until(() => events.some((e) => e.type === 'download-complete'));
        fromWorker = events.find((e) => e.type === 'download-start' && e.worker === 1);
      }
      assert.ok(fromWorker, 'a worker answered within 40 requests');
      assert.deepEqual([fromWorker.status, fromWorker.bytes, fromWorker.offset, fromWorker.total], [206, SIZE - 1000, 1000, SIZE]);
      const progress = events.filter((e) => e.type === 'download-progress');
      assert.ok(progress.length >= 1);
      for (const p of progress) assert.deepEqual([p.offset, p.total, p.percent], [1000, SIZE, Math.floor(((1000 + p.bytes!) * 100) / SIZE)]);
      const stale = await get(`Range: bytes=1000-\r\nIf-Range: "${'f'.repeat(64)}"\r\n`);
      assert.equal(stale.status, 200);
      assert.ok(stale.body.equals(current.data));
    } finally {
      await start();
    }
  });
});

async function until(ok: () => boolean, ms = 10_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!ok()) {
    if (Date.now() > deadline) throw new Error('timed out');
    await new Promise((r) => setTimeout(r, 20));
  }
}
