// Sockets that hold TLS handshakes open, for bench/broker-connect: half of them connect and
// say nothing (no ClientHello), half send the first part of a real ClientHello and stop (the
// server has a partial TLS record it must wait for). Whenever the broker closes one (a cap or
// its handshake deadline), it is opened again after `reopenMs`, as an attacker would, so the
// number held stays up for the whole phase.
import * as net from 'node:net';
import * as tls from 'node:tls';

/** The first bytes a Node TLS client sends: a real ClientHello, to cut short. */
export function captureClientHello(): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const server = net.createServer((s) => {
      s.once('data', (chunk: Buffer) => {
        resolve(chunk);
        s.destroy();
        server.close();
      });
    });
    server.listen(0, '127.0.0.1', () => {
      const c = tls.connect({ port: (server.address() as net.AddressInfo).port, host: '127.0.0.1', servername: 'localhost', rejectUnauthorized: false });
      c.on('error', () => undefined);
      c.on('close', () => undefined);
    });
    server.on('error', reject);
  });
}

export interface HeldStats {
  /** Sockets open now. */
  held: number;
  /** Sockets opened in all (the first ones and every re-open). */
  opened: number;
  /** Closed by the server before this side stopped. */
  closedByServer: number;
}

export class HeldHandshakes {
  private readonly sockets = new Set<net.Socket>();
  private stopped = false;
  private opened = 0;
  private closedByServer = 0;
  private readonly timers = new Set<NodeJS.Timeout>();

  private constructor(
    private readonly port: number,
    private readonly localAddress: string,
    private readonly partialHello: Buffer,
    private readonly reopenMs: number,
  ) {}

  /** Opens `count` sockets from `localAddress` and resolves once all have connected (or closed). */
  static async start(port: number, count: number, opts: { localAddress: string; clientHello: Buffer; reopenMs: number }): Promise<HeldHandshakes> {
    // Up to the record header and a part of the handshake message: never a whole ClientHello.
    const partial = opts.clientHello.subarray(0, Math.min(64, opts.clientHello.length - 1));
    const held = new HeldHandshakes(port, opts.localAddress, partial, opts.reopenMs);
    await Promise.all(Array.from({ length: count }, (_, i) => held.open(i % 2 === 1)));
    return held;
  }

  stats(): HeldStats {
    return { held: this.sockets.size, opened: this.opened, closedByServer: this.closedByServer };
  }

  async stop(): Promise<void> {
    this.stopped = true;
    for (const t of this.timers) clearTimeout(t);
    await Promise.all(
      [...this.sockets].map(
        (s) =>
          new Promise<void>((resolve) => {
            s.once('close', () => resolve());
            s.destroy();
          }),
      ),
    );
  }

  private open(partial: boolean): Promise<void> {
    return new Promise((resolve) => {
      this.opened++;
      const s = net.connect({ port: this.port, host: '127.0.0.1', localAddress: this.localAddress });
      this.sockets.add(s);
      s.on('error', () => undefined);
      s.once('connect', () => {
        if (partial) s.write(this.partialHello);
        resolve();
      });
      s.once('close', () => {
        this.sockets.delete(s);
        resolve();
        if (this.stopped) return;
        this.closedByServer++;
        const t = setTimeout(() => {
          this.timers.delete(t);
          if (!this.stopped) void this.open(partial);
        }, this.reopenMs);
        this.timers.add(t);
      });
    });
  }
}
