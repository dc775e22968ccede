import { promises as fs, createReadStream, ReadStream } from 'node:fs';
import * as path from 'node:path';
import { createHash } from 'node:crypto';
import { writeFileAtomic, readFileIfExists } from '../fs/atomic-file';
import { normalizeDeviceId } from '../device-id';
import { shownInput } from '../input-text';
import { Mutex } from '../concurrency/mutex';
import { Assignment, CatalogueEntry, ImageKind, Platform } from './types';
import { ImageNameError, assertProduct, compareVersions, imageName, parseImageName, parseVersion } from './version';
import { NextImageRequest, NextImageResult, nextImage } from './next-image';

/**
 * The firmware catalogue: signed images and who should get which (docs/wire-contract.md, Update server
 * and The next installable image). It stores what it is given; it neither signs nor verifies
 * signatures (the caller signs with the keyring before `add`).
 *
 * Folder layout:
 * - `catalogue.json` — the index: `{ format: 1, images: CatalogueEntry[], assignments: Assignment[] }`,
 *   rewritten atomically (temp + fsync + rename) on every change.
 * - `images/<sha256>.bin` — the image bytes as served. File names are generated from the
 *   content, never from user input, so they are safe on every file system (also
 *   case-insensitive ones, where `X-1.0.f` and `X-1.0.F` would collide).
 *
 * An image file is written before the index names it and deleted after the index stops
 * naming it, so a crash can at worst leave an unreferenced file behind, never an entry
 * without its file. Every refused call leaves folder and memory exactly as they were.
 */

export const DEFAULT_MAX_IMAGE_SIZE = 4 * 1024 * 1024;
const INDEX_FILE = 'catalogue.json';
const IMAGES_DIR = 'images';
const FORMAT = 1;

const PLATFORMS: readonly Platform[] = ['esp8266', 'esp32'];
const KINDS: readonly ImageKind[] = ['app', 'spiffs'];
/** SigningKeyInfo.id: the first 16 hex digits of the SHA-256 of the key's SPKI DER. */
const KEY_ID = /^[0-9a-f]{16}$/;
const CHANNEL = /^[a-z0-9][a-z0-9_-]{0,31}$/;
const GROUP = /^[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}$/;
const IMAGE_FILE = /^[0-9a-f]{64}\.bin$/;
/** ESP8266/ESP32 application images start with 0xE9; ESP8266httpUpdate also takes gzip (0x1F 0x8B). */
const APP_MAGIC = 0xe9;
const GZIP_MAGIC = 0x1f;

/** The channel name that means "no channel": entries without a channel are the stable ones. */
export const STABLE_CHANNEL = 'stable';

export interface AddImageInput {
  /** The signed image exactly as devices download it. */
  data: Buffer | Uint8Array;
  /** `<PRODUCT>-<VERSION>`; or give `product` and `version` instead. */
  name?: string;
  product?: string;
  version?: string;
  platform: Platform;
  /** Default `app`. */
  kind?: ImageKind;
  /** Key id (16 hex digits) the image is signed with. */
  signedWith: string;
  /** Key ids the image trusts for the next update (at least one). */
  trusts: string[];
  /** Release channel; omitted, '' or `stable` = stable. */
  channel?: string;
}

export type { Assignment };

export interface AssignInput {
  target: string;
  pin?: string;
  rollback?: string;
  channel?: string;
}

export interface CatalogueOptions {
  /** Largest image accepted, in bytes (default 4 MiB). */
  maxImageSize?: number;
}

interface IndexFile {
  format: number;
  images: CatalogueEntry[];
  assignments: Assignment[];
}

export class CatalogueError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'CatalogueError';
  }
}

export class FirmwareCatalogue {
  /** Serialises changes: each one reads the state the previous one left. */
  private readonly lock = new Mutex();

  private constructor(
    readonly dir: string,
    private state: IndexFile,
    readonly maxImageSize: number,
  ) {}

