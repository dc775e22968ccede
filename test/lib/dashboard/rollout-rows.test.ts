import { strict as assert } from 'node:assert';
import { Rollout } from '../../../lib/rollout/rollout';
import { parseRolloutSpec } from '../../../lib/rollout/rollout-spec';
import { rolloutRows } from '../../../lib/dashboard/rollout-rows';

describe('rollout rows for a dashboard table (lib/dashboard/rollout-rows.ts)', () => {
  it('every device, queued ones too, in wave order, with percent and reason', () => {
    const ids = ['a4cf12000003', 'a4cf12000001', 'a4cf12000002'];
    const { rollout } = Rollout.start(parseRolloutSpec({ target: 'G-2.0.0', canary: 1, waveSize: 2, cap: 1 }), ids.map((id) => ({ id, online: true, image: 'G-1.0.0', error: '' })), 0);
    rollout.progress('a4cf12000003', 40);
    assert.deepEqual(rolloutRows(rollout.state), [
      { device: 'a4cf12000003', wave: 1, state: 'updating', target: 'G-2.0.0', percent: 40, reason: '' },
      { device: 'a4cf12000001', wave: 2, state: 'queued', target: 'G-2.0.0', percent: null, reason: '' },
      { device: 'a4cf12000002', wave: 2, state: 'queued', target: 'G-2.0.0', percent: null, reason: '' },
    ]);
    rollout.report('a4cf12000003', 'G-1.0.0', 'signature verification failed', 10);
    assert.deepEqual(rolloutRows(rollout.state)[0], { device: 'a4cf12000003', wave: 1, state: 'failed', target: 'G-2.0.0', percent: 40, reason: 'refused the image: signature verification failed' });
  });
});
