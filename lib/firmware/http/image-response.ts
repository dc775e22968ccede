import type { Exchange, HandlerContext } from './exchange';
import { requestedKind, reportedFreeSpace, runningSketchMd5 } from './request-headers';
import { sliceBytes } from './slices';
import { imageEtag, requestedRange } from './byte-range';
import { STATUS_OF, statusOfNoImage } from './status-codes';

/**
 * An update check and, when the domain offers an image, its download: asks the ImageSource,
 * tells its answer as a status (status-codes.ts), takes a slot of the download cap and sends
 * the image from memory in slices (slices.ts), with constant memory per download.
 */
export async function serveImage(c: HandlerContext, x: Exchange, currentImage: string): Promise<void> {
  const { req, res, client } = x;
  const { emit, refuse } = c;
  const kind = requestedKind(req);
  const freeSpace = reportedFreeSpace(req);
  emit(x, { type: 'check', status: 0, image: currentImage.slice(0, 100) });
  if (!currentImage) return refuse(x, STATUS_OF['no-version'], 'curimage (or x-ESP8266-version, x-ESP32-version) is required');
  const answer = await c.options.images.next({ currentImage, deviceId: client.deviceId, kind, freeSpace });
  if (answer.kind === 'none') {
    const status = statusOfNoImage(answer.reason);
    if (status === 304) return notModified(c, x, currentImage, answer.detail);
    return refuse(x, status, answer.detail);
  }
  const offer = answer.image;
  // An ESP8266 already running these exact bytes has nothing to install.
  const runningMd5 = runningSketchMd5(req);
  if (runningMd5 && runningMd5 === offer.md5) return notModified(c, x, offer.name, 'already running this image');
  // The version rules chose the image; a Range only slices it (byte-range.ts).
  const etag = imageEtag(offer.sha256);
  const range = requestedRange(req, offer.size, etag);
  const describe = (): void => {
    res.setHeader('ETag', etag);
    res.setHeader('Accept-Ranges', 'bytes');
  };
  if (range.kind === 'unsatisfiable') {
    describe();
    // RFC 9110 section 15.5.17: the current length, for the client's next try.
    res.setHeader('Content-Range', `bytes */${offer.size}`);
    return refuse(x, STATUS_OF['range-not-satisfiable'], `the range asked for starts at or past the end of the ${offer.size} bytes of ${offer.name}`);
  }
  const first = range.kind === 'slice' ? range.first : 0;
  const end = range.kind === 'slice' ? range.last + 1 : offer.size;
  const length = end - first;
  // HEAD neither downloads nor takes a slot of the cap.
  const head = req.method === 'HEAD';
  const slot = head ? undefined : await c.acquireSlot();
  if (slot && !('release' in slot)) {
    res.setHeader('Retry-After', String(c.options.retryAfterSeconds ?? 60));
    return refuse(x, STATUS_OF.busy, `${slot.inUse} downloads under way (limit ${c.cap}); retry later`);
  }
  let image: Buffer;
  try {
    image = await c.cache.get(offer.path, offer.sha256, offer.size);
  } catch (err) {
    slot?.release();
    return refuse(x, STATUS_OF.internal, (err as Error).message);
  }
  if (res.destroyed || req.socket.destroyed) {
    // Gone while the slot or the image was on its way: its 'close' has fired already.
    slot?.release();
    return;
  }
  // Content-Length always (ESP8266httpUpdate refuses chunked replies) and x-MD5 for its check
  // (of the whole image: a 206 is a part of it, RFC 9110 section 15.3.7).
  res.statusCode = range.kind === 'slice' ? 206 : 200;
  describe();
  res.setHeader('Content-Type', 'application/octet-stream');
  res.setHeader('Content-Length', String(length));
  if (range.kind === 'slice') res.setHeader('Content-Range', `bytes ${first}-${end - 1}/${offer.size}`);
  res.setHeader('Content-Disposition', `attachment; filename="${offer.name}.bin"`);
  res.setHeader('x-MD5', offer.md5);
  if (!slot) {
    res.end();
    return;
  }
  const started = Date.now();
  /** The next byte of the image to send; `sent` of this response is `next - first`. */
  let next = first;
  // The server's idle timeout (Node's socket timeout): a device that reads nothing for that long loses its slot.
  let idle = false;
  res.once('timeout', () => {
    idle = true;
    res.destroy();
  });
  // Events of a slice: `bytes` counts this response's body, `offset` and `total` place it in the
  // image, and `percent` is of the whole image (offset + bytes of total), so a resumed
  // download goes on rising where the interrupted one stopped.
  const status = res.statusCode;
  const place = { offset: first, total: offer.size };
  emit(x, { type: 'download-start', status, image: offer.name, sha256: offer.sha256, bytes: length, ...place }, slot.id);
  // 'close' fires once per response, whatever ended it: the one place that counts and reports
  // (registered before the progress reporter's, so download-aborted comes first and nothing after).
  const downloads = c.downloads;
  downloads.sending++;
  res.on('close', () => {
    downloads.sending--;
    const complete = res.writableFinished;
    emit(
      x,
      {
        type: complete ? 'download-complete' : 'download-aborted',
        status,
        image: offer.name,
        sha256: offer.sha256,
        bytes: next - first,
        ...place,
        ms: Date.now() - started,
        ...(complete ? {} : { reason: idle ? `no byte moved for ${c.idleSeconds} s: connection closed` : 'the client went away' }),
      },
      slot.id,
    );
    slot.release();
  });
  const progress = progressReporter(length, (bytes) =>
    emit(x, { type: 'download-progress', status, image: offer.name, sha256: offer.sha256, bytes, ...place, percent: Math.floor(((first + bytes) * 100) / offer.size) }, slot.id),
  );
  res.once('close', progress.stop);
  // Slices of the shared buffer, at most one waiting per connection: constant memory per download.
  // One 'drain' listener for the whole download (not a once-wrapper per slice).
  const pump = (): void => {
    while (next < end) {
      const to = Math.min(next + sliceBytes(downloads.sending), end);
      const done = to - first;
      const more = res.write(image.subarray(next, to), (err) => err || progress.flushed(done));
      next = to;
      if (!more) return;
    }
    res.off('drain', pump);
    res.end();
  };
  res.on('drain', pump);
  pump();
}

