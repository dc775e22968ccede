import { strict as assert } from 'node:assert';
import * as path from 'node:path';
import type { MqttClient } from 'mqtt';
import { CaStore } from '../../lib/pki/ca-store';
import { writeMosquittoConfig } from '../../lib/mosquitto/folders';
import { EmbeddedBroker } from '../../lib/broker/embedded-broker';
import { FleetTopics, TopicChoiceName } from '../../lib/fleet/fleet-topics';
import { tempDir } from '../support/temp-dir';
import { freePort, startMosquitto, RunningMosquitto } from '../support/mosquitto';
import { connectTls, identityFromFiles, Inbox, TlsIdentity } from '../support/mqtt-client';

const A = '84f3eb00002a';
const B = '84f3eb00002b';
const BE = 'node-red';
type Who = typeof A | typeof B | typeof BE;

/** (who publishes, topic, does the ACL let it through); `will` cases are an LWT sent on an abrupt drop. */
interface Cases {
  publish: { who: Who; topic: string; allowed: boolean; will?: boolean }[];
  read: { who: Who; topic: string; writer: Who; allowed: boolean }[];
  wildcards: { who: Who; filter: string }[];
  traffic: { who: Who; topic: string }[];
  /** What a legitimate backend / device subscribes to, so every publish that gets through is seen. */
  backendFilters: string[];
  deviceFilters(id: string): string[];
  /** The wildcard subscriptions the embedded broker refuses. */
  refused: string[];
  /** What Mosquitto delivers to `#` of device A and of the backend. */
  deviceHashReceives: string[];
  backendHashReceives: string[];
}

const PUBLISH: Cases['publish'] = [
  { who: A, topic: `/status/${A}`, allowed: true },
  { who: A, topic: `/will/${A}/will`, allowed: true },
  { who: A, topic: `/status/${B}`, allowed: false },
  { who: A, topic: `/will/${B}/will`, allowed: false },
  { who: A, topic: `/command/${A}/reboot`, allowed: false },
  { who: A, topic: `/command/${B}/reboot`, allowed: false },
  { who: B, topic: `/command/${A}/firmware`, allowed: false },
  { who: BE, topic: `/command/${A}/reboot`, allowed: true },
  { who: BE, topic: `/command/${B}/firmware`, allowed: true },
  { who: BE, topic: `/status/${A}`, allowed: false },
  { who: BE, topic: `/will/${B}/will`, allowed: false },
  // The Home Assistant link (lib/homeassistant/topics.ts): backends only.
  { who: BE, topic: `homeassistant/update/esp-fleet/${A}/config`, allowed: true },
  { who: BE, topic: 'homeassistant/status', allowed: true },
  { who: BE, topic: `esp-fleet/ha/${A}/state`, allowed: true },
  { who: BE, topic: `esp-fleet/ha/${A}/install`, allowed: true },
  { who: BE, topic: `homeassistant/sensor/esp-fleet/${A}/config`, allowed: false },
  { who: A, topic: `homeassistant/update/esp-fleet/${A}/config`, allowed: false },
  { who: A, topic: `esp-fleet/ha/${A}/state`, allowed: false },
  { who: A, topic: `esp-fleet/ha/${A}/install`, allowed: false },
  { who: A, topic: 'homeassistant/status', allowed: false },
  { who: A, topic: `/will/${A}/will`, allowed: true, will: true },
  { who: A, topic: `/will/${B}/will`, allowed: false, will: true },
];

/** (who subscribes to exactly this topic, who publishes on it, is it delivered). */
const READ: Cases['read'] = [
  { who: A, topic: `/command/${A}/reboot`, writer: BE, allowed: true },
  { who: A, topic: `/command/${B}/reboot`, writer: BE, allowed: false },
  { who: A, topic: `/status/${B}`, writer: B, allowed: false },
  { who: B, topic: `/status/${B}`, writer: B, allowed: false },
  { who: BE, topic: `/status/${A}`, writer: A, allowed: true },
  { who: BE, topic: `/will/${B}/will`, writer: B, allowed: true },
  { who: BE, topic: `/command/${A}/ping`, writer: BE, allowed: false },
  { who: BE, topic: `esp-fleet/ha/${A}/install`, writer: BE, allowed: true },
  { who: BE, topic: `homeassistant/update/esp-fleet/${A}/config`, writer: BE, allowed: true },
  { who: A, topic: `esp-fleet/ha/${A}/install`, writer: BE, allowed: false },
  { who: A, topic: `homeassistant/update/esp-fleet/${A}/config`, writer: BE, allowed: false },
];

