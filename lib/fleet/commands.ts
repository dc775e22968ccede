import { normalizeDeviceId } from '../device-id';
import { CommandSet } from './topic-scheme';
import { DeviceRegistry, PresenceChange, StatusUpdate } from './registry';
import { Semaphore } from '../concurrency/semaphore';
import { wifiPayload } from './wifi-credentials';

/**
 * How an outcome is seen without any agent on the device: `image` — its status reports a
 * different image; `restart` — its uptime starts over or it comes back after going offline;
 * `reconnect` (wifi) — its MQTT connection starts over (`mqttmillis` restarts, or it went
 * offline and reports again) with an empty `errormessage`, and it failed when it reports an
 * errormessage that starts with `<command>:` (docs/wire-contract.md, MQTT topics: wifi).
 */
export type Tracking = 'image' | 'restart' | 'reconnect' | 'none';

interface CommandSpec {
  tracking: Tracking;
  /** Turns the msg's argument into the MQTT payload, or throws why it cannot. */
  payload(arg: unknown): string;
}

const noArgument = (): string => '';

export const COMMANDS: Record<CommandSet, Record<string, CommandSpec>> = {
  esp8266: {
    firmware: { tracking: 'image', payload: noArgument },
    flash: { tracking: 'image', payload: noArgument },
    reboot: { tracking: 'restart', payload: noArgument },
    ca: { tracking: 'none', payload: noArgument },
    cert: { tracking: 'none', payload: noArgument },
    key: { tracking: 'none', payload: noArgument },
    wifi: { tracking: 'reconnect', payload: wifiPayload },
  },
  esp32: {
    'update/url': { tracking: 'none', payload: httpsUrl },
    'update/use_url': { tracking: 'none', payload: zeroOrOne },
    'update/interval': { tracking: 'none', payload: intervalSeconds },
    'update/run': { tracking: 'image', payload: noArgument },
    restart: { tracking: 'restart', payload: noArgument },
  },
};

/**
 * Commands that mean the same on every platform, resolved per device with its command set:
 * `update` runs the update routine, `restart` reboots (docs/wire-contract.md, MQTT topics).
 */
export const NEUTRAL_COMMANDS: Record<string, Record<CommandSet, string>> = {
  update: { esp8266: 'firmware', esp32: 'update/run' },
  restart: { esp8266: 'reboot', esp32: 'restart' },
};

export interface BuiltCommand {
  /** The command as it goes on the wire: the last topic level. */
  command: string;
  payload: string;
  tracking: Tracking;
  /** The command set it was built for; publishing it to a device of another set is refused. */
  commandSet?: CommandSet;
}

/** What one command set calls `command`: itself, or the platform's own name of a neutral command. */
function wireName(set: CommandSet, command: string): string | undefined {
  const neutral = Object.hasOwn(NEUTRAL_COMMANDS, command) ? NEUTRAL_COMMANDS[command][set] : undefined;
  if (neutral) return neutral;
  return Object.hasOwn(COMMANDS[set], command) ? command : undefined;
}

export function buildCommand(set: CommandSet, command: unknown, arg?: unknown): BuiltCommand {
  const name = typeof command === 'string' ? wireName(set, command) : undefined;
  if (name === undefined) {
    throw new Error(`unknown command ${JSON.stringify(command)}: one of ${Object.keys(COMMANDS[set]).join(', ')} (or ${Object.keys(NEUTRAL_COMMANDS).join(', ')})`);
  }
  const spec = COMMANDS[set][name];
  return { command: name, payload: spec.payload(arg), tracking: spec.tracking, commandSet: set };
}

/** A device's share of a command: what to send, or why it is not for that device. */
export type PlannedCommand = BuiltCommand | { command: string; refused: string };

/**
 * One command for a fleet of the command sets `sets` (a mixed fleet has both): built once per
 * set. A command no set knows, or a bad argument, throws (nothing is sent to anyone); a command
 * of one platform only is refused for the devices of the others.
 */