  static async open(dir: string, options: CatalogueOptions = {}): Promise<FirmwareCatalogue> {
    const maxImageSize = options.maxImageSize ?? DEFAULT_MAX_IMAGE_SIZE;
    if (!Number.isSafeInteger(maxImageSize) || maxImageSize <= 0) throw new CatalogueError(`maxImageSize must be a positive whole number of bytes, got ${String(maxImageSize)}`);
    const root = path.resolve(dir);
    await fs.mkdir(path.join(root, IMAGES_DIR), { recursive: true });
    const indexFile = path.join(root, INDEX_FILE);
    const text = await readFileIfExists(indexFile);
    const state = text === undefined ? { format: FORMAT, images: [], assignments: [] } : readIndex(indexFile, text);
    return new FirmwareCatalogue(root, state, maxImageSize);
  }

  get imagesDir(): string {
    return path.join(this.dir, IMAGES_DIR);
  }

  // ---- images --------------------------------------------------------------------------

  /**
   * Stores a signed image. The same name with the same bytes and metadata again returns the
   * stored entry (a retry is harmless); anything else that clashes is refused.
   */
  add(input: AddImageInput): Promise<CatalogueEntry> {
    return this.exclusive(async () => {
      const entry = this.checkAdd(input);
      const existing = this.state.images.find((e) => e.name === entry.name);
      if (existing) return copy(existing);
      const data = Buffer.from(input.data.buffer, input.data.byteOffset, input.data.byteLength);
      const file = path.join(this.imagesDir, entry.file);
      await writeFileAtomic(file, data);
      try {
        await this.commit({ ...this.state, images: [...this.state.images, entry] });
      } catch (err) {
        await fs.rm(file, { force: true });
        throw err;
      }
      return copy(entry);
    });
  }

  /**
   * The checks of `add` that need neither signing key nor stored state (data, name, platform,
   * kind, channel): a caller about to make a signing key for an image runs them first, so a
   * refused image leaves no key behind.
   */
  checkImage(input: Omit<AddImageInput, 'signedWith' | 'trusts'>): { name: string; product: string; version: string; platform: Platform; kind: ImageKind; channel?: string } {
    if (!input || typeof input !== 'object') throw new CatalogueError('add needs { data, name (or product and version), platform, signedWith, trusts }');
    const { data } = input;
    if (!(data instanceof Uint8Array)) throw new CatalogueError('image data must be a Buffer');
    if (data.byteLength === 0) throw new CatalogueError('the image is empty');
    if (data.byteLength > this.maxImageSize) throw new CatalogueError(`the image is ${data.byteLength} bytes, more than the limit of ${this.maxImageSize} bytes`);
    const parsed = nameOf(input);
    const platform = input.platform;
    if (!PLATFORMS.includes(platform)) throw new CatalogueError(`unknown platform ${shownInput(platform)}: one of ${PLATFORMS.join(', ')}`);
    const kind = input.kind ?? 'app';
    if (!KINDS.includes(kind)) throw new CatalogueError(`unknown image kind ${shownInput(kind)}: one of ${KINDS.join(', ')}`);
    if (kind === 'app' && data[0] !== APP_MAGIC && data[0] !== GZIP_MAGIC) {
      throw new CatalogueError(
        `an app image must start with byte 0xE9 (or 0x1F, gzip), this one starts with 0x${data[0].toString(16).padStart(2, '0').toUpperCase()}: devices would refuse it`,
      );
    }
    return { ...parsed, platform, kind, channel: entryChannel(input.channel) };
  }

