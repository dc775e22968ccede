// The load generator of bench/status-ingest, run as a separate process (child_process.fork)
// so that publishing does not compete with Node-RED's event loop on the same thread.
//
// It connects one MQTT client per device over mutual TLS (each with its own certificate: the
// generated ACL lets a device write only its own /status/<id>), then on command publishes
// valid ten-field status JSON (QoS 0) to each device's own topic, as fast as the sockets take
// it (back-pressure: a client waits for 'drain' when its socket buffer is full) or at a fixed
// total rate. uptimemillis carries a per-device sequence number, so the receiving side can
// check by sum that it got every message exactly once.
//
// Protocol (process IPC): the parent sends GeneratorCommand, the child answers GeneratorReply.
import { promises as fs } from 'node:fs';
import * as path from 'node:path';
import { performance } from 'node:perf_hooks';
import mqtt, { MqttClient } from 'mqtt';

export type GeneratorCommand =
  | { cmd: 'connect'; port: number; deviceDir: string; ids: string[]; concurrency?: number }
  | { cmd: 'probe' }
  | { cmd: 'burst'; total: number; rate: number }
  | { cmd: 'close' };

export type GeneratorReply =
  | { type: 'connected'; clients: number; ms: number; payloadBytes: number }
  | { type: 'probed' }
  | { type: 'burst-done'; sent: number; sum: number; ms: number }
  | { type: 'closed' }
  | { type: 'error'; message: string };

interface Publisher {
  id: string;
  client: MqttClient;
  topic: string;
  suffix: string;
  seq: number;
  left: number;
  waiting: boolean;
}

/** Everything after uptimemillis: the ten fields of docs/wire-contract.md, valid for parseStatus. */
function statusSuffix(id: string, index: number): string {
  return (
    `,"maxmillis":12,"mqttmillis":800,"espname":"bench-${id}","espimage":"ESP8266_WEMOS_D1MINIPRO-00.00.08.f",` +
    `"espbuild":"Nov 21 2026 10:00:00","espip":"192.0.2.${(index % 250) + 1}","rssi":-61,"espfreeheap":24000,"errormessage":""}`
  );
}
const PREFIX = '{"uptimemillis":';

const publishers: Publisher[] = [];

function reply(r: GeneratorReply): void {
  // The parent may be gone (Ctrl-C): then there is nobody to tell, and 'disconnect' ends this process.
  if (process.connected) process.send?.(r, undefined, undefined, () => undefined);
}

function connectOne(port: number, ca: string, cert: string, key: string, id: string): Promise<MqttClient> {
  return new Promise((resolve, reject) => {
    const client = mqtt.connect({
      protocol: 'mqtts',
      host: 'localhost',
      port,
      clientId: `bench-${id}`,
      ca,
      cert,
      key,
      rejectUnauthorized: true,
      reconnectPeriod: 0,
      connectTimeout: 20_000,
      keepalive: 120,
      clean: true,
    });
    const fail = (why: string) => (err?: Error) => {
      client.end(true);
      reject(new Error(`device ${id}: ${why}${err ? `: ${err.message}` : ''}`));
    };
    const onError = fail('refused');
    const onClose = fail('closed before CONNACK');
    client.once('error', onError);
    client.once('close', onClose);
    client.once('connect', () => {
      client.off('error', onError);
      client.off('close', onClose);
      // A lost connection after this would show up as missing messages; say so loudly.
      client.on('error', (err) => reply({ type: 'error', message: `device ${id}: ${err.message}` }));
      client.on('close', () => {
        if (!closing) reply({ type: 'error', message: `device ${id}: connection closed during the benchmark` });
      });
      resolve(client);
    });
  });
}

let closing = false;

