// Attackers and devices at the socket level, for the broker's security tests: plain TCP sockets
// that never start TLS, and TLS connections that speak MQTT byte by byte (mqtt-packet), so a
// test decides exactly what reaches the broker and sees exactly when the broker hangs up.
import * as net from 'node:net';
import * as path from 'node:path';
import * as tls from 'node:tls';
import { readFileSync } from 'node:fs';
import * as mqttPacket from 'mqtt-packet';
import type { CaStore } from '../../../lib/pki/ca-store';

export interface TlsFiles {
  ca: string;
  cert: string;
  key: string;
}

export function deviceFiles(store: CaStore, id: string): TlsFiles {
  const dir = store.deviceFilesDir;
  const read = (f: string): string => readFileSync(path.join(dir, f), 'utf8');
  return { ca: read('ca.crt'), cert: read(`${id}.crt`), key: read(`${id}.key`) };
}

export function backendFiles(store: CaStore, name: string): TlsFiles {
  const files = store.identityFiles('backend', name);
  return { ca: store.caCertificatePem, cert: readFileSync(files.certificate, 'utf8'), key: readFileSync(files.privateKey, 'utf8') };
}

/** Resolves after `ms`, or once `ok()` holds (checked every 20 ms); says which. */
export async function waitUntil(ok: () => boolean, ms: number): Promise<boolean> {
  for (const end = Date.now() + ms; !ok(); await new Promise((r) => setTimeout(r, 20))) {
    if (Date.now() > end) return false;
  }
  return true;
}

/** Plain TCP sockets that connect and then say nothing: handshakes that never start. */
export class IdleSockets {
  readonly sockets: net.Socket[] = [];
  /** When each socket was closed, ms after it connected; undefined while open. */
  readonly closedAfter: (number | undefined)[] = [];

  static async open(port: number, count: number, localAddress: string): Promise<IdleSockets> {
    const idle = new IdleSockets();
    await Promise.all(
      Array.from({ length: count }, (_, i) => {
        return new Promise<void>((resolve) => {
          const s = net.connect({ port, host: '127.0.0.1', localAddress });
          idle.sockets.push(s);
          let connectedAt = Date.now();
          s.on('connect', () => {
            connectedAt = Date.now();
            resolve();
          });
          s.on('error', () => undefined); // a reset by the broker is the point
          s.on('close', () => {
            idle.closedAfter[i] = Date.now() - connectedAt;
            resolve();
          });
        });
      }),
    );
    return idle;
  }

  get open(): number {
    return this.sockets.filter((s) => !s.destroyed && !s.closed).length;
  }

  closedWithin(ms: number): number {
    return this.closedAfter.filter((t) => t !== undefined && t <= ms).length;
  }

  allClosed(ms: number): Promise<boolean> {
    return waitUntil(() => this.open === 0, ms);
  }

  destroy(): void {
    for (const s of this.sockets) s.destroy();
  }
}

/** CONNACK return code, or why there was none. */
export type ConnectOutcome = number | 'closed';

/** One TLS connection with raw MQTT on it. */
export class RawMqtt {
  private buffered = Buffer.alloc(0);
  private ackWaiters: ((o: ConnectOutcome) => void)[] = [];
  private outcome: ConnectOutcome | undefined;
  readonly closed: Promise<void>;
  readonly connectedAt = Date.now();
  closedAt: number | undefined;

  private constructor(readonly socket: tls.TLSSocket) {
    socket.on('data', (chunk: Buffer) => {
      this.buffered = Buffer.concat([this.buffered, chunk]);
      // CONNACK (MQTT-3.2): 0x20, remaining length 2, flags, return code.
      if (this.buffered.length >= 4 && this.buffered[0] === 0x20) this.settle(this.buffered[3]!);
    });
    socket.on('error', () => undefined);
    this.closed = new Promise((resolve) => {
      socket.once('close', () => {
        this.closedAt = Date.now();
        this.settle('closed');
        resolve();
      });
    });
  }

  /** Completes the TLS handshake (as the client sees it) or rejects. */
  static connect(port: number, files: Partial<TlsFiles>): Promise<RawMqtt> {
    return new Promise((resolve, reject) => {
      const socket = tls.connect({ port, host: '127.0.0.1', servername: 'localhost', ca: files.ca, cert: files.cert, key: files.key });
      const fail = (err?: Error): void => reject(err ?? new Error('closed during the TLS handshake'));
      socket.once('error', fail);
      socket.once('close', () => fail());
      socket.once('secureConnect', () => {
        socket.off('error', fail);
        socket.removeAllListeners('close');
        resolve(new RawMqtt(socket));
      });
    });
  }

  get isClosed(): boolean {
    return this.closedAt !== undefined;
  }

  write(bytes: Buffer): void {
    if (!this.socket.destroyed) this.socket.write(bytes);
  }

  /** Sends CONNECT and resolves with the CONNACK's return code, or 'closed'. */
  mqttConnect(clientId: string, extra: Partial<mqttPacket.IConnectPacket> = {}): Promise<ConnectOutcome> {
    this.write(mqttPacket.generate({ cmd: 'connect', protocolId: 'MQTT', protocolVersion: 4, clean: true, keepalive: 60, clientId, ...extra }));
    return this.connack();
  }

  connack(): Promise<ConnectOutcome> {
    if (this.outcome !== undefined) return Promise.resolve(this.outcome);
    return new Promise((resolve) => this.ackWaiters.push(resolve));
  }

  /** Resolves true when the broker closed the connection within `ms`. */
  async closedWithin(ms: number): Promise<boolean> {
    let timer: NodeJS.Timeout | undefined;
    const result = await Promise.race([this.closed.then(() => true), new Promise<boolean>((r) => (timer = setTimeout(() => r(false), ms)))]);
    clearTimeout(timer);
    return result;
  }

  destroy(): void {
    this.socket.destroy();
  }

  private settle(outcome: ConnectOutcome): void {
    this.outcome ??= outcome;
    for (const w of this.ackWaiters.splice(0)) w(outcome);
  }
}