  /** Checks an add and returns the entry it would make; for an idempotent retry, the stored one. */
  private checkAdd(input: AddImageInput): CatalogueEntry {
    const { name, product, version, platform, kind, channel } = this.checkImage(input);
    const parsed = { name, product, version };
    const data = input.data;
    const signedWith = keyId(input.signedWith, 'signedWith');
    if (!Array.isArray(input.trusts) || input.trusts.length === 0) {
      throw new CatalogueError('trusts must list the key ids compiled into the image (at least one): without them no device running it could verify an update');
    }
    const trusts = [...new Set(input.trusts.map((k) => keyId(k, 'trusts')))];
    const digest = createHash('sha256').update(data).digest('hex');
    const entry: CatalogueEntry = {
      name: parsed.name,
      product: parsed.product,
      version: parsed.version,
      platform,
      kind,
      file: `${digest}.bin`,
      size: data.byteLength,
      sha256: digest,
      md5: createHash('md5').update(data).digest('hex'),
      signedWith,
      trusts,
      ...(channel === undefined ? {} : { channel }),
      addedAt: new Date().toISOString(),
    };

    const existing = this.state.images.find((e) => e.name === entry.name);
    if (existing) {
      if (existing.sha256 !== entry.sha256) {
        throw new CatalogueError(`image ${entry.name} is already in the catalogue with different content (sha256 ${existing.sha256}); a released name never changes, give the new build a new version`);
      }
      const differing = (['platform', 'kind', 'signedWith', 'trusts', 'channel'] as const).filter(
        (k) => JSON.stringify(existing[k] ?? null) !== JSON.stringify(entry[k] ?? null),
      );
      if (differing.length) {
        throw new CatalogueError(`image ${entry.name} is already in the catalogue with the same content but a different ${differing.join(', ')}; remove it first to change that`);
      }
      return existing;
    }
    const sameContent = this.state.images.find((e) => e.sha256 === entry.sha256);
    if (sameContent) {
      // The bytes carry their own name: served as another name, a device would never reach it.
      throw new CatalogueError(`these bytes are already in the catalogue as ${sameContent.name}; one image cannot have two names`);
    }
    const sameVersion = this.state.images.find((e) => e.product === entry.product && compareVersions(e.version, entry.version) === 0);
    if (sameVersion) {
      throw new CatalogueError(`version ${entry.version} of ${entry.product} is the same version as the stored ${sameVersion.name}; versions must be distinct to be ordered`);
    }
    return entry;
  }

  /** All images, newest version first within a product; optionally of one product. */
  list(filter: { product?: string } = {}): CatalogueEntry[] {
    return this.state.images
      .filter((e) => filter.product === undefined || e.product === filter.product)
      .sort((a, b) => (a.product === b.product ? compareVersions(b.version, a.version) : a.product < b.product ? -1 : 1))
      .map(copy);
  }

  get(name: string): CatalogueEntry | undefined {
    const e = this.state.images.find((x) => x.name === name);
    return e && copy(e);
  }

  /**
   * Removes an image (index first, then its file). Refused while an assignment pins or rolls
   * back to it. Devices still running it can no longer be offered updates (its `trusts` are
   * gone with it): remove only images no device runs.
   */
  remove(name: string): Promise<CatalogueEntry> {
    return this.exclusive(async () => {
      const entry = this.state.images.find((e) => e.name === name);
      if (!entry) throw new CatalogueError(`no image ${safeText(name)} in the catalogue`);
      const users = this.state.assignments.filter((a) => a.pin === name || a.rollback === name);
      if (users.length) {
        throw new CatalogueError(`image ${name} is assigned to ${users.map((a) => a.target).join(', ')}; unassign it first`);
      }
      await this.commit({ ...this.state, images: this.state.images.filter((e) => e !== entry) });
      await fs.rm(path.join(this.imagesDir, entry.file), { force: true });
      return copy(entry);
    });
  }

  /** Moves an image to another channel (`stable`, '' or undefined: no channel), e.g. to promote a beta. */
  setChannel(name: string, channel?: string): Promise<CatalogueEntry> {
    return this.exclusive(async () => {
      const entry = this.state.images.find((e) => e.name === name);
      if (!entry) throw new CatalogueError(`no image ${safeText(name)} in the catalogue`);
      const value = entryChannel(channel);
      const { channel: _old, ...rest } = entry;
      const updated: CatalogueEntry = value === undefined ? rest : { ...rest, channel: value };
      if (updated.channel === entry.channel) return copy(entry);
      await this.commit({ ...this.state, images: this.state.images.map((e) => (e === entry ? updated : e)) });
      return copy(updated);
    });
  }

  /** The image's file; throws for anything that is not a stored image of this catalogue. */
  pathOf(entry: CatalogueEntry | string): string {
    return path.join(this.imagesDir, this.stored(entry).file);
  }

  /** A stream of the image as served (`entry.size` bytes: send it as Content-Length). */
  openStream(entry: CatalogueEntry | string): ReadStream {
    return createReadStream(this.pathOf(entry));
  }

