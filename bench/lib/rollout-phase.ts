// The esp-rollout phase of bench/fleet: one rollout of the new image to R devices in a few waves
// (a canary of one cap's worth, then waves of whole multiples of the cap), each gated by a short
// soak, timed from the `start` msg until the node says `done`. The node runs in the real Node-RED
// runtime; its outputs end in bench-count nodes, on which this module listens as a wired node would.
import { performance } from 'node:perf_hooks';
import { planWaves } from '../../lib/rollout/rollout-spec';
import type { RunningNodeRed } from './node-red-runtime';

export interface RolloutPlan {
  canary: number;
  waveSize: number;
  /** Devices per wave, as the node will plan them. */
  sizes: number[];
}

/**
 * Canary = one cap's worth, later waves a whole multiple of the cap: then no wave ends on a
 * part-filled round, and the lower bound waves × soak + ceil(R / cap) × one device alone is one
 * a perfect scheduler could reach.
 */
export function benchWaves(devices: number, cap: number, waves: number): RolloutPlan {
  if (waves < 2) throw new Error('--waves must be at least 2 (a canary and one more)');
  const canary = Math.min(cap, devices);
  const waveSize = Math.max(1, cap * Math.ceil((devices - canary) / (waves - 1) / cap));
  const ids = Array.from({ length: devices }, (_, i) => (0xb0fe00000000 + i).toString(16));
  return { canary, waveSize, sizes: planWaves(ids, { canary: { count: canary }, waveSize }).map((w) => w.length) };
}

export interface RolloutRun {
  /** From the start msg to the node's `done` (or the limit). */
  ms: number;
  /** The final status msg's topic (done, halted, …) and reason, or undefined at the limit. */
  end?: { status: string; reason: string };
  /** ms after the start at which each wave passed its gate. */
  gates: number[];
  /** Msgs on output 1 (per device: states and download percent) and output 2. */
  deviceMsgs: number;
  statusMsgs: number;
  /** Per-device msgs that carried a download percent. */
  percentMsgs: number;
}

type Msg = { topic?: string; payload?: { state?: string; wave?: number; reason?: string; percent?: number } };
type Listening = { on(event: 'input', fn: (msg: Msg) => void): void; removeListener(event: 'input', fn: (msg: Msg) => void): void };

/** Starts the rollout on node `rolloutId` for `ids` and waits (at most `limitMs`) until it ends. */
export async function runRollout(red: RunningNodeRed, ids: { rollout: string; devicesOut: string; statusOut: string }, devices: string[], limitMs: number): Promise<RolloutRun> {
  const node = red.getNode<{ receive(msg: object): void }>(ids.rollout);
  const devicesOut = red.getNode<Listening>(ids.devicesOut);
  const statusOut = red.getNode<Listening>(ids.statusOut);
  if (!node || !devicesOut || !statusOut) throw new Error('the esp-rollout flow is not deployed');
  const run: RolloutRun = { ms: 0, gates: [], deviceMsgs: 0, statusMsgs: 0, percentMsgs: 0 };
  let t0 = 0;
  let finish: () => void = () => undefined;
  const ended = new Promise<void>((resolve) => (finish = resolve));
  const onDevice = (msg: Msg): void => {
    run.deviceMsgs++;
    if (msg.payload?.percent !== undefined) run.percentMsgs++;
  };
  const onStatus = (msg: Msg): void => {
    run.statusMsgs++;
    const at = performance.now() - t0;
    if (msg.topic === 'wave' && msg.payload?.state === 'passed') run.gates.push(at);
    if (msg.topic === 'done' || msg.topic === 'halted' || msg.topic === 'aborted') {
      run.ms = at;
      run.end = { status: msg.topic, reason: String(msg.payload?.reason ?? '') };
      finish();
    }
  };
  devicesOut.on('input', onDevice);
  statusOut.on('input', onStatus);
  const timer = setTimeout(finish, limitMs);
  try {
    t0 = performance.now();
    node.receive({ topic: 'start', payload: { devices } });
    await ended;
    if (!run.end) run.ms = performance.now() - t0;
    return run;
  } finally {
    clearTimeout(timer);
    devicesOut.removeListener('input', onDevice);
    statusOut.removeListener('input', onStatus);
  }
}
