import { promises as fs } from 'node:fs';
import * as https from 'node:https';
import * as path from 'node:path';
import type { TLSSocket } from 'node:tls';
import type { AddressInfo } from 'node:net';
import express, { Request, Response } from 'express';
import { normalizeDeviceId, isDeviceId } from '../device-id';
import type { ImageKind } from './types';
import { ImageCache } from './image-cache';
import { DownloadSlotPool } from './download-slots';
import { startWorkers, WorkerInfo, WorkerPool } from './update-workers';

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

export interface UpdateServerOptions {
  tls: { key: string; cert: string; ca: string; crl?: string };
  /** `required`: only devices with a certificate of the CA; `optional`: others get the public endpoints. */
  clientCertificates: 'required' | 'optional';
  /** URL prefix of the downloads, e.g. `/fw` (DESIGN.md: https://host:port/<downloadpath>). */
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
}

/** What a forked worker's app gets instead of the in-process defaults (lib/firmware/update-worker.ts). */
export interface AppInternals {
  /** Shared cap: a slot (with its release), or how many are under way when none is free. */
  acquireSlot(): SlotAnswer | Promise<SlotAnswer>;
  worker?: number;
  /** Instead of options.onEvent; `slot` names the download slot a download event belongs to. */
  onEvent?(event: UpdateEvent, slot?: number): void;
}
export type SlotAnswer = { id?: number; release(): void } | { inUse: number };

const DEVICE_FILE = /^\/([0-9a-f]{12})\.(crt|key)$/;
/** What one write hands TLS: one record's worth. */
const SLICE_BYTES = 16 * 1024;

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

/**
 * The express app of the update server (DESIGN.md, Update server): config.json, the
 * device's certificate files, and the next signed image or 304, for ESP8266httpUpdate and
 * ESP32 HTTPUpdate clients. Images stream from disk with constant memory per request.
 */