/** Wildcard subscriptions, and the legitimate traffic they might pick up. */
const WILDCARDS: Cases['wildcards'] = [
  { who: A, filter: `/command/${A}/#` },
  { who: A, filter: `/command/${A}/+` },
  { who: A, filter: '/command/#' },
  { who: A, filter: '/command/+/reboot' },
  { who: A, filter: '#' },
  { who: BE, filter: '/status/+' },
  { who: BE, filter: '/status/#' },
  { who: BE, filter: '#' },
  { who: BE, filter: 'homeassistant/+/+/+/config' },
  { who: BE, filter: 'esp-fleet/ha/+/install' },
  { who: A, filter: 'homeassistant/#' },
  { who: A, filter: 'esp-fleet/#' },
];
const TRAFFIC: Cases['traffic'] = [
  { who: A, topic: `/status/${A}` },
  { who: B, topic: `/status/${B}` },
  { who: A, topic: `/will/${A}/will` },
  { who: BE, topic: `/command/${A}/reboot` },
  { who: BE, topic: `/command/${B}/reboot` },
  { who: BE, topic: `homeassistant/update/esp-fleet/${A}/config` },
  { who: BE, topic: `esp-fleet/ha/${B}/install` },
];

const SETTLE_MS = 400;
const pause = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

function parity(title: string, scheme: TopicChoiceName | undefined, k: Cases): void {
  describe(title, function () {
    this.timeout(60_000);
    const tmp = tempDir('parity');
    let store: CaStore;
    let mosquitto: RunningMosquitto;
    let embedded: EmbeddedBroker;
    const ports: Record<'mosquitto' | 'embedded', number> = { mosquitto: 0, embedded: 0 };
    const clients: MqttClient[] = [];
    let n = 0;

    const identity = (who: Who): TlsIdentity => {
      const ca = path.join(store.deviceFilesDir, 'ca.crt');
      return who === BE
        ? identityFromFiles(ca, path.join(store.dir, 'backends', `${BE}.crt`), path.join(store.dir, 'backends', `${BE}.key`))
        : identityFromFiles(ca, path.join(store.deviceFilesDir, `${who}.crt`), path.join(store.deviceFilesDir, `${who}.key`));
    };
    const connect = async (port: number, who: Who, extra = {}): Promise<MqttClient> => {
      const c = await connectTls(port, identity(who), `p${n++}`, extra);
      c.on('error', () => undefined); // the embedded broker drops a client for a denied publish
      clients.push(c);
      return c;
    };
    /** Subscribes; a refused subscription (SUBACK 0x80) is just no delivery. */
    const subscribe = async (c: MqttClient, filter: string): Promise<boolean> =>
      c.subscribeAsync(filter).then(
        (g) => g[0].qos !== 128,
        () => false,
      );

    /** Which k.publish cases reached a legitimate reader. */
    async function publishDecisions(port: number): Promise<boolean[]> {
      const backend = await connect(port, BE);
      const a = await connect(port, A);
      const b = await connect(port, B);
      const seen = [new Inbox(backend), new Inbox(a), new Inbox(b)];
      // Every filter the backend may read, so a publish that gets through is seen.
      await backend.subscribeAsync([...k.backendFilters, 'homeassistant/+/+/+/config', 'homeassistant/status', 'esp-fleet/ha/+/state', 'esp-fleet/ha/+/install']);
      await a.subscribeAsync(k.deviceFilters(A));
      await b.subscribeAsync(k.deviceFilters(B));
      await Promise.all(
        k.publish.map(async (c, i) => {
          const payload = `pub-${i}`;
          if (c.will) {
            const p = await connect(port, c.who, { will: { topic: c.topic, payload: Buffer.from(payload), qos: 0, retain: false } });
            p.stream.destroy();
          } else {
            const p = await connect(port, c.who);
            p.publish(c.topic, payload);
          }
        }),
      );
      const arrived = (i: number): boolean => seen.some((inbox) => inbox.messages.some((m) => m.payload === `pub-${i}`));
      // Wait for every message that should arrive, then a little longer for any that should not.
      for (const end = Date.now() + 5_000; Date.now() < end && k.publish.some((c, i) => c.allowed && !arrived(i)); ) await pause(20);
      await pause(SETTLE_MS);
      return k.publish.map((_, i) => arrived(i));
    }

    async function readDecisions(port: number): Promise<boolean[]> {
      const inboxes = await Promise.all(
        k.read.map(async (c) => {
          const reader = await connect(port, c.who);
          const inbox = new Inbox(reader);
          await subscribe(reader, c.topic);
          return inbox;
        }),
      );
      await Promise.all(k.read.map(async (c, i) => (await connect(port, c.writer)).publish(c.topic, `read-${i}`)));
      const arrived = (i: number): boolean => inboxes[i].messages.some((m) => m.payload === `read-${i}`);
      for (const end = Date.now() + 5_000; Date.now() < end && k.read.some((c, i) => c.allowed && !arrived(i)); ) await pause(20);
      await pause(SETTLE_MS);
      return k.read.map((_, i) => arrived(i));
    }

    /** Per wildcard subscription: granted or not, and the traffic topics it received. */
    async function wildcardDecisions(port: number): Promise<{ granted: boolean; received: string[] }[]> {
      const subs = await Promise.all(
        k.wildcards.map(async (w) => {
          const c = await connect(port, w.who);
          const inbox = new Inbox(c);
          return { inbox, granted: await subscribe(c, w.filter) };
        }),
      );
      for (const t of k.traffic) await (await connect(port, t.who)).publishAsync(t.topic, 'traffic', { qos: 1 });
      await pause(SETTLE_MS);
      return subs.map((s) => ({ granted: s.granted, received: [...new Set(s.inbox.messages.filter((m) => m.payload === 'traffic').map((m) => m.topic))].sort() }));
    }

    before(async () => {
      store = await CaStore.open({ dir: path.join(tmp.path, 'ca') });
      await Promise.all([A, B].map((id) => store.issueDevice(id)));
      ports.mosquitto = await freePort();
      const setup = await writeMosquittoConfig(store, { dir: path.join(tmp.path, 'mosquitto'), serverName: 'localhost', backendName: BE, port: ports.mosquitto, scheme });
      mosquitto = await startMosquitto(setup.dir);
      // Every case opens its own clients and keeps them to the end, many per identity at once (the
      // per-identity caps have their own tests in test/security/broker-limits).
      embedded = await EmbeddedBroker.start({ store, port: 0, host: '127.0.0.1', serverNames: ['localhost'], ...(scheme ? { scheme: FleetTopics.named(scheme) } : {}), maxSessionsPerDevice: 100, maxSessionsPerBackend: 100 });
      ports.embedded = embedded.port;
    });

    after(async () => {
      await Promise.all(clients.map((c) => Promise.race([c.endAsync(true).catch(() => undefined), pause(500)])));
      await embedded?.close();
      await mosquitto?.stop();
      tmp.remove();
    });

    it('publishes (and LWTs) go through on both or on neither, as the table says', async () => {
      const [mosq, emb] = await Promise.all([publishDecisions(ports.mosquitto), publishDecisions(ports.embedded)]);
      const expected = k.publish.map((c) => c.allowed);
      const show = (d: boolean[]): string[] => k.publish.map((c, i) => `${c.who} ${c.will ? 'will' : 'publish'} ${c.topic}: ${d[i]}`);
      assert.deepEqual(show(mosq), show(expected), 'mosquitto');
      assert.deepEqual(show(emb), show(expected), 'embedded');
    });

    it('a message on a topic reaches a subscriber on both or on neither, as the table says', async () => {
      const [mosq, emb] = await Promise.all([readDecisions(ports.mosquitto), readDecisions(ports.embedded)]);
      const show = (d: boolean[]): string[] => k.read.map((c, i) => `${c.who} reads ${c.topic}: ${d[i]}`);
      assert.deepEqual(show(mosq), show(k.read.map((c) => c.allowed)), 'mosquitto');
      assert.deepEqual(show(emb), show(k.read.map((c) => c.allowed)), 'embedded');
    });

    it('wildcard subscriptions: what the embedded broker grants receives exactly what Mosquitto delivers; what it refuses, Mosquitto grants but filters', async () => {
      const [mosq, emb] = await Promise.all([wildcardDecisions(ports.mosquitto), wildcardDecisions(ports.embedded)]);
      k.wildcards.forEach((w, i) => {
        const label = `${w.who} subscribes ${w.filter}`;
        assert.ok(mosq[i].granted, `${label}: Mosquitto 2.0's acl_file grants every SUBACK`);
        if (emb[i].granted) assert.deepEqual(emb[i].received, mosq[i].received, label);
        else assert.deepEqual(emb[i].received, [], label);
      });
      // The refusals are the filters no read rule covers, and Mosquitto's filtered deliveries never leak either.
      assert.deepEqual(
        k.wildcards.filter((_, i) => !emb[i].granted).map((w) => `${w.who} ${w.filter}`),
        k.refused,
      );
      assert.deepEqual(mosq[k.wildcards.findIndex((w) => w.who === A && w.filter === '#')].received, k.deviceHashReceives);
      assert.deepEqual(mosq[k.wildcards.findIndex((w) => w.who === BE && w.filter === '#')].received, k.backendHashReceives);
    });
  });
}