  /** The image bytes, checked against the stored size and SHA-256. */
  async read(entry: CatalogueEntry | string): Promise<Buffer> {
    const stored = this.stored(entry);
    const data = await fs.readFile(path.join(this.imagesDir, stored.file));
    if (data.length !== stored.size || createHash('sha256').update(data).digest('hex') !== stored.sha256) {
      throw new CatalogueError(`the file of image ${stored.name} does not match its index entry (size or sha256): restore it or remove and add the image again`);
    }
    return data;
  }

  // ---- assignments ---------------------------------------------------------------------

  /** Sets (replaces) the assignment of a target. */
  assign(input: AssignInput): Promise<Assignment> {
    return this.exclusive(async () => {
      if (!input || typeof input !== 'object') throw new CatalogueError('assign needs { target, and one of pin, rollback, channel }');
      const target = normalizeTarget(input.target);
      const set = (['pin', 'rollback', 'channel'] as const).filter((k) => input[k] !== undefined && input[k] !== '');
      if (set.length !== 1) {
        throw new CatalogueError(
          `an assignment sets exactly one of pin, rollback, channel${set.length ? `, not ${set.join(' and ')}` : ''} (channel "${STABLE_CHANNEL}" = stable images only)`,
        );
      }
      const assignment: Assignment = { target, updatedAt: new Date().toISOString() };
      if (input.channel !== undefined && input.channel !== '') {
        assignment.channel = channelName(input.channel);
      } else {
        const key = set[0] as 'pin' | 'rollback';
        const name = input[key]!;
        const image = this.state.images.find((e) => e.name === name);
        if (!image) {
          parseImageName(name); // a malformed name gets its own error
          throw new CatalogueError(`cannot ${key === 'pin' ? 'pin' : 'roll back'} ${target} to ${name}: no such image in the catalogue`);
        }
        if (target.startsWith('product:') && image.product !== target.slice('product:'.length)) {
          throw new CatalogueError(`image ${name} is of product ${image.product}, not ${target.slice('product:'.length)}`);
        }
        assignment[key] = name;
      }
      await this.commit({ ...this.state, assignments: [...this.state.assignments.filter((a) => a.target !== target), assignment] });
      return { ...assignment };
    });
  }

  /** Drops a target's assignment; false when it had none (nothing is written then). */
  unassign(target: string): Promise<boolean> {
    return this.exclusive(async () => {
      const t = normalizeTarget(target);
      if (!this.state.assignments.some((a) => a.target === t)) return false;
      await this.commit({ ...this.state, assignments: this.state.assignments.filter((a) => a.target !== t) });
      return true;
    });
  }

  assignments(): Assignment[] {
    return this.state.assignments.map((a) => ({ ...a }));
  }

  /** docs/wire-contract.md's next installable image for a device, over this catalogue's images and assignments. */
  next(request: NextImageRequest): NextImageResult {
    return nextImage(this.state.images, this.state.assignments, request);
  }

  /** Settles when every change made so far is on disk. */
  async idle(): Promise<void> {
    await this.lock.idle();
  }

  // ---- internals -----------------------------------------------------------------------

  /** The stored entry of that name: a caller's object is never trusted for the file name. */
  private stored(entry: CatalogueEntry | string): CatalogueEntry {
    const name = typeof entry === 'string' ? entry : entry?.name;
    const stored = this.state.images.find((e) => e.name === name);
    if (!stored) throw new CatalogueError(`no image ${safeText(name)} in the catalogue`);
    return stored;
  }

  private exclusive<T>(job: () => Promise<T>): Promise<T> {
    return this.lock.run(job);
  }

  /** Writes the new index, then makes it the current state (so a failed write changes nothing). */
  private async commit(next: IndexFile): Promise<void> {
    const body = `${JSON.stringify({ format: FORMAT, images: next.images, assignments: next.assignments }, null, 2)}\n`;
    await writeFileAtomic(path.join(this.dir, INDEX_FILE), body);
    this.state = next;
  }
}

// ---- validation ------------------------------------------------------------------------

function copy(e: CatalogueEntry): CatalogueEntry {
  return { ...e, trusts: [...e.trusts] };
}

