import { promises as fs } from 'node:fs';
import * as https from 'node:https';
import * as path from 'node:path';
import type { TLSSocket } from 'node:tls';
import type { AddressInfo, Socket } from 'node:net';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { parse as parseQuery } from 'node:querystring';
import express, { Response } from 'express';
import { normalizeDeviceId, isDeviceId } from '../device-id';
import type { ImageKind } from './types';
import { ImageCache } from './image-cache';
import { peerCertificateOfSession } from '../pki/peer-certificate';
import { DownloadSlotPool } from './download-slots';
import { startWorkers, WorkerInfo, WorkerPool } from './update-workers';
import { guardConnections, servingLimits, ServingLimits, SERVING_LIMITS } from './connection-guard';
import { revokedSerials } from '../pki/crl-serials';

export { SERVING_LIMITS, servingLimits };
export type { ServingLimits };

/** What the server asks for: the next image a device may install (the catalogue answers). */
export interface ImageRequest {
  currentImage: string;
  deviceId?: string;
  kind: ImageKind;
  freeSpace?: number;
}

export interface ImageOffer {
  name: string;
  size: number;
  sha256: string;
  md5: string;
  /** Absolute path of the signed image file. */
  path: string;
}

/** `status` lets the source say why there is nothing: 304 none newer, 400 malformed, 404 unknown, 413 too large. */
export type ImageAnswer = { offer: ImageOffer } | { none: string; status: 304 | 400 | 404 | 413 };

export interface ImageSource {
  next(request: ImageRequest): ImageAnswer | Promise<ImageAnswer>;
}

export type UpdateEventType = 'check' | 'not-modified' | 'download-start' | 'download-complete' | 'download-aborted' | 'rejected' | 'file';

export interface UpdateEvent {
  type: UpdateEventType;
  at: string;
  deviceId?: string;
  /** Serial of the client certificate, when one was presented. */
  certificateSerial?: string;
  /** True when deviceId comes from a verified certificate; false when only from a header. */
  authenticated?: boolean;
  path: string;
  status: number;
  image?: string;
  sha256?: string;
  bytes?: number;
  ms?: number;
  reason?: string;
  remoteAddress?: string;
  /** With `workers` > 1: which process answered (0 = the one that started the server, 1.. = forked workers). */
  worker?: number;
}

export interface UpdateServerOptions extends Partial<ServingLimits> {
  tls: { key: string; cert: string; ca: string; crl?: string };
  /** `required`: only devices with a certificate of the CA; `optional`: others get the public endpoints. */
  clientCertificates: 'required' | 'optional';
  /** URL prefix of the downloads, e.g. `/fw` (docs/wire-contract.md: https://host:port/<downloadpath>). */
  downloadPath: string;
  /** Where `ca.crt`, `<id>.crt` and `<id>.key` are (the CA store's devices/ folder). */
  deviceFilesDir: string;
  /** config.json for a device: defaults merged with its overrides. */
  deviceConfig(deviceId: string | undefined): Record<string, unknown> | Promise<Record<string, unknown>>;
  images: ImageSource;
  maxConcurrentDownloads?: number;
  retryAfterSeconds?: number;
  /** Memory for images shared by downloads (default 64 MiB). */
  imageCacheBytes?: number;
  onEvent?(event: UpdateEvent): void;
  /**
   * Processes that accept connections (default 1: this one only). N > 1 forks N - 1 workers
   * (dist/lib/firmware/update-worker.js) that share the listening socket; this process keeps
   * answering too, owns `images`, `deviceConfig`, the download cap and `onEvent`, and the
   * workers ask it over IPC. A worker that dies is started again.
   */
  workers?: number;
  /** Workers started, exited (and restarted): for logs. */
  onWorker?(info: WorkerInfo): void;
  /**
   * Whether a certificate serial (upper-case hex, as Node formats `serialNumber`) is revoked
   * now, asked on every request of a verified client: closes the gap between a revocation and
   * the CRL that lists it reaching `setCrl`. This process only (a function does not cross to
   * the workers; they go by the CRL). The CRL's own serials are refused without it.
   */
  isRevoked?(serial: string): boolean;
}

