// The boards of bench/enroll (a), run as a separate process (child_process.fork) so the boards'
// TLS work does not share an event loop with the enrollment listener under test.
//
// Each request is what a board does at first boot: a fresh TCP connection and a full TLS 1.2
// handshake with the CA pinned (no session reuse), one `POST /.well-known/est/simpleenroll` with
// HTTP Basic and a base64 DER P-256 CSR, and the answer checked: 200, one certificate in the
// PKCS#7, its CN the board's id. A server that answers wrongly cannot win.
//
// Protocol (process IPC): the parent sends EstClientsCommand, the child answers EstClientsReply.
import * as https from 'node:https';
import { X509Certificate } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import { certificatesOf } from '../../lib/pki/pkcs7';

export interface EstJob {
  id: string;
  /** The CSR, base64 DER. */
  b64: string;
}

/** `cacerts`: the same connections asking for the CA certificate only, the floor of TLS + HTTP. */
export type EstClientsCommand = { cmd: 'run'; route: 'simpleenroll' | 'cacerts'; port: number; ca: string; credential: string; jobs: EstJob[]; concurrency: number } | { cmd: 'close' };
export type EstClientsReply = { type: 'done'; ms: number } | { type: 'closed' } | { type: 'error'; message: string };

function enroll(route: 'simpleenroll' | 'cacerts', port: number, ca: string, credential: string, job: EstJob): Promise<void> {
  return new Promise((resolve, reject) => {
    const req = https.request(
      {
        host: '127.0.0.1',
        port,
        servername: 'localhost',
        method: route === 'cacerts' ? 'GET' : 'POST',
        path: `/.well-known/est/${route}`,
        ca,
        agent: false,
        maxVersion: 'TLSv1.2',
        headers: { 'Content-Type': 'application/pkcs10', Authorization: `Basic ${Buffer.from(credential).toString('base64')}`, Connection: 'close' },
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => {
          const body = Buffer.concat(chunks).toString('latin1');
          if (res.statusCode !== 200) return reject(new Error(`${job.id}: HTTP ${res.statusCode} ${body.trim().slice(0, 120)}`));
          const certs = certificatesOf(Buffer.from(body.replace(/\s+/g, ''), 'base64'));
          if (route === 'cacerts') return certs.length === 1 ? resolve() : reject(new Error('cacerts: not one CA certificate'));
          if (certs.length !== 1 || new X509Certificate(certs[0]!).subject !== `CN=${job.id}`) return reject(new Error(`${job.id}: the answer is not its certificate`));
          resolve();
        });
        res.on('error', reject);
      },
    );
    req.on('error', reject);
    req.setTimeout(30_000, () => req.destroy(new Error(`${job.id}: no answer in 30 s`)));
    req.end(route === 'cacerts' ? undefined : job.b64);
  });
}

function reply(r: EstClientsReply): void {
  if (process.connected) process.send?.(r, undefined, undefined, () => undefined);
}

process.on('message', (cmd: EstClientsCommand) => {
  if (cmd.cmd === 'close') {
    reply({ type: 'closed' });
    process.exit(0);
  }
  const { route, port, ca, credential, jobs, concurrency } = cmd;
  let next = 0;
  const t0 = performance.now();
  const worker = async (): Promise<void> => {
    while (next < jobs.length) await enroll(route, port, ca, credential, jobs[next++]!);
  };
  Promise.all(Array.from({ length: Math.min(concurrency, jobs.length) }, worker))
    .then(() => reply({ type: 'done', ms: performance.now() - t0 }))
    .catch((err: Error) => reply({ type: 'error', message: err.message }));
});
