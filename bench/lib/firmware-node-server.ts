// A Node.js update server of bench/firmware-server in a process of its own (child_process.fork),
// so its CPU and RSS can be read from /proc and it shares no event loop with the load:
//
// - `ours`: lib/firmware/update-server.ts `startUpdateServer`, mutual TLS required, download
//   path /fw, a two-image ImageSource (OLD -> an offer of the 1 MB image, NEW -> 304), and an
//   onEvent that counts (as a Node-RED node would turn events into msgs, this is the least any
//   caller does), from which the number of downloads under way is known.
// - `express-seed001`: the update server of the self-updating ESP8266 sketch (express + `https.createServer`, route
//   `/update` reading `x-ESP8266-version`, `res.download(file)` for an update, `304` with
//   `send('No update needed!')` otherwise), with the same TLS settings as ours: the CA's server
//   certificate, client certificates required (`requestCert`, `rejectUnauthorized`) against the
//   CA and its CRL, TLS 1.2 at least. The seed's `console.log` per download is left out.
//
// Protocol (process IPC): the parent sends NodeServerCommand, the child answers NodeServerReply.
import * as https from 'node:https';
import type { AddressInfo } from 'node:net';
import express from 'express';
import { startUpdateServer, ImageOffer, ImageSource, UpdateEvent } from '../../lib/firmware/update-server';

export type NodeServerKind = 'ours' | 'express-seed001';

export interface NodeServerStart {
  kind: NodeServerKind;
  tls: { key: string; cert: string; ca: string; crl: string };
  image: ImageOffer;
  /** The image a device runs when it gets the offer, and the newest (answered 304). */
  oldImage: string;
  newImage: string;
  maxConcurrentDownloads: number;
  deviceFilesDir: string;
  /** Ours: serving processes (startUpdateServer's `workers`). */
  workers?: number;
}

export type NodeServerCommand = { cmd: 'start'; start: NodeServerStart } | { cmd: 'stats'; reset?: boolean } | { cmd: 'close' };

export interface NodeServerStats {
  counts: Partial<Record<UpdateEvent['type'] | 'download' | 'not-modified-seed', number>>;
  /** Downloads started and not yet ended (ours: from its events). */
  inFlight: number;
  maxInFlight: number;
  rss: number;
  heapUsed: number;
  external: number;
  arrayBuffers: number;
  /** Rejections, with their reasons (a few). */
  rejections: string[];
  /** Ours: the forked workers now running. */
  workerPids: number[];
}

export type NodeServerReply = { type: 'started'; port: number; pid: number; workerPids: number[] } | { type: 'stats'; stats: NodeServerStats } | { type: 'closed' } | { type: 'error'; message: string };

function reply(r: NodeServerReply): void {
  if (process.connected) process.send?.(r, undefined, undefined, () => undefined);
}

const counts: NodeServerStats['counts'] = {};
const rejections: string[] = [];
let inFlight = 0;
let maxInFlight = 0;
let close: (() => Promise<void>) | undefined;
let workerPids: () => number[] = () => [];

function count(type: keyof NodeServerStats['counts']): void {
  counts[type] = (counts[type] ?? 0) + 1;
}

async function startOurs(s: NodeServerStart): Promise<number> {
  const images: ImageSource = {
    next: ({ currentImage }) => {
      if (currentImage === s.newImage) return { kind: 'none', reason: 'up-to-date', detail: 'already the newest' };
      if (currentImage === s.oldImage) return { kind: 'offer', image: s.image };
      return { kind: 'none', reason: 'unknown-image', detail: `unknown image ${currentImage}` };
    },
  };
  const server = await startUpdateServer({
    port: 0,
    host: '127.0.0.1',
    tls: s.tls,
    clientCertificates: 'required',
    downloadPath: '/fw',
    deviceFilesDir: s.deviceFilesDir,
    deviceConfig: () => ({}),
    images,
    maxConcurrentDownloads: s.maxConcurrentDownloads,
    workers: s.workers,
    // Every device of the bench comes from 127.0.0.1 (up to 1,000 at once in the in-flight
    // phase): the caps as high as nginx's worker_connections here; the deadlines stay the defaults.
    maxConnections: 4096,
    maxConnectionsPerAddress: 4096,
    onEvent: (e) => {
      count(e.type);
      if (e.type === 'download-start') {
        inFlight++;
        if (inFlight > maxInFlight) maxInFlight = inFlight;
      } else if (e.type === 'download-complete' || e.type === 'download-aborted') {
        inFlight--;
      } else if (e.type === 'rejected' && rejections.length < 5) {
        rejections.push(`${e.status} ${e.reason ?? ''}`);
      }
    },
  });
  close = server.close;
  workerPids = server.workerPids;
  return server.port;
}

async function startExpressSeed001(s: NodeServerStart): Promise<number> {
  const app = express();
  app.get('/update', (request, response) => {
    const version = request.header('x-esp8266-version');
    if (version === s.oldImage) {
      inFlight++;
      if (inFlight > maxInFlight) maxInFlight = inFlight;
      response.status(200).download(s.image.path, 'httpUpdateNew.bin', (err) => {
        inFlight--;
        count(err ? 'download-aborted' : 'download');
      });
    } else {
      count('not-modified-seed');
      response.status(304).send('No update needed!');
    }
  });
  const server = https.createServer({ key: s.tls.key, cert: s.tls.cert, ca: s.tls.ca, crl: s.tls.crl, requestCert: true, rejectUnauthorized: true, minVersion: 'TLSv1.2' }, app);
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
  close = () =>
    new Promise<void>((resolve) => {
      server.close(() => resolve());
      server.closeAllConnections();
    });
  return (server.address() as AddressInfo).port;
}

process.on('message', (cmd: NodeServerCommand) => {
  const go = async (): Promise<void> => {
    switch (cmd.cmd) {
      case 'start': {
        const port = cmd.start.kind === 'ours' ? await startOurs(cmd.start) : await startExpressSeed001(cmd.start);
        reply({ type: 'started', port, pid: process.pid, workerPids: workerPids() });
        return;
      }
      case 'stats': {
        const m = process.memoryUsage();
        reply({ type: 'stats', stats: { counts: { ...counts }, inFlight, maxInFlight, rss: m.rss, heapUsed: m.heapUsed, external: m.external, arrayBuffers: m.arrayBuffers, rejections: [...rejections], workerPids: workerPids() } });
        if (cmd.reset) {
          for (const k of Object.keys(counts)) delete counts[k as keyof typeof counts];
          rejections.length = 0;
          maxInFlight = inFlight;
        }
        return;
      }
      case 'close':
        await close?.();
        reply({ type: 'closed' });
        process.disconnect();
        return;
    }
  };
  go().catch((err: Error) => reply({ type: 'error', message: err.stack ?? err.message }));
});
process.on('disconnect', () => process.exit(0));
