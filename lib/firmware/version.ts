/**
 * Image names and their order (docs/wire-contract.md, Update server: image names).
 *
 * An image name is `<PRODUCT>-<VERSION>`, e.g. `ESP8266_WEMOS_D1MINIPRO-00.00.08.f` or
 * `MY_SENSOR-1.2.3`. It is what a device reports as `curimage` / `espimage` and what the
 * catalogue keys images by, so it ends up in URL parameters and log lines: the grammar is
 * deliberately narrow (ASCII only, no path characters, bounded length).
 *
 * - PRODUCT: 1..64 of `[A-Za-z0-9_.]`, not starting with `.`. The name is split at its LAST
 *   `-`; since a product cannot contain `-`, a name has exactly one. Products are compared
 *   exactly (case-sensitive): the device's name is compiled in, `esp_a` is not `ESP_A`.
 * - VERSION: 1..31 characters (fits ESP-IDF's `esp_app_desc_t.version[32]`): one to four
 *   numeric parts of 1..9 digits each (leading zeros allowed, `08` is 8), separated by `.`,
 *   optionally followed by `.` and a build suffix: a letter then up to 15 of `[A-Za-z0-9_]`.
 *   `00.00.08.f`, `1.2.3`, `0.1`, `1.2.3.4` and `1.2.3.4.rc1` are versions; `1.2.3-rc1`,
 *   `1.2.3f`, `v1.2`, `1..2` are not.
 *
 * Order (compareVersions): numeric parts compare as numbers, a missing part counts as 0
 * (`1.2` = `1.2.0` = `01.02`); on a tie the build suffix decides, compared as a string by
 * character code like C's strcmp (no suffix < any suffix; `F` < `f`; `a` < `aa` < `b`, so
 * after build `z` bump the patch rather than using `aa`). Versions that compare equal are
 * the same version: the catalogue refuses a second name for it.
 *
 * A bare version (`1.2.3`, what the self-updating ESP8266's `x-ESP8266-version` carries) has no product; pass
 * the product separately: `parseImageName('1.2.3', 'MY_SENSOR')`, or use `parseVersion`.
 */

export const MAX_PRODUCT_LENGTH = 64;
export const MAX_VERSION_LENGTH = 31;
export const MAX_IMAGE_NAME_LENGTH = MAX_PRODUCT_LENGTH + 1 + MAX_VERSION_LENGTH;
export const MAX_VERSION_PARTS = 4;

export interface ParsedVersion {
  /** The version text exactly as given (leading zeros kept). */
  version: string;
  /** The numeric parts, as numbers (`00.00.08` → [0, 0, 8]). */
  parts: number[];
  /** The build suffix without its dot, '' when absent. */
  build: string;
}

export interface ParsedImageName extends ParsedVersion {
  product: string;
}

export class ImageNameError extends Error {
  /** The message without its `invalid <what> "<input>": ` head. */
  readonly reason: string;
  constructor(message: string, reason = message) {
    super(message);
    this.name = 'ImageNameError';
    this.reason = reason;
  }
}

function invalid(what: string, input: unknown, reason: string): ImageNameError {
  return new ImageNameError(`invalid ${what} ${shown(input)}: ${reason}`, reason);
}

const PRODUCT = /^[A-Za-z0-9_][A-Za-z0-9_.]*$/;
const NUMERIC = /^[0-9]{1,9}$/;
const BUILD = /^[A-Za-z][A-Za-z0-9_]{0,15}$/;

/** Quotes untrusted input for an error message: bounded, and any control or non-ASCII character escaped. */
function shown(input: unknown): string {
  if (typeof input !== 'string') return typeof input;
  const cut = input.length > 80 ? `${input.slice(0, 80)}…` : input;
  return JSON.stringify(cut).replace(/[^\x20-\x7e]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);
}

export function assertProduct(product: unknown): string {
  if (typeof product !== 'string' || product === '') throw invalid('product', product, `expected a non-empty text such as ESP8266_WEMOS_D1MINIPRO`);
  if (product.length > MAX_PRODUCT_LENGTH) throw invalid('product', product, `longer than ${MAX_PRODUCT_LENGTH} characters`);
  if (!PRODUCT.test(product)) {
    throw invalid('product', product, 'only letters A-Z a-z, digits, "_" and "." are allowed, and it must not start with "."');
  }
  return product;
}