parity('ACL parity: the embedded broker decides as a real Mosquitto with the generated config', undefined, {
  publish: PUBLISH,
  read: READ,
  wildcards: WILDCARDS,
  traffic: TRAFFIC,
  backendFilters: ['/status/+', '/will/+/will'],
  deviceFilters: (id) => [`/command/${id}/#`],
  refused: [`${A} /command/#`, `${A} /command/+/reboot`, `${A} #`, `${BE} /status/#`, `${BE} #`, `${A} homeassistant/#`, `${A} esp-fleet/#`],
  deviceHashReceives: [`/command/${A}/reboot`],
  backendHashReceives: [`/status/${A}`, `/status/${B}`, `/will/${A}/will`, `esp-fleet/ha/${B}/install`, `homeassistant/update/esp-fleet/${A}/config`],
});

/**
 * A mixed fleet (secure-esp8266 + secure-esp32 on one connection): each device has its own topics
 * under both schemes and nobody else's; the backend reads every inbound topic of both and writes
 * every command of both.
 */
parity('ACL parity for a mixed fleet (secure-esp8266 + secure-esp32): Mosquitto with the generated mixed config and the embedded broker', 'mixed', {
  publish: [
    { who: A, topic: `/status/${A}`, allowed: true },
    { who: A, topic: `/will/${A}/will`, allowed: true },
    { who: A, topic: `/esp/${A}/status`, allowed: true },
    { who: A, topic: `/esp/${A}/will`, allowed: true },
    { who: A, topic: `/esp/${A}/log`, allowed: true },
    { who: A, topic: `/esp/${B}/status`, allowed: false },
    { who: A, topic: `/esp/${B}/log`, allowed: false },
    { who: A, topic: `/status/${B}`, allowed: false },
    { who: A, topic: `/esp/${A}/restart`, allowed: false },
    { who: A, topic: `/esp/${B}/update/run`, allowed: false },
    { who: A, topic: `/command/${B}/reboot`, allowed: false },
    { who: BE, topic: `/esp/${A}/restart`, allowed: true },
    { who: BE, topic: `/esp/${B}/update/run`, allowed: true },
    { who: BE, topic: `/command/${A}/firmware`, allowed: true },
    // secure-esp32's command template /esp/{id}/{command} covers the whole device prefix: a backend may write there.
    { who: BE, topic: `/esp/${A}/status`, allowed: true },
    { who: BE, topic: `/status/${A}`, allowed: false },
    { who: BE, topic: `esp-fleet/ha/${A}/state`, allowed: true },
    { who: A, topic: `esp-fleet/ha/${A}/state`, allowed: false },
    { who: A, topic: `/esp/${A}/will`, allowed: true, will: true },
    { who: A, topic: `/esp/${B}/will`, allowed: false, will: true },
    { who: A, topic: `/will/${A}/will`, allowed: true, will: true },
  ],
  read: [
    { who: A, topic: `/esp/${A}/restart`, writer: BE, allowed: true },
    { who: A, topic: `/command/${A}/reboot`, writer: BE, allowed: true },
    { who: A, topic: `/esp/${B}/restart`, writer: BE, allowed: false },
    { who: A, topic: `/command/${B}/reboot`, writer: BE, allowed: false },
    { who: A, topic: `/esp/${B}/status`, writer: B, allowed: false },
    { who: BE, topic: `/esp/${A}/status`, writer: A, allowed: true },
    { who: BE, topic: `/esp/${B}/log`, writer: B, allowed: true },
    { who: BE, topic: `/status/${A}`, writer: A, allowed: true },
    { who: BE, topic: `/esp/${A}/restart`, writer: BE, allowed: false },
  ],
  wildcards: [
    { who: A, filter: `/esp/${A}/#` },
    { who: A, filter: `/command/${A}/#` },
    { who: A, filter: '/esp/#' },
    { who: A, filter: '/esp/+/restart' },
    { who: A, filter: '#' },
    { who: BE, filter: '/esp/+/status' },
    { who: BE, filter: '/esp/+/log' },
    { who: BE, filter: '/esp/#' },
    { who: BE, filter: '#' },
  ],
  traffic: [
    { who: A, topic: `/esp/${A}/status` },
    { who: B, topic: `/esp/${B}/log` },
    { who: A, topic: `/status/${A}` },
    { who: BE, topic: `/esp/${A}/restart` },
    { who: BE, topic: `/esp/${B}/restart` },
    { who: BE, topic: `/command/${A}/reboot` },
  ],
  backendFilters: ['/status/+', '/will/+/will', '/esp/+/status', '/esp/+/will', '/esp/+/log'],
  deviceFilters: (id) => [`/command/${id}/#`, `/esp/${id}/#`],
  refused: [`${A} /esp/#`, `${A} /esp/+/restart`, `${A} #`, `${BE} /esp/#`, `${BE} #`],
  // Its own ESP32 prefix holds its status too: the secure-esp32 command template is /esp/{id}/{command}.
  deviceHashReceives: [`/command/${A}/reboot`, `/esp/${A}/restart`, `/esp/${A}/status`],
  backendHashReceives: [`/esp/${A}/status`, `/esp/${B}/log`, `/status/${A}`],
});
