import * as https from 'node:https';
import { isIP } from 'node:net';
import { KeyObject, X509Certificate } from 'node:crypto';
import { buildCsr } from '../pki/csr-builder';
import { certificatesOf } from '../pki/pkcs7';
import { toPem } from '../pki/x509';
import type { HttpsTarget } from './device-https';

/**
 * The device's side of EST (RFC 7030; docs/enrollment.md, The device), as the firmware's
 * postCsr/storeAnswer do it: a CSR of the device key as base64 DER, one POST per fresh TLS
 * connection, the server checked against the CA the board was flashed with (never one it was
 * sent), HTTP Basic with the bootstrap credential for simpleenroll, the current certificate for
 * simplereenroll, and the certificate read out of the PKCS#7 certs-only answer.
 */
export interface EstTarget extends HttpsTarget {
  /** The TLS server name when `host` is an address (default: `host`). */
  servername?: string;
}

export type EstOutcome =
  /** 200: the new certificate (PEM), already checked against the key and the id. */
  | { kind: 'issued'; certificatePem: string }
  /** 202: pending; the raw Retry-After header, if any (lib/device/enrollment.ts pendingDelayMs reads it). */
  | { kind: 'pending'; retryAfter?: string }
  /** Any other status, or no answer: why, in one short line (status 0 when there was no HTTP answer). */
  | { kind: 'refused'; status: number; reason: string };

export interface EstRequest {
  id: string;
  /** The device's P-256 key (it never leaves the device: only its CSR does). */
  key: KeyObject;
  /** ca.crt of the board's data folder (PEM): the only trust anchor. */
  ca: string;
  /** simpleenroll: `user:password` of bootstrap.txt. */
  credential?: string;
  /** simplereenroll: the current certificate (PEM), presented in the handshake with `key`. */
  certificatePem?: string;
  timeoutMs?: number;
  signal?: AbortSignal;
}

/** The firmware's buffer for an answer (fleet_app.cpp kMaxAnswerBytes): one P-256 certificate in PKCS#7 is about 1 KB of base64. */
export const MAX_EST_ANSWER = 4096;
const BOOTSTRAP_MAX = 160;

/**
 * Checks one line of bootstrap.txt (`user:password`) the way firmware/core's basicAuthorization
 * does, and returns it without the line break. Throws a short Error.
 */
export function bootstrapLine(text: string): string {
  const [line, ...rest] = text.split(/\r?\n|\r/);
  if (rest.some((r) => r.trim() !== '')) throw new Error('bootstrap.txt must be one line user:password');
  if (!line) throw new Error('bootstrap.txt is empty');
  if (line.length > BOOTSTRAP_MAX) throw new Error(`bootstrap.txt is longer than ${BOOTSTRAP_MAX} characters`);
  // RFC 7617 §2: no control characters in user-id or password.
  if (/[\x00-\x1f\x7f]/.test(line)) throw new Error('bootstrap.txt holds a control character');
  const colon = line.indexOf(':');
  if (colon < 0) throw new Error('bootstrap.txt must be user:password');
  if (colon === 0) throw new Error("bootstrap.txt has no user before the ':'");
  return line;
}

/** `simpleenroll` (RFC 7030 §4.2.1) with the bootstrap credential. */
export function simpleEnroll(target: EstTarget, r: EstRequest): Promise<EstOutcome> {
  if (!r.credential) return Promise.resolve({ kind: 'refused', status: 0, reason: 'bootstrap.txt missing or invalid' });
  return estPost(target, 'simpleenroll', r);
}

/** `simplereenroll` (RFC 7030 §4.2.2) with the current certificate, same key. */
export function simpleReenroll(target: EstTarget, r: EstRequest): Promise<EstOutcome> {
  if (!r.certificatePem) return Promise.resolve({ kind: 'refused', status: 0, reason: 'no current certificate to renew with' });
  return estPost(target, 'simplereenroll', r);
}

