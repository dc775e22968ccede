import * as tls from 'node:tls';
import { esp8266UpdateHeaders } from '../../lib/sim/device-https';
import { normalizeDeviceId } from '../../lib/device-id';

export interface RawResponse {
  status: number;
  headers: Record<string, string>;
  body: Buffer;
  /** The header block as sent, to check framing (e.g. no chunked encoding). */
  head: string;
}

export interface ClientIdentity {
  ca: string;
  cert?: string;
  key?: string;
}

/**
 * Sends exactly the bytes given over TLS and reads until the server closes, the way an
 * ESP8266 running ESP8266httpUpdate does (HTTP/1.0, one request per connection).
 */
export function rawRequest(
  port: number,
  id: ClientIdentity,
  request: string,
  options: { maxVersion?: tls.SecureVersion; onData?: (socket: tls.TLSSocket, received: number) => void; host?: string } = {},
): Promise<RawResponse> {
  return new Promise((resolve, reject) => {
    const socket = tls.connect({ host: options.host ?? 'localhost', port, ca: id.ca, cert: id.cert, key: id.key, servername: 'localhost', maxVersion: options.maxVersion });
    const chunks: Buffer[] = [];
    let received = 0;
    socket.on('secureConnect', () => socket.write(request));
    socket.on('data', (c: Buffer) => {
      chunks.push(c);
      received += c.length;
      options.onData?.(socket, received);
    });
    socket.on('error', reject);
    socket.on('close', () => {
      const all = Buffer.concat(chunks);
      const split = all.indexOf('\r\n\r\n');
      if (split < 0) return reject(new Error(`no HTTP response (${all.length} bytes)`));
      const head = all.subarray(0, split).toString('latin1');
      const [statusLine, ...lines] = head.split('\r\n');
      const headers: Record<string, string> = {};
      for (const line of lines) {
        const i = line.indexOf(':');
        headers[line.slice(0, i).trim().toLowerCase()] = line.slice(i + 1).trim();
      }
      resolve({ status: Number(statusLine.split(' ')[1]), headers, body: all.subarray(split + 4), head });
    });
  });
}

/** The request ESP8266httpUpdate sends (esp8266/Arduino ESP8266httpUpdate.cpp), for a device. */
export function esp8266UpdateRequest(pathAndQuery: string, device: { mac: string; version?: string; freeSpace?: number; sketchMd5?: string; mode?: 'sketch' | 'spiffs' }): string {
  const headers = esp8266UpdateHeaders({
    mac: normalizeDeviceId(device.mac),
    version: device.version,
    freeSpace: device.freeSpace ?? 2_000_000,
    sketchSize: 400_000,
    sketchMd5: device.sketchMd5 ?? '00000000000000000000000000000000',
    mode: device.mode,
  });
  const lines = [`GET ${pathAndQuery} HTTP/1.0`, 'Host: localhost', ...Object.entries(headers).map(([k, v]) => `${k}: ${v}`), 'Connection: close', '', ''];
  return lines.join('\r\n');
}
