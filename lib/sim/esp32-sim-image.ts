import { createHash } from 'node:crypto';
import { APP_DESC_MAGIC, APP_DESC_OFFSET, APP_DESC_SIZE } from '../firmware/app-descriptor';

/**
 * A stand-in ESP32 app image for simulated devices, laid out as ESP-IDF's esp_app_format.h
 * describes an app: the 24-byte `esp_image_header_t` (magic 0xE9), the first 8-byte segment
 * header, then `esp_app_desc_t` at file offset 32 (magic 0xABCD5432, secure_version, version,
 * project_name, time, date, idf_ver), so the update server reads product and version from it
 * and a simulated ESP32 checks it as the firmware does. After the descriptor: what a real build
 * has compiled in and the simulator must learn from the image it installs (the keys it trusts
 * for the next update), then deterministic filler up to `size` bytes.
 */
export interface Esp32SimImage {
  projectName: string;
  version: string;
  secureVersion?: number;
  /** PEM public keys (SPKI) the image trusts for the next update. */
  trusts: string[];
  /** Compile date and time as the build writes them (default: fixed, so equal inputs give equal bytes). */
  date?: string;
  time?: string;
  size?: number;
}

const MARKER = Buffer.from('ESP-FLEET-SIMULATOR-ESP32\n', 'latin1');
const MANIFEST_OFFSET = APP_DESC_OFFSET + APP_DESC_SIZE;
const MAX_MANIFEST = 64 * 1024;
/** The ESP32's chip id in esp_image_header_t (ESP-IDF esp_app_format.h, ESP_CHIP_ID_ESP32 = 0). */
const CHIP_ID_ESP32 = 0x0000;

function cField(text: string, size: number, what: string): Buffer {
  const bytes = Buffer.from(text, 'utf8');
  // C strings in fixed arrays: room for the NUL.
  if (bytes.length >= size) throw new Error(`${what} ${JSON.stringify(text)} is longer than ${size - 1} bytes`);
  const out = Buffer.alloc(size);
  bytes.copy(out);
  return out;
}

export function buildEsp32SimImage(image: Esp32SimImage): Buffer {
  const header = Buffer.alloc(24);
  header[0] = 0xe9; // ESP_IMAGE_HEADER_MAGIC
  header[1] = 1; // segment count
  header[2] = 2; // SPI mode DIO
  header[3] = 0x20; // 4 MB flash, 40 MHz
  header.writeUInt32LE(0x400d0000, 4); // entry address (IROM)
  header.writeUInt16LE(CHIP_ID_ESP32, 12);
  const segment = Buffer.alloc(8);
  segment.writeUInt32LE(0x3f400020, 0); // DROM load address
  const desc = Buffer.alloc(APP_DESC_SIZE);
  desc.writeUInt32LE(APP_DESC_MAGIC, 0);
  const secureVersion = image.secureVersion ?? 0;
  if (!Number.isInteger(secureVersion) || secureVersion < 0 || secureVersion > 0xffffffff) throw new Error(`secure_version must be a 32-bit unsigned number, got ${secureVersion}`);
  desc.writeUInt32LE(secureVersion, 4);
  cField(image.version, 32, 'version').copy(desc, 16);
  cField(image.projectName, 32, 'project name').copy(desc, 48);
  cField(image.time ?? '10:00:00', 16, 'time').copy(desc, 80);
  cField(image.date ?? 'Nov 21 2026', 16, 'date').copy(desc, 96);
  cField('v5.5.5', 32, 'idf version').copy(desc, 112);
  const name = `${image.projectName}-${image.version}`;
  createHash('sha256').update(`elf:${name}:${secureVersion}`).digest().copy(desc, 144);
  const json = Buffer.from(JSON.stringify({ trusts: image.trusts }), 'utf8');
  const length = Buffer.alloc(4);
  length.writeUInt32LE(json.length);
  const head = Buffer.concat([header, segment, desc, MARKER, length, json]);
  // ESP-IDF app images end on a 16-byte boundary (checksum padding).
  const size = Math.ceil(Math.max(image.size ?? 256 * 1024, head.length) / 16) * 16;
  const out = Buffer.alloc(size);
  head.copy(out);
  let block = createHash('sha256').update(`${name}:${secureVersion}`).digest();
  for (let at = head.length; at < out.length; at += block.length) {
    block.copy(out, at);
    block = createHash('sha256').update(block).digest();
  }
  return out;
}

/** The trusted keys an (already verified) ESP32 simulator image carries, or undefined when it is no simulator image. */
export function readEsp32SimTrusts(payload: Buffer): string[] | undefined {
  const markerEnd = MANIFEST_OFFSET + MARKER.length;
  if (payload.length < markerEnd + 4 || !payload.subarray(MANIFEST_OFFSET, markerEnd).equals(MARKER)) return undefined;
  const length = payload.readUInt32LE(markerEnd);
  if (length > MAX_MANIFEST || markerEnd + 4 + length > payload.length) return undefined;
  try {
    const m = JSON.parse(payload.subarray(markerEnd + 4, markerEnd + 4 + length).toString('utf8')) as { trusts?: unknown };
    return Array.isArray(m.trusts) && m.trusts.every((k) => typeof k === 'string') ? (m.trusts as string[]) : undefined;
  } catch {
    return undefined;
  }
}
