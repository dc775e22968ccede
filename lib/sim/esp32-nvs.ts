import { promises as fs } from 'node:fs';
import * as path from 'node:path';
import { writeFileAtomic } from '../fs/atomic-file';

/**
 * What a simulated ESP32 keeps across resets, one JSON file per device (`<dir>/<id>.json`),
 * each write atomic (a reset mid-write leaves the old file, as NVS commits do):
 * - the update settings the `update/*` topics store (docs/wire-contract.md, MQTT topics);
 * - the OTA resumption record ESP-IDF's advanced_https_ota example keeps in NVS (v5.5: the URL
 *   and the bytes written, in whole KB) so an interrupted download resumes after a reset;
 * - `secureVersion`: the anti-rollback counter, on a real chip in eFuse (ESP-IDF
 *   esp_efuse_read_secure_version), kept here beside the rest because it too survives resets.
 */
export interface Esp32Nvs {
  url?: string;
  useUrl: 0 | 1;
  /** Seconds between update runs. */
  interval: number;
  secureVersion: number;
  ota?: { url: string; writtenKb: number };
}

/** Seed 003's firmware default when none is stored: once a day (an estimate; the range is 300..9999999 s). */
export const DEFAULT_INTERVAL_S = 86_400;

export class NvsFile {
  private chain: Promise<void> = Promise.resolve();

  constructor(private readonly file: string) {}

  static forDevice(dir: string, id: string): NvsFile {
    return new NvsFile(path.join(dir, `${id}.json`));
  }

  /** What is stored, or the factory state (nothing stored, `secureVersion` as the chip left the factory). */
  async read(factorySecureVersion: number): Promise<Esp32Nvs> {
    let text: string | undefined;
    try {
      text = await fs.readFile(this.file, 'utf8');
    } catch {
      text = undefined;
    }
    const fresh: Esp32Nvs = { useUrl: 0, interval: DEFAULT_INTERVAL_S, secureVersion: factorySecureVersion };
    if (!text) return fresh;
    try {
      const v = JSON.parse(text) as Partial<Esp32Nvs>;
      return {
        url: typeof v.url === 'string' ? v.url : undefined,
        useUrl: v.useUrl === 1 ? 1 : 0,
        interval: Number.isInteger(v.interval) ? v.interval! : DEFAULT_INTERVAL_S,
        secureVersion: Number.isInteger(v.secureVersion) ? Math.max(v.secureVersion!, factorySecureVersion) : factorySecureVersion,
        ota: v.ota && typeof v.ota.url === 'string' && Number.isInteger(v.ota.writtenKb) ? { url: v.ota.url, writtenKb: v.ota.writtenKb } : undefined,
      };
    } catch {
      // A corrupt partition reads as erased (nvs_flash_init then erases it).
      return fresh;
    }
  }

  /** Writes `value` after any write still under way, so the last one wins. */
  write(value: Esp32Nvs): Promise<void> {
    const snapshot = JSON.stringify(value, null, 1);
    const next = this.chain.then(async () => {
      await fs.mkdir(path.dirname(this.file), { recursive: true });
      await writeFileAtomic(this.file, snapshot);
    });
    this.chain = next.catch(() => undefined);
    return next;
  }

  /** Every write issued so far has landed. */
  idle(): Promise<void> {
    return this.chain;
  }
}