async function connect(c: Extract<GeneratorCommand, { cmd: 'connect' }>): Promise<void> {
  const t0 = performance.now();
  const ca = await fs.readFile(path.join(c.deviceDir, 'ca.crt'), 'utf8');
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < c.ids.length) {
      const index = next++;
      const id = c.ids[index]!;
      const [cert, key] = await Promise.all([fs.readFile(path.join(c.deviceDir, `${id}.crt`), 'utf8'), fs.readFile(path.join(c.deviceDir, `${id}.key`), 'utf8')]);
      const client = await connectOne(c.port, ca, cert, key, id);
      publishers[index] = { id, client, topic: `/status/${id}`, suffix: statusSuffix(id, index), seq: 0, left: 0, waiting: false };
    }
  };
  await Promise.all(Array.from({ length: Math.min(c.concurrency ?? 16, c.ids.length) }, worker));
  reply({ type: 'connected', clients: publishers.length, ms: performance.now() - t0, payloadBytes: Buffer.byteLength(PREFIX + '1000' + publishers[0]!.suffix) });
}

let sent = 0;
let sum = 0;

function publishOne(p: Publisher): void {
  p.seq++;
  p.left--;
  sent++;
  sum += p.seq;
  p.client.publish(p.topic, PREFIX + p.seq + p.suffix, { qos: 0 });
}

/** Resolves when every socket has handed its buffered bytes to the kernel ('drain' fires only after a full buffer). */
async function drained(): Promise<void> {
  while (publishers.some((p) => p.client.stream.writableLength > 0)) await new Promise((r) => setTimeout(r, 2));
}

async function burst(total: number, rate: number): Promise<void> {
  sent = 0;
  sum = 0;
  const n = publishers.length;
  publishers.forEach((p, i) => {
    p.left = Math.floor(total / n) + (i < total % n ? 1 : 0);
    p.waiting = false;
  });
  const t0 = performance.now();
  if (rate > 0) await paced(total, rate, t0);
  else await flatOut();
  await drained();
  reply({ type: 'burst-done', sent, sum, ms: performance.now() - t0 });
}

/** As fast as the sockets take it: each client writes until its buffer is full, then waits for 'drain'. */
function flatOut(): Promise<void> {
  return new Promise((resolve) => {
    let active = publishers.filter((p) => p.left > 0).length;
    if (active === 0) return resolve();
    const pump = (p: Publisher): void => {
      p.waiting = false;
      const stream = p.client.stream;
      while (p.left > 0) {
        if (stream.writableNeedDrain) {
          p.waiting = true;
          stream.once('drain', () => pump(p));
          return;
        }
        publishOne(p);
      }
      if (--active === 0) resolve();
    };
    // Start every client from the event loop, so the first ones do not fill the broker before the last begin.
    for (const p of publishers) if (p.left > 0) setImmediate(() => pump(p));
  });
}

/** A fixed total rate: every 5 ms, the messages due since the start, round-robin over clients with room. */
function paced(total: number, rate: number, t0: number): Promise<void> {
  return new Promise((resolve) => {
    let cursor = 0;
    const timer = setInterval(() => {
      const due = Math.min(total, Math.floor(((performance.now() - t0) * rate) / 1000)) - sent;
      let idle = 0;
      for (let k = 0; k < due && idle < publishers.length; ) {
        const p = publishers[cursor]!;
        cursor = (cursor + 1) % publishers.length;
        if (p.left > 0 && !p.client.stream.writableNeedDrain) {
          publishOne(p);
          k++;
          idle = 0;
        } else {
          idle++;
        }
      }
      if (sent >= total) {
        clearInterval(timer);
        resolve();
      }
    }, 5);
  });
}

process.on('message', (c: GeneratorCommand) => {
  const run = async (): Promise<void> => {
    switch (c.cmd) {
      case 'connect':
        return connect(c);
      case 'probe': {
        const p = publishers[0]!;
        // uptimemillis 0: a probe adds nothing to the sums.
        p.client.publish(p.topic, PREFIX + '0' + p.suffix, { qos: 0 });
        return reply({ type: 'probed' });
      }
      case 'burst':
        return burst(c.total, c.rate);
      case 'close':
        closing = true;
        await Promise.all(publishers.map((p) => p.client.endAsync(true).catch(() => undefined)));
        reply({ type: 'closed' });
        process.disconnect?.();
        return;
    }
  };
  run().catch((err: unknown) => reply({ type: 'error', message: err instanceof Error ? err.message : String(err) }));
});
process.on('disconnect', () => process.exit(0));
