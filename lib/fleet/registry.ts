import { StatusReport } from './telemetry';
import type { CommandSet } from './topic-scheme';

export type PresenceReason = 'status' | 'birth' | 'lwt' | 'timeout' | 'log';

export interface DeviceEntry {
  id: string;
  online: boolean;
  /** What last changed the online state: a status or log message, a birth message, the LWT, or silence. */
  presenceReason: PresenceReason;
  presenceChangedAt: string;
  firstSeen: string;
  lastSeen: string;
  lastStatusAt?: string;
  name?: string;
  image?: string;
  build?: string;
  ip?: string;
  rssi?: number;
  freeHeap?: number;
  uptimeMs?: number;
  /** The last non-empty `errormessage` the device reported. */
  lastError?: string;
  lastStatus?: StatusReport;
  /** Learned from the gaps between its reports; silence for 2.5 times this means offline. */
  statusIntervalMs: number;
  /** The command set of the scheme its topics came in on (a mixed fleet has both); unset until heard. */
  platform?: CommandSet;
}

export interface PresenceChange {
  id: string;
  online: boolean;
  reason: PresenceReason;
  lastSeen: string;
  at: string;
}

export interface StatusUpdate {
  entry: DeviceEntry;
  presence?: PresenceChange;
  /** Set when this report carries an error message the previous one did not. */
  newError?: string;
}

export interface RegistryOptions {
  defaultStatusIntervalMs?: number;
  timeoutFactor?: number;
}

/** Gaps kept per device to learn its status interval; the median ignores a one-off reboot burst. */
const GAPS_KEPT = 5;

/** The fleet as last heard: one entry per device, with presence and its reason. Pure state. */
export class DeviceRegistry {
  private readonly devices = new Map<string, DeviceEntry>();
  private readonly gaps = new Map<string, number[]>();
  private changes = 0;
  readonly defaultStatusIntervalMs: number;
  readonly timeoutFactor: number;

  constructor(options: RegistryOptions = {}, entries: DeviceEntry[] = []) {
    this.defaultStatusIntervalMs = options.defaultStatusIntervalMs ?? 60_000;
    this.timeoutFactor = options.timeoutFactor ?? 2.5;
    for (const e of entries) {
      const entry = { ...e };
      // A registry file is only a cache: a platform it cannot name is forgotten, and the next message tells.
      if (entry.platform !== undefined && !isPlatform(entry.platform)) delete entry.platform;
      this.devices.set(e.id, entry);
    }
  }

  /** Grows with every change; persistence compares it to know whether to write. */
  get version(): number {
    return this.changes;
  }

  recordStatus(id: string, status: StatusReport, at = Date.now(), platform?: CommandSet): StatusUpdate {
    const when = new Date(at).toISOString();
    const previous = this.devices.get(id);
    const entry = previous ?? this.newEntry(id, when);
    if (platform) entry.platform = platform;
    if (previous?.lastStatusAt && previous.online) this.learnInterval(entry, at - Date.parse(previous.lastStatusAt));
    const newError = status.errormessage && status.errormessage !== previous?.lastStatus?.errormessage ? status.errormessage : undefined;
    Object.assign(entry, {
      lastSeen: when,
      lastStatusAt: when,
      name: status.espname,
      image: status.espimage,
      build: status.espbuild,
      ip: status.espip,
      rssi: status.rssi,
      freeHeap: status.espfreeheap,
      uptimeMs: status.uptimemillis,
      lastStatus: status,
    });
    if (status.errormessage) entry.lastError = status.errormessage;
    const presence = entry.online ? undefined : this.setPresence(entry, true, 'status', when);
    this.devices.set(id, entry);
    this.changes++;
    return { entry: snapshot(entry), presence, newError };
  }

