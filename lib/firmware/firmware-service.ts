import { createPublicKey } from 'node:crypto';
import { promises as fs } from 'node:fs';
import * as path from 'node:path';
import { FirmwareCatalogue } from './catalogue';
import { SigningKeyring } from './keyring';
import { looksSignedEsp8266, verifyImage } from './signing';
import { checkMagic, readAppDescriptor } from './app-descriptor';
import { ImageSource, ImageAnswer, noImage, offer } from './image-source';
import { resolveBareVersion } from './bare-version';
import { assertProduct } from './version';
import type { CatalogueEntry, ImageKind, Platform, SignatureScheme } from './types';
import { writeFileAtomic, readFileIfExists } from '../fs/atomic-file';
import { normalizeDeviceId } from '../device-id';
import { shownInput } from '../input-text';

export interface PublishInput {
  /** The build output: a Buffer, or a file path (absolute, or inside `baseDir`). */
  data?: Buffer;
  file?: string;
  platform: Platform;
  kind?: ImageKind;
  /** `<PRODUCT>-<VERSION>`, or product and version; ESP32 apps may leave both to their descriptor. */
  name?: string;
  product?: string;
  version?: string;
  channel?: string;
  /** ESP32 only: `esp32-ecdsa-v1` (default) or `esp32-sbv2-rsa`. */
  scheme?: SignatureScheme;
  /** Key to sign with (default: the scheme's current key). A bridge image is signed with the OLD key. */
  signWith?: string;
  /** Keys the image carries for the next update (default: the key it is signed with). */
  trusts?: string[];
}

export interface OutdatedDevice {
  device: string;
  /** What it runs now. */
  image: string;
  product: string;
  /** What it would install next (a bridge image when a key rotation lies on the way). */
  next: string;
}

export interface PublishResult {
  entry: CatalogueEntry;
  /** `signed` here, or `verified` when the build arrived already signed by one of our keys. */
  signature: 'signed' | 'verified';
}

/**
 * The update server's domain: a keyring and a catalogue in one folder. Publishing checks the
 * image (magic byte, ESP32 descriptor), signs it with the keyring, or verifies a signature it
 * already carries and refuses a bad one, then stores it; nothing is stored when any step fails.
 */
export class FirmwareService {
  private constructor(
    readonly dir: string,
    readonly keyring: SigningKeyring,
    readonly catalogue: FirmwareCatalogue,
    private deviceOverrides: Record<string, DeviceConfig>,
    private deviceGroups: Record<string, string[]>,
    private groupBareProducts: Record<string, string>,
  ) {}

  static async open(dir: string, options: { maxImageSize?: number } = {}): Promise<FirmwareService> {
    const keyring = await SigningKeyring.open(path.join(dir, 'keys'));
    const catalogue = await FirmwareCatalogue.open(path.join(dir, 'catalogue'), options);
    const configs = await readFileIfExists(path.join(dir, DEVICE_CONFIG_FILE));
    const groups = await readFileIfExists(path.join(dir, DEVICE_GROUPS_FILE));
    const bare = await readFileIfExists(path.join(dir, BARE_PRODUCTS_FILE));
    return new FirmwareService(
      dir,
      keyring,
      catalogue,
      configs ? (JSON.parse(configs) as Record<string, DeviceConfig>) : {},
      groups ? (JSON.parse(groups) as Record<string, string[]>) : {},
      bare ? (JSON.parse(bare) as Record<string, string>) : {},
    );
  }

  /** The product each group's bare versions are of (lib/firmware/bare-version.ts). */
  get bareProducts(): Record<string, string> {
    return { ...this.groupBareProducts };
  }

  /** Sets (or with null/'' clears) the product of a group's bare versions. */
  async setBareProduct(groupInput: unknown, productInput: unknown): Promise<string | undefined> {
    if (typeof groupInput !== 'string' || !GROUP_NAME.test(groupInput)) throw new Error('bare-product needs {group, product}: group a name of lower-case letters, digits, _ or -');
    const next = { ...this.groupBareProducts };
    if (productInput === null || productInput === undefined || productInput === '') delete next[groupInput];
    else next[groupInput] = assertProduct(productInput);
    await writeFileAtomic(path.join(this.dir, BARE_PRODUCTS_FILE), JSON.stringify(next, null, 1));
    this.groupBareProducts = next;
    return next[groupInput];
  }

  /** The groups a device belongs to, most important first (for `group:<name>` assignments). */
  groupsOf(deviceId: string | undefined): string[] {
    return deviceId ? [...(this.deviceGroups[deviceId] ?? [])] : [];
  }

