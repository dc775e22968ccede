import type { IncomingMessage, ServerResponse } from 'node:http';
import type { TLSSocket } from 'node:tls';
import { ImageCache } from '../image-cache';
import { DownloadSlotPool } from '../download-slots';
import { SERVING_LIMITS } from '../connection-guard';
import { identify } from './peer-identity';
import { Exchange, EventFields, HandlerContext, withoutPaths } from './exchange';
import { Revocation } from './revocation';
import { STATUS_OF } from './status-codes';
import { serveImage } from './image-response';
import type { AppInternals, UpdateEvent, UpdateServerOptions } from './update-types';

/** The in-process cap (one process serves): slots of a pool nobody else shares. */
export function localSlots(pool: DownloadSlotPool): AppInternals['acquireSlot'] {
  return () => {
    const id = pool.acquire(0);
    return id === undefined ? { inUse: pool.inUse } : { release: () => void pool.release(0, id) };
  };
}


/**
 * The update server's request handling, on Node's plain request and response objects, shared
 * by the express routes (express-app.ts) and by the fast path for image requests (fast-path.ts).
 */
export function updateHandlers(options: UpdateServerOptions, internals?: AppInternals) {
  const cap = options.maxConcurrentDownloads ?? 20;
  const worker = internals?.worker;
  const onEvent = internals?.onEvent ?? ((event: UpdateEvent) => options.onEvent?.(event));
  const revocation = internals?.revocation ?? new Revocation(options.tls.crl, options.isRevoked);

  const emit = (x: Exchange, e: EventFields, slot?: number): void => {
    onEvent(
      {
        at: new Date().toISOString(),
        path: x.path.slice(0, 200),
        deviceId: x.client.deviceId,
        certificateSerial: x.client.certificateSerial,
        authenticated: x.client.authenticated,
        remoteAddress: x.req.socket.remoteAddress,
        ...(worker === undefined ? {} : { worker }),
        ...e,
      },
      slot,
    );
  };

  /** A refusal: the event, then the status with the reason as text (never a path of this machine). */
  const refuse = (x: Exchange, status: number, reason: string): void => {
    emit(x, { type: 'rejected', status, reason });
    if (x.res.headersSent) {
      x.res.destroy();
      return;
    }
    const body = `${status >= 500 ? withoutPaths(reason) : reason}\n`;
    x.res.statusCode = status;
    x.res.setHeader('Content-Type', 'text/plain; charset=utf-8');
    x.res.setHeader('Content-Length', Buffer.byteLength(body));
    x.res.end(x.req.method === 'HEAD' ? undefined : body);
  };

  const context: HandlerContext = {
    options,
    cap,
    cache: new ImageCache(options.imageCacheBytes),
    acquireSlot: internals?.acquireSlot ?? localSlots(new DownloadSlotPool(cap)),
    downloads: { sending: 0 },
    idleSeconds: (options.idleTimeoutMs ?? SERVING_LIMITS.idleTimeoutMs) / 1000,
    emit,
    refuse,
  };

  /** Who asks, and the checks every request passes first; undefined when it was refused. */
  function begin(req: IncomingMessage, res: ServerResponse, path: string): Exchange | undefined {
    const x: Exchange = { req, res, client: identify(req), path };
    const socket = req.socket as TLSSocket;
    if (!socket.authorized && socket.getPeerCertificate().raw !== undefined) {
      // A certificate that does not verify is an error, never a fallback to anonymous.
      refuse(x, STATUS_OF['certificate-refused'], `client certificate refused: ${String(socket.authorizationError)}`);
      return undefined;
    }
    // The CRL (and the caller's check) on every request: a keep-alive connection of a device
    // revoked since its handshake gets nothing more, and is closed.
    if (x.client.certificateSerial !== undefined && revocation.isRevoked(x.client.certificateSerial)) {
      res.setHeader('Connection', 'close');
      refuse(x, STATUS_OF['certificate-refused'], 'client certificate revoked');
      return undefined;
    }
    // llhttp accepts an HTTP/0.9 request line (no version, no headers); its client could not
    // read an HTTP/1.1 answer anyway (RFC 9110 section 15.6.6).
    if (req.httpVersionMajor !== 1) {
      res.setHeader('Connection', 'close');
      refuse(x, STATUS_OF['http-version'], 'HTTP/1.0 and HTTP/1.1 only');
      return undefined;
    }
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      refuse(x, STATUS_OF['method-not-allowed'], 'only GET and HEAD');
      return undefined;
    }
    // RFC 9112 section 3.2: a server must answer 400 to an HTTP/1.1 request without Host (done
    // here rather than by Node, so it is audited).
    if (req.headers.host === undefined && req.httpVersionMajor === 1 && req.httpVersionMinor === 1) {
      refuse(x, STATUS_OF['no-host'], 'an HTTP/1.1 request needs a Host header');
      return undefined;
    }
    return x;
  }

  function image(x: Exchange, currentImage: string): void {
    serveImage(context, x, currentImage).catch((err: Error) => refuse(x, STATUS_OF.internal, `internal error: ${err.message}`));
  }

  /**
   * The last word on a request nothing else answered, or an error of express: 404, or the
   * error's 4xx status with a short reason (500 otherwise), and its audit event.
   */
  function fail(req: IncomingMessage, res: ServerResponse, err?: unknown): void {
    const x: Exchange = (res as { locals?: { exchange?: Exchange } }).locals?.exchange ?? { req, res, client: identify(req), path: (req.url ?? '').split('?')[0] };
    if (err === undefined) return refuse(x, STATUS_OF['not-found'], 'not found');
    const e = (typeof err === 'object' && err !== null ? err : {}) as { status?: unknown; statusCode?: unknown; expose?: unknown; message?: unknown };
    const status = typeof e.status === 'number' ? e.status : typeof e.statusCode === 'number' ? e.statusCode : 500;
    if (status >= 400 && status < 500) {
      // express's router wraps decodeURIComponent's URIError ("Failed to decode param ...").
      const malformed = err instanceof URIError || /decode/i.test(String(e.message));
      return refuse(x, status, malformed ? 'malformed percent-encoding in the path' : e.expose === true ? String(e.message).slice(0, 200) : 'bad request');
    }
    refuse(x, STATUS_OF.internal, `internal error: ${String(e.message ?? err).slice(0, 200)}`);
  }

  return { begin, emit, refuse, image, fail };
}
export type Handlers = ReturnType<typeof updateHandlers>;