function estPost(target: EstTarget, route: 'simpleenroll' | 'simplereenroll', r: EstRequest): Promise<EstOutcome> {
  const body = buildCsr({ commonName: r.id, privateKey: r.key }).toString('base64');
  const headers: Record<string, string> = { 'Content-Type': 'application/pkcs10', 'Content-Length': String(body.length), Connection: 'close' };
  const renew = route === 'simplereenroll';
  if (!renew) headers.Authorization = `Basic ${Buffer.from(r.credential!, 'utf8').toString('base64')}`;
  const servername = target.servername ?? (isIP(target.host) ? undefined : target.host);
  return new Promise((resolve) => {
    let settled = false;
    const done = (o: EstOutcome): void => {
      if (settled) return;
      settled = true;
      r.signal?.removeEventListener('abort', onAbort);
      resolve(o);
    };
    const noAnswer = (why: string): void => done({ kind: 'refused', status: 0, reason: `enroll: ${why}` });
    const req = https.request(
      {
        host: target.host,
        port: target.port,
        servername,
        method: 'POST',
        path: `/.well-known/est/${route}`,
        headers,
        // CA pinned: ca.crt from the board's files, nothing else (rejectUnauthorized is the default).
        ca: r.ca,
        ...(renew ? { cert: r.certificatePem, key: r.key.export({ type: 'pkcs8', format: 'pem' }) } : {}),
        // A fresh TLS connection per request, as the device's HTTPClient makes it; BearSSL speaks TLS 1.2.
        agent: false,
        maxVersion: 'TLSv1.2',
      },
      (res) => {
        const status = res.statusCode ?? 0;
        const chunks: Buffer[] = [];
        let size = 0;
        res.on('data', (c: Buffer) => {
          size += c.length;
          if (size > MAX_EST_ANSWER) {
            req.destroy();
            return noAnswer(`the answer is larger than ${MAX_EST_ANSWER} bytes`);
          }
          chunks.push(c);
        });
        res.on('error', (err) => noAnswer(err.message));
        res.on('end', () => done(outcomeOf(status, res.headers, Buffer.concat(chunks), r)));
      },
    );
    const onAbort = (): void => {
      req.destroy();
      noAnswer('aborted: the device was reset');
    };
    if (r.signal?.aborted) return onAbort();
    r.signal?.addEventListener('abort', onAbort, { once: true });
    req.setTimeout(r.timeoutMs ?? 15_000, () => {
      req.destroy();
      noAnswer('no answer in time');
    });
    req.on('error', (err: NodeJS.ErrnoException) => noAnswer(err.code && /CERT|SELF_SIGNED|UNABLE_TO|ALTNAME/.test(err.code) ? `the enrollment server's certificate does not match ca.crt (${err.code})` : err.message));
    req.end(body);
  });
}

function outcomeOf(status: number, headers: Record<string, string | string[] | undefined>, body: Buffer, r: EstRequest): EstOutcome {
  if (status === 202) {
    const retryAfter = headers['retry-after'];
    return { kind: 'pending', retryAfter: Array.isArray(retryAfter) ? retryAfter[0] : retryAfter };
  }
  if (status !== 200) {
    const line = body.toString('utf8').split('\n')[0].trim().slice(0, 160);
    return { kind: 'refused', status, reason: `enroll: HTTP ${status}${line ? `: ${line}` : ''}` };
  }
  try {
    return { kind: 'issued', certificatePem: certificateOfAnswer(body, r) };
  } catch (err) {
    return { kind: 'refused', status, reason: `enroll: ${(err as Error).message}` };
  }
}

/** The one certificate of a base64 certs-only answer (RFC 7030 §4.2.3), for this device's id and key. */
function certificateOfAnswer(body: Buffer, r: EstRequest): string {
  const b64 = body.toString('latin1').replace(/[\r\n\t ]+/g, '');
  if (!/^[A-Za-z0-9+/]+={0,2}$/.test(b64)) throw new Error('the answer is not base64');
  const certs = certificatesOf(Buffer.from(b64, 'base64'));
  if (certs.length !== 1) throw new Error(`the answer holds ${certs.length} certificates, expected 1`);
  const pem = toPem('CERTIFICATE', certs[0]);
  const cert = new X509Certificate(pem);
  if (cert.subject !== `CN=${r.id}`) throw new Error(`the certificate is for ${cert.subject}, not CN=${r.id}`);
  if (!cert.checkPrivateKey(r.key)) throw new Error('the certificate is not for the device key');
  return pem;
}