  /** Puts a device in these groups (an empty list: in none). */
  async setGroups(deviceIdInput: unknown, groupsInput: unknown): Promise<string[]> {
    const id = normalizeDeviceId(deviceIdInput);
    const list = typeof groupsInput === 'string' ? groupsInput.split(/[\s,]+/).filter(Boolean) : groupsInput;
    if (!Array.isArray(list) || !list.every((g) => typeof g === 'string' && GROUP_NAME.test(g))) {
      throw new Error('groups must be a list of names of lower-case letters, digits, _ or - (e.g. ["garage", "beta"])');
    }
    const next = { ...this.deviceGroups };
    if (list.length) next[id] = [...new Set(list as string[])];
    else delete next[id];
    await writeFileAtomic(path.join(this.dir, DEVICE_GROUPS_FILE), JSON.stringify(next, null, 1));
    this.deviceGroups = next;
    return next[id] ?? [];
  }

  /** config.json for a device: the defaults with its own overrides on top. */
  deviceConfig(defaults: DeviceConfig, deviceId: string | undefined): DeviceConfig {
    return { ...defaults, ...(deviceId ? this.deviceOverrides[deviceId] : undefined) };
  }

  get overrides(): Record<string, DeviceConfig> {
    return structuredClone(this.deviceOverrides);
  }

  /** Sets (or with `null` clears) a device's config.json overrides; only the known keys, typed. */
  async setDeviceConfig(deviceIdInput: unknown, overrides: unknown): Promise<DeviceConfig | undefined> {
    const id = normalizeDeviceId(deviceIdInput);
    const next = { ...this.deviceOverrides };
    if (overrides === null || overrides === undefined) delete next[id];
    else next[id] = checkDeviceConfig(overrides);
    await writeFileAtomic(path.join(this.dir, DEVICE_CONFIG_FILE), JSON.stringify(next, null, 1));
    this.deviceOverrides = next;
    return next[id];
  }

  async publish(input: PublishInput, baseDir?: string): Promise<PublishResult> {
    const platform = input.platform;
    if (platform !== 'esp8266' && platform !== 'esp32') throw new Error(`platform must be esp8266 or esp32, got ${shownInput(platform)}`);
    const kind: ImageKind = input.kind ?? 'app';
    const data = input.data ?? (await readImageFile(input.file, baseDir));
    const magic = checkMagic(data, platform, kind);
    if (!magic.ok) throw new Error(magic.reason);

    let { name, product, version } = input;
    if (platform === 'esp32' && kind === 'app' && !name && !(product && version)) {
      // ESP32 builds say what they are: esp_app_desc_t at offset 32.
      const desc = readAppDescriptor(data);
      if (!desc) throw new Error('this ESP32 image has no app descriptor: give product and version');
      product ??= desc.projectName.replace(/[^A-Za-z0-9_.]/g, '_');
      version ??= desc.version;
    }

    // Everything the image alone can fail on, before a first publish of a scheme makes its key.
    this.catalogue.checkImage({ data, name, product, version, platform, kind, channel: input.channel });
    const scheme: SignatureScheme = platform === 'esp8266' ? 'esp8266-rsa' : (input.scheme ?? 'esp32-ecdsa-v1');
    if (platform === 'esp32' && scheme === 'esp8266-rsa') throw new Error('esp8266-rsa signatures are for ESP8266 images');
    const key = input.signWith ? this.keyring.get(input.signWith) : await this.keyring.current(scheme);
    if (!key) throw new Error(`no signing key ${shownInput(input.signWith)} in the keyring`);
    if (key.scheme !== scheme) throw new Error(`key ${key.id} signs ${key.scheme} images, not ${scheme}`);
    const trusts = input.trusts?.length ? input.trusts : [key.id];
    for (const id of trusts) if (!this.keyring.get(id)) throw new Error(`the image trusts key ${shownInput(id)}, which the keyring does not hold`);

    const publicKey = createPublicKey(key.publicKeyPem);
    const already = verifyImage(scheme, data, publicKey);
    let signed: Buffer;
    let signature: PublishResult['signature'];
    if (already.ok) {
      signed = data;
      signature = 'verified';
    } else if (scheme === 'esp8266-rsa' && looksSignedEsp8266(data, (publicKey.asymmetricKeyDetails?.modulusLength ?? 2048) / 8)) {
      // It carries a signature trailer that our key does not verify: tampered, or someone else's key.
      throw new Error(`the image carries a signature that key ${key.id} does not verify (${already.reason}): tampered, or signed with another key`);
    } else {
      signed = await this.keyring.sign(key.id, data);
      signature = 'signed';
    }
    const entry = await this.catalogue.add({ data: signed, name, product, version, platform, kind, signedWith: key.id, trusts, channel: input.channel });
    return { entry, signature };
  }

