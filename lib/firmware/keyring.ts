/**
 * The firmware signing keys, kept in one folder:
 *   keyring.json   the public side of every key and which one is current per scheme (atomic JSON)
 *   <id>.key       each private key, PKCS#8 PEM, mode 0600 (never returned, logged or listed)
 *
 * A key is made on first use of its scheme and never regenerated: a device only installs images
 * signed with a key it trusts, so losing a key strands the devices that trust it. Rotation adds a
 * new current key and keeps the old ones, which still sign the bridge images (old key signs,
 * image carries the new public key).
 */
import { promises as fs } from 'node:fs';
import * as path from 'node:path';
import { KeyObject, createPrivateKey, createPublicKey, generateKeyPair } from 'node:crypto';
import type { SignatureScheme, SigningKeyInfo } from './types';
import { keyIdOf, esp32RawPublicKey, secureBootV2KeyDigest, signImage } from './signing';
import { writeFileAtomic, readFileIfExists, PRIVATE_FILE_MODE } from '../fs/atomic-file';
import { shownInput } from '../input-text';
import { Mutex } from '../concurrency/mutex';

export class KeyringError extends Error {}

const INDEX_FILE = 'keyring.json';
const INDEX_VERSION = 1;

/** What each scheme's devices can verify. */
const KEY_SPECS: Record<SignatureScheme, { type: 'rsa'; bits: number } | { type: 'ec'; curve: 'P-256' }> = {
  /** BearSSL on the ESP8266 verifies RSA; 2048 bits keeps the check fast and fits signing.py's fixed 256-byte trailer. */
  'esp8266-rsa': { type: 'rsa', bits: 2048 },
  'esp32-ecdsa-v1': { type: 'ec', curve: 'P-256' },
  /** Secure boot v2 accepts RSA-3072 only. */
  'esp32-sbv2-rsa': { type: 'rsa', bits: 3072 },
};

export const SIGNATURE_SCHEMES = Object.keys(KEY_SPECS) as SignatureScheme[];

export function assertScheme(value: unknown): SignatureScheme {
  if (typeof value !== 'string' || !(SIGNATURE_SCHEMES as string[]).includes(value)) {
    throw new KeyringError(`unknown signature scheme ${shownInput(value)}: use ${SIGNATURE_SCHEMES.join(', ')}`);
  }
  return value as SignatureScheme;
}

export interface ExportedPublicKey {
  id: string;
  scheme: SignatureScheme;
  /** SubjectPublicKeyInfo PEM: the `public.key` beside an ESP8266 sketch (signing.py embeds it as is). */
  pem: string;
  /** EC keys: the 64 raw bytes X||Y an ESP32 with the v1 scheme embeds. */
  raw64?: Buffer;
  /** Secure boot v2 keys: SHA-256 of the block's key material, the digest burnt into eFuse. */
  sbv2KeyDigest?: Buffer;
}

interface KeyringIndex {
  version: number;
  current: Partial<Record<SignatureScheme, string>>;
  keys: SigningKeyInfo[];
}

function copyInfo(info: SigningKeyInfo): SigningKeyInfo {
  return { id: info.id, scheme: info.scheme, publicKeyPem: info.publicKeyPem, createdAt: info.createdAt };
}

function generate(scheme: SignatureScheme): Promise<{ privateKey: KeyObject; publicKey: KeyObject }> {
  const spec = KEY_SPECS[scheme];
  return new Promise((resolve, reject) => {
    const done = (err: Error | null, publicKey: KeyObject, privateKey: KeyObject): void => (err ? reject(err) : resolve({ privateKey, publicKey }));
    if (spec.type === 'rsa') generateKeyPair('rsa', { modulusLength: spec.bits, publicExponent: 0x10001 }, done);
    else generateKeyPair('ec', { namedCurve: spec.curve }, done);
  });
}

function keyFits(key: KeyObject, scheme: SignatureScheme): boolean {
  const spec = KEY_SPECS[scheme];
  if (spec.type === 'rsa') return key.asymmetricKeyType === 'rsa' && key.asymmetricKeyDetails?.modulusLength === spec.bits;
  return key.asymmetricKeyType === 'ec' && key.asymmetricKeyDetails?.namedCurve === 'prime256v1';
}

