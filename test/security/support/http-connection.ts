import * as net from 'node:net';
import * as tls from 'node:tls';
import type { ClientIdentity } from '../../support/raw-https';

export interface HttpAnswer {
  status: number;
  /** Lower-case names; repeated headers joined with ", ". */
  headers: Record<string, string>;
  body: Buffer;
  head: string;
}

/**
 * One TLS connection that carries many HTTP/1.1 requests (keep-alive, or pipelined), with the
 * answers read off it in order. Bodies are framed by Content-Length (the update server always
 * sends one); 304 and answers to HEAD have none.
 */
export class HttpConnection {
  private buffer: Buffer = Buffer.alloc(0);
  private waiting: (() => void) | undefined;
  private ended = false;
  /** When the connection closed (Date.now()), once it has. */
  closedAt: number | undefined;
  readonly closed: Promise<number>;

  private constructor(readonly socket: tls.TLSSocket) {
    this.closed = new Promise((resolve) => {
      socket.on('close', () => {
        this.ended = true;
        this.closedAt = Date.now();
        this.waiting?.();
        resolve(this.closedAt);
      });
    });
    socket.on('data', (chunk: Buffer) => {
      this.buffer = this.buffer.length ? Buffer.concat([this.buffer, chunk]) : chunk;
      this.waiting?.();
    });
    socket.on('error', () => undefined);
  }

  static open(port: number, id: ClientIdentity, options: { localAddress?: string } = {}): Promise<HttpConnection> {
    return new Promise((resolve, reject) => {
      // From another loopback address when asked (a net socket of its own carries localAddress).
      const tcp = options.localAddress ? net.connect({ host: '127.0.0.1', port, localAddress: options.localAddress }) : undefined;
      const socket = tls.connect({ ...(tcp ? { socket: tcp } : { host: '127.0.0.1', port }), ca: id.ca, cert: id.cert, key: id.key, servername: 'localhost' });
      socket.once('secureConnect', () => resolve(new HttpConnection(socket)));
      socket.once('error', reject);
      socket.once('close', () => reject(new Error('closed before the TLS handshake finished')));
    });
  }

  send(raw: string | Buffer): void {
    if (!this.socket.destroyed) this.socket.write(raw);
  }

  /** `GET path` on this connection (HTTP/1.1, keep-alive). */
  get(path: string, extra = ''): void {
    this.send(`GET ${path} HTTP/1.1\r\nHost: localhost\r\n${extra}\r\n`);
  }

  /** The next answer, or undefined when the connection closed first (or nothing came within `timeoutMs`). */
  async next(options: { head?: boolean; timeoutMs?: number } = {}): Promise<HttpAnswer | undefined> {
    const deadline = Date.now() + (options.timeoutMs ?? 10_000);
    for (;;) {
      const answer = this.take(options.head === true);
      if (answer) return answer;
      if (this.ended || Date.now() > deadline) return undefined;
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, Math.max(1, deadline - Date.now()));
        this.waiting = () => {
          clearTimeout(t);
          this.waiting = undefined;
          resolve();
        };
      });
    }
  }

  private take(head: boolean): HttpAnswer | undefined {
    const split = this.buffer.indexOf('\r\n\r\n');
    if (split < 0) return undefined;
    const headText = this.buffer.subarray(0, split).toString('latin1');
    const [statusLine, ...lines] = headText.split('\r\n');
    const headers: Record<string, string> = {};
    for (const line of lines) {
      const i = line.indexOf(':');
      const name = line.slice(0, i).trim().toLowerCase();
      const value = line.slice(i + 1).trim();
      headers[name] = headers[name] === undefined ? value : `${headers[name]}, ${value}`;
    }
    const status = Number(statusLine.split(' ')[1]);
    const length = head || status === 304 || status === 204 ? 0 : Number(headers['content-length'] ?? 0);
    if (this.buffer.length < split + 4 + length) return undefined;
    const body = this.buffer.subarray(split + 4, split + 4 + length);
    this.buffer = this.buffer.subarray(split + 4 + length);
    return { status, headers, body, head: headText };
  }

  close(): void {
    this.socket.destroy();
  }
}
