import { planWaves, reachesHalt, RolloutSpec } from './rollout-spec';

/**
 * One device in a rollout (docs/rollout.md): `queued` until it is its turn and online,
 * `updating` from the command until it reports the target image, `soaking` while it must stay
 * online with no new error, then `passed` or `failed` (with the reason). `skipped`: offline when
 * its wave ran; it is queued again when it comes back.
 */
export type DeviceRunState = 'queued' | 'skipped' | 'updating' | 'soaking' | 'passed' | 'failed';

export interface DeviceRun {
  wave: number;
  state: DeviceRunState;
  /** When it entered the state (ms since the epoch). */
  since: number;
  online: boolean;
  /** The image it reported last. */
  image?: string;
  /** The error it reported last (the status's errormessage), to tell a new one. */
  error?: string;
  /** It went offline since the command (a reboot). */
  rebooted?: boolean;
  /** It asked the update server for its next image since the command (an authenticated check). */
  asked?: boolean;
  percent?: number;
  reason?: string;
  commands: number;
  /** The image this device should end up on, when it is its own (the update server's offer for it); else the spec's target. */
  target?: string;
}

export type RolloutStatus = 'running' | 'paused' | 'halted' | 'aborted' | 'done';

/** The whole rollout as plain JSON: what is saved after every change and read back after a restart. */
export interface RolloutState {
  version: 1;
  spec: RolloutSpec;
  status: RolloutStatus;
  reason?: string;
  /** The running wave. */
  wave: number;
  waves: string[][];
  devices: Record<string, DeviceRun>;
  startedAt: number;
  updatedAt: number;
  /** Devices the selection named that the update server would not offer the target to, with why (kept for the status answer after a restart). */
  excluded?: Excluded[];
}

/** A device left out of the rollout at its start, and the reason. */
export interface Excluded {
  device: string;
  reason: string;
}

type DeepReadonly<T> = { readonly [K in keyof T]: T[K] extends object ? DeepReadonly<T[K]> : T[K] };

/** What the rollout asks its node to do or tell, in order. */
export type RolloutAction =
  | { type: 'command'; id: string }
  | { type: 'device'; id: string; state: DeviceRunState; reason?: string; percent?: number }
  | { type: 'wave'; wave: number; state: 'started' | 'passed'; passed: number; failed: number; skipped: number }
  | { type: 'status'; status: RolloutStatus; reason?: string };

/** A device's view as the fleet's telemetry gives it: what it is known to run, and whether it is online. */
export interface DeviceNow {
  id: string;
  online: boolean;
  image?: string;
  error?: string;
  /** Its own target (what the update server would offer it), in place of the spec's. */
  target?: string;
}

/**
 * A rollout as a state machine with no I/O (docs/rollout.md): the node feeds it what the fleet
 * observes (status reports, presence, download progress, the clock) and carries out the actions
 * it returns (commands, msgs). No agent on the device: a device has updated when its status
 * reports the target image after the command; it has failed when it reports an error, comes back
 * on another image, does not come back in time, or goes offline while it soaks.
 */
export class Rollout {
  private constructor(private readonly s: RolloutState) {}

  static start(spec: RolloutSpec, devices: readonly DeviceNow[], now: number, excluded: readonly Excluded[] = []): { rollout: Rollout; actions: RolloutAction[] } {
    // Devices already on their target have nothing to do: they are not part of the rollout.
    const todo = devices.filter((d) => d.image !== (d.target ?? spec.target));
    const waves = planWaves(
      todo.map((d) => d.id),
      spec,
    );
    const byId = new Map(todo.map((d) => [d.id, d]));
    const runs: Record<string, DeviceRun> = {};
    waves.forEach((ids, wave) => {
      for (const id of ids) {
        const d = byId.get(id)!;
        runs[id] = { wave, state: 'queued', since: now, online: d.online, image: d.image, error: d.error, commands: 0, ...(d.target !== undefined && d.target !== spec.target ? { target: d.target } : {}) };
      }
    });
    const rollout = new Rollout({ version: 1, spec, status: waves.length ? 'running' : 'done', wave: 0, waves, devices: runs, startedAt: now, updatedAt: now, ...(excluded.length ? { excluded: excluded.map((e) => ({ ...e })) } : {}) });
    const actions: RolloutAction[] = waves.length ? [rollout.waveAction(0, 'started')] : [{ type: 'status', status: 'done', reason: 'every device runs the target already' }];
    return { rollout, actions: [...actions, ...rollout.advance(now)] };
  }

  /** A rollout read back after a restart: devices caught mid-update are judged by what they report next. */
  static resume(state: RolloutState): Rollout {
    if (state?.version !== 1 || !Array.isArray(state.waves) || typeof state.devices !== 'object') throw new Error('not a rollout state this version can resume');
    return new Rollout(structuredClone(state));
  }

  get state(): RolloutState {
    return structuredClone(this.s);
  }

  /** The state as it is, not copied: for reading on every change (badge, rows, saving), never for changing. */
  get view(): DeepReadonly<RolloutState> {
    return this.s;
  }

