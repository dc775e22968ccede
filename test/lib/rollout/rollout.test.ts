import { strict as assert } from 'node:assert';
import { Rollout, RolloutAction, DeviceNow } from '../../../lib/rollout/rollout';
import { parseRolloutSpec, planWaves, RolloutSpec } from '../../../lib/rollout/rollout-spec';

const OLD = 'GARAGE-1.0.0';
const NEW = 'GARAGE-2.0.0';
const ids = (n: number): string[] => Array.from({ length: n }, (_, i) => `a4cf12${(i + 1).toString(16).padStart(6, '0')}`);
const fleet = (n: number, online = true): DeviceNow[] => ids(n).map((id) => ({ id, online, image: OLD, error: '' }));
const commanded = (a: RolloutAction[]): string[] => a.filter((x) => x.type === 'command').map((x) => (x as { id: string }).id);
const statuses = (a: RolloutAction[]): string[] => a.filter((x) => x.type === 'status').map((x) => (x as { status: string }).status);
const spec = (more: Record<string, unknown> = {}): RolloutSpec => parseRolloutSpec({ target: NEW, canary: 1, waveSize: 2, cap: 1, soakS: 10, updateTimeoutS: 60, ...more });

/** A device that takes the update: goes offline (reboot), comes back on the target. */
function update(r: Rollout, id: string, t: number): RolloutAction[] {
  return [...r.offline(id, t), ...r.online(id, t + 1), ...r.report(id, NEW, '', t + 2)];
}