/** What a forked worker's app gets instead of the in-process defaults (lib/firmware/update-worker.ts). */
export interface AppInternals {
  /** Shared cap: a slot (with its release), or how many are under way when none is free. */
  acquireSlot(): SlotAnswer | Promise<SlotAnswer>;
  worker?: number;
  /** Instead of options.onEvent; `slot` names the download slot a download event belongs to. */
  onEvent?(event: UpdateEvent, slot?: number): void;
  /** The serials refused on every request (shared with the HTTPS server, which loads each CRL into it). */
  revocation?: Revocation;
}

/**
 * The certificate serials a serving process refuses: those of the CRL it serves with, and
 * whatever the caller's own `isRevoked` says. A Set lookup per request.
 */
export class Revocation {
  private serials = new Set<string>();
  constructor(
    crlPem: string | undefined,
    private readonly hook?: (serial: string) => boolean,
  ) {
    if (crlPem) this.load(crlPem);
  }
  load(crlPem: string): void {
    this.serials = revokedSerials(crlPem);
  }
  /** The serials of a CRL read with revokedSerials. */
  use(serials: Set<string>): void {
    this.serials = serials;
  }
  isRevoked(serial: string): boolean {
    return this.serials.has(serial) || this.hook?.(serial) === true;
  }
}
export type SlotAnswer = { id?: number; release(): void } | { inUse: number };

const DEVICE_FILE = /^\/([0-9a-f]{12})\.(crt|key)$/;
/**
 * What one write hands TLS: 16 to 64 KiB. Each write costs a trip through Node's stream and
 * TLS layers, so bigger slices cost less CPU per MB; but a download whose device reads slowly
 * holds its last slice (encrypted) until the device has taken it. So slices shrink as the
 * downloads under way in this process grow: together they hold about SLICE_BUDGET, and never
 * less than one 16 KiB TLS record each (bench/firmware-server, bench/README.md).
 */
const SLICE_MIN = 16 * 1024;
const SLICE_MAX = 64 * 1024;
const SLICE_BUDGET = 4 * 1024 * 1024;
export function sliceBytes(downloadsUnderWay: number): number {
  const share = Math.floor(SLICE_BUDGET / Math.max(1, downloadsUnderWay) / SLICE_MIN) * SLICE_MIN;
  return Math.max(SLICE_MIN, Math.min(SLICE_MAX, share));
}

/** Normalises a download path: one leading slash, no trailing slash, safe characters only. */
export function normalizeDownloadPath(p: string): string {
  const trimmed = `/${p.trim().replace(/^\/+|\/+$/g, '')}`;
  if (!/^\/[A-Za-z0-9._~/-]*$/.test(trimmed) || trimmed.split('/').some((s) => s === '..' || s === '.')) {
    throw new Error(`invalid download path ${JSON.stringify(p)}: letters, digits and / . _ ~ - only`);
  }
  return trimmed === '/' ? '' : trimmed;
}

interface Client {
  deviceId?: string;
  certificateSerial?: string;
  /** Identified by a verified certificate (not only by a header). */
  authenticated: boolean;
}

/** One request as the handlers see it: Node's own request and response (express's extend them). */
interface Exchange {
  req: IncomingMessage;
  res: ServerResponse;
  client: Client;
  /** The URL path without the query (for events). */
  path: string;
}

type EventFields = Omit<UpdateEvent, 'at' | 'path' | 'deviceId' | 'certificateSerial' | 'authenticated' | 'remoteAddress'>;

/**
 * CN and serial of the client certificate the handshake verified. Every connection here is a
 * fresh one, so what matters is the first call: read from the session (~9 us) rather than
 * getPeerCertificate() (~50 us) or getPeerX509Certificate() (~140 us the first time).
 */
function verifiedPeer(socket: TLSSocket): { commonName?: string; serialNumber: string } | undefined {
  const session = socket.getSession();
  const peer = session && peerCertificateOfSession(session);
  if (peer) return peer;
  const c = socket.getPeerCertificate();
  if (c.raw === undefined) return undefined;
  const cn: unknown = c.subject?.CN;
  return { commonName: typeof cn === 'string' ? cn : undefined, serialNumber: c.serialNumber };
}

/** A request header as one string (Node joins repeated x- headers with ", "). */
function header(req: IncomingMessage, name: string): string | undefined {
  const v = req.headers[name];
  return typeof v === 'string' ? v : undefined;
}