export function createUpdateApp(options: UpdateServerOptions, internals?: AppInternals): express.Express {
  const base = normalizeDownloadPath(options.downloadPath);
  const cap = options.maxConcurrentDownloads ?? 20;
  const cache = new ImageCache(options.imageCacheBytes);
  const worker = internals?.worker;
  const acquireSlot = internals?.acquireSlot ?? localSlots(new DownloadSlotPool(cap));
  const app = express();
  app.disable('x-powered-by');
  app.disable('etag');
  app.set('query parser', 'simple');

  const onEvent = internals?.onEvent ?? ((event: UpdateEvent) => options.onEvent?.(event));
  const emit = (req: Request, client: Client, e: Omit<UpdateEvent, 'at' | 'path' | 'deviceId' | 'certificateSerial' | 'authenticated' | 'remoteAddress'>, slot?: number): void => {
    onEvent({
      at: new Date().toISOString(),
      path: req.path.slice(0, 200),
      deviceId: client.deviceId,
      certificateSerial: client.certificateSerial,
      authenticated: client.authenticated,
      remoteAddress: req.socket.remoteAddress,
      ...(worker === undefined ? {} : { worker }),
      ...e,
    }, slot);
  };
  const refuse = (req: Request, res: Response, client: Client, status: number, reason: string): void => {
    emit(req, client, { type: 'rejected', status, reason });
    res.status(status).type('text/plain').send(`${reason}\n`);
  };

  app.use((req, res, next) => {
    const client = identify(req);
    res.locals.client = client;
    const socket = req.socket as TLSSocket;
    if (!socket.authorized && socket.getPeerX509Certificate?.() !== undefined) {
      // A certificate that does not verify is an error, never a fallback to anonymous.
      return refuse(req, res, client, 403, `client certificate refused: ${String(socket.authorizationError)}`);
    }
    if (req.method !== 'GET' && req.method !== 'HEAD') return refuse(req, res, client, 405, 'only GET and HEAD');
    next();
  });

  const locals = (res: Response): Client => res.locals.client as Client;

  app.get(`${base}/config.json`, (req, res) => {
    const client = locals(res);
    // Per-device overrides only to the device itself; defaults to anyone the TLS layer admitted.
    Promise.resolve(options.deviceConfig(client.authenticated ? client.deviceId : undefined)).then(
      (config) => {
        emit(req, client, { type: 'file', status: 200 });
        res.type('application/json').send(JSON.stringify(config));
      },
      (err: Error) => refuse(req, res, client, 500, `internal error: ${err.message}`),
    );
  });

  app.get(`${base}/ca.crt`, (req, res) => sendDeviceFile(req, res, 'ca.crt'));

  app.get(`${base}/firmware.bin`, (req, res) => {
    const cur = req.query.curimage;
    serveImage(req, res, typeof cur === 'string' ? cur : '').catch((err: Error) => refuse(req, res, locals(res), 500, `internal error: ${err.message}`));
  });

  // Seed 001 style: the current version travels in a header.
  app.get('/update', (req, res) => {
    const cur = req.get('x-ESP8266-version') ?? req.get('x-ESP32-version') ?? '';
    serveImage(req, res, cur).catch((err: Error) => refuse(req, res, locals(res), 500, `internal error: ${err.message}`));
  });

  app.get(`${base}/*file`, (req, res) => {
    const client = locals(res);
    const m = DEVICE_FILE.exec(req.path.slice(base.length));
    if (!m) return refuse(req, res, client, 404, 'not found');
    if (!client.authenticated || client.deviceId !== m[1]) {
      return refuse(req, res, client, 403, `the files of ${m[1]} are only for the device whose certificate says so`);
    }
    sendDeviceFile(req, res, `${m[1]}.${m[2]}`);
  });

  app.use((req, res) => refuse(req, res, locals(res), 404, 'not found'));

  function sendDeviceFile(req: Request, res: Response, name: string): void {
    const client = locals(res);
    const file = path.join(options.deviceFilesDir, name);
    fs.readFile(file).then(
      (data) => {
        emit(req, client, { type: 'file', status: 200, bytes: data.length });
        res.type(name.endsWith('.key') ? 'application/x-pem-file' : 'application/x-x509-ca-cert').send(data);
      },
      () => refuse(req, res, client, 404, `${name} has not been issued`),
    );
  }

  async function serveImage(req: Request, res: Response, currentImage: string): Promise<void> {
    const client = locals(res);
    const kind: ImageKind = (req.get('x-ESP8266-mode') ?? req.get('x-ESP32-mode')) === 'spiffs' ? 'spiffs' : 'app';
    const freeHeader = req.get('x-ESP8266-free-space') ?? req.get('x-ESP32-free-space');
    const freeSpace = freeHeader !== undefined && /^\d+$/.test(freeHeader) ? Number(freeHeader) : undefined;
    emit(req, client, { type: 'check', status: 0, image: currentImage.slice(0, 100) });
    if (!currentImage) return refuse(req, res, client, 400, 'curimage (or x-ESP8266-version) is required');
    const answer = await options.images.next({ currentImage, deviceId: client.deviceId, kind, freeSpace });
    if ('none' in answer) {
      if (answer.status === 304) {
        emit(req, client, { type: 'not-modified', status: 304, image: currentImage, reason: answer.none });
        res.status(304).end();
        return;
      }
      return refuse(req, res, client, answer.status, answer.none);
    }
    const { offer } = answer;
    // An ESP8266 already running these exact bytes has nothing to install.
    const runningMd5 = req.get('x-ESP8266-sketch-md5');
    if (runningMd5 && runningMd5.toLowerCase() === offer.md5) {
      emit(req, client, { type: 'not-modified', status: 304, image: offer.name, reason: 'already running this image' });
      res.status(304).end();
      return;
    }
    // HEAD neither downloads nor takes a slot of the cap.
    const head = req.method === 'HEAD';
    const slot = head ? undefined : await acquireSlot();
    if (slot && !('release' in slot)) {
      res.set('Retry-After', String(options.retryAfterSeconds ?? 60));
      return refuse(req, res, client, 503, `${slot.inUse} downloads under way (limit ${cap}); retry later`);
    }
    let image: Buffer;
    try {
      image = await cache.get(offer.path, offer.sha256, offer.size);
    } catch (err) {
      slot?.release();
      return refuse(req, res, client, 500, (err as Error).message);
    }
    if (res.destroyed || req.socket.destroyed) {
      // Gone while the slot or the image was on its way: its 'close' has fired already.
      slot?.release();
      return;
    }
    // Content-Length always (ESP8266httpUpdate refuses chunked replies) and x-MD5 for its check.
    res.status(200).set({
      'Content-Type': 'application/octet-stream',
      'Content-Length': String(offer.size),
      'Content-Disposition': `attachment; filename="${offer.name}.bin"`,
      'x-MD5': offer.md5,
    });
    if (!slot) {
      res.end();
      return;
    }
    const started = Date.now();
    let sent = 0;
    emit(req, client, { type: 'download-start', status: 200, image: offer.name, sha256: offer.sha256, bytes: offer.size }, slot.id);
    // 'close' fires once per response, whatever ended it: the one place that counts and reports.
    res.on('close', () => {
      const complete = res.writableFinished;
      emit(req, client, {
        type: complete ? 'download-complete' : 'download-aborted',
        status: 200,
        image: offer.name,
        sha256: offer.sha256,
        bytes: sent,
        ms: Date.now() - started,
        ...(complete ? {} : { reason: 'the client went away' }),
      }, slot.id);
      slot.release();
    });
    // Slices of the shared buffer, at most one waiting per connection: constant memory per download.
    const pump = (): void => {
      while (sent < image.length) {
        const end = Math.min(sent + SLICE_BYTES, image.length);
        const more = res.write(image.subarray(sent, end));
        sent = end;
        if (!more) {
          res.once('drain', pump);
          return;
        }
      }
      res.end();
    };
    pump();
  }

  function identify(req: Request): Client {
    const socket = req.socket as TLSSocket;
    // The X509Certificate form: getPeerCertificate() builds fingerprints and more on every call.
    const cert = socket.authorized ? socket.getPeerX509Certificate?.() : undefined;
    const cn = cert ? /(?:^|\n)CN=([^\n]*)/.exec(cert.subject)?.[1] : undefined;
    if (cn !== undefined && isDeviceId(cn)) {
      return { deviceId: cn, certificateSerial: cert!.serialNumber, authenticated: true };
    }
    // Without a certificate (optional mode): the MAC the update client reports, for assignments only.
    const mac = req.get('x-ESP8266-STA-MAC') ?? req.get('x-ESP32-STA-MAC');
    try {
      return { deviceId: mac ? normalizeDeviceId(mac) : undefined, certificateSerial: cert?.serialNumber, authenticated: false };
    } catch {
      return { authenticated: false, certificateSerial: cert?.serialNumber };
    }
  }

  return app;
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
  /** Loads a new CRL for connections from now on (call it whenever the CA re-signs its CRL). */
  setCrl(crlPem: string): void;
  /** Process ids of the forked workers now running (empty with one process). */
  workerPids(): number[];
  close(): Promise<void>;
}

