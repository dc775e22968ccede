import { strict as assert } from 'node:assert';
import { createHash, randomBytes } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import * as path from 'node:path';
import fc from 'fast-check';
import { CaStore } from '../../lib/pki/ca-store';
import { startUpdateServer, RunningUpdateServer, ImageOffer } from '../../lib/firmware/update-server';
import { rangeOf } from '../../lib/firmware/http/byte-range';
import { tempDir } from '../support/temp-dir';
import { deviceIdentity, localServerOptions } from '../support/update-server';
import { rawRequest } from '../support/raw-https';
import { recordAttack } from './support/attack-tally';

// Property-based fuzzing of Range and If-Range (RFC 9110 section 14; docs/wire-contract.md,
// Range requests and ETag): near-valid and hostile values, first against the parser alone,
// then over real TLS with a device certificate. Whatever arrives: no crash, 200/206/416 only,
// never a byte outside the image, and a 206 body is exactly the slice its Content-Range names.

const A = '84f3eb0000a1';
const OLD = 'RANGE_FUZZ-1.0.0';
const NEW = 'RANGE_FUZZ-1.1.0';
const SIZE = 4_099;
const SEED = 1616;

/** A position near the image's edges, or anywhere, or absurd. */
const position = fc.oneof(
  fc.integer({ min: 0, max: 8 }),
  fc.integer({ min: SIZE - 4, max: SIZE + 4 }),
  fc.integer({ min: 0, max: 2 * SIZE }),
  fc.constantFrom('99999999999999999999', '1e3', '0x10', '00000000000000000000000000001', '-0', '+5', ' 5', '١٢'),
);
const spec = fc.oneof(
  fc.tuple(position, position).map(([a, b]) => `${a}-${b}`),
  position.map((a) => `${a}-`),
  position.map((n) => `-${n}`),
  fc.string({ maxLength: 12 }),
  fc.constantFrom('-', '--', '', '0--1', '1-2-3', '=0-1'),
);
const rangeHeader = fc.oneof(
  { weight: 6, arbitrary: fc.tuple(fc.constantFrom('bytes=', 'BYTES=', 'Bytes=', 'bytes =', 'bits=', '', 'bytes=,'), fc.array(spec, { minLength: 1, maxLength: 3 }), fc.constantFrom(',', ', ', ' ,')).map(([u, s, sep]) => `${u}${s.join(sep)}`) },
  { weight: 1, arbitrary: fc.string({ maxLength: 40 }) },
  { weight: 1, arbitrary: fc.constant(`bytes=${'0'.repeat(300)}-1`) },
);

/** What a correct answer to (range, If-Range) looks like against `data` (`etag` is its tag). */
function checkAnswer(status: number, headers: Record<string, string>, body: Buffer, data: Buffer): void {
  if (status === 200) {
    assert.equal(headers['content-range'], undefined);
    assert.ok(body.equals(data), '200: the whole image');
    return;
  }
  if (status === 416) {
    assert.equal(headers['content-range'], `bytes */${data.length}`);
    return;
  }
  assert.equal(status, 206, `status ${status}`);
  const m = /^bytes (\d+)-(\d+)\/(\d+)$/.exec(headers['content-range'] ?? '');
  assert.ok(m, `Content-Range ${headers['content-range']}`);
  const [first, last, total] = [Number(m[1]), Number(m[2]), Number(m[3])];
  assert.ok(first <= last && last < data.length && total === data.length, headers['content-range']);
  assert.equal(headers['content-length'], String(last - first + 1));
  assert.ok(body.equals(data.subarray(first, last + 1)), '206: exactly the named slice');
}

