import { promises as fs } from 'node:fs';
import * as path from 'node:path';
import { generateKeyPairSync } from 'node:crypto';
import { EventEmitter } from 'node:events';
import type { CaStore } from '../pki/ca-store';
import { SimulatedDevice, SimulatedDeviceOptions, DeviceFiles, DeviceState, DEVICE_STATES, RebootReason, REBOOT_REASONS } from './simulated-device';
import type { EnrollSetup } from './device-enrollment';
import { SimulatedEsp32 } from './esp32-device';

/** A simulated board of either platform. */
export type SimDevice = SimulatedDevice | SimulatedEsp32;

/** `count` device ids from a MAC prefix of 2 to 10 hex digits: `a4cf12` → a4cf12000001, a4cf12000002, … */
export function deviceIds(prefix: string, count: number, first = 1): string[] {
  const p = prefix.toLowerCase().replace(/[:-]/g, '');
  if (!/^[0-9a-f]{2,10}$/.test(p)) throw new Error(`MAC prefix ${JSON.stringify(prefix)} must be 2 to 10 hex digits`);
  const room = 16 ** (12 - p.length);
  if (!Number.isInteger(count) || count < 1 || first < 0 || first + count > room) throw new Error(`${count} devices do not fit after prefix ${p}`);
  return Array.from({ length: count }, (_, i) => p + (first + i).toString(16).padStart(12 - p.length, '0'));
}

/** Where a device's files come from. */
export type IdentitySource = (id: string) => Promise<DeviceFiles>;

/** Files as the CA writes them for devices: `ca.crt`, `<id>.crt`, `<id>.key` in one folder. */
export function identityFromFolder(dir: string): IdentitySource {
  return async (id) => {
    const read = (name: string): Promise<string> =>
      fs.readFile(path.join(dir, name), 'utf8').catch(() => {
        throw new Error(`${path.join(dir, name)} is missing: issue the device certificate first (esp-cert-issuer, action device)`);
      });
    const [ca, cert, key] = await Promise.all([read('ca.crt'), read(`${id}.crt`), read(`${id}.key`)]);
    return { ca, cert, key };
  };
}

/** Enrols devices from a CA store this process owns: a certificate is issued for a device that never had one (a revoked one stays revoked). */
export function identityFromStore(store: CaStore): IdentitySource {
  return async (id) => {
    if (!store.everIssued('device', id)) await store.issueDevice(id);
    return identityFromFolder(store.deviceFilesDir)(id);
  };
}

/**
 * Devices that enroll themselves (docs/enrollment.md, The device): flashed with ca.crt (the only
 * CA they trust, read from a file like the board's data folder) and bootstrap.txt, no certificate.
 */
export interface EnrollingIdentity {
  ca: string;
  enroll: EnrollSetup;
}

export function identityByEnrollment(ca: string, enroll: EnrollSetup): EnrollingIdentity {
  return { ca, enroll };
}

export interface FleetOptions extends Omit<SimulatedDeviceOptions, 'id' | 'files' | 'enroll' | 'weakSignal' | 'silentAfterMs' | 'trusts'> {
  ids: string[];
  /** Files made elsewhere (identityFromFolder, identityFromStore), or enrollment (identityByEnrollment). */
  identity: IdentitySource | EnrollingIdentity;
  trusts: string[];
  /** Share of devices (0..1) with a weak signal that drops now and then. */
  weakShare?: number;
  /** Share of devices that go silent after `silentAfterMs`. */
  silentShare?: number;
  silentAfterMs?: number;
  /** Share of devices whose trusted key was tampered with: they refuse every update. */
  tamperedShare?: number;
  /** Share of devices reset by the watchdog while they write an update: they come back on the old image. */
  resetDuringUpdateShare?: number;
  /** Boots started per second (a real fleet does not power up in one millisecond). */
  bootsPerSecond?: number;
  /**
   * `esp8266` (default): lib/sim/simulated-device.ts. `esp32`: lib/sim/esp32-device.ts, on the
   * secure-esp32 topics; it needs `mqtt` host and port (it has no config.json), `nvsDir`, and an
   * identity of files (it does not enroll).
   */
  platform?: 'esp8266' | 'esp32';
  /** ESP32: the folder of the devices' NVS files. */
  nvsDir?: string;
  /** ESP32: secure_version of the running image. */
  secureVersion?: number;
  /** ESP32 only: its status interval in ms (an ESP8266 takes `statusinterval` from config.json). */
  statusIntervalMs?: number;
  /** Told when a device installs an image or reports a failed command. */
  onFlashed?(id: string, image: string): void;
  onError?(id: string, errormessage: string): void;
}

