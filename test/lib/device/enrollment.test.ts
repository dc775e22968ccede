import { strict as assert } from 'node:assert';
import { readFileSync } from 'node:fs';
import * as path from 'node:path';
import { enrollStep, pendingDelayMs, failureDelayMs, renewAtS, ENROLL_TIMING, EnrollState, EnrollEvent } from '../../../lib/device/enrollment';

interface Vectors {
  timing: typeof ENROLL_TIMING;
  steps: { state: EnrollState; event: EnrollEvent; next: EnrollState; action: string }[];
  retryAfter: { retryAfter: string | null; delayMs: number }[];
  failureDelay: { failures: number; delayMs: number }[];
  renewal: { notBefore: number; notAfter: number; renewAt: number }[];
}

/** The same file the firmware core's host tests read (firmware/core/test/host_tests.cpp). */
const V: Vectors = JSON.parse(readFileSync(path.resolve(__dirname, '../../../../test/vectors/enrollment.json'), 'utf8'));

describe('device enrollment steps, as the firmware decides them (lib/device/enrollment.ts, test/vectors/enrollment.json)', () => {
  it('every (state, event) pair gives the step of the table', () => {
    assert.equal(V.steps.length, 8 * 11, 'the vectors cover every pair');
    for (const s of V.steps) assert.deepEqual(enrollStep(s.state, s.event), { next: s.next, action: s.action }, `${s.state} + ${s.event}`);
  });

  it('a device never leaves enrolled for simpleenroll except when its certificate expired', () => {
    const out = V.steps.filter((s) => (s.state === 'enrolled' || s.state === 'renew' || s.state === 'renew-backoff') && s.action === 'simpleenroll');
    assert.deepEqual([...new Set(out.map((s) => s.event))], ['cert-expired']);
  });

  it('Retry-After: delta-seconds clamped, anything else the default', () => {
    assert.deepEqual(ENROLL_TIMING, V.timing);
    for (const r of V.retryAfter) assert.equal(pendingDelayMs(r.retryAfter ?? undefined), r.delayMs, JSON.stringify(r.retryAfter));
  });

  it('failure delay doubles from 30 s to an hour', () => {
    for (const f of V.failureDelay) assert.equal(failureDelayMs(f.failures), f.delayMs, String(f.failures));
  });

  it('renewal at two thirds of the lifetime, whole seconds rounded down', () => {
    for (const r of V.renewal) assert.equal(renewAtS(r.notBefore, r.notAfter), r.renewAt);
  });
});