  get status(): RolloutStatus {
    return this.s.status;
  }

  /** A status report of a device. */
  report(id: string, image: string, error: string, now: number): RolloutAction[] {
    const d = this.s.devices[id];
    if (!d) return [];
    const newError = error !== '' && error !== d.error;
    // Once the device asked the update server since its command, its error is this try's, even
    // when the text is the one it reported before (a retried device failing the same way again).
    const errorOfThisTry = newError || (error !== '' && d.asked === true);
    const out: RolloutAction[] = [];
    d.online = true;
    d.image = image;
    d.error = error;
    const target = this.targetOf(d);
    if (d.state === 'updating') {
      if (errorOfThisTry) out.push(...this.fail(id, `refused the image: ${error}`, now));
      else if (image === target) out.push(...this.enter(id, 'soaking', now));
      else if (d.rebooted) out.push(...this.fail(id, `came back on ${image}, not ${target}`, now));
    } else if (d.state === 'soaking') {
      if (image !== target) out.push(...this.fail(id, `went back to ${image} while soaking`, now));
      else if (newError) out.push(...this.fail(id, `reported an error while soaking: ${error}`, now));
    }
    return [...out, ...this.advance(now)];
  }

  online(id: string, now: number): RolloutAction[] {
    const d = this.s.devices[id];
    if (!d) return [];
    d.online = true;
    // Offline when its wave ran: it takes its turn now, in the running wave.
    if (d.state === 'skipped') {
      d.wave = this.s.wave;
      return [...this.enter(id, 'queued', now), ...this.advance(now)];
    }
    return this.advance(now);
  }

  offline(id: string, now: number): RolloutAction[] {
    const d = this.s.devices[id];
    if (!d) return [];
    d.online = false;
    if (d.state === 'updating') d.rebooted = true;
    if (d.state === 'soaking') return [...this.fail(id, 'went offline while soaking', now), ...this.advance(now)];
    return this.advance(now);
  }

  /**
   * The update server answered an updating device's check with nothing to install (304: it is
   * not offered the target, e.g. pinned, or another product): it cannot get there, so it failed.
   */
  nothingOffered(id: string, reason: string, now: number): RolloutAction[] {
    const d = this.s.devices[id];
    if (!d || d.state !== 'updating') return [];
    return [...this.fail(id, `the update server offers it nothing to install (${reason.slice(0, 80)})`, now), ...this.advance(now)];
  }

  /**
   * The update server heard an updating device ask for its next image (an authenticated check):
   * what it reports from now on is the outcome of this try. True when that is news (to be saved).
   */
  asked(id: string): boolean {
    const d = this.s.devices[id];
    if (d?.state !== 'updating' || d.asked) return false;
    d.asked = true;
    return true;
  }

  /** Bytes of the device's download, from the update server's progress events. */
  progress(id: string, percent: number): RolloutAction[] {
    const d = this.s.devices[id];
    if (!d || d.state !== 'updating' || !(percent > (d.percent ?? -1))) return [];
    d.percent = Math.min(100, Math.round(percent));
    return [{ type: 'device', id, state: d.state, percent: d.percent }];
  }

  /** When the next timeout or end of a soak falls due (ms since the epoch), or undefined when none can. */
  nextDueAt(): number | undefined {
    let due: number | undefined;
    for (const d of Object.values(this.s.devices)) {
      const at = d.state === 'updating' ? d.since + this.s.spec.updateTimeoutMs : d.state === 'soaking' ? d.since + this.s.spec.soakMs : undefined;
      if (at !== undefined && (due === undefined || at < due)) due = at;
    }
    return due;
  }

  /** The clock: timeouts, soaks that ended, the gate of the running wave. */
  tick(now: number): RolloutAction[] {
    return this.advance(now);
  }

  pause(now: number): RolloutAction[] {
    if (this.s.status !== 'running') throw new Error(`the rollout is ${this.s.status}: only a running one can pause`);
    return this.setStatus('paused', now, 'paused by msg');
  }

  resume(now: number): RolloutAction[] {
    if (this.s.status !== 'paused' && this.s.status !== 'halted') throw new Error(`the rollout is ${this.s.status}: only a paused or halted one can resume`);
    return [...this.setStatus('running', now), ...this.advance(now)];
  }

  abort(now: number): RolloutAction[] {
    if (this.s.status === 'done' || this.s.status === 'aborted') throw new Error(`the rollout is ${this.s.status} already`);
    return this.setStatus('aborted', now, 'aborted by msg');
  }

  /** Failed devices get another turn in the running wave (a halted rollout runs again). */
  retryFailed(now: number): RolloutAction[] {
    if (this.s.status === 'aborted') throw new Error('the rollout was aborted: start a new one');
    const failed = Object.entries(this.s.devices).filter(([, d]) => d.state === 'failed');
    if (failed.length === 0) return [];
    const last = this.s.waves.length - 1;
    const wave = Math.min(this.s.wave, last);
    const out: RolloutAction[] = [];
    for (const [id, d] of failed) {
      d.wave = wave;
      d.rebooted = false;
      d.asked = false;
      d.reason = undefined;
      d.percent = undefined;
      out.push(...this.enter(id, 'queued', now));
    }
    this.s.wave = wave;
    if (this.s.status !== 'running') out.push(...this.setStatus('running', now));
    return [...out, ...this.advance(now)];
  }

