import { promises as fs } from 'node:fs';
import * as path from 'node:path';
import express, { Response } from 'express';
import { normalizeDownloadPath } from './download-path';
import type { Exchange } from './exchange';
import { Handlers, updateHandlers } from './handlers';
import { versionHeader } from './request-headers';
import { STATUS_OF } from './status-codes';
import type { AppInternals, UpdateServerOptions } from './update-types';

const DEVICE_FILE = /^\/([0-9a-f]{12})\.(crt|key)$/;

/**
 * The express app of the update server (docs/wire-contract.md, Update server): config.json, the
 * device's certificate files, and the next signed image or 304, for ESP8266httpUpdate and
 * ESP32 HTTPUpdate clients. Images are sent from memory with constant memory per request.
 */
export function createUpdateApp(options: UpdateServerOptions, internals?: AppInternals): express.Express {
  return expressApp(options, updateHandlers(options, internals));
}

export function expressApp(options: UpdateServerOptions, h: Handlers): express.Express {
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
      (err: Error) => h.refuse(x, STATUS_OF.internal, `internal error: ${err.message}`),
    );
  });

  app.get(`${base}/ca.crt`, (_req, res) => sendDeviceFile(res, 'ca.crt'));

  app.get(`${base}/firmware.bin`, (req, res) => {
    const cur = req.query.curimage;
    h.image(exchange(res), typeof cur === 'string' ? cur : '');
  });

  // The current version in a header (x-ESP8266-version), as ESP8266httpUpdate's update(url, version) sends it.
  app.get('/update', (req, res) => h.image(exchange(res), versionHeader(req)));

  app.get(`${base}/*file`, (req, res) => {
    const x = exchange(res);
    const m = DEVICE_FILE.exec(req.path.slice(base.length));
    if (!m) return h.refuse(x, STATUS_OF['not-found'], 'not found');
    if (!x.client.authenticated || x.client.deviceId !== m[1]) {
      return h.refuse(x, STATUS_OF['not-yours'], `the files of ${m[1]} are only for the device whose certificate says so`);
    }
    sendDeviceFile(res, `${m[1]}.${m[2]}`);
  });

  app.use((_req, res) => h.refuse(exchange(res), STATUS_OF['not-found'], 'not found'));

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
      () => h.refuse(x, STATUS_OF['not-found'], `${name} has not been issued`),
    );
  }

  return app;
}
