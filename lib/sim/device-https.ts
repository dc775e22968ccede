import { isIP } from 'node:net';
import * as tls from 'node:tls';

export interface HttpsTarget {
  host: string;
  port: number;
}

export interface DeviceTls {
  /** The CA the device checks the server against (the secure ESP8266 framework: "Updateserver-certificate doesn't match"). */
  ca: string;
  cert?: string;
  key?: string;
}

export interface DeviceResponse {
  status: number;
  headers: Record<string, string>;
  body: Buffer;
  /** False when the body ended early: the connection was cut (with `keepPartial`), or the device stopped reading (`stopAfterHeaders`). */
  complete: boolean;
}

export class DeviceHttpError extends Error {}

/**
 * The request ESP8266httpUpdate sends (esp8266/Arduino ESP8266httpUpdate.cpp): HTTP/1.0, its
 * User-Agent and the x-ESP8266-* headers, one request per connection.
 */
export function esp8266UpdateHeaders(device: { mac: string; version?: string; freeSpace: number; sketchSize: number; sketchMd5: string; mode?: 'sketch' | 'spiffs' }): Record<string, string> {
  const colonMac = device.mac.replace(/(..)(?!$)/g, '$1:').toUpperCase();
  return {
    'User-Agent': 'ESP8266-http-Update',
    'x-ESP8266-Chip-ID': String(parseInt(device.mac.slice(6), 16)),
    'x-ESP8266-STA-MAC': colonMac,
    'x-ESP8266-AP-MAC': colonMac.replace(/^../, (b) => (parseInt(b, 16) | 0x02).toString(16).padStart(2, '0').toUpperCase()),
    'x-ESP8266-free-space': String(device.freeSpace),
    'x-ESP8266-sketch-size': String(device.sketchSize),
    'x-ESP8266-sketch-md5': device.sketchMd5,
    'x-ESP8266-chip-size': '4194304',
    'x-ESP8266-sdk-version': '2.2.2-dev(38a443e)',
    'x-ESP8266-mode': device.mode ?? 'sketch',
    ...(device.version ? { 'x-ESP8266-version': device.version } : {}),
  };
}

/**
 * One HTTP/1.0 GET over TLS the way the device's client does it: the server certificate
 * must chain to the CA and name the host; the reply must say how long it is (ESP8266httpUpdate
 * refuses chunked replies) and fit `maxBody`.
 */
export interface DeviceGetOptions {
  headers?: Record<string, string>;
  maxBody?: number;
  timeoutMs?: number;
  /** Reads no faster than a device does (lib/sim/device-timing.ts): TCP backpressure slows the server down too. */
  pace?: ReadPace;
  /** The TLS handshake is over (the request goes out now). */
  onConnected?(): void;
  /** Bytes arrived (a progress for the device's watchdog). */
  onData?(received: number): void;
  /** Ends the request at once (the device was reset). */
  signal?: AbortSignal;
  /**
   * `1.0` (default): ESP8266HTTPClient's request, `Host` and `Connection: close` added, the reply
   * read until the server closes. `1.1`: esp_http_client's (ESP-IDF esp_http_client.c: HTTP/1.1,
   * no Connection header): only `headers` are sent, so they carry Host, and the reply ends at its
   * Content-Length.
   */
  httpVersion?: '1.0' | '1.1';
  /** A body cut short resolves with what arrived (`complete: false`) instead of failing: the bytes already written to flash count. */
  keepPartial?: boolean;
  /** Called once the status line and headers are in; true closes the connection without reading the body. */
  stopAfterHeaders?(status: number, headers: Record<string, string>): boolean;
}

/**
 * A device's reading pace: `bytesPerSecond`, plus a pause of `everyMs` after each `every` bytes
 * (the ESP8266 Updater erases and writes a 4 KB flash sector as the download reaches it).
 */
export interface ReadPace {
  bytesPerSecond: number;
  every?: number;
  everyMs?: number;
}

