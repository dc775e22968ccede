import * as https from 'node:https';
import type { AddressInfo, Socket } from 'node:net';
import type { TLSSocket } from 'node:tls';
import { X509Certificate } from 'node:crypto';
import express, { NextFunction, Request, Response } from 'express';
import { boundRequests, deadlineOptions, guardConnections, servingLimits, ServingLimits } from '../../firmware/connection-guard';
import { verifiedPeer } from '../../firmware/http/peer-identity';
import { sourceKey } from '../../net/source-address';
import { revokedSerials } from '../../pki/crl-serials';
import { certsOnly } from '../../pki/pkcs7';
import type { EnrollAnswer, EnrollmentDesk } from '../enrollment-desk';
import { EST_STATUS_OF } from './est-status';
import { MAX_EST_BODY, base64Lines, basicCredential, csrDerOf } from './est-body';
import { toPem } from '../../pki/x509';

const EST = '/.well-known/est';
const PKCS7 = 'application/pkcs7-mime; smime-type=certs-only';
const PEM_CHAIN = 'application/pem-certificate-chain';

/** A connection refused before any request (caps, handshake deadline), for the node's event output. */
export interface EstConnectionEvent {
  type: 'rejected';
  at: string;
  reason: string;
  remoteAddress?: string;
}

export interface EstListenerOptions extends Partial<ServingLimits> {
  desk: EnrollmentDesk;
  tls: { cert: string; key: string; ca: string; crl?: string };
  port: number;
  host?: string;
  onEvent?: (event: EstConnectionEvent) => void;
}

export interface RunningEstListener {
  port: number;
  server: https.Server;
  /** The new CRL for handshakes; closes the open connections of certificates it revokes (how many). */
  setCrl(crlPem: string): number;
  close(): Promise<void>;
}

/**
 * The enrollment listener (docs/enrollment.md): EST's three routes and nothing else, on a port
 * of its own where a client certificate is optional (simplereenroll needs one, the others do
 * not). Caps and deadlines are the update server's (lib/firmware/connection-guard.ts).
 */
export async function startEstListener(o: EstListenerOptions): Promise<RunningEstListener> {
  const limits = servingLimits(o);
  const tlsSettings = (crl: string | undefined): https.ServerOptions => ({
    key: o.tls.key,
    cert: o.tls.cert,
    ca: o.tls.ca,
    crl,
    requestCert: true,
    // Optional here: a new board has no certificate yet. Routes that need one check `authorized`.
    rejectUnauthorized: false,
    minVersion: 'TLSv1.2',
  });
  const server = https.createServer(
    {
      ...tlsSettings(o.tls.crl),
      ...deadlineOptions(limits),
    },
    estApp(o.desk, o.tls.ca),
  );
  boundRequests(server, limits);
  const guard = guardConnections(server, limits, (socket: Socket, _status: number, reason: string) =>
    o.onEvent?.({ type: 'rejected', at: new Date().toISOString(), reason, remoteAddress: socket.remoteAddress }),
  );
  let revoked = o.tls.crl ? revokedSerials(o.tls.crl) : new Set<string>();
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(o.port, o.host ?? '0.0.0.0', () => resolve());
  });
  return {
    port: (server.address() as AddressInfo).port,
    server,
    setCrl: (crl) => {
      const serials = revokedSerials(crl);
      server.setSecureContext(tlsSettings(crl));
      revoked = serials;
      return guard.closeRevoked(
        (serial) => revoked.has(serial),
        (tls: TLSSocket) => (tls.authorized ? verifiedPeer(tls)?.serialNumber : undefined),
      );
    },
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
        guard.destroyAll();
      }),
  };
}