/**
 * The update server's request handling, on Node's plain request and response objects, shared
 * by the express routes and by the fast path for image requests (createUpdateRequestListener).
 */
function updateHandlers(options: UpdateServerOptions, internals?: AppInternals) {
  const cap = options.maxConcurrentDownloads ?? 20;
  const cache = new ImageCache(options.imageCacheBytes);
  const worker = internals?.worker;
  const acquireSlot = internals?.acquireSlot ?? localSlots(new DownloadSlotPool(cap));
  /** Downloads this process is sending (with workers, the cap counts all processes). */
  let sending = 0;
  const onEvent = internals?.onEvent ?? ((event: UpdateEvent) => options.onEvent?.(event));
  const revocation = internals?.revocation ?? new Revocation(options.tls.crl, options.isRevoked);
  const idleSeconds = (options.idleTimeoutMs ?? SERVING_LIMITS.idleTimeoutMs) / 1000;

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

  function identify(req: IncomingMessage): Client {
    const socket = req.socket as TLSSocket;
    const cert = socket.authorized ? verifiedPeer(socket) : undefined;
    const cn = cert?.commonName;
    if (cn !== undefined && isDeviceId(cn)) {
      return { deviceId: cn, certificateSerial: cert!.serialNumber, authenticated: true };
    }
    // Without a certificate (optional mode): the MAC the update client reports, for assignments only.
    const mac = header(req, 'x-esp8266-sta-mac') ?? header(req, 'x-esp32-sta-mac');
    try {
      return { deviceId: mac ? normalizeDeviceId(mac) : undefined, certificateSerial: cert?.serialNumber, authenticated: false };
    } catch {
      return { authenticated: false, certificateSerial: cert?.serialNumber };
    }
  }

  /** Who asks, and the checks every request passes first; undefined when it was refused. */
  function begin(req: IncomingMessage, res: ServerResponse, path: string): Exchange | undefined {
    const x: Exchange = { req, res, client: identify(req), path };
    const socket = req.socket as TLSSocket;
    if (!socket.authorized && socket.getPeerCertificate().raw !== undefined) {
      // A certificate that does not verify is an error, never a fallback to anonymous.
      refuse(x, 403, `client certificate refused: ${String(socket.authorizationError)}`);
      return undefined;
    }
    // The CRL (and the caller's check) on every request: a keep-alive connection of a device
    // revoked since its handshake gets nothing more, and is closed.
    if (x.client.certificateSerial !== undefined && revocation.isRevoked(x.client.certificateSerial)) {
      res.setHeader('Connection', 'close');
      refuse(x, 403, 'client certificate revoked');
      return undefined;
    }
    // llhttp accepts an HTTP/0.9 request line (no version, no headers); its client could not
    // read an HTTP/1.1 answer anyway (RFC 9110 section 15.6.6).
    if (req.httpVersionMajor !== 1) {
      res.setHeader('Connection', 'close');
      refuse(x, 505, 'HTTP/1.0 and HTTP/1.1 only');
      return undefined;
    }
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      refuse(x, 405, 'only GET and HEAD');
      return undefined;
    }
    // RFC 9112 section 3.2: a server must answer 400 to an HTTP/1.1 request without Host (done
    // here rather than by Node, so it is audited).
    if (req.headers.host === undefined && req.httpVersionMajor === 1 && req.httpVersionMinor === 1) {
      refuse(x, 400, 'an HTTP/1.1 request needs a Host header');
      return undefined;
    }
    return x;
  }

  function image(x: Exchange, currentImage: string): void {
    serveImage(x, currentImage).catch((err: Error) => refuse(x, 500, `internal error: ${err.message}`));
  }

  async function serveImage(x: Exchange, currentImage: string): Promise<void> {
    const { req, res, client } = x;
    const kind: ImageKind = (header(req, 'x-esp8266-mode') ?? header(req, 'x-esp32-mode')) === 'spiffs' ? 'spiffs' : 'app';
    const freeHeader = header(req, 'x-esp8266-free-space') ?? header(req, 'x-esp32-free-space');
    const freeSpace = freeHeader !== undefined && /^\d+$/.test(freeHeader) ? Number(freeHeader) : undefined;
    emit(x, { type: 'check', status: 0, image: currentImage.slice(0, 100) });
    if (!currentImage) return refuse(x, 400, 'curimage (or x-ESP8266-version) is required');
    const answer = await options.images.next({ currentImage, deviceId: client.deviceId, kind, freeSpace });
    if ('none' in answer) {
      if (answer.status === 304) {
        emit(x, { type: 'not-modified', status: 304, image: currentImage, reason: answer.none });
        res.statusCode = 304;
        res.end();
        return;
      }
      return refuse(x, answer.status, answer.none);
    }
    const { offer } = answer;
    // An ESP8266 already running these exact bytes has nothing to install.
    const runningMd5 = header(req, 'x-esp8266-sketch-md5');
    if (runningMd5 && runningMd5.toLowerCase() === offer.md5) {
      emit(x, { type: 'not-modified', status: 304, image: offer.name, reason: 'already running this image' });
      res.statusCode = 304;
      res.end();
      return;
    }
    // HEAD neither downloads nor takes a slot of the cap.
    const head = req.method === 'HEAD';
    const slot = head ? undefined : await acquireSlot();
    if (slot && !('release' in slot)) {
      res.setHeader('Retry-After', String(options.retryAfterSeconds ?? 60));
      return refuse(x, 503, `${slot.inUse} downloads under way (limit ${cap}); retry later`);
    }
    let image: Buffer;
    try {
      image = await cache.get(offer.path, offer.sha256, offer.size);
    } catch (err) {
      slot?.release();
      return refuse(x, 500, (err as Error).message);
    }
    if (res.destroyed || req.socket.destroyed) {
      // Gone while the slot or the image was on its way: its 'close' has fired already.
      slot?.release();
      return;
    }
    // Content-Length always (ESP8266httpUpdate refuses chunked replies) and x-MD5 for its check.
    res.statusCode = 200;
    res.setHeader('Content-Type', 'application/octet-stream');
    res.setHeader('Content-Length', String(offer.size));
    res.setHeader('Content-Disposition', `attachment; filename="${offer.name}.bin"`);
    res.setHeader('x-MD5', offer.md5);
    if (!slot) {
      res.end();
      return;
    }
    const started = Date.now();
    let sent = 0;
    // The server's idle timeout (Node's socket timeout): a device that reads nothing for that long loses its slot.
    let idle = false;
    res.once('timeout', () => {
      idle = true;
      res.destroy();
    });
    emit(x, { type: 'download-start', status: 200, image: offer.name, sha256: offer.sha256, bytes: offer.size }, slot.id);
    // 'close' fires once per response, whatever ended it: the one place that counts and reports.
    sending++;
    res.on('close', () => {
      sending--;
      const complete = res.writableFinished;
      emit(
        x,
        {
          type: complete ? 'download-complete' : 'download-aborted',
          status: 200,
          image: offer.name,
          sha256: offer.sha256,
          bytes: sent,
          ms: Date.now() - started,
          ...(complete ? {} : { reason: idle ? `no byte moved for ${idleSeconds} s: connection closed` : 'the client went away' }),
        },
        slot.id,
      );
      slot.release();
    });
    // Slices of the shared buffer, at most one waiting per connection: constant memory per download.
    // One 'drain' listener for the whole download (not a once-wrapper per slice).
    const pump = (): void => {
      while (sent < image.length) {
        const end = Math.min(sent + sliceBytes(sending), image.length);
        const more = res.write(image.subarray(sent, end));
        sent = end;
        if (!more) return;
      }
      res.off('drain', pump);
      res.end();
    };
    res.on('drain', pump);
    pump();
  }

  /**
   * The last word on a request nothing else answered, or an error of express: 404, or the
   * error's 4xx status with a short reason (500 otherwise), and its audit event.
   */
  function fail(req: IncomingMessage, res: ServerResponse, err?: unknown): void {
    const x: Exchange = ((res as { locals?: { exchange?: Exchange } }).locals?.exchange) ?? { req, res, client: identify(req), path: (req.url ?? '').split('?')[0] };
    if (err === undefined) return refuse(x, 404, 'not found');
    const e = (typeof err === 'object' && err !== null ? err : {}) as { status?: unknown; statusCode?: unknown; expose?: unknown; message?: unknown };
    const status = typeof e.status === 'number' ? e.status : typeof e.statusCode === 'number' ? e.statusCode : 500;
    if (status >= 400 && status < 500) {
      // express's router wraps decodeURIComponent's URIError ("Failed to decode param ...").
      const malformed = err instanceof URIError || /decode/i.test(String(e.message));
      return refuse(x, status, malformed ? 'malformed percent-encoding in the path' : e.expose === true ? String(e.message).slice(0, 200) : 'bad request');
    }
    refuse(x, 500, `internal error: ${String(e.message ?? err).slice(0, 200)}`);
  }

  return { begin, emit, refuse, image, fail };
}
type Handlers = ReturnType<typeof updateHandlers>;

