import { strict as assert } from 'node:assert';
import { Semaphore, SemaphoreCancelledError, SemaphoreFullError } from '../../../lib/concurrency/semaphore';
import { Mutex } from '../../../lib/concurrency/mutex';

const tick = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

describe('Semaphore', () => {
  it('grants slots first come first served, and a freed slot goes to the longest waiter', async () => {
    const s = new Semaphore(2);
    const order: number[] = [];
    const releases = await Promise.all([s.acquire(), s.acquire()]);
    const waiting = [1, 2, 3, 4].map((n) =>
      s.acquire().then((release) => {
        order.push(n);
        return release;
      }),
    );
    await tick();
    assert.equal(s.waiting, 4);
    assert.equal(s.tryAcquire(), undefined, 'a newcomer does not overtake the queue');
    releases[1]();
    await tick();
    releases[0]();
    const granted = await Promise.all(waiting.slice(0, 2));
    assert.deepEqual(order, [1, 2]);
    granted[0]();
    granted[1]();
    for (const r of await Promise.all(waiting.slice(2))) r();
    assert.deepEqual(order, [1, 2, 3, 4]);
    assert.equal(s.inUse, 0);
    assert.equal(s.waiting, 0);
  });

  it('never runs more than its size at once, over many jobs of random length', async () => {
    const s = new Semaphore(3);
    let running = 0;
    let peak = 0;
    const started: number[] = [];
    const jobs = Array.from({ length: 60 }, (_, i) =>
      s.run(async () => {
        started.push(i);
        running++;
        peak = Math.max(peak, running);
        assert.ok(s.inUse <= 3);
        await new Promise((resolve) => setTimeout(resolve, (i * 7) % 5));
        running--;
        return i;
      }),
    );
    assert.deepEqual(await Promise.all(jobs), Array.from({ length: 60 }, (_, i) => i));
    assert.equal(peak, 3);
    assert.deepEqual(started, Array.from({ length: 60 }, (_, i) => i), 'started in the order asked');
    assert.equal(s.inUse, 0);
  });

  it('gives the slot back when a job fails or throws', async () => {
    const s = new Semaphore(1);
    await assert.rejects(s.run(() => Promise.reject(new Error('job failed'))), /job failed/);
    await assert.rejects(
      s.run(() => {
        throw new Error('thrown at once');
      }),
      /thrown at once/,
    );
    assert.equal(s.inUse, 0);
    assert.equal(await s.run(() => 'next'), 'next', 'the queue behind a failure goes on');
  });

  it('frees a slot once, however often its release is called', async () => {
    const s = new Semaphore(2);
    const a = await s.acquire();
    const b = await s.acquire();
    a();
    a();
    assert.equal(s.inUse, 1, 'a second release of the same slot does not free another holder’s');
    b();
    assert.equal(s.inUse, 0);
  });

  it('bounds its waiting queue where asked, and 0 means never wait', async () => {
    const bounded = new Semaphore(1, { maxWaiting: 1 });
    const held = await bounded.acquire();
    const queued = bounded.acquire();
    await assert.rejects(bounded.acquire(), SemaphoreFullError);
    held();
    (await queued)();
    const never = new Semaphore(1, { maxWaiting: 0 });
    const only = never.tryAcquire();
    assert.ok(only);
    assert.equal(never.tryAcquire(), undefined);
    await assert.rejects(never.acquire(), SemaphoreFullError);
    only();
    assert.ok(never.tryAcquire());
  });

  it('cancels its waiters and keeps its holders', async () => {
    const s = new Semaphore(1);
    const held = await s.acquire();
    const waiters = [s.acquire(), s.acquire()];
    s.cancelWaiting('closed');
    for (const w of waiters) await assert.rejects(w, SemaphoreCancelledError);
    assert.equal(s.inUse, 1);
    held();
    assert.equal(s.inUse, 0);
  });

  it('reads its size, and refuses a size that is not a number of slots', () => {
    assert.equal(new Semaphore(4.7).size, 4);
    assert.equal(new Semaphore(0).tryAcquire(), undefined);
    assert.throws(() => new Semaphore(Number.NaN), RangeError);
    assert.throws(() => new Semaphore(-1), RangeError);
  });
});

describe('Mutex', () => {
  it('runs one job at a time in order; a failure does not block the next; idle waits for all', async () => {
    const m = new Mutex();
    const log: string[] = [];
    const job = (name: string, fail = false) => async (): Promise<string> => {
      log.push(`${name} start`);
      await tick();
      log.push(`${name} end`);
      if (fail) throw new Error(name);
      return name;
    };
    const a = m.run(job('a'));
    const b = m.run(job('b', true));
    const c = m.run(job('c'));
    const idle = m.idle().then(() => log.push('idle'));
    assert.equal(await a, 'a');
    await assert.rejects(b, /b/);
    assert.equal(await c, 'c');
    await idle;
    assert.deepEqual(log, ['a start', 'a end', 'b start', 'b end', 'c start', 'c end', 'idle']);
  });
});
