// The devices of bench/broker-connect, in a forked process of their own so they share no event
// loop with the broker under test. Each device connects as an ESP8266 does: a fresh TCP
// connection, a full TLS 1.2 handshake with its own client certificate (no session
// resumption), then MQTT CONNECT, and it counts as connected at CONNACK with return code 0
// (MQTT-3.2.2.3). Connections stay open until the parent says `drop`.
//
// Protocol (process IPC): the parent sends ConnectCommand, the child answers ConnectReply.
import * as tls from 'node:tls';
import { performance } from 'node:perf_hooks';
import * as mqttPacket from 'mqtt-packet';

export interface ConnectSetup {
  ca: string;
  devices: { id: string; cert: string; key: number }[];
  /** Private keys (PEM) the devices' certificates were made for, by index. */
  keys: string[];
  /** The one cipher suite and key exchange group offered, so both brokers negotiate the same. */
  cipher: string;
  ecdhCurve: string;
}

export type ConnectCommand =
  | { cmd: 'setup'; setup: ConnectSetup }
  | { cmd: 'connect'; port: number; concurrency: number; attempts: number; timeoutMs: number }
  | { cmd: 'drop' }
  | { cmd: 'close' };

export interface ConnectResult {
  /** From the first connect to the last CONNACK. */
  ms: number;
  connected: number;
  /** Attempts that failed and were tried again (the broker refused or closed them). */
  retries: number;
  failures: string[];
  /** Per device, from TCP connect to CONNACK, and to the end of its TLS handshake. */
  p50Ms: number;
  p99Ms: number;
  tlsP50Ms: number;
  protocols: Record<string, number>;
}

export type ConnectReply =
  | { type: 'ready'; ms: number }
  | { type: 'connected'; result: ConnectResult }
  | { type: 'dropped'; count: number }
  | { type: 'closed' }
  | { type: 'error'; message: string };

interface Device {
  id: string;
  context: tls.SecureContext;
  connect: Buffer;
}

let devices: Device[] = [];
let open: tls.TLSSocket[] = [];

function reply(r: ConnectReply): void {
  process.send!(r);
}

function percentile(sorted: number[], p: number): number {
  if (!sorted.length) return 0;
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
}

/** One attempt: resolves with the socket at CONNACK 0, rejects with why not. */
function connectOnce(port: number, device: Device, timeoutMs: number): Promise<{ socket: tls.TLSSocket; ms: number; tlsMs: number }> {
  return new Promise((resolve, reject) => {
    const t0 = performance.now();
    let tlsMs = 0;
    const socket = tls.connect({ port, host: '127.0.0.1', servername: 'localhost', secureContext: device.context });
    const timer = setTimeout(() => fail(new Error(`no CONNACK within ${timeoutMs} ms`)), timeoutMs);
    const fail = (err: Error): void => {
      clearTimeout(timer);
      socket.destroy();
      reject(err);
    };
    socket.once('secureConnect', () => {
      tlsMs = performance.now() - t0;
      socket.write(device.connect);
    });
    let got = Buffer.alloc(0);
    const onData = (chunk: Buffer): void => {
      got = Buffer.concat([got, chunk]);
      if (got.length < 4) return;
      clearTimeout(timer);
      socket.off('data', onData);
      socket.off('close', onClose);
      if (got[0] !== 0x20 || got[3] !== 0) return fail(new Error(`CONNACK ${got.subarray(0, 4).toString('hex')}`));
      socket.on('error', () => undefined);
      resolve({ socket, ms: performance.now() - t0, tlsMs });
    };
    const onClose = (): void => fail(new Error('closed before CONNACK'));
    socket.on('data', onData);
    socket.once('close', onClose);
    socket.on('error', (err) => fail(err));
  });
}

async function connectAll(port: number, concurrency: number, attempts: number, timeoutMs: number): Promise<ConnectResult> {
  const times: number[] = [];
  const tlsTimes: number[] = [];
  const failures: string[] = [];
  const protocols: Record<string, number> = {};
  let retries = 0;
  let next = 0;
  const t0 = performance.now();
  const worker = async (): Promise<void> => {
    while (next < devices.length) {
      const device = devices[next++]!;
      for (let attempt = 1; ; attempt++) {
        try {
          const { socket, ms, tlsMs } = await connectOnce(port, device, timeoutMs);
          open.push(socket);
          times.push(ms);
          tlsTimes.push(tlsMs);
          const proto = `${socket.getProtocol()} ${socket.getCipher().name}${socket.isSessionReused() ? ' resumed' : ''}`;
          protocols[proto] = (protocols[proto] ?? 0) + 1;
          break;
        } catch (err) {
          if (attempt >= attempts) {
            failures.push(`${device.id}: ${(err as Error).message}`);
            break;
          }
          retries++;
          await new Promise((r) => setTimeout(r, 50));
        }
      }
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, concurrency) }, worker));
  const ms = performance.now() - t0;
  times.sort((a, b) => a - b);
  tlsTimes.sort((a, b) => a - b);
  return { ms, connected: times.length, retries, failures: failures.slice(0, 20), p50Ms: percentile(times, 50), p99Ms: percentile(times, 99), tlsP50Ms: percentile(tlsTimes, 50), protocols };
}

process.on('message', (cmd: ConnectCommand) => {
  void (async () => {
    try {
      if (cmd.cmd === 'setup') {
        const t0 = performance.now();
        const { setup } = cmd;
        // TLS 1.2 with one suite, as an ESP8266 (BearSSL) offers; a context per device, never a session to resume.
        devices = setup.devices.map((d) => ({
          id: d.id,
          context: tls.createSecureContext({ ca: setup.ca, cert: d.cert, key: setup.keys[d.key]!, ciphers: setup.cipher, ecdhCurve: setup.ecdhCurve, maxVersion: 'TLSv1.2', minVersion: 'TLSv1.2' }),
          connect: mqttPacket.generate({ cmd: 'connect', protocolId: 'MQTT', protocolVersion: 4, clean: true, keepalive: 60, clientId: d.id }),
        }));
        reply({ type: 'ready', ms: performance.now() - t0 });
      } else if (cmd.cmd === 'connect') {
        reply({ type: 'connected', result: await connectAll(cmd.port, cmd.concurrency, cmd.attempts, cmd.timeoutMs) });
      } else if (cmd.cmd === 'drop') {
        const count = open.length;
        await Promise.all(
          open.splice(0).map(
            (s) =>
              new Promise<void>((resolve) => {
                if (s.closed) return resolve();
                s.once('close', () => resolve());
                s.destroy();
              }),
          ),
        );
        reply({ type: 'dropped', count });
      } else if (cmd.cmd === 'close') {
        for (const s of open) s.destroy();
        reply({ type: 'closed' });
        process.disconnect();
      }
    } catch (err) {
      reply({ type: 'error', message: (err as Error).message });
    }
  })();
});
