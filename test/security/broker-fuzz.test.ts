// Property-based fuzzing of the embedded broker: valid MQTT packets (mqtt-packet) with random
// topics, QoS, flags and payload sizes, then mutated (bits flipped, cut short, bytes spliced in,
// absurd remaining lengths), sent over a real authenticated TLS connection. After every run a
// fresh device must still connect and its status reach the backend; nothing may throw; the
// CA store's files stay as they were and no connection slot is left behind.
import { strict as assert } from 'node:assert';
import { createHash } from 'node:crypto';
import { readdirSync, readFileSync } from 'node:fs';
import * as path from 'node:path';
import fc from 'fast-check';
import * as mqttPacket from 'mqtt-packet';
import { CaStore } from '../../lib/pki/ca-store';
import { BrokerEvent, EmbeddedBroker } from '../../lib/broker/embedded-broker';
import { tempDir } from '../support/temp-dir';
import { connectTls, Inbox } from '../support/mqtt-client';
import { recordAttack } from './support/attack-tally';
import { backendFiles, deviceFiles, RawMqtt, waitUntil } from './support/raw-clients';

const FUZZER = '84f3eb00f001';
const PROBE = '84f3eb00f002';
const OTHER = '84f3eb00f003';
const SEED = 1717;
const RUNS = 180;
/** A bound on the runs' time, should the machine be slow: fewer runs then, never a longer test. */
const TIME_LIMIT_MS = 25_000;

/** sha256 of every file under `dir`, by relative path. */
function snapshot(dir: string): Record<string, string> {
  const out: Record<string, string> = {};
  const walk = (d: string): void => {
    for (const e of readdirSync(d, { withFileTypes: true })) {
      const p = path.join(d, e.name);
      if (e.isDirectory()) walk(p);
      else out[path.relative(dir, p)] = createHash('sha256').update(readFileSync(p)).digest('hex');
    }
  };
  walk(dir);
  return out;
}

// ---- what a run sends ----------------------------------------------------------------------

const topic = fc.oneof(
  { weight: 2, arbitrary: fc.constantFrom(`/status/${FUZZER}`, `/will/${FUZZER}/will`, `/command/${FUZZER}/reboot`, `/status/${OTHER}`, `/command/${OTHER}/#`, '#', '+/+/#', '$SYS/#', '/status/+', '', '/', '\u0000') },
  fc.string({ maxLength: 80 }),
  fc.string({ unit: 'binary', maxLength: 40 }),
);
const qos = fc.constantFrom(0, 1, 2) as fc.Arbitrary<0 | 1 | 2>;
const messageId = fc.integer({ min: 1, max: 65535 });
const payload = fc.oneof(
  { weight: 4, arbitrary: fc.uint8Array({ maxLength: 128 }).map((a) => Buffer.from(a)) },
  { weight: 1, arbitrary: fc.integer({ min: 1024, max: 300 * 1024 }).map((n) => Buffer.alloc(n, 0x7b)) },
);

const packet: fc.Arbitrary<mqttPacket.Packet> = fc.oneof(
  fc.record({
    cmd: fc.constant('connect' as const),
    protocolVersion: fc.constantFrom(3, 4, 5) as fc.Arbitrary<3 | 4 | 5>,
    clientId: fc.oneof(fc.constant(`${FUZZER}-x`), fc.string({ maxLength: 120 })),
    clean: fc.boolean(),
    keepalive: fc.integer({ min: 0, max: 65535 }),
    username: fc.option(fc.string({ maxLength: 40 }), { nil: undefined }),
    password: fc.option(payload, { nil: undefined }),
    will: fc.option(fc.record({ topic, payload, qos, retain: fc.boolean() }), { nil: undefined }),
  }).map((p) => ({ ...p, protocolId: p.protocolVersion === 3 ? ('MQIsdp' as const) : ('MQTT' as const) })),
  fc.record({ cmd: fc.constant('publish' as const), topic, payload, qos, retain: fc.boolean(), dup: fc.boolean(), messageId }),
  fc.record({ cmd: fc.constant('subscribe' as const), messageId, subscriptions: fc.array(fc.record({ topic, qos }), { minLength: 1, maxLength: 5 }) }),
  fc.record({ cmd: fc.constant('unsubscribe' as const), messageId, unsubscriptions: fc.array(topic, { minLength: 1, maxLength: 5 }) }),
  fc.record({ cmd: fc.constantFrom('puback' as const, 'pubrec' as const, 'pubrel' as const, 'pubcomp' as const), messageId }),
  fc.record({ cmd: fc.constantFrom('pingreq' as const, 'disconnect' as const) }),
);

