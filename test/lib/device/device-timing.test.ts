import { strict as assert } from 'node:assert';
import { readFileSync } from 'node:fs';
import * as path from 'node:path';
import { Jitter, fnv1a32 } from '../../../lib/device/jitter';
import { ReconnectPolicy } from '../../../lib/device/reconnect-policy';
import { runTimeline, TimelineEvent, WATCHDOG_STEPS } from '../../../lib/device/progress-watchdog';

interface Vectors {
  jitter: { id: string; fnv1a32: number; next: number[] }[];
  reconnect: { why: string; id: string; retryMs: number; giveUpMs: number; steps: { op: 'start' | 'failed' | 'connected'; at: number; reached?: boolean; delayMs: number; attemptDueAt: number | null; rebootDue: boolean }[] }[];
  watchdog: { budgetsMs: Record<string, number>; tickMs: number; timelines: { why: string; events: TimelineEvent[]; end: number; resetAt: number | null }[] };
}

/** The same file the firmware core's host tests read (firmware/core/test/host_tests.cpp). */
const V: Vectors = JSON.parse(readFileSync(path.resolve(__dirname, '../../../../test/vectors/device-timing.json'), 'utf8'));

describe('device timing, as the firmware decides it (lib/device, test/vectors/device-timing.json)', () => {
  it('jitter: FNV-1a of the id seeds xorshift32, the same numbers as the firmware', () => {
    for (const j of V.jitter) {
      assert.equal(fnv1a32(j.id), j.fnv1a32, j.id);
      const g = Jitter.forDevice(j.id);
      assert.deepEqual(j.next.map(() => g.next()), j.next, j.id);
    }
    const g = new Jitter(0);
    assert.notEqual(g.next(), 0, 'seed 0 is no fixed point');
    for (let i = 0; i < 1000; i++) assert.ok(g.upTo(7) <= 7);
  });

  for (const r of V.reconnect) {
    it(`reconnect: ${r.why}`, () => {
      const p = new ReconnectPolicy(r.retryMs, r.giveUpMs, Jitter.forDevice(r.id));
      for (const s of r.steps) {
        if (s.op === 'start') p.start(s.at);
        else if (s.op === 'failed') p.failed(s.at, s.reached === true);
        else p.connected(s.at);
        if (s.op !== 'connected') {
          assert.equal(p.currentDelayMs, s.delayMs, `${s.op} at ${s.at}`);
          assert.equal(p.attemptDue(s.attemptDueAt! - 1), s.delayMs === 0, `not due 1 ms early (${s.op} at ${s.at})`);
          assert.equal(p.attemptDue(s.attemptDueAt!), true, `due at ${s.attemptDueAt}`);
        } else assert.equal(p.attemptDue(s.at + 1_000_000), false, 'never due while connected');
        assert.equal(p.rebootDue(), s.rebootDue, `reboot after ${s.op} at ${s.at}`);
      }
    });
  }

  it('reconnect: waits never exceed 8 × retry, and a wrapping millis() clock changes nothing', () => {
    const p = new ReconnectPolicy(3000, 20000, Jitter.forDevice('84f3eb012345'));
    const t0 = 0xffff_f000; // 4 s before millis() wraps
    p.start(t0);
    p.connected(t0);
    p.failed(t0);
    for (let i = 0, t = t0; i < 50; i++) {
      assert.ok(p.currentDelayMs <= 24_000, `${p.currentDelayMs} ms`);
      t = (t + p.currentDelayMs) >>> 0;
      assert.ok(p.attemptDue(t));
      p.failed(t);
    }
    assert.equal(p.rebootDue(), true, 'after ~50 failed attempts the device gives up');
  });

  it('watchdog: the budgets are the ones the firmware uses', () => {
    assert.deepEqual(V.watchdog.budgetsMs, WATCHDOG_STEPS);
  });

  for (const t of V.watchdog.timelines) {
    it(`watchdog: ${t.why}`, () => {
      assert.equal(runTimeline(t.events, t.end), t.resetAt);
    });
  }
});
