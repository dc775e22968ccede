import { EventEmitter } from 'node:events';
import type { MqttClient } from 'mqtt';
import type { StatusReport } from '../fleet/telemetry';
import { Jitter } from '../device/jitter';
import type { ReconnectPolicy } from '../device/reconnect-policy';
import { bootToNetworkMs, DeviceTiming, resolveTiming, TimingOption } from './device-timing';
import { DeviceTimers } from './device-timers';
import { statusReport } from './device-status';

/** `enrolling`: making its key, asking for a certificate or backing off after a refusal; `pending`: waiting for approval (202). */
export type DeviceState = 'booting' | 'enrolling' | 'pending' | 'online' | 'offline' | 'rebooting' | 'silent' | 'stopped';
export const DEVICE_STATES: readonly DeviceState[] = ['booting', 'enrolling', 'pending', 'online', 'offline', 'rebooting', 'silent', 'stopped'];

/**
 * Why a device reset: `waittimeout` — the reconnect rule gave up (lib/device/reconnect-policy.ts);
 * `command` — a `reboot` command; `watchdog` — a step made no progress within its budget
 * (lib/device/progress-watchdog.ts); `update` — it installed an image.
 */
export type RebootReason = 'waittimeout' | 'command' | 'watchdog' | 'update';
export const REBOOT_REASONS: readonly RebootReason[] = ['waittimeout', 'command', 'watchdog', 'update'];

/** The events both boards emit. */
export interface BoardEvents {
  state: [DeviceState];
  /** The device resets now, and why. */
  reboot: [RebootReason];
  /** An MQTT connect attempt starts (for connects per second). */
  attempt: [];
}

/** What both boards' options have in common. */
export interface BoardSetup {
  id: string;
  image: string;
  build?: string;
  timing?: TimingOption;
  /** Mixed into the jitter seed (the firmware mixes a hardware random word in); default 0, so runs repeat. */
  jitterSeed?: number;
  /** Time from a reset (or the power-on) to the network; by default from `timing`. */
  rebootDelayMs?: number;
  log?(line: string): void;
}

/**
 * What the two simulated boards share (the ESP8266 of simulated-device.ts, the ESP32 of
 * esp32-device.ts): power on and off, the timers and abort of one boot, the firmware's 32-bit
 * millis(), the reconnect rule's next attempt and what a lost MQTT link means to it
 * (lib/device/reconnect-policy.ts), and the status report. Each board brings its boot, its
 * attempt and its reset.
 */
export abstract class SimulatedBoard<E extends BoardEvents & Record<keyof E, unknown[]>> extends EventEmitter<E> {
  readonly id: string;
  image: string;
  build: string;
  state: DeviceState = 'stopped';
  errormessage = '';
  /** MQTT connect attempts since start. */
  connectAttempts = 0;
  readonly timing: DeviceTiming;
  protected client: MqttClient | undefined;
  protected policy: ReconnectPolicy | undefined;
  /** Ends whatever runs for this boot (a download, a handshake) when the device resets. */
  protected bootAbort = new AbortController();
  protected readonly timers = new DeviceTimers();
  protected attemptTimer: NodeJS.Timeout | undefined;
  /** A blocking step (a download) holds the firmware's loop. */
  protected busy = false;
  protected bootedAt = Date.now();
  protected connectedAt = 0;
  protected maxLoopMs = 0;
  /** One generator for the device's life: successive boots draw on, as the firmware's does. */
  protected readonly jitter: Jitter;

  protected constructor(private readonly setup: BoardSetup) {
    super();
    this.id = setup.id;
    this.image = setup.image;
    this.build = setup.build ?? 'Nov 21 2026 10:00:00';
    this.timing = resolveTiming(setup.timing);
    this.jitter = Jitter.forDevice(setup.id, setup.jitterSeed ?? 0);
  }

  get online(): boolean {
    return this.state === 'online';
  }

  /** Power on: the boot, Wi-Fi join and NTP time first (`rebootDelayMs`, else from `timing`). */
  start(): void {
    if (this.state !== 'stopped') return;
    this.poweredOn();
    this.setState('booting');
    this.later(this.bootDelayMs(), () => void this.boot());
  }

  /** Ends everything: timers, connection (cleanly, so no LWT), no more reboots. */
  async stop(): Promise<void> {
    this.setState('stopped');
    this.clearTimers();
    this.bootAbort.abort();
    const client = this.client;
    this.client = undefined;
    await client?.endAsync(true).catch(() => undefined);
    await this.poweredOff();
  }

  protected abstract boot(): Promise<void>;
  protected abstract attempt(policy: ReconnectPolicy): void;
  /** The link dies without a DISCONNECT (power cut, reset), so the broker publishes the LWT. */
  protected abstract dropLink(): void;