export function planCommand(sets: readonly CommandSet[], command: unknown, arg?: unknown): (set: CommandSet) => PlannedCommand {
  const known = sets.filter((set) => typeof command === 'string' && wireName(set, command) !== undefined);
  if (known.length === 0) {
    const names = [...new Set(sets.flatMap((set) => Object.keys(COMMANDS[set])))];
    throw new Error(`unknown command ${JSON.stringify(command)}: one of ${names.join(', ')} (or ${Object.keys(NEUTRAL_COMMANDS).join(', ')})`);
  }
  const built = new Map<CommandSet, PlannedCommand>(known.map((set) => [set, buildCommand(set, command, arg)]));
  return (set) =>
    built.get(set) ?? {
      command: String(command),
      refused: `${String(command)} is ${known.map((k) => `an ${k}`).join(' or ')} command, and this device is ${set} (its commands: ${Object.keys(COMMANDS[set]).join(', ')}, or ${Object.keys(NEUTRAL_COMMANDS).join(', ')})`,
    };
}

function httpsUrl(arg: unknown): string {
  let url: URL | undefined;
  try {
    url = typeof arg === 'string' ? new URL(arg) : undefined;
  } catch {
    url = undefined;
  }
  if (!url || url.protocol !== 'https:') throw new Error(`update/url needs an https:// URL, got ${JSON.stringify(arg)}`);
  // What the ESP32 firmware refuses (firmware/core parseUpdateUrl, test/vectors/esp32-device.json) is refused here, before publishing.
  const why = url.username || url.password ? 'no user or password: the device authenticates with its certificate'
    : /^\[|^\d+\.\d+\.\d+\.\d+$/.test(url.hostname) ? 'a host name, not an IP address: the device checks the server certificate\'s DNS name'
    : url.hash ? 'no #fragment'
    : url.searchParams.has('curimage') ? 'no curimage parameter: the device adds its own'
    : url.toString().length > MAX_UPDATE_URL ? `at most ${MAX_UPDATE_URL} characters`
    : undefined;
  if (why) throw new Error(`update/url: ${why}, got ${JSON.stringify(String(arg).slice(0, 80))}`);
  return url.toString();
}

/** The longest update/url the ESP32 firmware stores (its NVS string, firmware/core). */
const MAX_UPDATE_URL = 255;

function zeroOrOne(arg: unknown): string {
  const s = String(arg);
  if (s !== '0' && s !== '1') throw new Error(`update/use_url takes 0 or 1, got ${JSON.stringify(arg)}`);
  return s;
}

function intervalSeconds(arg: unknown): string {
  const n = Number(arg);
  if (arg === '' || arg === null || !Number.isInteger(n) || n < 300 || n > 9_999_999) {
    throw new Error(`update/interval takes whole seconds from 300 to 9999999, got ${JSON.stringify(arg)}`);
  }
  return String(n);
}

/** `*` means every known device (optionally only the online ones); otherwise one id/MAC or a list. */
export function resolveTargets(devices: unknown, registry: DeviceRegistry, options: { onlineOnly?: boolean } = {}): string[] {
  if (typeof devices === 'string' && devices.trim() === '*') return registry.ids({ onlineOnly: options.onlineOnly });
  // "a, b; c" from an editor field is a list too.
  const list = Array.isArray(devices) ? devices : typeof devices === 'string' ? devices.split(/[\s,;]+/).filter(Boolean) : [devices];
  if (list.length === 0 || devices === undefined || devices === null || devices === '') {
    throw new Error('msg.device must name a device id/MAC, a list of them, or "*" for all known devices');
  }
  const bad: string[] = [];
  const ids = new Set<string>();
  for (const d of list) {
    try {
      ids.add(normalizeDeviceId(d));
    } catch {
      bad.push(JSON.stringify(d));
    }
  }
  if (bad.length) throw new Error(`invalid device id${bad.length > 1 ? 's' : ''} ${bad.slice(0, 5).join(', ')}: expected MAC addresses such as 84f3eb012345`);
  return [...ids];
}

/** `refused`: never sent, the command is not one of the device's platform (a mixed fleet). */
export type OutcomeKind = 'success' | 'failed' | 'timeout' | 'sent' | 'superseded' | 'refused';

export interface CommandOutcome {
  device: string;
  command: string;
  outcome: OutcomeKind;
  elapsedMs: number;
  image?: string;
  previousImage?: string;
  error?: string;
}

/** What the dispatcher listens to: the fleet's status reports and presence changes. */
export interface FleetObservations {
  on(event: 'status', listener: (id: string, update: StatusUpdate) => void): unknown;
  on(event: 'presence', listener: (change: PresenceChange) => void): unknown;
  off(event: 'status', listener: (id: string, update: StatusUpdate) => void): unknown;
  off(event: 'presence', listener: (change: PresenceChange) => void): unknown;
}

export interface DispatchOptions {
  /** Devices with a tracked command under way at once (many ESP8266s updating together overload Wi-Fi). */
  maxInFlight: number;
  outcomeTimeoutMs: number;
}

interface Pending {
  id: string;
  built: BuiltCommand;
  sentAt: number;
  image?: string;
  uptimeMs?: number;
  mqttMs?: number;
  error?: string;
  wentOffline: boolean;
  timer: NodeJS.Timeout;
  finish(outcome: CommandOutcome): void;
}

/**
 * Sends one command to many devices with at most `maxInFlight` tracked at once, and reports
 * each device's outcome from what the fleet observes afterwards.
 */
export class CommandDispatcher {
  private readonly pending = new Map<string, Pending>();
  private readonly slots: Semaphore;
  /** Slots of dispatches that brought their own cap, so close() can wake their queues too. */
  private readonly ownSlots = new Set<Semaphore>();
  private closed = false;
  private readonly onStatus = (id: string, update: StatusUpdate): void => this.observeStatus(id, update);
  private readonly onPresence = (change: PresenceChange): void => this.observePresence(change);

  constructor(
    private readonly publish: (id: string, command: BuiltCommand) => Promise<void>,
    private readonly registry: DeviceRegistry,
    private readonly fleet: FleetObservations,
    private readonly options: DispatchOptions,
  ) {
    fleet.on('status', this.onStatus);
    fleet.on('presence', this.onPresence);
    this.slots = new Semaphore(atLeastOne(options.maxInFlight));
  }

  get inFlight(): number {
    return this.pending.size;
  }

  /**
   * Resolves when every device has an outcome; `onSent`/`onOutcome` report as it goes. The
   * cap holds across overlapping dispatches: they queue for the same slots, first come first
   * served. A dispatch with its own `maxInFlight` (a rollout panel's cap) has slots of its own.
   */
  async dispatch(
    ids: string[],
    command: BuiltCommand | ((id: string) => PlannedCommand),
    report: { onSent?(id: string): void; onOutcome?(o: CommandOutcome): void } = {},
    options: { maxInFlight?: number } = {},
  ): Promise<CommandOutcome[]> {
    const planOf = typeof command === 'function' ? command : (): PlannedCommand => command;
    const own = options.maxInFlight !== undefined ? new Semaphore(atLeastOne(options.maxInFlight)) : undefined;
    const slots = own ?? this.slots;
    if (own) this.ownSlots.add(own);
    const all = Promise.all(
      ids.map(async (id) => {
        const built = planOf(id);
        if ('refused' in built) {
          const refused: CommandOutcome = { device: id, command: built.command, outcome: 'refused', elapsedMs: 0, image: this.registry.get(id)?.image, error: built.refused };
          report.onOutcome?.(refused);
          return refused;
        }
        const tracked = built.tracking !== 'none';
        // Waiters cancelled by close() go on without a slot and find the dispatcher closed.
        const release = tracked ? await slots.acquire().catch(() => undefined) : undefined;
        let outcome: CommandOutcome;
        try {
          outcome = await this.runOne(id, built, () => report.onSent?.(id));
        } finally {
          release?.();
        }
        report.onOutcome?.(outcome);
        return outcome;
      }),
    );
    if (own) void all.finally(() => this.ownSlots.delete(own));
    return all;
  }

  /** Stops watching: outstanding commands end as `timeout`, queued ones are never sent. */
  close(): void {
    this.closed = true;
    this.fleet.off('status', this.onStatus);
    this.fleet.off('presence', this.onPresence);
    for (const p of [...this.pending.values()]) p.finish(this.outcome(p, 'timeout', { error: 'stopped before an outcome was seen' }));
    for (const slots of [this.slots, ...this.ownSlots]) slots.cancelWaiting('the dispatcher was closed');
  }

  private runOne(id: string, built: BuiltCommand, sent: () => void): Promise<CommandOutcome> {
    return new Promise((resolve) => {
      const before = this.registry.get(id);
      const startedAt = Date.now();
      const finishEarly = (outcome: OutcomeKind, error?: string): void =>
        resolve({ device: id, command: built.command, outcome, elapsedMs: Date.now() - startedAt, image: before?.image, ...(error ? { error } : {}) });
      if (this.closed) return finishEarly('failed', 'not sent: the node was stopped');
      // The newest command to a device is the one whose outcome counts (e.g. `flash` after `firmware`).
      const earlier = this.pending.get(id);
      if (earlier) earlier.finish(this.outcome(earlier, 'superseded', { error: `superseded by ${built.command}` }));
      const pending: Pending = {
        id,
        built,
        sentAt: startedAt,
        image: before?.image,
        uptimeMs: before?.uptimeMs,
        mqttMs: before?.lastStatus?.mqttmillis,
        error: before?.lastStatus?.errormessage,
        wentOffline: false,
        timer: setTimeout(() => pending.finish(this.outcome(pending, 'timeout')), this.options.outcomeTimeoutMs),
        finish: (outcome) => {
          clearTimeout(pending.timer);
          if (this.pending.get(id) === pending) this.pending.delete(id);
          resolve(outcome);
        },
      };
      if (built.tracking !== 'none') this.pending.set(id, pending);
      this.publish(id, built).then(
        () => {
          sent();
          if (built.tracking === 'none') pending.finish(this.outcome(pending, 'sent'));
        },
        (err: Error) => pending.finish(this.outcome(pending, 'failed', { error: `publish failed: ${err.message}` })),
      );
    });
  }

  private observeStatus(id: string, update: StatusUpdate): void {
    const p = this.pending.get(id);
    if (!p) return;
    const status = update.entry.lastStatus!;
    if (p.image === undefined) {
      // Nothing was known when the command left: this first report is the baseline, not a change.
      p.image = status.espimage;
      p.uptimeMs = status.uptimemillis;
      p.mqttMs = status.mqttmillis;
      p.error = status.errormessage;
      return;
    }
    if (p.built.tracking === 'reconnect') return this.observeReconnect(p, status);
    if (status.errormessage && status.errormessage !== p.error) {
      p.finish(this.outcome(p, 'failed', { error: status.errormessage, image: status.espimage }));
    } else if (p.built.tracking === 'image' && status.espimage !== p.image) {
      p.finish(this.outcome(p, 'success', { image: status.espimage }));
    } else if (p.built.tracking === 'restart' && (p.wentOffline || (p.uptimeMs !== undefined && status.uptimemillis < p.uptimeMs))) {
      p.finish(this.outcome(p, 'success', { image: status.espimage }));
    }
  }

  /**
   * After a reconnect the first status decides: empty errormessage → success, the command's own
   * error → failed (even when the same text as before: the connection started over). Without a
   * reconnect only a new error of the command's own counts; anything else waits.
   */
  private observeReconnect(p: Pending, status: { errormessage: string; mqttmillis: number; espimage: string }): void {
    const own = status.errormessage.startsWith(`${p.built.command}:`);
    const reconnected = p.wentOffline || (p.mqttMs !== undefined && status.mqttmillis < p.mqttMs);
    if (own && (reconnected || status.errormessage !== p.error)) p.finish(this.outcome(p, 'failed', { error: status.errormessage, image: status.espimage }));
    else if (reconnected && status.errormessage === '') p.finish(this.outcome(p, 'success', { image: status.espimage }));
    // Keep the newest figure, so a reconnect is a drop below the last one seen.
    p.mqttMs = status.mqttmillis;
  }

  private observePresence(change: PresenceChange): void {
    const p = this.pending.get(change.id);
    if (!p) return;
    if (!change.online) p.wentOffline = true;
    else if (p.wentOffline && p.built.tracking === 'restart') p.finish(this.outcome(p, 'success'));
  }

  private outcome(p: Pending, outcome: OutcomeKind, extra: { error?: string; image?: string } = {}): CommandOutcome {
    return {
      device: p.id,
      command: p.built.command,
      outcome,
      elapsedMs: Date.now() - p.sentAt,
      image: extra.image ?? this.registry.get(p.id)?.image,
      ...(p.image !== undefined ? { previousImage: p.image } : {}),
      ...(extra.error ? { error: extra.error } : {}),
    };
  }
}

/** A cap of whole devices, at least one (a fraction or 0 would send nothing). */
function atLeastOne(n: number): number {
  return Math.max(1, Math.floor(n));
}