  /** Counts by state, for the badge and the summaries. */
  counts(): Record<DeviceRunState, number> {
    const c: Record<DeviceRunState, number> = { queued: 0, skipped: 0, updating: 0, soaking: 0, passed: 0, failed: 0 };
    for (const d of Object.values(this.s.devices)) c[d.state]++;
    return c;
  }

  /** The image a device of this rollout should end up on. */
  targetOf(d: Pick<DeviceRun, 'target'>): string {
    return d.target ?? this.s.spec.target;
  }

  // ---- the rules -------------------------------------------------------------------------

  private advance(now: number): RolloutAction[] {
    const out: RolloutAction[] = [];
    const { spec } = this.s;
    // Judging never stops (a halted or paused rollout still finishes what is in flight).
    for (const [id, d] of Object.entries(this.s.devices)) {
      if (d.state === 'updating' && now - d.since >= spec.updateTimeoutMs) {
        out.push(...this.fail(id, d.rebooted && !d.online ? 'did not come back after the reboot' : `not on ${this.targetOf(d)} within ${spec.updateTimeoutMs / 1000} s`, now));
      } else if (d.state === 'soaking' && now - d.since >= spec.soakMs && d.online) {
        out.push(...this.enter(id, 'passed', now));
      }
    }
    if (this.s.status !== 'running') return out;
    for (;;) {
      // The running wave: its planned devices, and those that came back to take their turn in it.
      const runs = this.inWave(this.s.wave);
      const failed = runs.filter(([, d]) => d.state === 'failed').length;
      if (reachesHalt(spec.haltAt, failed, runs.length)) {
        out.push(...this.setStatus('halted', now, `${failed} of ${runs.length} devices of wave ${this.s.wave + 1} failed (threshold ${'count' in spec.haltAt ? spec.haltAt.count : `${spec.haltAt.percent} %`})`));
        return out;
      }
      // Start whom the cap allows: online queued devices of the running wave; the offline ones are skipped.
      let busy = Object.values(this.s.devices).filter((d) => d.state === 'updating').length;
      for (const [id, d] of runs) {
        if (d.state !== 'queued') continue;
        if (!d.online) {
          out.push(...this.enter(id, 'skipped', now));
          continue;
        }
        if (busy >= spec.cap) break;
        d.commands++;
        d.rebooted = false;
        d.asked = false;
        out.push(...this.enter(id, 'updating', now), { type: 'command', id });
        busy++;
      }
      const open = runs.some(([, d]) => d.state === 'queued' || d.state === 'updating' || d.state === 'soaking');
      if (open) return out;
      // The gate: every device of the wave passed, failed (below the threshold) or was skipped.
      out.push(this.waveAction(this.s.wave, 'passed'));
      if (this.s.wave + 1 >= this.s.waves.length) {
        const left = Object.values(this.s.devices).some((d) => d.state === 'queued' || d.state === 'updating' || d.state === 'soaking');
        if (!left) out.push(...this.setStatus('done', now, this.summaryText()));
        return out;
      }
      this.s.wave++;
      out.push(this.waveAction(this.s.wave, 'started'));
    }
  }

  private fail(id: string, reason: string, now: number): RolloutAction[] {
    const d = this.s.devices[id]!;
    d.reason = reason;
    return this.enter(id, 'failed', now, reason);
  }

  private enter(id: string, state: DeviceRunState, now: number, reason?: string): RolloutAction[] {
    const d = this.s.devices[id]!;
    d.state = state;
    d.since = now;
    this.s.updatedAt = now;
    return [{ type: 'device', id, state, ...(reason ? { reason } : {}) }];
  }

  private setStatus(status: RolloutStatus, now: number, reason?: string): RolloutAction[] {
    this.s.status = status;
    this.s.reason = reason;
    this.s.updatedAt = now;
    return [{ type: 'status', status, ...(reason ? { reason } : {}) }];
  }

  /** The devices whose turn is in `wave`, in the planned order (late-comers last). */
  private inWave(wave: number): (readonly [string, DeviceRun])[] {
    return Object.entries(this.s.devices).filter(([, d]) => d.wave === wave);
  }

  private waveAction(wave: number, state: 'started' | 'passed'): RolloutAction {
    const runs = this.inWave(wave).map(([, d]) => d);
    const n = (s: DeviceRunState): number => runs.filter((d) => d.state === s).length;
    return { type: 'wave', wave: wave + 1, state, passed: n('passed'), failed: n('failed'), skipped: n('skipped') };
  }

  private summaryText(): string {
    const c = this.counts();
    return `${c.passed} updated, ${c.failed} failed, ${c.skipped} offline (skipped)`;
  }
}