function estApp(desk: EnrollmentDesk, caPem: string): express.Express {
  const app = express();
  app.disable('x-powered-by');
  app.disable('etag');
  app.set('env', 'production');
  const caDer = Buffer.from(new X509Certificate(caPem).raw);
  const body = express.raw({ type: () => true, limit: MAX_EST_BODY });

  app.get(`${EST}/cacerts`, (_req, res) => {
    res.status(200).set('Content-Type', 'application/pkcs7-mime').set('Content-Transfer-Encoding', 'base64').send(base64Lines(certsOnly([caDer])));
  });

  app.post(`${EST}/simpleenroll`, body, (req, res, next) => {
    const csrDer = csrDerOf(req.body);
    if (!csrDer) return text(res, 400, 'send the CSR as base64 DER (Content-Type: application/pkcs10)');
    desk
      .enroll({ csrDer, credential: basicCredential(req.headers.authorization), address: addressOf(req) })
      .then((answer) => send(req, res, answer))
      .catch(next);
  });

  app.post(`${EST}/simplereenroll`, body, (req, res, next) => {
    const tls = req.socket as TLSSocket;
    const presented = tls.getPeerCertificate?.()?.raw !== undefined;
    if (presented && !tls.authorized) return text(res, 403, 'this certificate does not verify against the fleet CA (unknown, expired or revoked)');
    const csrDer = csrDerOf(req.body);
    if (!csrDer) return text(res, 400, 'send the CSR as base64 DER (Content-Type: application/pkcs10)');
    const peer = tls.authorized ? verifiedPeer(tls) : undefined;
    desk
      .reenroll({ csrDer, peer: peer && { serial: peer.serialNumber, commonName: peer.commonName }, address: addressOf(req) })
      .then((answer) => send(req, res, answer))
      .catch(next);
  });

  app.use((_req: Request, res: Response) => text(res, 404, `only enrollment is served here (${EST}/cacerts, simpleenroll, simplereenroll)`));
  // Errors leave as one short line, never a stack (body too large, bad JSON never reach a handler).
  app.use((err: { status?: number; type?: string; message?: string }, _req: Request, res: Response, _next: NextFunction) => {
    void _next;
    if (err.type === 'entity.too.large') return text(res, 413, `the request body is larger than ${MAX_EST_BODY} bytes`);
    if (typeof err.status === 'number' && err.status >= 400 && err.status < 500) return text(res, err.status, 'malformed request');
    text(res, 500, `enrollment failed: ${String(err.message ?? 'internal error').split('\n')[0].slice(0, 160)}`);
  });
  return app;
}

function send(req: Request, res: Response, answer: EnrollAnswer): void {
  if (answer.kind === 'pending') {
    res.set('Retry-After', String(answer.retryAfterS));
    return text(res, 202, 'waiting for approval: ask again after Retry-After seconds with the same request');
  }
  if (answer.kind === 'refused') {
    const status = EST_STATUS_OF[answer.reason];
    if (answer.retryAfterS) res.set('Retry-After', String(answer.retryAfterS));
    // RFC 9110 §11.6.1: a 401 names the scheme it wants.
    if (status === 401) res.set('WWW-Authenticate', 'Basic realm="esp-fleet enrollment", charset="UTF-8"');
    return text(res, status, answer.text);
  }
  // RFC 7030's answer unless the client asks for PEM only (no Accept, or */*, gets PKCS#7).
  if (req.accepts(['application/pkcs7-mime', PEM_CHAIN]) === PEM_CHAIN) {
    res.status(200).type(PEM_CHAIN).send(toPem('CERTIFICATE', answer.certificateDer));
    return;
  }
  res.status(200).set('Content-Type', PKCS7).set('Content-Transfer-Encoding', 'base64').send(base64Lines(certsOnly([answer.certificateDer])));
}

function text(res: Response, status: number, line: string): void {
  res.status(status).type('text/plain; charset=utf-8').send(`${line.split('\n')[0].slice(0, 300)}\n`);
}

/** The rate limits count per source (an IPv6 /64 as one: lib/net/source-address.ts). */
function addressOf(req: Request): string {
  return sourceKey(req.socket.remoteAddress);
}