function parseIndex(file: string, text: string): KeyringIndex {
  const bad = (why: string): KeyringError => new KeyringError(`keyring index ${file} is damaged: ${why} (it is left as it is)`);
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (err) {
    throw bad(`not valid JSON (${(err as Error).message})`);
  }
  const obj = raw as Partial<KeyringIndex>;
  if (!obj || typeof obj !== 'object' || obj.version !== INDEX_VERSION || !Array.isArray(obj.keys) || !obj.current || typeof obj.current !== 'object') {
    throw bad(`expected {"version": ${INDEX_VERSION}, "current": {...}, "keys": [...]}`);
  }
  const keys: SigningKeyInfo[] = [];
  for (const k of obj.keys as unknown[]) {
    const info = k as Partial<SigningKeyInfo>;
    if (!info || typeof info.id !== 'string' || typeof info.publicKeyPem !== 'string' || typeof info.createdAt !== 'string') throw bad('a key entry lacks id, publicKeyPem or createdAt');
    let scheme: SignatureScheme;
    try {
      scheme = assertScheme(info.scheme);
    } catch (err) {
      throw bad((err as Error).message);
    }
    let publicKey: KeyObject;
    try {
      publicKey = createPublicKey(info.publicKeyPem);
    } catch (err) {
      throw bad(`the public key of ${info.id} cannot be read (${(err as Error).message})`);
    }
    if (keyIdOf(publicKey) !== info.id) throw bad(`key ${info.id} does not match its public key`);
    if (!keyFits(publicKey, scheme)) throw bad(`key ${info.id} is not a ${scheme} key`);
    if (keys.some((o) => o.id === info.id)) throw bad(`key ${info.id} is listed twice`);
    keys.push({ id: info.id, scheme, publicKeyPem: info.publicKeyPem, createdAt: info.createdAt });
  }
  const current: KeyringIndex['current'] = {};
  for (const [s, id] of Object.entries(obj.current)) {
    let scheme: SignatureScheme;
    try {
      scheme = assertScheme(s);
    } catch (err) {
      throw bad((err as Error).message);
    }
    const key = keys.find((k) => k.id === id);
    if (!key || key.scheme !== scheme) throw bad(`current ${scheme} key ${String(id)} is not a ${scheme} key of the keyring`);
    current[scheme] = key.id;
  }
  return { version: INDEX_VERSION, current, keys };
}

export class SigningKeyring {
  /** Mutations (generate, rotate) run one at a time, so two first uses make one key. */
  /** Key generations and index writes, one at a time. */
  private readonly lock = new Mutex();

  private constructor(
    readonly dir: string,
    private index: KeyringIndex,
  ) {}

  /** Opens (creating if needed) the keyring kept in `dir`; makes no key until one is asked for. */
  static async open(dir: string): Promise<SigningKeyring> {
    const resolved = path.resolve(dir);
    await fs.mkdir(resolved, { recursive: true, mode: 0o700 });
    const file = path.join(resolved, INDEX_FILE);
    const text = await readFileIfExists(file);
    const index = text === undefined ? { version: INDEX_VERSION, current: {}, keys: [] } : parseIndex(file, text);
    return new SigningKeyring(resolved, index);
  }

  /** The current key of `scheme`, made (and saved) on first use. */
  async current(scheme: SignatureScheme): Promise<SigningKeyInfo> {
    const s = assertScheme(scheme);
    const existing = this.peekCurrent(s);
    if (existing) return existing;
    return this.exclusive(async () => {
      const id = this.index.current[s];
      const again = id === undefined ? undefined : this.get(id);
      return again ?? this.addKey(s);
    });
  }

  /** The current key of `scheme` if there is one; never makes a key. */
  peekCurrent(scheme: SignatureScheme): SigningKeyInfo | undefined {
    const id = this.index.current[assertScheme(scheme)];
    return id === undefined ? undefined : this.get(id);
  }