describe('rollouts as a state machine (lib/rollout, docs/rollout.md)', () => {
  it('plans waves: the canaries first (a count or a percent), then waves of the given size', () => {
    assert.deepEqual(planWaves(ids(5), { canary: { count: 1 }, waveSize: 2 }).map((w) => w.length), [1, 2, 2]);
    assert.deepEqual(planWaves(ids(40), { canary: { percent: 10 }, waveSize: 15 }).map((w) => w.length), [4, 15, 15, 6]);
    assert.deepEqual(planWaves(['84:F3:EB:01:23:45', '84f3eb012345'], { canary: { count: 3 }, waveSize: 2 }), [['84f3eb012345']]);
    assert.deepEqual(planWaves([], { canary: { count: 1 }, waveSize: 2 }), []);
  });

  it('refuses bad input with a reason that names the field', () => {
    assert.throws(() => parseRolloutSpec({ target: '' }), /target must be an image name/);
    assert.throws(() => parseRolloutSpec({ target: NEW, waveSize: 0 }), /wave size must be a whole number from 1/);
    assert.throws(() => parseRolloutSpec({ target: NEW, waveSize: 2.5 }), /wave size/);
    assert.throws(() => parseRolloutSpec({ target: NEW, haltAt: '0%' }), /halt threshold \(percent\) must be a whole number from 1 to 100/);
    assert.throws(() => parseRolloutSpec({ target: NEW, haltAt: '150%' }), /from 1 to 100/);
    assert.throws(() => parseRolloutSpec({ target: NEW, cap: -1 }), /cap/);
    assert.throws(() => parseRolloutSpec({ target: NEW, canary: { percent: 0 } }), /canary/);
    assert.deepEqual(parseRolloutSpec({ target: NEW, canary: '10%', haltAt: 2 }).canary, { percent: 10 });
  });

  it('runs wave after wave: at most `cap` updating at once, each passing its soak before the next wave starts', () => {
    const { rollout: r, actions } = Rollout.start(spec(), fleet(5), 0);
    const [a, b, c, d, e] = ids(5);
    assert.deepEqual(commanded(actions), [a], 'the canary alone');
    let t = 100;
    assert.deepEqual(commanded(update(r, a, t)), [], 'soaking: the next wave waits');
    assert.deepEqual(commanded(r.tick(t + 5_000)), []);
    const gate = r.tick(t + 10_002);
    assert.ok(gate.some((x) => x.type === 'wave' && x.wave === 1 && x.state === 'passed'));
    assert.deepEqual(commanded(gate), [b], 'wave 2, one at a time (cap 1)');
    t = 20_000;
    assert.deepEqual(commanded(update(r, b, t)), [c], 'the cap frees up as soon as one is back on the target');
    update(r, c, t + 100);
    const next = r.tick(t + 10_200);
    assert.deepEqual(commanded(next), [d]);
    assert.deepEqual(commanded(update(r, d, t + 11_000)), [e], 'within a wave too, the next one starts when the cap frees up');
    update(r, e, t + 12_000);
    const end = r.tick(t + 30_000);
    assert.deepEqual(statuses(end), ['done']);
    assert.deepEqual(r.counts(), { queued: 0, skipped: 0, updating: 0, soaking: 0, passed: 5, failed: 0 });
    assert.ok(Object.values(r.state.devices).every((dev) => dev.commands === 1), 'each device got the command once');
  });

  it('halts when failures of the running wave reach the threshold; in-flight devices finish, no new device starts', () => {
    const { rollout: r } = Rollout.start(spec({ canary: 1, waveSize: 4, cap: 4, haltAt: '50%' }), fleet(9), 0);
    const [a, b, c, d, e] = ids(9);
    update(r, a, 10);
    const wave2 = r.tick(10_100);
    assert.deepEqual(commanded(wave2), [b, c, d, e]);
    // A tampered trust key: the device refuses the image and says so in errormessage.
    r.report(b, OLD, 'signature verification failed', 11_000);
    const halt = r.report(c, OLD, 'signature verification failed', 11_100);
    assert.deepEqual(statuses(halt), ['halted']);
    assert.match(r.state.reason!, /2 of 4 devices of wave 2 failed \(threshold 50 %\)/);
    assert.equal(r.state.devices[b]!.reason, 'refused the image: signature verification failed');
    // The two still in flight are judged to the end; nobody outside the wave was commanded.
    update(r, d, 12_000);
    update(r, e, 12_100);
    assert.deepEqual(commanded(r.tick(30_000)), []);
    assert.deepEqual(r.counts(), { queued: 4, skipped: 0, updating: 0, soaking: 0, passed: 3, failed: 2 });
    assert.ok(ids(9).slice(5).every((id) => r.state.devices[id]!.commands === 0));
  });

  it('counts as failed: back on the old image, offline while soaking, no return in time', () => {
    const { rollout: r } = Rollout.start(spec({ canary: 3, cap: 3, haltAt: 3 }), fleet(3), 0);
    const [a, b, c] = ids(3);
    r.offline(a, 100);
    r.online(a, 200);
    r.report(a, OLD, '', 300);
    assert.equal(r.state.devices[a]!.reason, `came back on ${OLD}, not ${NEW}`);
    update(r, b, 100);
    r.offline(b, 5_000);
    assert.equal(r.state.devices[b]!.reason, 'went offline while soaking');
    r.offline(c, 100);
    r.tick(61_000);
    assert.equal(r.state.devices[c]!.reason, 'did not come back after the reboot');
    assert.deepEqual(statuses(r.tick(61_001)), [], 'the halt came with the third failure already');
    assert.equal(r.status, 'halted');
  });

  it('skips offline devices and gives them their turn when they come back', () => {
    const devices = fleet(3);
    devices[1]!.online = false;
    const { rollout: r } = Rollout.start(spec({ canary: 3, cap: 3 }), devices, 0);
    const [a, b, c] = ids(3);
    assert.equal(r.state.devices[b]!.state, 'skipped');
    update(r, a, 100);
    update(r, c, 100);
    const back = r.online(b, 2_000);
    assert.deepEqual(commanded(back), [b], 'its turn, in the running wave');
    update(r, b, 3_000);
    assert.deepEqual(statuses(r.tick(20_000)), ['done']);
  });

  it('pause, resume, abort and retry-failed by msg; a wrong one is an error that changes nothing', () => {
    const { rollout: r } = Rollout.start(spec({ canary: 1, waveSize: 2, cap: 2, haltAt: 1 }), fleet(3), 0);
    const [a, b, c] = ids(3);
    r.pause(10);
    update(r, a, 20);
    assert.deepEqual(commanded(r.tick(20_000)), [], 'paused: judged, nothing new');
    assert.equal(r.state.devices[a]!.state, 'passed');
    assert.throws(() => r.pause(20_001), /only a running one can pause/);
    assert.deepEqual(commanded(r.resume(20_002)), [b, c]);
    r.report(b, OLD, 'not enough space', 21_000);
    assert.equal(r.status, 'halted');
    const again = r.retryFailed(22_000);
    assert.deepEqual(statuses(again), ['running']);
    assert.deepEqual(commanded(again), [b]);
    assert.equal(r.state.devices[b]!.commands, 2);
    r.abort(23_000);
    assert.throws(() => r.abort(23_001), /aborted already/);
    assert.throws(() => r.retryFailed(23_002), /aborted/);
    update(r, c, 24_000);
    assert.deepEqual(commanded(r.tick(60_000)), []);
  });

  it('resumes from its saved state after a restart: a device mid-update is not commanded twice, and is judged by what it reports', () => {
    const { rollout: first } = Rollout.start(spec({ canary: 2, cap: 2 }), fleet(4), 0);
    const [a, b, c] = ids(4);
    const saved = JSON.parse(JSON.stringify(first.state));
    const r = Rollout.resume(saved);
    assert.deepEqual(commanded(r.tick(1_000)), [], 'nothing new while both are updating');
    update(r, a, 2_000);
    update(r, b, 2_100);
    assert.deepEqual(commanded(r.tick(13_000)), [c, ids(4)[3]]);
    assert.equal(r.state.devices[a]!.commands, 1);
    assert.throws(() => Rollout.resume({ version: 2 } as never), /not a rollout state/);
  });

  it('a retried device failing again with the same message fails at once once the update server heard it ask, not at the timeout', () => {
    const { rollout: r } = Rollout.start(spec({ canary: 1, cap: 1, haltAt: 1 }), fleet(2), 0);
    const [a] = ids(2);
    r.report(a!, OLD, 'firmware: signature check failed', 1_000);
    assert.equal(r.state.devices[a!]!.state, 'failed');
    r.retryFailed(2_000);
    // Its periodic status still says what it said before the retry: nothing new yet.
    r.report(a!, OLD, 'firmware: signature check failed', 2_500);
    assert.equal(r.state.devices[a!]!.state, 'updating', 'the old error before it asked is not this try');
    assert.equal(r.asked(a!), true);
    assert.equal(r.asked(a!), false, 'told once');
    r.report(a!, OLD, 'firmware: signature check failed', 3_000);
    assert.equal(r.state.devices[a!]!.state, 'failed');
    assert.equal(r.state.devices[a!]!.reason, 'refused the image: firmware: signature check failed');
    // A check from a device that is not updating changes nothing.
    assert.equal(r.asked(ids(2)[1]!), false);
  });

  it('keeps the devices left out at the start, with their reasons, across a restart; a state saved without them still resumes', () => {
    const left = [{ device: 'a4cf50000099', reason: 'offered nothing: pinned to X-1.0.0' }];
    const { rollout: first } = Rollout.start(spec(), fleet(2), 0, left);
    const back = Rollout.resume(JSON.parse(JSON.stringify(first.state)));
    assert.deepEqual(back.view.excluded, left);
    const older = JSON.parse(JSON.stringify(Rollout.start(spec(), fleet(2), 0).rollout.state));
    assert.equal('excluded' in older, false);
    assert.equal(Rollout.resume(older).view.excluded, undefined);
  });

  it('a device the update server offers nothing (304) fails at once, not at the timeout', () => {
    const { rollout: r } = Rollout.start(spec({ haltAt: 5 }), fleet(3), 0);
    const [a, b, c] = ids(3);
    const out = r.nothingOffered(a, 'pinned to 1.0.0', 500);
    assert.equal(r.state.devices[a]!.reason, 'the update server offers it nothing to install (pinned to 1.0.0)');
    assert.deepEqual(commanded(out), [b], 'below the threshold: the canary wave is over, the next one starts (cap 1)');
    assert.deepEqual(r.nothingOffered(c, 'x', 600), [], 'only an updating device');
  });

  it('says when it next falls due: the earliest timeout or end of a soak', () => {
    const { rollout: r } = Rollout.start(spec({ canary: 2, cap: 2, soakS: 10, updateTimeoutS: 60 }), fleet(2), 1_000);
    const [a] = ids(2);
    assert.equal(r.nextDueAt(), 61_000, 'both updating since 1 s: the timeout');
    update(r, a, 5_000);
    assert.equal(r.nextDueAt(), 5_002 + 10_000, 'a soaks from its report at 5.002 s');
    r.tick(15_002);
    assert.equal(r.state.devices[a]!.state, 'passed');
    assert.equal(r.nextDueAt(), 61_000);
  });

  it('progress: rises only, at most 100, while updating', () => {
    const { rollout: r } = Rollout.start(spec(), fleet(2), 0);
    const [a, b] = ids(2);
    assert.equal(r.progress(a, 10).length, 1);
    assert.equal(r.progress(a, 5).length, 0, 'never down');
    assert.deepEqual(r.progress(a, 120), [{ type: 'device', id: a, state: 'updating', percent: 100 }]);
    assert.equal(r.progress(b, 50).length, 0, 'not updating yet');
  });

  it('devices already on the target are not part of it; an empty rollout is done at once', () => {
    const devices = fleet(2);
    devices[0]!.image = NEW;
    const { rollout } = Rollout.start(spec(), devices, 0);
    assert.deepEqual(Object.keys(rollout.state.devices), [ids(2)[1]]);
    const none = Rollout.start(spec(), devices.slice(0, 1), 0);
    assert.deepEqual(statuses(none.actions), ['done']);
  });
});
