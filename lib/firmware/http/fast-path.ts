import type { IncomingMessage, ServerResponse } from 'node:http';
import { parse as parseQuery } from 'node:querystring';
import type express from 'express';
import { normalizeDownloadPath } from './download-path';
import { expressApp } from './express-app';
import { updateHandlers } from './handlers';
import { versionHeader } from './request-headers';
import { STATUS_OF } from './status-codes';
import type { AppInternals, UpdateServerOptions } from './update-types';

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
      if (x) h.refuse(x, STATUS_OF['bad-target'], 'the request target must be a path');
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
    app(req as express.Request, res as express.Response, (err?: unknown) => h.fail(req, res, err));
  };
}