/**
 * The express app of the update server (docs/wire-contract.md, Update server): config.json, the
 * device's certificate files, and the next signed image or 304, for ESP8266httpUpdate and
 * ESP32 HTTPUpdate clients. Images are sent from memory with constant memory per request.
 */
export function createUpdateApp(options: UpdateServerOptions, internals?: AppInternals): express.Express {
  return expressApp(options, updateHandlers(options, internals));
}

function expressApp(options: UpdateServerOptions, h: Handlers): express.Express {
  const base = normalizeDownloadPath(options.downloadPath);
  const app = express();
  app.disable('x-powered-by');
  app.disable('etag');
  app.set('query parser', 'simple');
  // Whatever reaches express's final handler gets no stack trace (finalhandler shows one outside production).
  app.set('env', 'production');

  app.use((req, res, next) => {
    const x = h.begin(req, res, req.path);
    if (!x) return;
    res.locals.exchange = x;
    next();
  });

  const exchange = (res: Response): Exchange => res.locals.exchange as Exchange;

  app.get(`${base}/config.json`, (_req, res) => {
    const x = exchange(res);
    // Per-device overrides only to the device itself; defaults to anyone the TLS layer admitted.
    Promise.resolve(options.deviceConfig(x.client.authenticated ? x.client.deviceId : undefined)).then(
      (config) => {
        h.emit(x, { type: 'file', status: 200 });
        res.type('application/json').send(JSON.stringify(config));
      },
      (err: Error) => h.refuse(x, 500, `internal error: ${err.message}`),
    );
  });

  app.get(`${base}/ca.crt`, (_req, res) => sendDeviceFile(res, 'ca.crt'));

  app.get(`${base}/firmware.bin`, (req, res) => {
    const cur = req.query.curimage;
    h.image(exchange(res), typeof cur === 'string' ? cur : '');
  });

  // Seed 001 style: the current version travels in a header.
  app.get('/update', (req, res) => h.image(exchange(res), versionHeader(req)));

  app.get(`${base}/*file`, (req, res) => {
    const x = exchange(res);
    const m = DEVICE_FILE.exec(req.path.slice(base.length));
    if (!m) return h.refuse(x, 404, 'not found');
    if (!x.client.authenticated || x.client.deviceId !== m[1]) {
      return h.refuse(x, 403, `the files of ${m[1]} are only for the device whose certificate says so`);
    }
    sendDeviceFile(res, `${m[1]}.${m[2]}`);
  });

  app.use((_req, res) => h.refuse(exchange(res), 404, 'not found'));

  // Errors of express and its router (e.g. a path segment with a bad percent-encoding, which
  // decodeURIComponent refuses): a short text and an audit event, never a stack trace.
  app.use((err: unknown, req: express.Request, res: Response, _next: express.NextFunction) => {
    void _next;
    h.fail(req, res, err);
  });

  function sendDeviceFile(res: Response, name: string): void {
    const x = exchange(res);
    const file = path.join(options.deviceFilesDir, name);
    fs.readFile(file).then(
      (data) => {
        h.emit(x, { type: 'file', status: 200, bytes: data.length });
        res.type(name.endsWith('.key') ? 'application/x-pem-file' : 'application/x-x509-ca-cert').send(data);
      },
      () => h.refuse(x, 404, `${name} has not been issued`),
    );
  }

  return app;
}

