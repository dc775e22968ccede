import type { IncomingMessage } from 'node:http';
import type { ImageKind } from '../types';

// What ESP8266httpUpdate (x-ESP8266-*) and Arduino-ESP32's HTTPUpdate (x-ESP32-*) send with an
// update check (docs/wire-contract.md, What ESP8266httpUpdate sends and needs). Arduino-ESP32
// (libraries/HTTPUpdate/src/HTTPUpdate.cpp, handleUpdate, core 2.x/3.x) sends the same names
// under x-ESP32- (no Chip-ID), plus Cache-Control: no-cache and x-ESP32-sketch-sha256.

/** A request header as one string (Node joins repeated x- headers with ", "). */
export function header(req: IncomingMessage, name: string): string | undefined {
  const v = req.headers[name];
  return typeof v === 'string' ? v : undefined;
}

/** The running version of a `/update` check. */
export function versionHeader(req: IncomingMessage): string {
  return header(req, 'x-esp8266-version') ?? header(req, 'x-esp32-version') ?? '';
}

/** `x-ESP8266-mode: spiffs` asks for a filesystem image; anything else for the sketch. */
export function requestedKind(req: IncomingMessage): ImageKind {
  return (header(req, 'x-esp8266-mode') ?? header(req, 'x-esp32-mode')) === 'spiffs' ? 'spiffs' : 'app';
}

/** The free space the device reports, when it is a whole number. */
export function reportedFreeSpace(req: IncomingMessage): number | undefined {
  const free = header(req, 'x-esp8266-free-space') ?? header(req, 'x-esp32-free-space');
  return free !== undefined && /^\d+$/.test(free) ? Number(free) : undefined;
}

/**
 * The MD5 of the sketch the device runs (x-ESP8266-sketch-md5, x-ESP32-sketch-md5), lower-case.
 * x-ESP32-sketch-sha256 is not used: Arduino-ESP32 takes it from the app partition
 * (esp_partition_get_sha256), the digest ESP-IDF keeps of the image without its signature
 * block, which is not the SHA-256 of the signed file this server sends.
 */
export function runningSketchMd5(req: IncomingMessage): string | undefined {
  return (header(req, 'x-esp8266-sketch-md5') ?? header(req, 'x-esp32-sketch-md5'))?.toLowerCase();
}

/** The station MAC the update client reports. */
export function reportedMac(req: IncomingMessage): string | undefined {
  return header(req, 'x-esp8266-sta-mac') ?? header(req, 'x-esp32-sta-mac');
}