function safeText(input: unknown): string {
  if (typeof input !== 'string') return typeof input;
  return JSON.stringify(input.length > 80 ? `${input.slice(0, 80)}…` : input);
}

function nameOf(input: Pick<AddImageInput, 'name' | 'product' | 'version'>): { name: string; product: string; version: string } {
  try {
    if (input.name !== undefined) {
      const p = parseImageName(input.name);
      if (input.product !== undefined && input.product !== p.product) {
        throw new CatalogueError(`name ${input.name} is of product ${p.product}, but product ${safeText(input.product)} was given`);
      }
      if (input.version !== undefined && input.version !== p.version) {
        throw new CatalogueError(`name ${input.name} has version ${p.version}, but version ${safeText(input.version)} was given`);
      }
      return { name: input.name, product: p.product, version: p.version };
    }
    if (input.product === undefined || input.version === undefined) throw new CatalogueError('an image needs a name, or a product and a version');
    const name = imageName(input.product, input.version);
    return { name, product: input.product, version: input.version };
  } catch (err) {
    if (err instanceof ImageNameError) throw new CatalogueError(err.message);
    throw err;
  }
}

function keyId(input: unknown, field: string): string {
  const id = typeof input === 'string' ? input.toLowerCase() : '';
  if (!KEY_ID.test(id)) throw new CatalogueError(`${field}: ${safeText(input)} is not a signing key id (16 hex digits, as the keyring shows it)`);
  return id;
}

function channelName(input: unknown): string {
  if (typeof input !== 'string' || !CHANNEL.test(input)) {
    throw new CatalogueError(`invalid channel ${safeText(input)}: 1 to 32 lowercase letters, digits, "_" or "-", e.g. beta`);
  }
  return input;
}

/** An entry's channel: undefined for stable. */
function entryChannel(input: unknown): string | undefined {
  if (input === undefined || input === '' || input === STABLE_CHANNEL) return undefined;
  return channelName(input);
}

/** `84F3EB012345`/`84:f3:...`/`device:<id>` → the bare id; `group:<name>`, `product:<name>` checked. */
export function normalizeTarget(input: unknown): string {
  if (typeof input !== 'string' || input === '') throw new CatalogueError('an assignment target is a device id, group:<name> or product:<name>');
  if (input.startsWith('group:')) {
    const g = input.slice('group:'.length);
    if (!GROUP.test(g)) throw new CatalogueError(`invalid group ${safeText(g)}: 1 to 64 letters, digits, "_", "." or "-", not starting with "." or "-"`);
    return input;
  }
  if (input.startsWith('product:')) {
    try {
      return `product:${assertProduct(input.slice('product:'.length))}`;
    } catch (err) {
      throw new CatalogueError((err as Error).message);
    }
  }
  try {
    return normalizeDeviceId(input.startsWith('device:') ? input.slice('device:'.length) : input);
  } catch (err) {
    throw new CatalogueError(`invalid assignment target ${safeText(input)}: not a device id, group:<name> or product:<name> (${(err as Error).message})`);
  }
}

function readIndex(file: string, text: string): IndexFile {
  const damaged = (why: string): CatalogueError => new CatalogueError(`${file} is damaged (${why}): restore it from a backup`);
  let data: unknown;
  try {
    data = JSON.parse(text);
  } catch {
    throw damaged('not JSON');
  }
  const index = data as Partial<IndexFile>;
  if (!index || typeof index !== 'object' || index.format !== FORMAT) throw damaged(`expected format ${FORMAT}`);
  if (!Array.isArray(index.images) || !Array.isArray(index.assignments)) throw damaged('images or assignments missing');
  for (const e of index.images) {
    try {
      const p = parseImageName(e.name);
      if (p.product !== e.product || p.version !== e.version) throw new Error('name, product and version disagree');
      parseVersion(e.version);
    } catch (err) {
      throw damaged(`image ${safeText(e?.name)}: ${(err as Error).message}`);
    }
    if (!IMAGE_FILE.test(e.file) || !Array.isArray(e.trusts)) throw damaged(`image ${e.name}: bad file name or trusts`);
  }
  return { format: FORMAT, images: index.images, assignments: index.assignments };
}
