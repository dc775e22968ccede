// Finding 1 of issue 17: connections that never finish their TLS handshake, never send CONNECT,
// or many connections of one address or one certificate must not keep other devices or the
// backend out of the embedded broker; plus the attacks that already held, as regressions.
import { strict as assert } from 'node:assert';
import { mkdirSync, readFileSync } from 'node:fs';
import * as path from 'node:path';
import type { MqttClient } from 'mqtt';
import * as mqttPacket from 'mqtt-packet';
import { CaStore } from '../../lib/pki/ca-store';
import { BROKER_LIMIT_DEFAULTS, BrokerEvent, EmbeddedBroker, EmbeddedBrokerOptions } from '../../lib/broker/embedded-broker';
import { tempDir } from '../support/temp-dir';
import { connectTls, Inbox } from '../support/mqtt-client';
import { opensslOk } from '../support/openssl';
import { recordAttack } from './support/attack-tally';
import { backendFiles, deviceFiles, IdleSockets, RawMqtt, TlsFiles, waitUntil } from './support/raw-clients';

const A = '84f3eb0017a1';
const B = '84f3eb0017b2';
const C = '84f3eb0017c3';
const REVOKED = '84f3eb0017d4';
const BACKEND = 'node-red';

describe('security: embedded broker connection limits (no address or identity keeps others out)', function () {
  this.timeout(60_000);
  const tmp = tempDir('broker-limits');
  let store: CaStore;
  let broker: EmbeddedBroker;
  let events: BrokerEvent[] = [];
  let cleanup: (() => unknown)[] = [];
  let clients: MqttClient[] = [];

  before(async () => {
    store = await CaStore.open({ dir: path.join(tmp.path, 'ca') });
    await Promise.all([A, B, C, REVOKED].map((id) => store.issueDevice(id)));
    await store.issueBackend({ commonName: BACKEND });
    await store.revoke(store.currentIdentity('device', REVOKED)!.serial, 'keyCompromise');
  });

  afterEach(async () => {
    for (const c of cleanup.splice(0)) c();
    await Promise.all(clients.splice(0).map((c) => Promise.race([c.endAsync(true).catch(() => undefined), new Promise((r) => setTimeout(r, 500))])));
    await broker?.close();
    events = [];
  });

  after(() => tmp.remove());

  async function start(opts: Partial<EmbeddedBrokerOptions> = {}): Promise<EmbeddedBroker> {
    broker = await EmbeddedBroker.start({ store, port: 0, host: '127.0.0.1', serverNames: ['localhost'], onEvent: (e) => events.push(e), ...opts });
    return broker;
  }

  const mqttClient = async (files: TlsFiles, clientId: string): Promise<MqttClient> => {
    const c = await connectTls(broker.port, files, clientId);
    c.on('error', () => undefined);
    clients.push(c);
    return c;
  };

  /** A backend that reads every status, as esp-fleet does. */
  async function backend(clientId = 'esp-fleet'): Promise<Inbox> {
    const c = await mqttClient(backendFiles(store, BACKEND), clientId);
    const inbox = new Inbox(c);
    await c.subscribeAsync('/status/+');
    return inbox;
  }

  /** A device connects over mutual TLS and its status reaches the backend. */
  async function reports(id: string, inbox: Inbox): Promise<MqttClient> {
    const c = await mqttClient(deviceFiles(store, id), `${id}-${Date.now()}`);
    const payload = JSON.stringify({ uptimemillis: Date.now() });
    await c.publishAsync(`/status/${id}`, payload, { qos: 1 });
    await inbox.until((t, p) => t === `/status/${id}` && p === payload);
    return c;
  }

  const refused = (cause: string): number => broker.refusedByCause()[cause as keyof ReturnType<EmbeddedBroker['refusedByCause']>] ?? 0;

  it('the defaults: deadlines of at most 10 s, caps on handshakes in all and per address, on sessions per device and per backend', async () => {
    await start();
    const limits = broker.connectionLimits;
    assert.deepEqual(limits, { ...BROKER_LIMIT_DEFAULTS });
    assert.ok(limits.handshakeTimeoutMs <= 10_000 && limits.connectTimeoutMs <= 10_000, JSON.stringify(limits));
    assert.ok(limits.maxHandshakesPerAddress < limits.maxHandshakes, 'one address cannot take every handshake slot');
    assert.ok(limits.maxSessionsPerDevice >= 2, 'room for a reconnect while the old connection is still open');
  });

  it('250 TCP connections that never start TLS lock nobody out and are destroyed at the handshake deadline', async () => {
    // maxClients 250 is the node's default; the handshake caps are lifted so that only the deadline and
    // the split between handshakes and sessions are on trial here (the caps have their own tests).
    await start({ maxClients: 250, handshakeTimeoutMs: 2_000, maxHandshakes: 1_000, maxHandshakesPerAddress: 1_000 });
    const inbox = await backend();
    const idle = await IdleSockets.open(broker.port, 250, '127.0.0.2');
    cleanup.push(() => idle.destroy());
    assert.ok(await waitUntil(() => broker.handshakingCount === 250, 2_000), `handshaking: ${broker.handshakingCount}`);
    const a = await reports(A, inbox);
    assert.equal(idle.open, 250, 'the device got in while all 250 were held');
    assert.ok(await idle.allClosed(6_000), `${idle.open} idle sockets still open`);
    assert.ok(a.connected, 'the deadline is for handshakes only: the device stays connected');
    const earliest = Math.min(...idle.closedAfter.map((t) => t ?? Infinity));
    assert.ok(earliest >= 1_800, `an idle socket was closed after ${earliest} ms, before the 2 s deadline`);
    assert.equal(refused('handshake-timeout'), 250);
    assert.ok(events.some((e) => e.type === 'refused' && e.cause === 'handshake-timeout' && e.address === '127.0.0.2'));
    assert.equal(broker.handshakingCount, 0);
    await reports(B, inbox);
    recordAttack('broker', 'refused');
  });

  it('one address over the per-address handshake cap is refused beyond it, while another address connects', async () => {
    // The total (24) is below what the attacker opens (40): without the per-address cap it would fill it.
    await start({ handshakeTimeoutMs: 30_000, maxHandshakes: 24 });
    const inbox = await backend();
    const perAddress = BROKER_LIMIT_DEFAULTS.maxHandshakesPerAddress;
    const attacker = await IdleSockets.open(broker.port, 40, '127.0.0.2');
    cleanup.push(() => attacker.destroy());
    assert.ok(await waitUntil(() => attacker.open === perAddress, 2_000), `attacker holds ${attacker.open}`);
    assert.equal(attacker.closedWithin(1_000), 40 - perAddress, 'the ones over the cap are closed at once, not at the deadline');
    assert.equal(refused('handshakes-per-address'), 40 - perAddress);
    await reports(A, inbox);
    // A second address takes what is left of the total; beyond that the total cap refuses.
    const second = await IdleSockets.open(broker.port, 16, '127.0.0.3');
    cleanup.push(() => second.destroy());
    assert.ok(await waitUntil(() => second.open === 24 - perAddress, 2_000), `second holds ${second.open}`);
    assert.equal(refused('handshakes'), 16 - (24 - perAddress));
    assert.equal(attacker.open, perAddress);
    recordAttack('broker', 'refused');
  });

  it('sockets that hang up during the handshake give their slot back', async () => {
    await start({ handshakeTimeoutMs: 30_000 });
    const first = await IdleSockets.open(broker.port, 16, '127.0.0.2');
    assert.ok(await waitUntil(() => broker.handshakingCount === 16, 2_000));
    first.destroy();
    assert.ok(await waitUntil(() => broker.handshakingCount === 0, 2_000), `still counted: ${broker.handshakingCount}`);
    const again = await IdleSockets.open(broker.port, 16, '127.0.0.2');
    cleanup.push(() => again.destroy());
    assert.ok(await waitUntil(() => broker.handshakingCount === 16, 2_000));
    assert.equal(again.open, 16);
    assert.equal(broker.refusedCount, 0);
  });

  it('one device certificate opening 250 TLS+MQTT sessions gets only its per-identity share; others and the backend still connect', async () => {
    await start({ maxClients: 250, maxHandshakes: 1_000, maxHandshakesPerAddress: 1_000 });
    const files = deviceFiles(store, A);
    const conns = await Promise.all(Array.from({ length: 250 }, () => RawMqtt.connect(broker.port, files).catch(() => undefined)));
    cleanup.push(() => conns.forEach((c) => c?.destroy()));
    const outcomes = await Promise.all(conns.map((c, i) => (c ? c.mqttConnect(`${A}-${i}`) : 'closed')));
    const admitted = conns.filter((_, i) => outcomes[i] === 0);
    assert.equal(admitted.length, BROKER_LIMIT_DEFAULTS.maxSessionsPerDevice, `CONNACKs: ${JSON.stringify(outcomes.filter((o) => o !== 'closed'))}`);
    assert.equal(refused('sessions-per-identity'), 250 - admitted.length);
    const inbox = await backend();
    await reports(B, inbox);
    assert.ok(admitted.every((c) => !c!.isClosed), 'the admitted sessions stay');
    recordAttack('broker', 'refused');
  });

  it('a backend identity has its own, larger share and is not counted against maxClients', async () => {
    await start({ maxClients: 1 });
    const inbox = await backend('be-0');
    await reports(A, inbox); // the one client slot
    await assert.rejects(mqttClient(deviceFiles(store, B), B), /refused|closed/);
    assert.equal(refused('clients'), 1);
    // Further backend connections still get in, up to their own cap.
    for (let i = 1; i < BROKER_LIMIT_DEFAULTS.maxSessionsPerBackend; i++) await backend(`be-${i}`);
    await assert.rejects(mqttClient(backendFiles(store, BACKEND), 'be-over'), /refused|closed/);
    assert.equal(refused('sessions-per-identity'), 1);
  });

  it('a TLS client that never sends (or never finishes) its CONNECT is dropped at the CONNECT deadline', async () => {
    await start({ connectTimeoutMs: 1_000 });
    const silent = await RawMqtt.connect(broker.port, deviceFiles(store, A));
    const partial = await RawMqtt.connect(broker.port, deviceFiles(store, B));
    cleanup.push(() => [silent, partial].forEach((c) => c.destroy()));
    const connect = mqttPacket.generate({ cmd: 'connect', protocolId: 'MQTT', protocolVersion: 4, clean: true, keepalive: 60, clientId: B });
    partial.write(connect.subarray(0, 6));
    assert.ok(await silent.closedWithin(4_000), 'silent client still connected');
    assert.ok(await partial.closedWithin(4_000), 'client with half a CONNECT still connected');
    for (const c of [silent, partial]) assert.ok(c.closedAt! - c.connectedAt >= 900, `closed after ${c.closedAt! - c.connectedAt} ms, before the deadline`);
    assert.equal(refused('connect-timeout'), 2);
    // Their identity slots are free again.
    const inbox = await backend();
    await reports(A, inbox);
    await reports(B, inbox);
    recordAttack('broker', 'refused', 2);
  });

  describe('attacks that held before (regressions)', () => {
    /** True when the broker turned the certificate down: the handshake failed or the connection closed without CONNACK. */
    async function refusedAtTls(files: Partial<TlsFiles>, clientId: string): Promise<boolean> {
      const conn = await RawMqtt.connect(broker.port, files).catch(() => undefined);
      if (!conn) return true;
      cleanup.push(() => conn.destroy());
      return (await conn.mqttConnect(clientId)) === 'closed';
    }

    it('refuses a self-signed certificate with a device CN, a foreign CA and a revoked certificate', async () => {
      await start();
      const dir = path.join(tmp.path, 'self-signed');
      mkdirSync(dir, { recursive: true });
      const [key, cert] = [path.join(dir, 'k.pem'), path.join(dir, 'c.pem')];
      opensslOk(['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', key, '-out', cert, '-days', '1', '-subj', `/CN=${A}`]);
      const ca = store.caCertificatePem;
      const foreign = await CaStore.open({ dir: path.join(tmp.path, 'foreign') });
      await foreign.issueDevice(A);
      assert.ok(await refusedAtTls({ ca, cert: readFileSync(cert, 'utf8'), key: readFileSync(key, 'utf8') }, A), 'self-signed admitted');
      assert.ok(await refusedAtTls({ ...deviceFiles(foreign, A), ca }, A), 'foreign CA admitted');
      assert.ok(await refusedAtTls(deviceFiles(store, REVOKED), REVOKED), 'revoked admitted');
      assert.ok(await refusedAtTls({ ca }, 'anonymous'), 'no certificate admitted');
      assert.ok(refused('tls') >= 4, JSON.stringify(broker.refusedByCause()));
      await reports(A, await backend());
      recordAttack('broker', 'refused', 4);
    });

    it("does not let a device read another device's commands or take over its session by client id", async () => {
      await start();
      const inbox = await backend();
      const a = await mqttClient(deviceFiles(store, A), 'shared-id');
      const codes: number[] = [];
      for (const filter of [`/command/${B}/#`, `/command/${B}/reboot`, '/status/+', '#']) {
        // mqtt.js 5 rejects a SUBACK with a failure code (128).
        codes.push(await a.subscribeAsync(filter).then((g) => g[0]!.qos, (err: Error) => (err.name === 'ErrorWithSubackPacket' ? 128 : -1)));
      }
      assert.deepEqual(codes, [128, 128, 128, 128]);
      const b = await mqttClient(deviceFiles(store, B), 'shared-id');
      await reports(C, inbox);
      assert.ok(a.connected && b.connected, 'the same client id under another identity took nothing over');
      recordAttack('broker', 'refused', 5);
    });

    it('closes connections that send malformed MQTT and keeps serving', async () => {
      await start({ connectTimeoutMs: 5_000 });
      const inbox = await backend();
      const connect = mqttPacket.generate({ cmd: 'connect', protocolId: 'MQTT', protocolVersion: 4, clean: true, keepalive: 60, clientId: `${A}-m` });
      const badName = Buffer.from(connect);
      badName.write('MQTX', 4); // protocol name (MQTT-3.1.2-1)
      const reservedFlag = Buffer.from(connect);
      reservedFlag[9] |= 0x01; // CONNECT flags bit 0 is reserved (MQTT-3.1.2-3)
      const cases: [string, Buffer][] = [
        ['reserved packet type 0', Buffer.from([0x00, 0x00])],
        ['reserved packet type 15', Buffer.from([0xf0, 0x00])],
        ['PUBLISH before CONNECT', mqttPacket.generate({ cmd: 'publish', topic: `/status/${A}`, payload: 'x', qos: 0, retain: false, dup: false })],
        ['protocol name MQTX', badName],
        ['reserved CONNECT flag', reservedFlag],
        ['five-byte remaining length', Buffer.from([0x30, 0xff, 0xff, 0xff, 0xff, 0x01])],
        ['second CONNECT', Buffer.concat([connect, connect])],
        ['SUBSCRIBE with no topic', Buffer.concat([connect, Buffer.from([0x82, 0x02, 0x00, 0x01])])],
      ];
      for (const [name, bytes] of cases) {
        const conn = await RawMqtt.connect(broker.port, deviceFiles(store, A));
        cleanup.push(() => conn.destroy());
        conn.write(bytes);
        assert.ok(await conn.closedWithin(3_000), `${name}: still connected`);
      }
      await reports(A, inbox);
      recordAttack('broker', 'refused', cases.length);
    });
  });
});
