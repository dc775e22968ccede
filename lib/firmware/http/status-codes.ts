import type { NoImageReason } from '../image-source';

/**
 * Every reason the update server answers a request without a 200, and the HTTP status it is
 * told as. What an ESP8266httpUpdate client makes of each (esp8266/Arduino
 * ESP8266httpUpdate.cpp, handleUpdate; Arduino-ESP32's HTTPUpdate.cpp does the same): 304 is
 * HTTP_UPDATE_NO_UPDATES (nothing to do, not an error); 403 is HTTP_UE_SERVER_FORBIDDEN and
 * 404 HTTP_UE_SERVER_FILE_NOT_FOUND (each its own error code on the device); every other code
 * is HTTP_UE_SERVER_WRONG_HTTP_CODE, an HTTP_UPDATE_FAILED the device retries on its next
 * check (docs/wire-contract.md, Update server). The reasons behind one status stay apart for
 * the audit events and the text body.
 */
export const STATUS_OF = {
  // ---- the domain's "nothing" (lib/firmware/image-source.ts) ----
  /** Nothing newer, or the device runs its pinned/rollback image already: RFC 9110 15.4.5 Not Modified. */
  'up-to-date': 304,
  /** Newer images exist, none the device can verify (a missing bridge): nothing to install now, 304. */
  unverifiable: 304,
  /** The operator's assignment names an image that cannot be offered: nothing to install now, 304. */
  'bad-assignment': 304,
  /** A download policy keeps the offer back for now (not an error on the device, which checks again later): 304. */
  'held-back': 304,
  /** The current image name, device id or kind cannot be understood: 400 Bad Request. */
  'bad-request': 400,
  /** The running image is not in the catalogue, so nothing can be offered safely: 404. */
  'unknown-image': 404,
  /** The next image does not fit the free space the device reports: 413 Content Too Large (RFC 9110 15.5.14). */
  'too-large': 413,

  // ---- the transport's own ----
  /** An update check without `curimage` or `x-ESP8266-version`: 400. */
  'no-version': 400,
  /** An ESP8266 whose x-ESP8266-sketch-md5 is the offered image's MD5 runs it already: 304. */
  'already-running': 304,
  /** A request target that is no path (RFC 9112 3.2): 400. */
  'bad-target': 400,
  /** An HTTP/1.1 request without Host (RFC 9112 3.2): 400. */
  'no-host': 400,
  /** A client certificate that does not verify, or one the CRL (or isRevoked) lists: 403. */
  'certificate-refused': 403,
  /** A device's certificate files asked for by anyone but that device: 403. */
  'not-yours': 403,
  /** No such endpoint, or a device file not issued: 404. */
  'not-found': 404,
  /** Anything but GET and HEAD (RFC 9110 15.5.6): 405. */
  'method-not-allowed': 405,
  /** A Range whose first byte is at or past the image's end (RFC 9110 15.5.17): 416 with `Content-Range: bytes *\/<size>`. */
  'range-not-satisfiable': 416,
  /** A failure of this server (reading an image, config.json): 500, the text without local paths. */
  internal: 500,
  /** The download cap is reached: 503 with Retry-After (RFC 9110 15.6.4); the device retries later. */
  busy: 503,
  /** HTTP/0.9 or HTTP/2 and later on this HTTP/1.x server (RFC 9110 15.6.6): 505. */
  'http-version': 505,
} as const satisfies Record<string, number>;

export type RefusalReason = keyof typeof STATUS_OF;

/** The status a domain "nothing" is told as. */
export function statusOfNoImage(reason: NoImageReason): number {
  // Typed so that a reason the domain adds without a row here fails to compile.
  const domain: Record<NoImageReason, number> = STATUS_OF;
  // A reason from another process's domain that this one does not know: our fault, 500.
  return domain[reason] ?? STATUS_OF.internal;
}
