import { normalizeDeviceId } from '../device-id';

/** A share of a wave or of the fleet: a number of devices, or a percent of them. */
export type Share = { count: number } | { percent: number };

/** What a rollout is asked to do (docs/rollout.md). Durations in ms. */
export interface RolloutSpec {
  /** The image every device should end up reporting, e.g. `ESP8266_DEMO-2.0.0`. */
  target: string;
  /** The first wave: the canaries. */
  canary: Share;
  /** Devices per later wave. */
  waveSize: number;
  /** Devices updating at once (commanded, not yet back on the target image). */
  cap: number;
  /** How long a device must stay online on the target with no new error before it passes. */
  soakMs: number;
  /** From the command to the device reporting the target image; after it, the device failed. */
  updateTimeoutMs: number;
  /** Failures in the running wave that halt the rollout (at least this many, or this share). */
  haltAt: Share;
}

const IMAGE = /^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$/;

export const ROLLOUT_DEFAULTS = {
  canary: { count: 1 } as Share,
  waveSize: 10,
  cap: 5,
  soakS: 120,
  updateTimeoutS: 600,
  haltAt: { percent: 20 } as Share,
};

function whole(value: unknown, name: string, min: number, max: number, fallback: number): number {
  if (value === undefined || value === null || value === '') return fallback;
  const n = typeof value === 'number' ? value : Number(String(value).trim());
  if (!Number.isInteger(n) || n < min || n > max) throw new Error(`${name} must be a whole number from ${min} to ${max}, got ${JSON.stringify(String(value).slice(0, 20))}`);
  return n;
}

/** `3` or `{count: 3}` is a count; `"10%"` or `{percent: 10}` a percent (1 to 100). */
export function parseShare(value: unknown, name: string, fallback: Share): Share {
  if (value === undefined || value === null || value === '') return fallback;
  if (typeof value === 'string' && value.trim().endsWith('%')) return { percent: whole(value.trim().slice(0, -1), `${name} (percent)`, 1, 100, 0) };
  if (typeof value === 'object' && value !== null && 'percent' in value) return { percent: whole((value as { percent: unknown }).percent, `${name} (percent)`, 1, 100, 0) };
  const count = typeof value === 'object' && value !== null && 'count' in value ? (value as { count: unknown }).count : value;
  return { count: whole(count, `${name} (count)`, 1, 100_000, 0) };
}

/** Reads a rollout as a msg or the node's fields give it; every bad field is an error naming it, and nothing starts. */
export function parseRolloutSpec(input: Record<string, unknown>): RolloutSpec {
  const target = input.target;
  if (typeof target !== 'string' || !IMAGE.test(target)) throw new Error('target must be an image name such as ESP8266_DEMO-2.0.0');
  const d = ROLLOUT_DEFAULTS;
  return {
    target,
    canary: parseShare(input.canary, 'canary', d.canary),
    waveSize: whole(input.waveSize, 'wave size', 1, 100_000, d.waveSize),
    cap: whole(input.cap, 'cap (devices updating at once)', 1, 1_000, d.cap),
    soakMs: whole(input.soakS, 'soak time (s)', 0, 86_400, d.soakS) * 1000,
    updateTimeoutMs: whole(input.updateTimeoutS, 'update timeout (s)', 10, 86_400, d.updateTimeoutS) * 1000,
    haltAt: parseShare(input.haltAt, 'halt threshold', d.haltAt),
  };
}

/** The devices in waves: the canaries first, then waves of `waveSize`, in the order given (ids normalized, each once). */
export function planWaves(ids: readonly unknown[], spec: Pick<RolloutSpec, 'canary' | 'waveSize'>): string[][] {
  const list = [...new Set(ids.map((id) => normalizeDeviceId(id)))];
  if (list.length === 0) return [];
  const canaries = 'count' in spec.canary ? spec.canary.count : Math.ceil((list.length * spec.canary.percent) / 100);
  const first = Math.min(list.length, Math.max(1, canaries));
  const waves = [list.slice(0, first)];
  for (let i = first; i < list.length; i += spec.waveSize) waves.push(list.slice(i, i + spec.waveSize));
  return waves;
}

/** True when `failed` of a wave of `size` devices reaches the threshold. */
export function reachesHalt(haltAt: Share, failed: number, size: number): boolean {
  if (failed === 0) return false;
  return 'count' in haltAt ? failed >= haltAt.count : (100 * failed) / Math.max(1, size) >= haltAt.percent;
}