/**
 * A download's progress, told as the bytes the socket has taken cross each further 5 % of the
 * body (the image or its slice: at most 20 events; the last is 100 when the whole body was flushed). `flushed(end)`
 * runs in the write callbacks, which Node calls in order once the slice was handed to the
 * kernel (stream.Writable `write(chunk, callback)`), so `end` is the count so far: one
 * comparison per slice, no timer. `stop()` ends it (the response closed).
 */
export function progressReporter(total: number, report: (bytes: number, percent: number) => void): { flushed(end: number): void; stop(): void } {
  const STEPS = 20;
  let nextAt = total > 0 ? Math.ceil(total / STEPS) : Infinity;
  return {
    flushed: (end) => {
      if (end < nextAt) return;
      // The first step above `end` (a slice larger than 5 % crosses several: one event).
      const step = Math.floor((end * STEPS) / total) + 1;
      nextAt = step > STEPS ? Infinity : Math.ceil((total * step) / STEPS);
      report(end, Math.floor((end * 100) / total));
    },
    stop: () => {
      nextAt = Infinity;
    },
  };
}

/** 304: nothing to install (HTTP_UPDATE_NO_UPDATES on the device), and why in the event. */
function notModified(c: HandlerContext, x: Exchange, image: string, reason: string): void {
  c.emit(x, { type: 'not-modified', status: 304, image, reason });
  x.res.statusCode = 304;
  x.res.end();
}