describe('Range and If-Range fuzzing of the update server (fast-check, real HTTPS)', function () {
  this.timeout(60_000);
  const tmp = tempDir('update-range-fuzz');
  let store: CaStore;
  let server: RunningUpdateServer;
  let data: Buffer;
  let offer: ImageOffer;
  const etag = (): string => `"${offer.sha256}"`;

  before(async () => {
    store = await CaStore.open({ dir: path.join(tmp.path, 'ca') });
    await store.issueServer({ commonName: 'localhost' });
    await store.issueDevice(A);
    data = Buffer.concat([Buffer.from([0xe9]), randomBytes(SIZE - 1)]);
    const file = path.join(tmp.path, `${NEW}.bin`);
    writeFileSync(file, data);
    offer = { name: NEW, size: SIZE, sha256: createHash('sha256').update(data).digest('hex'), md5: createHash('md5').update(data).digest('hex'), path: file };
    server = await startUpdateServer({
      ...(await localServerOptions(store)),
      deviceConfig: () => ({}),
      images: { next: ({ currentImage }) => (currentImage === OLD ? { kind: 'offer', image: offer } : { kind: 'none', reason: 'up-to-date', detail: 'newest' }) },
    });
  });
  after(async () => {
    await server.close();
    tmp.remove();
  });

  it('the parser: never throws, and a slice always lies within the image (20 000 values)', () => {
    const runs = 20_000;
    fc.assert(
      fc.property(rangeHeader, fc.option(fc.constantFrom('"x"', 'W/"x"', 'date', ''), { nil: undefined }), fc.integer({ min: 0, max: 3 * SIZE }), (range, ifRange, size) => {
        const tag = '"x"';
        const r = rangeOf(range, ifRange === 'date' ? 'Tue, 01 Dec 2026 17:00:00 GMT' : ifRange, size, tag);
        if (r.kind === 'slice') {
          assert.ok(Number.isInteger(r.first) && Number.isInteger(r.last) && r.first >= 0 && r.first <= r.last && r.last < size, JSON.stringify([range, size, r]));
        }
        // Only the exact current tag lets a Range through.
        if (ifRange !== undefined && ifRange !== tag) assert.equal(r.kind, 'whole');
      }),
      { seed: SEED, numRuns: runs },
    );
    recordAttack('update-server-range', 'refused', runs);
  });

  it('over TLS: 200, 206 or 416 only, never a byte outside the image, and the server keeps serving', async () => {
    const runs = 600;
    const seen: Record<number, number> = {};
    const deadline = Date.now() + 20_000;
    let done = 0;
    await fc.assert(
      fc.asyncProperty(rangeHeader, fc.constantFrom('none', 'current', 'stale', 'weak', 'date'), async (range, ifRange) => {
        if (Date.now() > deadline) return;
        const tags: Record<string, string | undefined> = { none: undefined, current: etag(), stale: `"${'0'.repeat(64)}"`, weak: `W/${etag()}`, date: 'Tue, 01 Dec 2026 17:00:00 GMT' };
        // fast-check's strings are printable ASCII; no CR/LF, which would end the header (RFC 9110 section 5.5).
        const clean = range.replace(/[\r\n\0]/g, '');
        const tag = tags[ifRange];
        const r = await rawRequest(
          server.port,
          deviceIdentity(store, A),
          `GET /fw/firmware.bin?curimage=${OLD} HTTP/1.0\r\nHost: localhost\r\nRange: ${clean}\r\n${tag ? `If-Range: ${tag}\r\n` : ''}Connection: close\r\n\r\n`,
        );
        done++;
        seen[r.status] = (seen[r.status] ?? 0) + 1;
        checkAnswer(r.status, r.headers, r.body, data);
        if (tag !== undefined && tag !== etag()) assert.equal(r.status, 200, `If-Range ${tag}`);
      }),
      { seed: SEED, numRuns: runs },
    );
    assert.ok(done >= 100, `${done} requests in the time bound`);
    // The generator reaches every kind of answer (else it tests less than it claims).
    assert.ok(seen[200] > 0 && seen[206] > 0 && seen[416] > 0, JSON.stringify(seen));
    // Still serving, and the whole image is intact.
    const last = await rawRequest(server.port, deviceIdentity(store, A), `GET /fw/firmware.bin?curimage=${OLD} HTTP/1.0\r\nHost: localhost\r\n\r\n`);
    assert.equal(last.status, 200);
    assert.ok(last.body.equals(data));
    recordAttack('update-server-range', 'refused', done);
  });
});
