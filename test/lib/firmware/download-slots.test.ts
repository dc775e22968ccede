import { strict as assert } from 'node:assert';
import { DownloadSlotPool } from '../../../lib/firmware/download-slots';
import { sliceBytes } from '../../../lib/firmware/update-server';

describe('the download cap shared by the serving processes', () => {
  it('grants up to the limit across owners, and a release frees one slot once', () => {
    const pool = new DownloadSlotPool(3);
    const a = pool.acquire(0)!;
    const b = pool.acquire(1)!;
    pool.acquire(1);
    assert.equal(pool.inUse, 3);
    assert.equal(pool.acquire(0), undefined, 'the cap holds whoever asks');
    assert.equal(pool.release(1, a), false, 'a slot is released only by its owner');
    assert.equal(pool.release(0, a), true);
    assert.equal(pool.release(0, a), false, 'twice is a no-op');
    assert.equal(pool.inUse, 2);
    assert.notEqual(pool.acquire(0), undefined);
    assert.equal(pool.release(1, b), true);
  });

  it('frees every slot of an owner that went away (a worker that died)', () => {
    const pool = new DownloadSlotPool(4);
    pool.acquire(0);
    const ids = [pool.acquire(2)!, pool.acquire(2)!];
    assert.deepEqual(pool.releaseAll(2).sort(), ids.sort());
    assert.equal(pool.inUse, 1);
    assert.deepEqual(pool.releaseAll(2), []);
  });
});

describe('the slice a download writes at once', () => {
  it('is 64 KiB with few downloads, shrinks as they grow, and never goes below the floor', () => {
    assert.equal(sliceBytes(0), 64 * 1024);
    assert.equal(sliceBytes(25), 64 * 1024);
    const sizes = [1, 10, 50, 100, 200, 500, 1000, 5000, 100_000].map(sliceBytes);
    assert.deepEqual([...sizes].sort((a, b) => b - a), sizes, 'never larger with more downloads');
    assert.ok(sizes.every((s) => s % 1024 === 0 && s >= sliceBytes(100_000)));
    // With many downloads the slices together stay near the budget, until the floor.
    assert.ok(sliceBytes(200) * 200 <= 4.5 * 1024 * 1024);
  });
});