/**
 * A reason as a client may see it: absolute paths of this machine cut down to their last
 * segment (an error of the file system names the install folder).
 */
export function withoutPaths(reason: string): string {
  return reason.replace(/(?:[A-Za-z]:)?(?:[\\/][^\s\\/'"`]+)+[\\/]([^\s\\/'"`]*)/g, '$1');
}

function versionHeader(req: IncomingMessage): string {
  return header(req, 'x-esp8266-version') ?? header(req, 'x-esp32-version') ?? '';
}

/**
 * The request listener of the HTTPS server: the express app, except for the two requests a
 * fleet sends most (`<base>/firmware.bin?curimage=` and `/update`, the update checks and
 * downloads), which go straight to the same handlers the app's routes call. Express costs a
 * router walk and its request/response set-up on each of them (bench/README.md); everything
 * else (config.json, certificate files, 404s, other spellings of those paths) is the app's.
 */
export function createUpdateRequestListener(options: UpdateServerOptions, internals?: AppInternals): (req: IncomingMessage, res: ServerResponse) => void {
  const h = updateHandlers(options, internals);
  const app = expressApp(options, h);
  const firmwarePath = `${normalizeDownloadPath(options.downloadPath)}/firmware.bin`;
  return (req, res) => {
    // The last request maxRequestsPerSocket allows: Node says `Connection: close` but keeps the
    // socket open (lib/_http_outgoing.js sets no `_last` for it); the header set here closes it.
    if ((res as { maxRequestsOnConnectionReached?: boolean }).maxRequestsOnConnectionReached === true) res.setHeader('Connection', 'close');
    const url = req.url ?? '';
    const q = url.indexOf('?');
    const pathname = q < 0 ? url : url.slice(0, q);
    // RFC 9112 section 3.2: origin-form (a path) or absolute-form; anything else (`*`, an
    // authority) is no request for this server, and express would answer it with an HTML page.
    if (url.charCodeAt(0) !== 0x2f && !/^https?:\/\//i.test(url)) {
      const x = h.begin(req, res, pathname.slice(0, 200));
      if (x) h.refuse(x, 400, 'the request target must be a path');
      return;
    }
    if (pathname === firmwarePath || pathname === '/update') {
      const x = h.begin(req, res, pathname);
      if (!x) return;
      if (pathname === '/update') return h.image(x, versionHeader(req));
      const cur = q < 0 ? undefined : parseQuery(url.slice(q + 1)).curimage;
      return h.image(x, typeof cur === 'string' ? cur : '');
    }
    // Whatever express leaves unanswered ends here, not in its HTML final handler.
    app(req as express.Request, res as Response, (err?: unknown) => h.fail(req, res, err));
  };
}

/** The in-process cap (one process serves): slots of a pool nobody else shares. */
function localSlots(pool: DownloadSlotPool): AppInternals['acquireSlot'] {
  return () => {
    const id = pool.acquire(0);
    return id === undefined ? { inUse: pool.inUse } : { release: () => void pool.release(0, id) };
  };
}

export interface RunningUpdateServer {
  port: number;
  server: https.Server;
  /**
   * Loads a new CRL (call it whenever the CA re-signs its CRL): new handshakes are checked
   * against it, every request from then on too, and every open connection whose certificate
   * it lists is closed. This process does so at once; the promise resolves when every worker
   * process has done the same.
   */
  setCrl(crlPem: string): Promise<void>;
  /** Process ids of the forked workers now running (empty with one process). */
  workerPids(): number[];
  close(): Promise<void>;
}

/** What createUpdateHttpsServer gives each serving process. */
export interface UpdateHttpsServer {
  server: https.Server;
  /** The new CRL for handshakes and requests; closes the open connections it revokes (how many). */
  setCrl(crlPem: string): number;
  /** Stops accepting and closes every connection, in its handshake or not. */
  close(): Promise<void>;
}

/**
 * The HTTPS server around the request listener, with the TLS settings, caps and deadlines of
 * every serving process (lib/firmware/connection-guard.ts). `revocation` is the one the
 * listener checks requests against; setCrl loads each CRL into it.
 */
export function createUpdateHttpsServer(
  options: Pick<UpdateServerOptions, 'tls' | 'clientCertificates'> & Partial<ServingLimits>,
  listener: (req: IncomingMessage, res: ServerResponse) => void,
  onEvent: (event: UpdateEvent) => void,
  worker: number | undefined,
  revocation: Revocation,
): UpdateHttpsServer {
  const limits = servingLimits(options);
  const tlsSettings = (crl: string | undefined): https.ServerOptions => ({
    key: options.tls.key,
    cert: options.tls.cert,
    ca: options.tls.ca,
    crl,
    requestCert: true,
    rejectUnauthorized: options.clientCertificates === 'required',
    // ESP8266 BearSSL speaks TLS 1.2 at most; nothing older is offered.
    minVersion: 'TLSv1.2',
  });
  const server = https.createServer(
    {
      ...tlsSettings(options.tls.crl),
      maxHeaderSize: 8 * 1024,
      // A request has no body worth waiting for (GET and HEAD only): headers and body share one deadline.
      headersTimeout: limits.headersTimeoutMs,
      requestTimeout: limits.headersTimeoutMs,
      keepAliveTimeout: limits.keepAliveTimeoutMs,
      // Node checks the two deadlines above on this interval (default 30 s, which let slow headers last ~40 s).
      connectionsCheckingInterval: Math.max(100, Math.min(1_000, Math.floor(limits.headersTimeoutMs / 4))),
      // The Host check is the handlers' (audited); Node's own would answer 400 silently.
      requireHostHeader: false,
    },
    listener,
  );
  server.timeout = limits.idleTimeoutMs;
  server.maxRequestsPerSocket = limits.maxRequestsPerConnection;
  const refused = (socket: Socket, status: number, reason: string): void => {
    const tls = socket as TLSSocket;
    const peer = tls.encrypted && tls.authorized ? verifiedPeer(tls) : undefined;
    const cn = peer?.commonName;
    onEvent({
      type: 'rejected',
      at: new Date().toISOString(),
      path: '',
      status,
      reason,
      ...(peer ? { certificateSerial: peer.serialNumber, authenticated: true, ...(cn !== undefined && isDeviceId(cn) ? { deviceId: cn } : {}) } : {}),
      remoteAddress: socket.remoteAddress,
      ...(worker === undefined ? {} : { worker }),
    });
  };
  const guard = guardConnections(server, limits, refused);
  const serialOf = (tls: TLSSocket): string | undefined => verifiedPeer(tls)?.serialNumber;
  return {
    server,
    setCrl: (crl) => {
      // Read first: a CRL that cannot be read changes nothing.
      const serials = revokedSerials(crl);
      server.setSecureContext(tlsSettings(crl));
      revocation.use(serials);
      return guard.closeRevoked((serial) => revocation.isRevoked(serial), serialOf);
    },
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
        guard.destroyAll();
      }),
  };
}

/**
 * Starts the app on HTTPS with client certificates checked against the CA (and its CRL);
 * with `workers` > 1 also the workers that share its socket (lib/firmware/update-workers.ts).
 */
export async function startUpdateServer(options: UpdateServerOptions & { port: number; host?: string }): Promise<RunningUpdateServer> {
  const count = Math.max(1, Math.floor(options.workers ?? 1));
  const slots = new DownloadSlotPool(options.maxConcurrentDownloads ?? 20);
  const worker = count > 1 ? 0 : undefined;
  const onEvent = (event: UpdateEvent): void => options.onEvent?.(event);
  const revocation = new Revocation(options.tls.crl, options.isRevoked);
  const serving = createUpdateHttpsServer(options, createUpdateRequestListener(options, { acquireSlot: localSlots(slots), worker, revocation }), onEvent, worker, revocation);
  const { server } = serving;
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port, options.host ?? '0.0.0.0', () => resolve());
  });
  let crl = options.tls.crl;
  let workers: WorkerPool | undefined;
  if (count > 1) {
    try {
      workers = await startWorkers({ count: count - 1, server, options, slots, crl: () => crl });
    } catch (err) {
      await serving.close();
      throw err;
    }
  }
  return {
    port: (server.address() as AddressInfo).port,
    server,
    workerPids: () => workers?.pids() ?? [],
    setCrl: async (pem) => {
      serving.setCrl(pem);
      crl = pem;
      await workers?.setCrl(pem);
    },
    close: async () => {
      await workers?.close();
      await serving.close();
    },
  };
}