  /**
   * The devices the update server would offer an image now, by the same rule it serves with
   * (version order, trusted keys, pins, channels, groups), and the image each would get next.
   */
  outdated(devices: { id: string; image: string }[]): OutdatedDevice[] {
    const out: OutdatedDevice[] = [];
    for (const d of devices) {
      const r = this.catalogue.next({ currentImage: d.image, deviceId: d.id, kind: 'app', groups: this.groupsOf(d.id) });
      if ('entry' in r) out.push({ device: d.id, image: d.image, product: r.entry.product, next: r.entry.name });
    }
    return out;
  }

  /** What the update server would offer one device running `image` now: the image's name, or why nothing. */
  offerFor(deviceId: string, image: string): { next: string } | { none: string; code: string } {
    const r = this.catalogue.next({ currentImage: image, deviceId, kind: 'app', groups: this.groupsOf(deviceId) });
    return 'entry' in r ? { next: r.entry.name } : { none: r.none, code: r.code };
  }

  /**
   * The catalogue as the update server asks it: the next image, or why none. A bare version
   * (`x-ESP8266-version: 0.1`) is of the product set for the device's group, else of
   * `bareVersionProduct` (the server's; lib/firmware/bare-version.ts); without either it is a
   * bad request that names the setting.
   */
  imageSource(options: { bareVersionProduct?: string } = {}): ImageSource {
    const serverProduct = options.bareVersionProduct === undefined || options.bareVersionProduct === '' ? undefined : assertProduct(options.bareVersionProduct);
    return {
      next: ({ currentImage: reported, deviceId, kind, freeSpace }): ImageAnswer => {
        const groups = this.groupsOf(deviceId);
        const resolved = resolveBareVersion(reported, groups, this.groupBareProducts, serverProduct);
        if ('error' in resolved) return noImage('bad-request', resolved.error);
        const currentImage = resolved.image;
        const r = this.catalogue.next({ currentImage, deviceId, kind, freeSpace, groups });
        if ('entry' in r) {
          const e = r.entry;
          return offer({ name: e.name, size: e.size, sha256: e.sha256, md5: e.md5, path: this.catalogue.pathOf(e) });
        }
        return noImage(r.code, r.none);
      },
    };
  }
}

/** The config.json keys of the secure ESP8266 framework (docs/wire-contract.md) and their types. */
export const DEVICE_CONFIG_KEYS = {
  downloadserver: 'string',
  downloadport: 'number',
  downloadpath: 'string',
  mqttserver: 'string',
  mqtttls: 'boolean',
  mqttport: 'number',
  ntpserver: 'string',
  statusinterval: 'number',
  waittimeout: 'number',
  retrytimeout: 'number',
  /** The enrollment listener's port on downloadserver (docs/enrollment.md), when it is on. */
  enrollport: 'number',
} as const;
export type DeviceConfig = Partial<Record<keyof typeof DEVICE_CONFIG_KEYS, string | number | boolean>>;
const DEVICE_CONFIG_FILE = 'device-config.json';
const DEVICE_GROUPS_FILE = 'device-groups.json';
const BARE_PRODUCTS_FILE = 'bare-products.json';
/** A device group's name (`groups` action). */
const GROUP_NAME = /^[a-z0-9][a-z0-9_-]{0,31}$/;

export function checkDeviceConfig(value: unknown): DeviceConfig {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) throw new Error('device config overrides must be an object');
  const out: DeviceConfig = {};
  for (const [key, v] of Object.entries(value)) {
    const type = DEVICE_CONFIG_KEYS[key as keyof typeof DEVICE_CONFIG_KEYS];
    if (!type) throw new Error(`unknown config.json key ${shownInput(key)}: one of ${Object.keys(DEVICE_CONFIG_KEYS).join(', ')}`);
    if (typeof v !== type || (type === 'number' && !(Number.isFinite(v) && (v as number) >= 0))) throw new Error(`config.json key ${key} must be a ${type}${type === 'number' ? ' ≥ 0' : ''}`);
    out[key as keyof DeviceConfig] = v as string | number | boolean;
  }
  return out;
}

async function readImageFile(file: string | undefined, baseDir: string | undefined): Promise<Buffer> {
  if (typeof file !== 'string' || !file) throw new Error('give the image as msg.payload (a Buffer) or as a file path');
  const resolved = path.isAbsolute(file) ? file : path.resolve(baseDir ?? process.cwd(), file);
  const stat = await fs.stat(resolved).catch(() => undefined);
  if (!stat?.isFile()) throw new Error(`no image file at ${resolved.length > 200 ? `${resolved.slice(0, 200)}…` : resolved}`);
  return fs.readFile(resolved);
}