export function parseVersion(version: unknown): ParsedVersion {
  if (typeof version !== 'string' || version === '') throw invalid('version', version, `expected e.g. 00.00.08.f or 1.2.3`);
  if (version.length > MAX_VERSION_LENGTH) throw invalid('version', version, `longer than ${MAX_VERSION_LENGTH} characters`);
  const fields = version.split('.');
  let build = '';
  if (fields.length > 1 && !NUMERIC.test(fields[fields.length - 1]) && /^[A-Za-z]/.test(fields[fields.length - 1])) {
    build = fields.pop()!;
    if (!BUILD.test(build)) {
      throw invalid('version', version, `the build suffix ${shown(build)} must be a letter followed by at most 15 letters, digits or "_"`);
    }
  }
  if (fields.length > MAX_VERSION_PARTS) throw invalid('version', version, `at most ${MAX_VERSION_PARTS} numeric parts`);
  for (const f of fields) {
    if (!NUMERIC.test(f)) {
      throw invalid(
        'version',
        version,
        `${f === '' ? 'an empty part' : `part ${shown(f)}`} is not a number of 1 to 9 digits ` +
          '(expected numeric parts separated by ".", optionally ending in a build suffix like .f)',
      );
    }
  }
  return { version, parts: fields.map((f) => parseInt(f, 10)), build };
}

/**
 * Parses `<PRODUCT>-<VERSION>`. With `product` given, a bare version is accepted too and a
 * full name must be of that product.
 */
export function parseImageName(name: string, product?: string): ParsedImageName {
  if (typeof name !== 'string' || name === '') throw invalid('image name', name, `expected <PRODUCT>-<VERSION>, e.g. ESP8266_WEMOS_D1MINIPRO-00.00.08.f`);
  if (name.length > MAX_IMAGE_NAME_LENGTH) throw invalid('image name', name, `longer than ${MAX_IMAGE_NAME_LENGTH} characters`);
  const dash = name.lastIndexOf('-');
  if (dash < 0) {
    if (product === undefined) {
      throw invalid('image name', name, `no "-" between product and version (expected e.g. ESP8266_WEMOS_D1MINIPRO-00.00.08.f)`);
    }
    return { product: assertProduct(product), ...parseVersion(name) };
  }
  const own = name.slice(0, dash);
  const versionText = name.slice(dash + 1);
  if (own === '') throw invalid('image name', name, `the product before "-" is empty`);
  if (versionText === '') throw invalid('image name', name, `the version after "-" is empty`);
  rethrowAs(name, `product ${shown(own)}`, () => assertProduct(own));
  const version = rethrowAs(name, `version ${shown(versionText)}`, () => parseVersion(versionText));
  if (product !== undefined && own !== assertProduct(product)) {
    throw new ImageNameError(`image ${shown(name)} is of product ${shown(own)}, expected ${shown(product)}`);
  }
  return { product: own, ...version };
}

function rethrowAs<T>(name: string, part: string, fn: () => T): T {
  try {
    return fn();
  } catch (err) {
    if (err instanceof ImageNameError) throw invalid('image name', name, `${part}: ${err.reason}`);
    throw err;
  }
}

/** `<product>-<version>` after checking both. */
export function imageName(product: string, version: string): string {
  return `${assertProduct(product)}-${parseVersion(version).version}`;
}

export function isImageName(name: unknown): name is string {
  try {
    parseImageName(name as string);
    return true;
  } catch {
    return false;
  }
}

type Order = -1 | 0 | 1;

function sign(n: number): Order {
  return n < 0 ? -1 : n > 0 ? 1 : 0;
}

function compareParsed(a: ParsedVersion, b: ParsedVersion): Order {
  const n = Math.max(a.parts.length, b.parts.length);
  for (let i = 0; i < n; i++) {
    const d = (a.parts[i] ?? 0) - (b.parts[i] ?? 0);
    if (d !== 0) return sign(d);
  }
  // By UTF-16 code unit, which for this ASCII-only alphabet is strcmp order.
  return a.build < b.build ? -1 : a.build > b.build ? 1 : 0;
}

/** Orders two versions (bare, without product): -1 when a < b, 0 when they are the same version, 1 when a > b. */
export function compareVersions(a: string | ParsedVersion, b: string | ParsedVersion): Order {
  return compareParsed(typeof a === 'string' ? parseVersion(a) : a, typeof b === 'string' ? parseVersion(b) : b);
}

/** Orders two image names of the same product; throws when the products differ (they have no order). */
export function compareImageNames(a: string, b: string): Order {
  const pa = parseImageName(a);
  const pb = parseImageName(b);
  if (pa.product !== pb.product) {
    throw new ImageNameError(`images ${shown(a)} and ${shown(b)} are of different products (${shown(pa.product)}, ${shown(pb.product)}) and have no order`);
  }
  return compareParsed(pa, pb);
}