type Mutation =
  | { kind: 'none' }
  | { kind: 'flip'; at: number; bit: number }[]
  | { kind: 'truncate'; at: number }
  | { kind: 'splice'; at: number; bytes: Uint8Array }
  | { kind: 'length'; bytes: readonly number[] };

const mutation: fc.Arbitrary<Mutation> = fc.oneof(
  { weight: 3, arbitrary: fc.constant({ kind: 'none' as const }) },
  { weight: 3, arbitrary: fc.array(fc.record({ kind: fc.constant('flip' as const), at: fc.nat(), bit: fc.integer({ min: 0, max: 7 }) }), { minLength: 1, maxLength: 4 }) },
  { weight: 2, arbitrary: fc.record({ kind: fc.constant('truncate' as const), at: fc.nat() }) },
  { weight: 2, arbitrary: fc.record({ kind: fc.constant('splice' as const), at: fc.nat(), bytes: fc.uint8Array({ minLength: 1, maxLength: 16 }) }) },
  // Remaining lengths (MQTT-2.2.3): the largest legal one, a fifth byte, an unterminated one, 2 MiB.
  { weight: 2, arbitrary: fc.record({ kind: fc.constant('length' as const), bytes: fc.constantFrom([0xff, 0xff, 0xff, 0x7f], [0xff, 0xff, 0xff, 0xff, 0x01], [0x80, 0x80, 0x80, 0x80, 0x80], [0x80, 0x80, 0x80], [0x80, 0x80, 0x01]) }) },
);

function encode(p: mqttPacket.Packet): Buffer {
  try {
    return mqttPacket.generate(p, { protocolVersion: p.cmd === 'connect' ? p.protocolVersion : 4 });
  } catch {
    return Buffer.from([0xc0, 0x00]); // what mqtt-packet will not build: a PINGREQ instead
  }
}

/** Where a packet's remaining length ends (1-4 bytes after the first). */
function headerEnd(b: Buffer): number {
  let i = 1;
  while (i < b.length && i < 5 && b[i]! & 0x80) i++;
  return Math.min(i + 1, b.length);
}

function mutate(bytes: Buffer, m: Mutation): Buffer {
  if (Array.isArray(m)) {
    const out = Buffer.from(bytes);
    for (const f of m) if (out.length) out[f.at % out.length] ^= 1 << f.bit;
    return out;
  }
  switch (m.kind) {
    case 'none':
      return bytes;
    case 'truncate':
      return bytes.subarray(0, m.at % Math.max(1, bytes.length));
    case 'splice': {
      const at = m.at % (bytes.length + 1);
      return Buffer.concat([bytes.subarray(0, at), Buffer.from(m.bytes), bytes.subarray(at)]);
    }
    case 'length':
      return Buffer.concat([bytes.subarray(0, 1), Buffer.from(m.bytes), bytes.subarray(headerEnd(bytes))]);
  }
}

const run = fc.record({
  /** A valid CONNECT first, so that the rest reaches the handlers behind it. */
  connectFirst: fc.boolean(),
  packets: fc.array(fc.record({ packet, mutation }), { minLength: 1, maxLength: 6 }),
  /** Into how many writes the bytes are cut. */
  writes: fc.integer({ min: 1, max: 4 }),
});

