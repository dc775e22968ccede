// The load generator of bench/firmware-server, run as a separate process (child_process.fork)
// so that the devices' side does not share an event loop with any server.
//
// Every request is what an ESP8266 running ESP8266httpUpdate does: a fresh TCP connection, a
// full TLS 1.2 handshake with the device's client certificate (no session resumption, no
// session tickets: BearSSL on the device keeps neither across update checks), one HTTP/1.0
// request with `Connection: close`, then read until the server closes. Each response is
// checked (status, framing, byte count, first byte 0xE9, x-MD5 when sent, and the MD5 of the
// body every `md5Every`-th download), so a server that answers wrongly cannot win.
//
// Protocol (process IPC): the parent sends ClientsCommand, the child answers ClientsReply.
import * as tls from 'node:tls';
import { createHash, constants } from 'node:crypto';
import { performance } from 'node:perf_hooks';

/** One server under test, as the devices see it. */
export interface Target {
  name: string;
  port: number;
  /** The exact request bytes of an update that finds a new image (a 1 MB download). */
  downloadRequest: string;
  /** The exact request bytes of an update check that finds nothing newer. */
  checkRequest: string;
  /** What the server answers to the check (304, or 200 with an empty body for `s_server -WWW`). */
  checkStatus: number;
  /** The server must send Content-Length with the image (ESP8266httpUpdate requires it). */
  requireContentLength: boolean;
}

export interface ClientsSetup {
  ca: string;
  devices: { id: string; cert: string; key: string }[];
  image: { size: number; md5: string };
  /** The one cipher suite and key exchange group offered, so every server negotiates the same. */
  cipher: string;
  ecdhCurve: string;
}

export type ClientsCommand =
  | { cmd: 'setup'; setup: ClientsSetup; index: number }
  | { cmd: 'probe'; target: Target }
  | { cmd: 'run'; target: Target; kind: 'download' | 'check'; concurrency: number; warmupMs: number; durationMs: number; md5Every: number; timeoutMs: number }
  | { cmd: 'close' };

export interface TlsFacts {
  protocol: string | null;
  cipher: string;
  sessionReused: boolean;
  peerCertificateCN: string;
  status: number;
  headers: Record<string, string>;
}

export interface RunResult {
  /** Requests completed inside the timed window (after the warm-up, before the deadline). */
  windowCompleted: number;
  /** Body bytes received inside the timed window (downloads: the throughput). */
  windowBytes: number;
  windowMs: number;
  /** All requests completed and verified, warm-up included. */
  completed: number;
  md5Checked: number;
  /** Milliseconds from connect to the last byte, of the requests completed in the window. */
  latencyP50: number;
  latencyP99: number;
  /** Milliseconds from connect to the end of the TLS handshake. */
  handshakeP50: number;
  errors: number;
  firstErrors: string[];
}

export type ClientsReply =
  | { type: 'ready'; pid: number }
  | { type: 'probed'; download: TlsFacts; check: TlsFacts }
  | { type: 'run-done'; result: RunResult }
  | { type: 'closed' }
  | { type: 'error'; message: string };

let setup: ClientsSetup | undefined;
let contexts: tls.SecureContext[] = [];
let nextDevice = 0;

function reply(r: ClientsReply): void {
  if (process.connected) process.send?.(r, undefined, undefined, () => undefined);
}

const HEADER_END = Buffer.from('\r\n\r\n');

interface Exchange {
  status: number;
  headers: Record<string, string>;
  bodyBytes: number;
  md5?: string;
  firstByte?: number;
  connectedAt: number;
  secureAt: number;
  endAt: number;
  facts?: TlsFacts;
}

interface ExchangeOptions {
  request: string;
  timeoutMs: number;
  hashBody: boolean;
  wantFacts?: boolean;
  /** Body bytes as they arrive (after the header block), with the time. */
  onBody?: (bytes: number, now: number) => void;
}