/** Picks every n-th device for a fault, so shares are exact and repeatable. */
function chosen(index: number, share: number | undefined, offset: number): boolean {
  if (!share || share <= 0) return false;
  const every = Math.max(1, Math.round(1 / Math.min(1, share)));
  return (index + offset) % every === 0;
}

/** A device went online (its MQTT session is up) or left it, at `at` (Date.now(), comparable across processes). */
export interface Transition {
  id: string;
  online: boolean;
  at: number;
}

interface FleetEvents {
  /** A device resets, and why (see RebootReason). */
  reboot: [id: string, reason: RebootReason, at: number];
  /** A device went online or left it. */
  transition: [Transition];
}

/**
 * Many simulated devices on one event loop: no thread per device, boots paced so thousands
 * of TLS handshakes do not all land in the same second.
 *
 * For benches (e.g. a broker restart):
 * - `rebootCounts()`: resets per reason since start (or since `resetCounters()`), and the
 *   `reboot` event `(id, reason, at)` as they happen;
 * - `transitions()`: every online/offline change `{id, online, at}` since start (or since
 *   `resetCounters()`), and the `transition` event as they happen;
 * - `backOnline(since, shares)`: ms after `since` by which each share (0..1) of the fleet was
 *   online again (a device that stayed online counts at 0), `null` for a share not reached;
 * - `connectAttempts()`: MQTT connect attempts of all devices (for attempts per second).
 */
export class FleetSimulator extends EventEmitter<FleetEvents> {
  readonly devices: SimDevice[] = [];
  private stopped = false;
  private reboots: Record<RebootReason, number> = zeroCounts();
  private log: Transition[] = [];

  constructor(private readonly options: FleetOptions) {
    super();
  }

  async start(): Promise<void> {
    const o = this.options;
    const wrongKey = o.tamperedShare ? generateKeyPairSync('rsa', { modulusLength: 2048 }).publicKey.export({ type: 'spki', format: 'pem' }).toString() : '';
    const gap = 1000 / Math.max(1, o.bootsPerSecond ?? 50);
    for (const [i, id] of o.ids.entries()) {
      if (this.stopped) return;
      const tampered = chosen(i, o.tamperedShare, 2);
      const device: SimDevice = o.platform === 'esp32' ? await this.esp32(id, tampered) : new SimulatedDevice({
        ...o,
        id,
        ...(typeof o.identity === 'function' ? { files: await o.identity(id) } : { files: { ca: o.identity.ca }, enroll: o.identity.enroll }),
        trusts: tampered ? [wrongKey] : o.trusts,
        weakSignal: chosen(i, o.weakShare, 0),
        resetDuringUpdate: chosen(i, o.resetDuringUpdateShare, 3),
        silentAfterMs: chosen(i, o.silentShare, 1) ? (o.silentAfterMs ?? 60_000) : undefined,
      });
      device.on('flashed', (image) => o.onFlashed?.(id, image));
      device.on('failed', (message) => o.onError?.(id, message));
      device.on('reboot', (reason) => {
        this.reboots[reason]++;
        this.emit('reboot', id, reason, Date.now());
      });
      let online = false;
      device.on('state', (state) => {
        if ((state === 'online') === online) return;
        online = state === 'online';
        const t = { id, online, at: Date.now() };
        this.log.push(t);
        this.emit('transition', t);
      });
      this.devices.push(device);
      device.start();
      if (gap >= 1) await new Promise((r) => setTimeout(r, gap));
    }
  }