  /** Makes a new current key for `scheme`; the previous ones stay in the keyring and keep signing when asked by id. */
  async rotate(scheme: SignatureScheme): Promise<SigningKeyInfo> {
    const s = assertScheme(scheme);
    return this.exclusive(() => this.addKey(s));
  }

  get(id: string): SigningKeyInfo | undefined {
    const info = this.index.keys.find((k) => k.id === id);
    return info && copyInfo(info);
  }

  /** Every key, oldest first (public parts only). */
  list(): SigningKeyInfo[] {
    return this.index.keys.map(copyInfo);
  }

  isCurrent(id: string): boolean {
    return Object.values(this.index.current).includes(id);
  }

  /** Signs `image` with key `id` in the layout of that key's scheme. */
  async sign(id: string, image: Buffer): Promise<Buffer> {
    const info = this.requireKey(id);
    const privateKey = await this.loadPrivateKey(info);
    return signImage(info.scheme, image, privateKey);
  }

  /** The public forms devices need: the PEM (ESP8266 `public.key`), X||Y for EC keys, the eFuse digest for secure boot v2. */
  exportPublic(id: string): ExportedPublicKey {
    const info = this.requireKey(id);
    const publicKey = createPublicKey(info.publicKeyPem);
    const out: ExportedPublicKey = { id: info.id, scheme: info.scheme, pem: info.publicKeyPem };
    if (info.scheme === 'esp32-ecdsa-v1') out.raw64 = esp32RawPublicKey(publicKey);
    if (info.scheme === 'esp32-sbv2-rsa') out.sbv2KeyDigest = secureBootV2KeyDigest(publicKey);
    return out;
  }

  /** Settles once every pending key generation and index write is done. */
  async idle(): Promise<void> {
    await this.lock.idle();
  }

  // ---- internals ----------------------------------------------------------------------------

  private exclusive<T>(task: () => Promise<T>): Promise<T> {
    return this.lock.run(task);
  }

  private requireKey(id: string): SigningKeyInfo {
    const info = typeof id === 'string' ? this.index.keys.find((k) => k.id === id) : undefined;
    if (!info) throw new KeyringError(`no signing key ${shownInput(id)} in the keyring`);
    return info;
  }

  private keyFile(id: string): string {
    return path.join(this.dir, `${id}.key`);
  }

  private async loadPrivateKey(info: SigningKeyInfo): Promise<KeyObject> {
    const pem = await readFileIfExists(this.keyFile(info.id));
    if (pem === undefined) {
      throw new KeyringError(`the private key of signing key ${info.id} is missing (${this.keyFile(info.id)}); keys are never regenerated: restore it from a backup`);
    }
    let key: KeyObject;
    try {
      key = createPrivateKey(pem);
    } catch (err) {
      throw new KeyringError(`cannot read the private key of signing key ${info.id}: ${(err as Error).message}`);
    }
    if (keyIdOf(key) !== info.id) throw new KeyringError(`the private key file of signing key ${info.id} holds another key`);
    return key;
  }

  /** Writes the private key first, then the index naming it current; the index in memory changes only after both. */
  private async addKey(scheme: SignatureScheme): Promise<SigningKeyInfo> {
    const { privateKey, publicKey } = await generate(scheme);
    const info: SigningKeyInfo = {
      id: keyIdOf(publicKey),
      scheme,
      publicKeyPem: publicKey.export({ type: 'spki', format: 'pem' }).toString(),
      createdAt: new Date().toISOString(),
    };
    const file = this.keyFile(info.id);
    await writeFileAtomic(file, privateKey.export({ type: 'pkcs8', format: 'pem' }).toString(), PRIVATE_FILE_MODE);
    const next: KeyringIndex = {
      version: INDEX_VERSION,
      current: { ...this.index.current, [scheme]: info.id },
      keys: [...this.index.keys, info],
    };
    try {
      await writeFileAtomic(path.join(this.dir, INDEX_FILE), `${JSON.stringify(next, null, 2)}\n`);
    } catch (err) {
      // No index names this key: it was never handed out, so it can go.
      await fs.rm(file, { force: true });
      throw err;
    }
    this.index = next;
    return copyInfo(info);
  }
}
