import { promises as fs } from 'node:fs';
import * as path from 'node:path';
import { generateKeyPairSync } from 'node:crypto';
import type { CaStore } from '../pki/ca-store';
import { SimulatedDevice, SimulatedDeviceOptions, DeviceFiles, DeviceState } from './simulated-device';

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

export interface FleetOptions extends Omit<SimulatedDeviceOptions, 'id' | 'files' | 'weakSignal' | 'silentAfterMs' | 'trusts'> {
  ids: string[];
  identity: IdentitySource;
  trusts: string[];
  /** Share of devices (0..1) with a weak signal that drops now and then. */
  weakShare?: number;
  /** Share of devices that go silent after `silentAfterMs`. */
  silentShare?: number;
  silentAfterMs?: number;
  /** Share of devices whose trusted key was tampered with: they refuse every update. */
  tamperedShare?: number;
  /** Boots started per second (a real fleet does not power up in one millisecond). */
  bootsPerSecond?: number;
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

/**
 * Many simulated devices on one event loop: no thread per device, boots paced so thousands
 * of TLS handshakes do not all land in the same second.
 */
export class FleetSimulator {
  readonly devices: SimulatedDevice[] = [];
  private stopped = false;

  constructor(private readonly options: FleetOptions) {}

  async start(): Promise<void> {
    const o = this.options;
    const wrongKey = o.tamperedShare ? generateKeyPairSync('rsa', { modulusLength: 2048 }).publicKey.export({ type: 'spki', format: 'pem' }).toString() : '';
    const gap = 1000 / Math.max(1, o.bootsPerSecond ?? 50);
    for (const [i, id] of o.ids.entries()) {
      if (this.stopped) return;
      const tampered = chosen(i, o.tamperedShare, 2);
      const device = new SimulatedDevice({
        ...o,
        id,
        files: await o.identity(id),
        trusts: tampered ? [wrongKey] : o.trusts,
        weakSignal: chosen(i, o.weakShare, 0),
        silentAfterMs: chosen(i, o.silentShare, 1) ? (o.silentAfterMs ?? 60_000) : undefined,
      });
      device.on('flashed', (image) => o.onFlashed?.(id, image));
      device.on('failed', (message) => o.onError?.(id, message));
      this.devices.push(device);
      device.start();
      if (gap >= 1) await new Promise((r) => setTimeout(r, gap));
    }
  }

  counts(): Record<DeviceState, number> & { total: number } {
    const c = { booting: 0, online: 0, offline: 0, rebooting: 0, silent: 0, stopped: 0, total: this.devices.length };
    for (const d of this.devices) c[d.state]++;
    return c;
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
