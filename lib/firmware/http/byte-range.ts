import type { IncomingMessage } from 'node:http';

// Range requests on images (RFC 9110 section 14, which replaced RFC 7233), so that an
// interrupted download resumes: ESP-IDF's esp_https_ota (>= 5.5, partial downloads) asks
// `Range: bytes=N-` with the image's strong ETag in If-Range (docs/wire-contract.md, Range
// requests and ETag).

/** The strong entity tag of an image: its SHA-256, quoted (RFC 9110 section 8.8.3). */
export function imageEtag(sha256: string): string {
  return `"${sha256}"`;
}

/** What a GET of an image of `size` bytes answers: the whole image, a slice of it, or 416. */
export type RangeAnswer = { kind: 'whole' } | { kind: 'slice'; first: number; last: number } | { kind: 'unsatisfiable' };

/** Longer Range values are no request of an update client: served whole, never parsed. */
const MAX_RANGE_LENGTH = 200;

/**
 * The answer to a GET's `Range` and `If-Range` for an image of `size` bytes with entity tag
 * `etag`:
 * - no Range, a Range of another unit or of invalid syntax (RFC 9110 section 14.2: a server
 *   MAY ignore it): the whole image.
 * - `If-Range` that is not exactly the current strong ETag (a stale tag, a weak one, a date:
 *   this server sends no Last-Modified, so no date matches; RFC 9110 section 13.1.5): the
 *   whole image, so a resumed download never splices two images.
 * - more than one range: the whole image (a choice RFC 9110 section 14.2 allows; no update
 *   client asks for several, and one 200 is simpler than multipart/byteranges).
 * - `a-b`, `a-`, `-n` (section 14.1.2): the slice, its last position clamped to the image's
 *   end; a first position at or past the end, or a suffix of 0 bytes: unsatisfiable (416,
 *   section 15.5.17).
 */
export function rangeOf(rangeHeader: string | undefined, ifRange: string | undefined, size: number, etag: string): RangeAnswer {
  if (rangeHeader === undefined || rangeHeader.length > MAX_RANGE_LENGTH) return { kind: 'whole' };
  if (ifRange !== undefined && ifRange.trim() !== etag) return { kind: 'whole' };
  // The range unit is case-insensitive (section 14.1); OWS around "=" is not in the grammar.
  const m = /^bytes=(.*)$/i.exec(rangeHeader.trim());
  if (!m) return { kind: 'whole' };
  const specs = m[1].split(',').map((s) => s.trim());
  if (specs.length !== 1) return { kind: 'whole' };
  const spec = /^(?:(\d+)-(\d*)|-(\d+))$/.exec(specs[0]);
  if (!spec) return { kind: 'whole' };
  if (spec[3] !== undefined) {
    const n = Number(spec[3]);
    if (n === 0 || size === 0) return { kind: 'unsatisfiable' };
    return { kind: 'slice', first: Math.max(0, size - n), last: size - 1 };
  }
  const first = Number(spec[1]);
  const last = spec[2] === '' ? Infinity : Number(spec[2]);
  // An invalid range-spec (last before first, section 14.1.1): ignored, like any bad syntax.
  if (last < first) return { kind: 'whole' };
  if (first >= size) return { kind: 'unsatisfiable' };
  return { kind: 'slice', first, last: Math.min(last, size - 1) };
}

/** The answer for a request: Range only on GET (section 14.2: ignored for other methods, HEAD included). */
export function requestedRange(req: IncomingMessage, size: number, etag: string): RangeAnswer {
  if (req.method !== 'GET') return { kind: 'whole' };
  const one = (name: string): string | undefined => {
    const v = req.headers[name];
    return typeof v === 'string' ? v : undefined;
  };
  return rangeOf(one('range'), one('if-range'), size, etag);
}