/** One connection, one request, read to the close. */
function exchange(port: number, o: ExchangeOptions): Promise<Exchange> {
  return new Promise((resolve, reject) => {
    const ctx = contexts[nextDevice++ % contexts.length]!;
    const connectedAt = performance.now();
    const socket = tls.connect({ host: '127.0.0.1', port, servername: 'localhost', secureContext: ctx, rejectUnauthorized: true });
    let secureAt = 0;
    let head: Buffer | undefined = Buffer.alloc(0);
    let status = 0;
    let headers: Record<string, string> = {};
    let bodyBytes = 0;
    let firstByte: number | undefined;
    let facts: TlsFacts | undefined;
    const hash = o.hashBody ? createHash('md5') : undefined;
    let settled = false;
    const timer = setTimeout(() => fail(new Error(`no complete answer within ${o.timeoutMs} ms`)), o.timeoutMs);
    const fail = (err: Error): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      socket.destroy();
      reject(err);
    };
    const body = (chunk: Buffer): void => {
      if (chunk.length === 0) return;
      if (firstByte === undefined) firstByte = chunk[0];
      bodyBytes += chunk.length;
      hash?.update(chunk);
      o.onBody?.(chunk.length, performance.now());
    };
    socket.on('secureConnect', () => {
      secureAt = performance.now();
      if (o.wantFacts) {
        const cert = socket.getPeerCertificate();
        facts = { protocol: socket.getProtocol(), cipher: socket.getCipher().name, sessionReused: socket.isSessionReused(), peerCertificateCN: String(cert.subject?.CN ?? ''), status: 0, headers: {} };
      } else if (socket.isSessionReused()) {
        return fail(new Error('the TLS session was resumed: every request must do a full handshake'));
      }
      socket.write(o.request);
    });
    socket.on('data', (chunk: Buffer) => {
      if (head === undefined) return body(chunk);
      head = head.length ? Buffer.concat([head, chunk]) : chunk;
      const split = head.indexOf(HEADER_END);
      if (split < 0) {
        if (head.length > 16_384) fail(new Error('no end of the header block within 16 KB'));
        return;
      }
      const text = head.subarray(0, split).toString('latin1');
      const [statusLine, ...lines] = text.split('\r\n');
      const m = /^HTTP\/1\.[01] (\d{3})/.exec(statusLine ?? '');
      if (!m) return fail(new Error(`not an HTTP response: ${JSON.stringify((statusLine ?? '').slice(0, 80))}`));
      status = Number(m[1]);
      headers = {};
      for (const line of lines) {
        const i = line.indexOf(':');
        if (i > 0) headers[line.slice(0, i).trim().toLowerCase()] = line.slice(i + 1).trim();
      }
      const rest = head.subarray(split + 4);
      head = undefined;
      body(rest);
    });
    socket.on('error', (err) => fail(err));
    socket.on('close', () => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      if (head !== undefined) return reject(new Error(`the connection closed before a complete header block (${head.length} bytes)`));
      if (facts) {
        facts.status = status;
        facts.headers = headers;
      }
      resolve({ status, headers, bodyBytes, firstByte, md5: hash?.digest('hex'), connectedAt, secureAt, endAt: performance.now(), facts });
    });
  });
}

/** Throws when the answer is not what an ESP8266 needs. */
function verify(target: Target, kind: 'download' | 'check', x: Exchange): void {
  const image = setup!.image;
  if (kind === 'check') {
    if (x.status !== target.checkStatus) throw new Error(`check: status ${x.status}, expected ${target.checkStatus}`);
    if (x.bodyBytes !== 0) throw new Error(`check: ${x.bodyBytes} body bytes, expected none`);
    return;
  }
  if (x.status !== 200) throw new Error(`download: status ${x.status}, expected 200`);
  if (x.headers['transfer-encoding']) throw new Error(`download: Transfer-Encoding ${x.headers['transfer-encoding']} (ESP8266httpUpdate needs Content-Length)`);
  const cl = x.headers['content-length'];
  if (cl === undefined && target.requireContentLength) throw new Error('download: no Content-Length');
  if (cl !== undefined && Number(cl) !== image.size) throw new Error(`download: Content-Length ${cl}, expected ${image.size}`);
  if (x.bodyBytes !== image.size) throw new Error(`download: ${x.bodyBytes} body bytes, expected ${image.size}`);
  if (x.firstByte !== 0xe9) throw new Error(`download: first byte 0x${(x.firstByte ?? 0).toString(16)}, expected 0xe9`);
  const xmd5 = x.headers['x-md5'];
  if (xmd5 !== undefined && xmd5 !== image.md5) throw new Error(`download: x-MD5 ${xmd5}, expected ${image.md5}`);
  if (x.md5 !== undefined && x.md5 !== image.md5) throw new Error(`download: body MD5 ${x.md5}, expected ${image.md5}`);
}