  /** The will topic: a birth message puts the device online, anything else is its LWT. */
  recordWill(id: string, birth: boolean, at = Date.now(), platform?: CommandSet): PresenceChange | undefined {
    const when = new Date(at).toISOString();
    const existing = this.devices.get(id);
    const entry = existing ?? this.newEntry(id, when);
    if (platform) entry.platform = platform;
    this.devices.set(id, entry);
    this.changes++;
    if (birth) entry.lastSeen = when;
    if (entry.online === birth) {
      // A first-ever message that is an LWT: known now, offline, but nothing changed.
      if (!existing) entry.presenceReason = 'lwt';
      return undefined;
    }
    return this.setPresence(entry, birth, birth ? 'birth' : 'lwt', when);
  }

  /** Any other sign of life (an ESP32 log line). */
  recordActivity(id: string, at = Date.now(), platform?: CommandSet): PresenceChange | undefined {
    const when = new Date(at).toISOString();
    const entry = this.devices.get(id) ?? this.newEntry(id, when);
    if (platform) entry.platform = platform;
    this.devices.set(id, entry);
    entry.lastSeen = when;
    this.changes++;
    return entry.online ? undefined : this.setPresence(entry, true, 'log', when);
  }

  /**
   * Devices silent for longer than timeoutFactor times their interval go offline. Silence counts
   * only from `listeningSince` (when the backend's subscription last began): a device is not
   * silent while Node-RED was restarting or away from the broker, it was simply not heard.
   */
  sweep(now = Date.now(), listeningSince = 0): PresenceChange[] {
    const changes: PresenceChange[] = [];
    const when = new Date(now).toISOString();
    for (const entry of this.devices.values()) {
      const heardFrom = Math.max(Date.parse(entry.lastSeen), listeningSince);
      if (entry.online && now - heardFrom > this.timeoutFactor * entry.statusIntervalMs) {
        changes.push(this.setPresence(entry, false, 'timeout', when));
        this.changes++;
      }
    }
    return changes;
  }

  get(id: string): DeviceEntry | undefined {
    const e = this.devices.get(id);
    return e && snapshot(e);
  }

  has(id: string): boolean {
    return this.devices.has(id);
  }

  list(): DeviceEntry[] {
    return [...this.devices.values()].map(snapshot);
  }

  ids(filter: { onlineOnly?: boolean } = {}): string[] {
    return [...this.devices.values()].filter((e) => !filter.onlineOnly || e.online).map((e) => e.id);
  }

  counts(): { online: number; offline: number } {
    let online = 0;
    for (const e of this.devices.values()) if (e.online) online++;
    return { online, offline: this.devices.size - online };
  }

  private newEntry(id: string, when: string): DeviceEntry {
    return { id, online: false, presenceReason: 'status', presenceChangedAt: when, firstSeen: when, lastSeen: when, statusIntervalMs: this.defaultStatusIntervalMs };
  }

  private setPresence(entry: DeviceEntry, online: boolean, reason: PresenceReason, when: string): PresenceChange {
    entry.online = online;
    entry.presenceReason = reason;
    entry.presenceChangedAt = when;
    return { id: entry.id, online, reason, lastSeen: entry.lastSeen, at: when };
  }

  private learnInterval(entry: DeviceEntry, gapMs: number): void {
    if (!(gapMs > 0)) return;
    const gaps = this.gaps.get(entry.id) ?? [];
    gaps.push(gapMs);
    if (gaps.length > GAPS_KEPT) gaps.shift();
    this.gaps.set(entry.id, gaps);
    const sorted = [...gaps].sort((a, b) => a - b);
    entry.statusIntervalMs = Math.max(sorted[Math.floor(sorted.length / 2)], 1_000);
  }
}

function isPlatform(v: unknown): v is CommandSet {
  return v === 'esp8266' || v === 'esp32';
}

/** A copy a flow may change freely: msgs must never alias the registry's own state. */
function snapshot(entry: DeviceEntry): DeviceEntry {
  return entry.lastStatus ? { ...entry, lastStatus: { ...entry.lastStatus } } : { ...entry };
}