export function deviceGet(target: HttpsTarget, pathAndQuery: string, id: DeviceTls, options: DeviceGetOptions = {}): Promise<DeviceResponse> {
  const maxBody = options.maxBody ?? 4 * 1024 * 1024;
  const v11 = options.httpVersion === '1.1';
  const headerLines = Object.entries(options.headers ?? {}).map(([k, v]) => `${k}: ${v}`);
  const request = (v11 ? [`GET ${pathAndQuery} HTTP/1.1`, ...headerLines, '', ''] : [`GET ${pathAndQuery} HTTP/1.0`, `Host: ${target.host}`, ...headerLines, 'Connection: close', '', '']).join('\r\n');
  return new Promise((resolve, reject) => {
    const socket = tls.connect({ host: target.host, port: target.port, servername: isIP(target.host) ? undefined : target.host, ca: id.ca, cert: id.cert, key: id.key, maxVersion: 'TLSv1.2' });
    const chunks: Buffer[] = [];
    let received = 0;
    let settled = false;
    let head: { status: number; headers: Record<string, string>; bodyStart: number } | undefined;
    const fail = (why: string): void => {
      if (settled) return;
      settled = true;
      socket.destroy();
      reject(new DeviceHttpError(why));
    };
    const done = (complete: boolean): void => {
      if (settled || !head) return;
      settled = true;
      socket.destroy();
      resolve({ status: head.status, headers: head.headers, body: Buffer.concat(chunks).subarray(head.bodyStart), complete });
    };
    const signal = options.signal;
    const onAbort = (): void => fail('aborted: the device was reset');
    if (signal?.aborted) return fail('aborted: the device was reset');
    signal?.addEventListener('abort', onAbort, { once: true });
    socket.once('close', () => signal?.removeEventListener('abort', onAbort));
    socket.setTimeout(options.timeoutMs ?? 30_000, () => fail('timed out'));
    socket.on('secureConnect', () => {
      options.onConnected?.();
      socket.write(request);
    });
    const pace = options.pace;
    let startedAt = 0;
    let resumeTimer: NodeJS.Timeout | undefined;
    socket.once('close', () => clearTimeout(resumeTimer));
    /** The status line and headers, once they are all in; a sized reply is checked against the device's limits. */
    const readHead = (): void => {
      const all = Buffer.concat(chunks);
      const split = all.indexOf('\r\n\r\n');
      if (split < 0) return;
      const [statusLine, ...lines] = all.subarray(0, split).toString('latin1').split('\r\n');
      const headers: Record<string, string> = {};
      for (const line of lines) {
        const i = line.indexOf(':');
        if (i > 0) headers[line.slice(0, i).trim().toLowerCase()] = line.slice(i + 1).trim();
      }
      head = { status: Number(statusLine.split(' ')[1]), headers, bodyStart: split + 4 };
      if (options.stopAfterHeaders?.(head.status, headers)) return done(false);
    };
    const bodyLength = (): number => received - (head?.bodyStart ?? 0);
    socket.on('data', (c: Buffer) => {
      chunks.push(c);
      received += c.length;
      options.onData?.(received);
      // Headers are small: anything past them beyond the limit is a reply the device cannot take.
      if (received > maxBody + 16 * 1024) return fail(`reply larger than ${maxBody} bytes`);
      if (!head) readHead();
      if (settled) return;
      // HTTP/1.1 keeps the connection open: the reply ends at its Content-Length (RFC 9112 §6.3).
      if (v11 && head && bodyLength() >= Number(head.headers['content-length'] ?? Infinity)) return close();
      if (!pace) return;
      if (!startedAt) startedAt = performance.now();
      const pauses = pace.every && pace.everyMs ? Math.floor(received / pace.every) * pace.everyMs : 0;
      const due = startedAt + (received / pace.bytesPerSecond) * 1000 + pauses;
      const wait = due - performance.now();
      if (wait >= 1) {
        socket.pause();
        resumeTimer = setTimeout(() => socket.resume(), wait);
      }
    });
    socket.on('error', (err: NodeJS.ErrnoException) => {
      // A cut mid-body is not an error for a device that keeps what it wrote.
      if (options.keepPartial && head) return close();
      fail(tlsReason(err));
    });
    const close = (): void => {
      if (settled) return;
      if (!head) readHead();
      if (settled) return;
      if (!head) return fail(`no HTTP reply (${received} bytes)`);
      const { status, headers } = head;
      const body = bodyLength();
      if (status === 200 || status === 206) {
        if (headers['transfer-encoding']) return fail('the server sent a chunked reply without Content-Length');
        const length = Number(headers['content-length']);
        if (!Number.isInteger(length)) return fail('the server did not report the size (no Content-Length)');
        if (length > maxBody) return fail(`reply of ${length} bytes does not fit ${maxBody}`);
        if (body < length && options.keepPartial) return done(false);
        if (body !== length) return fail(`connection lost after ${body} of ${length} bytes`);
      }
      done(true);
    };
    socket.on('close', close);
  });
}

/** Seed 000's words for a server the device must not trust; other TLS errors as they are. */
function tlsReason(err: NodeJS.ErrnoException): string {
  const code = err.code ?? '';
  if (/CERT|SELF_SIGNED|UNABLE_TO|HOSTNAME|ERR_TLS_CERT_ALTNAME/.test(code)) return `Updateserver-certificate doesn't match (${code})`;
  return err.message;
}
