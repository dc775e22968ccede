import type { Rollout } from '../rollout/rollout';

/** One device of a rollout as a flat `ui-table` row. */
export interface RolloutRow {
  device: string;
  wave: number;
  state: string;
  /** The image it should end up on. */
  target: string;
  /** Download percent while updating (from the update server's progress events), 100 once past it. */
  percent: number | null;
  reason: string;
}

const PAST_DOWNLOAD = new Set(['soaking', 'passed']);

/** Every device of the rollout, in wave order, queued ones included. */
export function rolloutRows(state: Rollout['view']): RolloutRow[] {
  return Object.entries(state.devices)
    .map(([device, d]) => ({ device, wave: d.wave + 1, state: d.state, target: d.target ?? state.spec.target, percent: PAST_DOWNLOAD.has(d.state) ? 100 : (d.percent ?? null), reason: d.reason ?? '' }))
    .sort((a, b) => a.wave - b.wave || a.device.localeCompare(b.device));
}