function percentile(sorted: number[], p: number): number {
  if (sorted.length === 0) return 0;
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
}

async function probe(target: Target): Promise<void> {
  const d = await exchange(target.port, { request: target.downloadRequest, timeoutMs: 30_000, hashBody: true, wantFacts: true });
  verify(target, 'download', d);
  const c = await exchange(target.port, { request: target.checkRequest, timeoutMs: 30_000, hashBody: false, wantFacts: true });
  verify(target, 'check', c);
  reply({ type: 'probed', download: d.facts!, check: c.facts! });
}

async function run(cmd: Extract<ClientsCommand, { cmd: 'run' }>): Promise<void> {
  const { target, kind } = cmd;
  const t0 = performance.now();
  const windowStart = t0 + cmd.warmupMs;
  const deadline = windowStart + cmd.durationMs;
  let windowBytes = 0;
  let windowCompleted = 0;
  let completed = 0;
  let md5Checked = 0;
  let errors = 0;
  const firstErrors: string[] = [];
  const latencies: number[] = [];
  const handshakes: number[] = [];
  const request = kind === 'download' ? target.downloadRequest : target.checkRequest;
  const onBody = (bytes: number, now: number): void => {
    if (now >= windowStart && now < deadline) windowBytes += bytes;
  };
  const worker = async (): Promise<void> => {
    while (performance.now() < deadline) {
      const hashBody = kind === 'download' && cmd.md5Every > 0 && completed % cmd.md5Every === 0;
      try {
        const x = await exchange(target.port, { request, timeoutMs: cmd.timeoutMs, hashBody, onBody: kind === 'download' ? onBody : undefined });
        verify(target, kind, x);
        completed++;
        if (hashBody) md5Checked++;
        if (x.endAt >= windowStart && x.endAt < deadline) {
          windowCompleted++;
          latencies.push(x.endAt - x.connectedAt);
          handshakes.push(x.secureAt - x.connectedAt);
        }
      } catch (err) {
        errors++;
        if (firstErrors.length < 5) firstErrors.push(`${target.name} ${kind}: ${(err as Error).message}`);
        // A server that refuses connections must not make this loop spin.
        await new Promise((r) => setTimeout(r, 10));
      }
    }
  };
  await Promise.all(Array.from({ length: cmd.concurrency }, worker));
  latencies.sort((a, b) => a - b);
  handshakes.sort((a, b) => a - b);
  reply({
    type: 'run-done',
    result: {
      windowCompleted,
      windowBytes,
      windowMs: cmd.durationMs,
      completed,
      md5Checked,
      latencyP50: percentile(latencies, 50),
      latencyP99: percentile(latencies, 99),
      handshakeP50: percentile(handshakes, 50),
      errors,
      firstErrors,
    },
  });
}

process.on('message', (cmd: ClientsCommand) => {
  const go = async (): Promise<void> => {
    switch (cmd.cmd) {
      case 'setup':
        setup = cmd.setup;
        contexts = setup.devices.map((d) =>
          tls.createSecureContext({
            ca: setup!.ca,
            cert: d.cert,
            key: d.key,
            minVersion: 'TLSv1.2',
            maxVersion: 'TLSv1.2',
            ciphers: setup!.cipher,
            ecdhCurve: setup!.ecdhCurve,
            // No session ticket extension: BearSSL does not keep tickets, every check is a full handshake.
            secureOptions: constants.SSL_OP_NO_TICKET,
          }),
        );
        nextDevice = cmd.index;
        reply({ type: 'ready', pid: process.pid });
        return;
      case 'probe':
        return probe(cmd.target);
      case 'run':
        return run(cmd);
      case 'close':
        reply({ type: 'closed' });
        process.disconnect();
        return;
    }
  };
  go().catch((err: Error) => reply({ type: 'error', message: err.message }));
});
process.on('disconnect', () => process.exit(0));
