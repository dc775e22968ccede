import * as https from 'node:https';
import * as net from 'node:net';
import type { AddressInfo } from 'node:net';
import { readFileSync } from 'node:fs';
import type { CaStore } from '../../lib/pki/ca-store';

export interface SeenRequest {
  method: string;
  path: string;
  httpVersion: string;
  /** Raw header lines as sent, in order. */
  rawHeaders: [string, string][];
}

/**
 * An HTTPS file server with the store's `localhost` identity (a server the devices trust): serves
 * `files[path]`, honours one `Range: bytes=N-` when `ranges` is on (RFC 9110 §14: 206 with
 * Content-Range, 416 past the end), and records every request as it arrived.
 */
export async function startImageStandIn(store: CaStore, files: Map<string, Buffer>, options: { ranges?: boolean } = {}): Promise<{ port: number; seen: SeenRequest[]; close(): Promise<void> }> {
  const id = store.identityFiles('server', 'localhost');
  const seen: SeenRequest[] = [];
  const server = https.createServer({ key: readFileSync(id.privateKey), cert: readFileSync(id.certificate) }, (req, res) => {
    const raw: [string, string][] = [];
    for (let i = 0; i < req.rawHeaders.length; i += 2) raw.push([req.rawHeaders[i], req.rawHeaders[i + 1]]);
    seen.push({ method: req.method ?? '', path: req.url ?? '', httpVersion: req.httpVersion, rawHeaders: raw });
    // Served by path: the device adds ?curimage= to every URL.
    const body = files.get(new URL(req.url ?? '/', 'https://stand-in').pathname);
    if (!body) return void res.writeHead(404, { 'Content-Length': 0 }).end();
    const range = /^bytes=(\d+)-$/.exec(String(req.headers.range ?? ''));
    if (options.ranges && range) {
      const from = Number(range[1]);
      if (from >= body.length) return void res.writeHead(416, { 'Content-Range': `bytes */${body.length}`, 'Content-Length': 0 }).end();
      res.writeHead(206, { 'Content-Range': `bytes ${from}-${body.length - 1}/${body.length}`, 'Content-Length': body.length - from, 'Content-Type': 'application/octet-stream' });
      return void res.end(body.subarray(from));
    }
    res.writeHead(200, { 'Content-Length': body.length, 'Content-Type': 'application/octet-stream' });
    res.end(body);
  });
  const sockets = new Set<import('node:stream').Duplex>();
  server.on('connection', (s) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return {
    port: (server.address() as AddressInfo).port,
    seen,
    close: () =>
      new Promise<void>((r) => {
        for (const s of sockets) s.destroy();
        server.close(() => r());
      }),
  };
}

/**
 * A TCP relay to `target` that cuts connection number `cutConnection` (1-based) once it has
 * relayed `afterBytes` bytes towards the client: the link drops mid-download, TLS and all.
 */
export async function startCuttingRelay(targetPort: number, cutConnection: number, afterBytes: number): Promise<{ port: number; connections: () => number; close(): Promise<void> }> {
  let count = 0;
  const sockets = new Set<net.Socket>();
  const track = (s: net.Socket): void => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
    s.on('error', () => undefined);
  };
  const server = net.createServer((client) => {
    const n = ++count;
    track(client);
    const upstream = net.connect(targetPort, '127.0.0.1');
    track(upstream);
    let relayed = 0;
    let cut = false;
    client.on('data', (c) => upstream.write(c));
    client.on('close', () => upstream.destroy());
    upstream.on('close', () => cut || client.destroy());
    upstream.on('data', (c: Buffer) => {
      if (n !== cutConnection) return void client.write(c);
      if (cut) return;
      const room = afterBytes - relayed;
      relayed += c.length;
      if (room > c.length) return void client.write(c);
      // Whatever fits, then FIN: what was sent still arrives, nothing after it.
      cut = true;
      client.end(c.subarray(0, Math.max(0, room)));
      upstream.destroy();
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return {
    port: (server.address() as AddressInfo).port,
    connections: () => count,
    close: () =>
      new Promise<void>((r) => {
        for (const s of sockets) s.destroy();
        server.close(() => r());
      }),
  };
}