describe('security: fuzzing the embedded broker with mutated MQTT packets', function () {
  this.timeout(120_000);
  const tmp = tempDir('broker-fuzz');
  let store: CaStore;
  let broker: EmbeddedBroker;
  const events: BrokerEvent[] = [];

  before(async () => {
    store = await CaStore.open({ dir: path.join(tmp.path, 'ca') });
    await Promise.all([FUZZER, PROBE, OTHER].map((id) => store.issueDevice(id)));
    await store.issueBackend({ commonName: 'node-red' });
    await store.idle();
    // A fuzz connection is destroyed from the client side; the next may arrive before the broker saw
    // the close, so the fuzzer gets more than a device's 2. Shorter deadlines keep runs short.
    broker = await EmbeddedBroker.start({ store, port: 0, host: '127.0.0.1', serverNames: ['localhost'], maxSessionsPerDevice: 8, connectTimeoutMs: 2_000, onEvent: (e) => events.push(e) });
  });

  after(async () => {
    await broker?.close();
    tmp.remove();
  });

  it(`keeps serving, throws nothing and changes nothing stored, over ${RUNS} runs (seed ${SEED})`, async () => {
    const before = snapshot(store.dir);
    const backendClient = await connectTls(broker.port, backendFiles(store, 'node-red'), 'fuzz-backend');
    backendClient.on('error', () => undefined);
    const inbox = new Inbox(backendClient);
    await backendClient.subscribeAsync(['/status/+', '/will/+/will']);
    const fuzzFiles = deviceFiles(store, FUZZER);
    const probeFiles = deviceFiles(store, PROBE);
    let runs = 0;
    const started = Date.now();

    try {
      await fc.assert(
        fc.asyncProperty(run, async ({ connectFirst, packets, writes }) => {
          runs++;
          const conn = await RawMqtt.connect(broker.port, fuzzFiles);
          try {
            if (connectFirst) await conn.mqttConnect(`${FUZZER}-fuzz`);
            const bytes = Buffer.concat(packets.map((p) => mutate(encode(p.packet), p.mutation)));
            const step = Math.ceil(bytes.length / writes) || 1;
            for (let i = 0; i < bytes.length && !conn.isClosed; i += step) conn.write(bytes.subarray(i, i + step));
            await conn.closedWithin(30);
          } finally {
            conn.destroy();
          }
          // A fresh device still gets in and its status still reaches the backend.
          const probe = await connectTls(broker.port, probeFiles, `${PROBE}-${runs}`);
          // Its faults fail this run (below), never the process as an unhandled 'error' later.
          probe.on('error', () => undefined);
          try {
            const nonce = `run-${runs}`;
            await probe.publishAsync(`/status/${PROBE}`, nonce, { qos: 1 });
            // Generous: the whole suite may share the two cores with this run.
            await inbox.until((t, p) => t === `/status/${PROBE}` && p === nonce, 15_000);
          } finally {
            await probe.endAsync(true).catch(() => undefined);
          }
        }),
        { seed: SEED, numRuns: RUNS, endOnFailure: true, interruptAfterTimeLimit: TIME_LIMIT_MS },
      );
    } catch (err) {
      recordAttack('broker', 'crashed');
      throw err;
    } finally {
      await backendClient.endAsync(true).catch(() => undefined);
    }
    assert.ok(runs >= RUNS / 2, `only ${runs} runs within ${TIME_LIMIT_MS} ms`);
    recordAttack('broker', 'refused', runs);

    assert.deepEqual(events.filter((e) => e.type === 'error'), [], 'faults of the broker itself');
    // Every slot is given back once the fuzz connections are gone.
    assert.ok(await waitUntil(() => broker.handshakingCount === 0 && broker.connectionsOf(FUZZER) === 0 && broker.connectionsOf(PROBE) === 0, 5_000), `left: handshakes ${broker.handshakingCount}, fuzzer ${broker.connectionsOf(FUZZER)}, probe ${broker.connectionsOf(PROBE)}`);
    assert.deepEqual(snapshot(store.dir), before, 'the CA store changed');
    console.log(`      ${runs} runs in ${((Date.now() - started) / 1000).toFixed(1)} s; broker refused ${broker.refusedCount} (${JSON.stringify(broker.refusedByCause())})`);
  });
});
