import { strict as assert } from 'node:assert';
import fc from 'fast-check';
import { parseSelection, selectDevices, Candidate } from '../../../lib/rollout/selection';
import { offeredDevices, chooseDevices, NEWEST, Offer, summarize, FleetDevice } from '../../../lib/rollout/offers';
import { Rollout, DeviceNow } from '../../../lib/rollout/rollout';
import { parseRolloutSpec } from '../../../lib/rollout/rollout-spec';

const A = 'a4cf12000001';
const B = 'a4cf12000002';
const C = 'a4cf12000003';
const D = 'a4cf12000004';
const fleet: Candidate[] = [
  { id: A, image: 'LAMP-1.0.0', groups: ['porch'] },
  { id: B, image: 'LAMP-1.2.0', groups: [] },
  { id: C, image: 'PLUG-1.0.0', groups: ['porch', 'beta'] },
  { id: D, groups: [] },
];

describe('rollout selections and what the update server would offer (lib/rollout, docs/rollout.md)', () => {
  it('selects by *, ids, group: and image: terms; a device is in when any term names it, each once', () => {
    assert.deepEqual(selectDevices(parseSelection('*'), fleet), [A, B, C, D]);
    assert.deepEqual(selectDevices(parseSelection('group:porch'), fleet), [A, C]);
    assert.deepEqual(selectDevices(parseSelection('image:LAMP-1.'), fleet), [A, B]);
    assert.deepEqual(selectDevices(parseSelection('image:LAMP-1.2, group:beta'), fleet), [B, C]);
    // Ids keep the given order and may name devices the fleet has not seen yet.
    assert.deepEqual(selectDevices(parseSelection(['A4:CF:12:00:00:03', 'a4cf12000009', 'group:porch']), fleet), [C, 'a4cf12000009', A]);
    assert.deepEqual(selectDevices(parseSelection('group:none'), fleet), []);
  });

  it('refuses bad terms with a reason naming them, and an empty selection', () => {
    assert.throws(() => parseSelection(''), /devices must be \*, device ids, group:<name> or image:<prefix>/);
    assert.throws(() => parseSelection([]), /devices must be/);
    assert.throws(() => parseSelection('group:Porch'), /"group:Porch" is not a device id/);
    assert.throws(() => parseSelection('image:'), /"image:" is not/);
    assert.throws(() => parseSelection('image:../x'), /"image:..\/x" is not/);
    assert.throws(() => parseSelection('84f3eb01234, zz'), /"84f3eb01234", "zz" are not/);
    assert.throws(() => parseSelection(Array(10_001).fill('*')), /at most 10000 terms/);
  });

  it('fuzz: any input either parses to a selection whose picks come from the fleet or its ids, or throws a short Error', () => {
    fc.assert(
      fc.property(fc.oneof(fc.string({ maxLength: 60 }), fc.array(fc.oneof(fc.string({ maxLength: 20 }), fc.integer(), fc.constant(null)), { maxLength: 8 })), (input) => {
        let selection;
        try {
          selection = parseSelection(input);
        } catch (err) {
          assert.ok(err instanceof Error && err.message.length < 400, String(err));
          return;
        }
        const picked = selectDevices(selection, fleet);
        assert.equal(new Set(picked).size, picked.length);
        for (const id of picked) assert.ok(fleet.some((c) => c.id === id) || selection.ids.includes(id));
      }),
      { seed: 1515, numRuns: 2000 },
    );
  });

  const offers: Record<string, Offer> = {
    [A]: { next: 'LAMP-1.2.0' },
    [B]: { none: 'no newer LAMP image', code: 'up-to-date' },
    [C]: { none: 'pinned to PLUG-1.0.0', code: 'up-to-date' },
  };
  const now = (ids: string[]): DeviceNow[] => ids.map((id) => ({ id, online: true, image: fleet.find((c) => c.id === id)!.image, error: '' }));
  const offerFor = (id: string): Offer => offers[id]!;

  it('newest: each device its own offer as its target; nothing newer counts as up to date, an unknown image is left out', () => {
    const r = offeredDevices(NEWEST, now([A, B, D]), offerFor);
    assert.deepEqual(r.devices.map((d) => [d.id, d.target]), [[A, 'LAMP-1.2.0']]);
    assert.equal(r.upToDate, 1);
    assert.deepEqual(r.excluded, [{ device: D, reason: 'has not reported its image yet' }]);
  });

  it('a named target keeps only the devices offered exactly it; none at all is an error naming the reasons', () => {
    const r = offeredDevices('LAMP-1.2.0', now([A, B, C]), offerFor);
    assert.deepEqual(r.devices.map((d) => d.id), [A]);
    assert.equal(r.upToDate, 1, 'B already runs it');
    assert.deepEqual(r.excluded, [{ device: C, reason: 'offered nothing: pinned to PLUG-1.0.0' }]);
    assert.throws(() => offeredDevices('LAMP-2.0.0', now([A, C]), offerFor), /^Error: no selected device would be offered LAMP-2\.0\.0: 1 offered LAMP-1\.2\.0, not LAMP-2\.0\.0; 1 offered nothing: pinned/);
  });

  it('without a server every device stays, and newest is refused', () => {
    assert.equal(offeredDevices('LAMP-1.2.0', now([A, B, C])).devices.length, 3);
    assert.throws(() => offeredDevices(NEWEST, now([A])), /needs the update server/);
  });

  it('summarize counts the commonest reasons first', () => {
    const e = (reason: string, n: number): { device: string; reason: string }[] => Array.from({ length: n }, (_, i) => ({ device: String(i), reason }));
    assert.equal(summarize([...e('x', 1), ...e('y', 3), ...e('z', 2), ...e('w', 1)], 2), '3 y; 2 z; and 2 other reasons');
  });

  it('a device with its own target is judged by it: it passes on its own image, fails on the spec\'s', () => {
    const spec = parseRolloutSpec({ target: NEWEST, canary: 2, cap: 2, soakS: 0, updateTimeoutS: 60 });
    const devices: DeviceNow[] = [
      { id: A, online: true, image: 'LAMP-1.0.0', target: 'LAMP-1.2.0', error: '' },
      { id: C, online: true, image: 'PLUG-1.0.0', target: 'PLUG-1.1.0', error: '' },
    ];
    const { rollout: r } = Rollout.start(spec, devices, 0);
    r.offline(A, 1);
    r.offline(C, 1);
    r.online(A, 2);
    r.online(C, 2);
    r.report(A, 'LAMP-1.2.0', '', 3);
    r.report(C, 'LAMP-1.2.0', '', 3);
    r.tick(4);
    assert.equal(r.view.devices[A]!.state, 'passed');
    assert.equal(r.view.devices[C]!.state, 'failed');
    assert.equal(r.view.devices[C]!.reason, 'came back on LAMP-1.2.0, not PLUG-1.1.0');
    // Saved and read back, each keeps its own target.
    assert.equal(Rollout.resume(JSON.parse(JSON.stringify(r.state))).targetOf(r.view.devices[C]!), 'PLUG-1.1.0');
  });
  it('chooseDevices: the selection against the fleet, then the offers; groups need a server, an unknown target is an error', () => {
    const known: FleetDevice[] = fleet.map((c) => ({ id: c.id, online: true, image: c.image, error: '', groups: c.groups }));
    const server = { hasImage: (name: string) => name === 'LAMP-1.2.0', offerFor: (id: string): Offer => offers[id] ?? { none: 'unknown', code: 'bad-request' } };
    const r = chooseDevices('LAMP-1.2.0', 'group:porch', known, server);
    assert.deepEqual([r.devices.map((d) => d.id), r.excluded.map((e) => e.device)], [[A], [C]]);
    assert.throws(() => chooseDevices('LAMP-1.2.0', 'group:porch', known), /group: selections need the update server/);
    assert.throws(() => chooseDevices('LAMP-9.0.0', '*', known, server), /unknown image LAMP-9\.0\.0/);
    // An id the fleet has not heard from: offline, no image, left out with the reason when a server decides.
    assert.deepEqual(chooseDevices(NEWEST, 'a4cf12000009', known, server).excluded, [{ device: 'a4cf12000009', reason: 'has not reported its image yet' }]);
  });
});