/** The HTTPS server around an app, with the TLS settings of every serving process. */
export function createUpdateHttpsServer(
  options: Pick<UpdateServerOptions, 'tls' | 'clientCertificates'>,
  app: express.Express,
  onEvent: (event: UpdateEvent) => void,
  worker?: number,
): { server: https.Server; setCrl(crlPem: string): void } {
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
  const server = https.createServer({ ...tlsSettings(options.tls.crl), maxHeaderSize: 8 * 1024 }, app);
  // Refused handshakes (no certificate, another CA, revoked) belong in the audit trail too.
  server.on('tlsClientError', (err, socket) => {
    onEvent({ type: 'rejected', at: new Date().toISOString(), path: '', status: 0, reason: `TLS handshake: ${err.message}`, remoteAddress: socket.remoteAddress, ...(worker === undefined ? {} : { worker }) });
  });
  server.headersTimeout = 20_000;
  server.requestTimeout = 120_000;
  return { server, setCrl: (crl) => server.setSecureContext(tlsSettings(crl)) };
}

/** Closes a server and every connection it still has. */
export function closeServer(server: https.Server): Promise<void> {
  return new Promise<void>((resolve) => {
    server.close(() => resolve());
    server.closeAllConnections();
  });
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
  const { server, setCrl } = createUpdateHttpsServer(options, createUpdateApp(options, { acquireSlot: localSlots(slots), worker }), onEvent, worker);
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
      await closeServer(server);
      throw err;
    }
  }
  return {
    port: (server.address() as AddressInfo).port,
    server,
    workerPids: () => workers?.pids() ?? [],
    setCrl: (pem) => {
      crl = pem;
      setCrl(pem);
      workers?.setCrl(pem);
    },
    close: async () => {
      await workers?.close();
      await closeServer(server);
    },
  };
}