  private async esp32(id: string, tampered: boolean): Promise<SimulatedEsp32> {
    const o = this.options;
    if (typeof o.identity !== 'function') throw new Error('simulated ESP32 devices take certificate files, not enrollment');
    if (!o.nvsDir) throw new Error('simulated ESP32 devices need nvsDir (the folder of their NVS files)');
    if (!o.mqtt?.host || !o.mqtt.port) throw new Error('simulated ESP32 devices need the broker host and port (mqtt)');
    // A tampered device trusts a key nobody signs with: an EC P-256 key, the signed-app scheme's.
    const trusts = tampered ? [generateKeyPairSync('ec', { namedCurve: 'P-256' }).publicKey.export({ type: 'spki', format: 'pem' }).toString()] : o.trusts;
    return new SimulatedEsp32({
      id,
      files: await o.identity(id),
      bootstrap: o.bootstrap,
      mqtt: { host: o.mqtt.host, port: o.mqtt.port },
      image: o.image,
      trusts,
      nvsDir: o.nvsDir,
      secureVersion: o.secureVersion,
      statusIntervalMs: o.statusIntervalMs,
      build: o.build,
      timing: o.timing,
      jitterSeed: o.jitterSeed,
      rebootDelayMs: o.rebootDelayMs,
      log: o.log,
    });
  }

  counts(): Record<DeviceState, number> & { total: number } {
    const c = Object.fromEntries(DEVICE_STATES.map((s) => [s, 0])) as Record<DeviceState, number>;
    for (const d of this.devices) c[d.state]++;
    return { ...c, total: this.devices.length };
  }

  rebootCounts(): Record<RebootReason, number> {
    return { ...this.reboots };
  }

  transitions(): readonly Transition[] {
    return this.log;
  }

  /** Starts the reboot counts and the transition log afresh (e.g. just before an outage). */
  resetCounters(): void {
    this.reboots = zeroCounts();
    this.log = [];
  }

  connectAttempts(): number {
    return this.devices.reduce((n, d) => n + d.connectAttempts, 0);
  }

  /**
   * For each share (0..1), the ms after `since` by which that share of the devices was online
   * again: a device counts from its first `online` transition at or after `since`, or at 0 if it
   * was online at `since` and never left. `null` when the share was not reached.
   */
  backOnline(since: number, shares: readonly number[] = [0.99, 1]): Record<string, number | null> {
    const firstBack = new Map<string, number>();
    const left = new Set<string>();
    for (const t of this.log) {
      if (t.at < since) continue;
      if (!t.online) left.add(t.id);
      else if (!firstBack.has(t.id)) firstBack.set(t.id, t.at - since);
    }
    const times: number[] = [];
    for (const d of this.devices) {
      const back = firstBack.get(d.id);
      if (back !== undefined) times.push(back);
      else if (!left.has(d.id) && d.online) times.push(0);
    }
    times.sort((a, b) => a - b);
    const total = this.devices.length;
    const out: Record<string, number | null> = {};
    for (const share of shares) {
      const need = Math.ceil(share * total);
      out[String(share)] = need === 0 ? 0 : need <= times.length ? times[need - 1] : null;
    }
    return out;
  }

  /** How many devices run each image. */
  images(): Record<string, number> {
    const out: Record<string, number> = {};
    for (const d of this.devices) out[d.image] = (out[d.image] ?? 0) + 1;
    return out;
  }

  async stop(): Promise<void> {
    this.stopped = true;
    await Promise.all(this.devices.map((d) => d.stop()));
  }
}

function zeroCounts(): Record<RebootReason, number> {
  return Object.fromEntries(REBOOT_REASONS.map((r) => [r, 0])) as Record<RebootReason, number>;
}
