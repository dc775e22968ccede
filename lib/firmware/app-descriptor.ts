/**
 * What an uploaded image says about itself: the magic bytes devices check before flashing, and
 * the ESP-IDF application descriptor (`esp_app_desc_t`, ESP-IDF esp_app_desc.h) that every ESP32
 * app image (ESP-IDF and Arduino-ESP32 alike) carries at file offset 32, right after the 24-byte
 * `esp_image_header_t` and the first 8-byte `esp_image_segment_header_t`.
 */
import type { ImageKind, Platform } from './types';
import { shownInput } from '../input-text';

export const APP_DESC_OFFSET = 32;
export const APP_DESC_MAGIC = 0xabcd5432;
/** sizeof(esp_app_desc_t), asserted by ESP-IDF. */
export const APP_DESC_SIZE = 256;

/** esp_app_desc_t fields, offsets relative to the start of the descriptor. */
const FIELD = {
  magic: 0,
  secureVersion: 4,
  // reserv1[2] at 8
  version: [16, 32],
  projectName: [48, 32],
  time: [80, 16],
  date: [96, 16],
  idfVersion: [112, 32],
  appElfSha256: [144, 32],
} as const;

export interface AppDescriptor {
  projectName: string;
  version: string;
  /** Compile time as the build wrote it, e.g. "12:34:56". */
  time: string;
  /** Compile date as the build wrote it, e.g. "Mar  1 2025". */
  date: string;
  idfVersion: string;
  /** Anti-rollback counter (only enforced with the eFuse anti-rollback feature). */
  secureVersion: number;
  /** SHA-256 of the ELF the image was made from (hex), identifies the exact build. */
  appElfSha256: string;
}

/** A NUL-terminated C string from a fixed-size char array (the whole field when it has no NUL). */
function cString(image: Buffer, [offset, size]: readonly [number, number]): string {
  const field = image.subarray(APP_DESC_OFFSET + offset, APP_DESC_OFFSET + offset + size);
  const end = field.indexOf(0);
  return field.subarray(0, end === -1 ? field.length : end).toString('utf8');
}

/**
 * The ESP-IDF application descriptor of an ESP32 app image, or undefined when the image is not
 * one (no 0xE9 header byte, too short, or no 0xABCD5432 magic at offset 32).
 */
export function readAppDescriptor(image: Buffer): AppDescriptor | undefined {
  if (!Buffer.isBuffer(image) || image.length < APP_DESC_OFFSET + APP_DESC_SIZE || image[0] !== 0xe9) return undefined;
  if (image.readUInt32LE(APP_DESC_OFFSET + FIELD.magic) !== APP_DESC_MAGIC) return undefined;
  const [shaOffset, shaSize] = FIELD.appElfSha256;
  return {
    projectName: cString(image, FIELD.projectName),
    version: cString(image, FIELD.version),
    time: cString(image, FIELD.time),
    date: cString(image, FIELD.date),
    idfVersion: cString(image, FIELD.idfVersion),
    secureVersion: image.readUInt32LE(APP_DESC_OFFSET + FIELD.secureVersion),
    appElfSha256: image.subarray(APP_DESC_OFFSET + shaOffset, APP_DESC_OFFSET + shaOffset + shaSize).toString('hex'),
  };
}

export type MagicCheck = { ok: true } | { ok: false; reason: string };

function hex2(byte: number): string {
  return `0x${byte.toString(16).padStart(2, '0').toUpperCase()}`;
}

/**
 * The first-bytes check the device makes before (ESP8266 `Updater::_verifyHeader`/`_verifyEnd`)
 * or while (ESP32 `esp_ota_write`) flashing:
 * - ESP8266 sketch: 0xE9, or 1F 8B (a gzip-compressed sketch the eboot loader unpacks);
 * - ESP32 app: 0xE9 (ESP_IMAGE_HEADER_MAGIC);
 * - filesystem images (spiffs/littlefs): no magic, only not empty.
 */
export function checkMagic(image: Buffer, platform: Platform, kind: ImageKind): MagicCheck {
  if (!Buffer.isBuffer(image) || image.length === 0) return { ok: false, reason: 'image is empty' };
  if (kind === 'spiffs') return { ok: true };
  if (kind !== 'app') return { ok: false, reason: `unknown image kind ${shownInput(kind)}` };
  const first = image[0];
  if (platform === 'esp8266') {
    if (first === 0xe9) return { ok: true };
    if (first === 0x1f && image[1] === 0x8b) return { ok: true };
    if (first === 0x1f) return { ok: false, reason: 'image starts with 0x1F but is not gzip (1F 8B): the ESP8266 refuses it' };
    return { ok: false, reason: `image does not start with 0xE9 (starts with ${hex2(first)}): not an ESP8266 sketch (nor a gzip-compressed one)` };
  }
  if (platform === 'esp32') {
    if (first === 0xe9) return { ok: true };
    const gz = first === 0x1f && image[1] === 0x8b ? ' (it is gzip-compressed: ESP32 OTA takes the plain .bin)' : '';
    return { ok: false, reason: `image does not start with 0xE9 (starts with ${hex2(first)}): not an ESP32 app image${gz}` };
  }
  return { ok: false, reason: `unknown platform ${shownInput(platform)}` };
}