  /**
   * A reset: whatever ran for this boot ends, the link dies without a goodbye, then boot, Wi-Fi
   * and NTP take their time before the device boots again.
   */
  protected reboot(reason: RebootReason): void {
    if (this.state === 'stopped' || this.state === 'silent') return;
    this.setup.log?.(`${this.id} reboot (${reason})`);
    this.bootAbort.abort();
    this.clearTimers();
    this.policy = undefined;
    this.busy = false;
    this.setState('rebooting');
    this.dropLink();
    this.emitBoard('reboot', reason);
    this.resetting();
    this.later(this.bootDelayMs(), () => void this.boot());
  }

  /** During a reset, after the timers were cleared: what the board schedules beside the next boot. */
  protected resetting(): void {}

  /** A boot's first step, as after a reset: counters start over, and the new boot's abort is returned. */
  protected beginBoot(): AbortController {
    this.setState('booting');
    this.bootedAt = Date.now();
    this.connectedAt = 0;
    this.maxLoopMs = 0;
    this.errormessage = '';
    this.busy = false;
    return (this.bootAbort = new AbortController());
  }

  /** At start(), before the boot: a board's own power-on bookkeeping. */
  protected poweredOn(): void {}

  /** After stop(): what the board still has to settle (a pending flash write). */
  protected async poweredOff(): Promise<void> {}

  /** After a lost link was counted by the reconnect rule, before the board goes offline or retries. */
  protected linkLost(): void {}

  /** The status JSON (lib/sim/device-status.ts), with the board's heap and loop times. */
  protected report(board: { freeHeap: number; loopJitterMs: number; minLoopMs: number; weakSignal?: boolean }): StatusReport {
    this.maxLoopMs = Math.max(this.maxLoopMs, board.minLoopMs + Math.floor(Math.random() * board.loopJitterMs));
    return statusReport({
      id: this.id,
      image: this.image,
      build: this.build,
      bootedAt: this.bootedAt,
      connectedAt: this.connectedAt,
      maxLoopMs: this.maxLoopMs,
      localAddress: (this.client?.stream as { localAddress?: string } | undefined)?.localAddress,
      weakSignal: board.weakSignal,
      freeHeap: board.freeHeap,
      errormessage: this.errormessage,
    });
  }

  /** The device's millis(): since this boot, on a 32-bit clock like the firmware's. */
  protected millis(): number {
    return (Date.now() - this.bootedAt) >>> 0;
  }

  protected bootDelayMs(): number {
    return this.setup.rebootDelayMs ?? bootToNetworkMs(this.timing);
  }

  /** The next MQTT attempt when the reconnect rule says so. */
  protected scheduleAttempt(): void {
    const policy = this.policy;
    if (!policy || policy.isConnected) return;
    clearTimeout(this.attemptTimer);
    this.attemptTimer = setTimeout(() => this.attempt(policy), policy.currentDelayMs);
  }

  /**
   * What ends `client` (a close, or an error before it connected) counts once for the reconnect
   * rule: offline when it was up, a reset when the rule gives up, else the next attempt.
   * `reached`: the broker accepted TCP, so a failure is a busy broker, not a lost network.
   */
  protected followLink(client: MqttClient, policy: ReconnectPolicy, reached: () => boolean): void {
    let lost = false;
    const onLost = (): void => {
      if (lost || this.client !== client) return;
      lost = true;
      this.client = undefined;
      client.end(true);
      if (policy !== this.policy || !['online', 'booting', 'offline'].includes(this.state)) return;
      const wasUp = policy.isConnected;
      policy.failed(this.millis(), reached());
      this.linkLost();
      if (wasUp) this.setState('offline');
      else if (policy.rebootDue()) return this.reboot('waittimeout');
      this.scheduleAttempt();
    };
    client.on('close', onLost);
    client.on('error', (err) => {
      this.setup.log?.(`${this.id} mqtt: ${err.message}`);
      if (!client.connected) onLost();
    });
  }

  protected setState(state: DeviceState): void {
    if (this.state === state) return;
    this.state = state;
    this.emitBoard('state', state);
  }

  /** The board's own events, emitted from here where the subclass's event map is not known. */
  protected emitBoard<K extends keyof BoardEvents>(event: K, ...args: BoardEvents[K]): void {
    (this as unknown as EventEmitter).emit(event, ...args);
  }

  protected clearTimers(): void {
    this.timers.clear();
    clearTimeout(this.attemptTimer);
    this.attemptTimer = undefined;
  }

  protected later(ms: number, fn: () => void): void {
    this.timers.later(ms, fn);
  }

  /** Waits `ms` (the device is working); rejects when the boot is aborted. */
  protected pause(ms: number, signal: AbortSignal): Promise<void> {
    return this.timers.pause(ms, signal);
  }
}
