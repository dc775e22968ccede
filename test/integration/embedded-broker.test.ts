import { strict as assert } from 'node:assert';
import * as path from 'node:path';
import * as tls from 'node:tls';
import type { MqttClient } from 'mqtt';
import { CaStore } from '../../lib/pki/ca-store';
import { EmbeddedBroker, BrokerEvent } from '../../lib/broker/embedded-broker';
import { tempDir } from '../support/temp-dir';
import { freePort } from '../support/mosquitto';
import { connectTls, granted, identityFromFiles, Inbox, TlsIdentity } from '../support/mqtt-client';

const A = '84f3eb00001a';
const B = '84f3eb00001b';
const C = '84f3eb00001c';


/** Resolves when the client's connection closes (the broker dropped it). */
function closed(client: MqttClient, ms = 5_000): Promise<void> {
  return new Promise((resolve, reject) => {
    if (!client.connected) return resolve();
    const timer = setTimeout(() => reject(new Error(`still connected after ${ms} ms`)), ms);
    client.once('close', () => {
      clearTimeout(timer);
      resolve();
    });
  });
}

describe('the embedded broker (aedes on mutual TLS from the CA)', function () {
  this.timeout(60_000);
  const tmp = tempDir('embedded');
  let store: CaStore;
  let broker: EmbeddedBroker;
  let port: number;
  let backend: MqttClient;
  let backendInbox: Inbox;
  const events: BrokerEvent[] = [];
  const clients: MqttClient[] = [];
  const track = (c: MqttClient): MqttClient => {
    c.on('error', () => undefined); // a connection the broker drops resets; the tests look at 'close'
    clients.push(c);
    return c;
  };
  const deviceIdentity = (id: string, from = store): TlsIdentity =>
    identityFromFiles(path.join(store.deviceFilesDir, 'ca.crt'), path.join(from.deviceFilesDir, `${id}.crt`), path.join(from.deviceFilesDir, `${id}.key`));
  const device = async (id: string, clientId = id, extra = {}): Promise<MqttClient> => track(await connectTls(port, deviceIdentity(id), clientId, extra));
  // Each test looks only at the events and messages since it began (beforeEach below).
  let since = 0;
  beforeEach(() => {
    since = events.length;
    backendInbox.mark();
  });
  const until = async (match: (e: BrokerEvent) => boolean, ms = 5_000): Promise<BrokerEvent> => {
    for (const end = Date.now() + ms; Date.now() < end; await new Promise((r) => setTimeout(r, 20))) {
      const found = events.slice(since).find(match);
      if (found) return found;
    }
    throw new Error(`no matching broker event; got ${JSON.stringify(events)}`);
  };

  before(async () => {
    store = await CaStore.open({ dir: path.join(tmp.path, 'ca') });
    await Promise.all([A, B].map((id) => store.issueDevice(id)));
    await store.issueBackend({ commonName: 'node-red' });
    port = await freePort();
    // The tests leave their clients open until the end: more than the default 2 per device.
    broker = await EmbeddedBroker.start({ store, port, host: '127.0.0.1', serverNames: ['localhost'], maxSessionsPerDevice: 10, onEvent: (e) => events.push(e) });
    const be = identityFromFiles(path.join(store.deviceFilesDir, 'ca.crt'), path.join(store.dir, 'backends', 'node-red.crt'), path.join(store.dir, 'backends', 'node-red.key'));
    backend = track(await connectTls(port, be, 'esp-fleet-test'));
    backendInbox = new Inbox(backend);
    const granted = await backend.subscribeAsync(['/status/+', '/will/+/will']);
    assert.deepEqual(granted.map((g) => g.qos), [0, 0]);
  });

  after(async () => {
    // A client whose socket the broker destroyed may never confirm its end: do not wait on it.
    await Promise.all(clients.map((c) => Promise.race([c.endAsync(true).catch(() => undefined), new Promise((r) => setTimeout(r, 500))])));
    await broker?.close();
    tmp.remove();
  });

  it('lets a device publish its own status, which the backend receives; identity is the certificate CN', async () => {
    const a = await device(A, 'any-client-id', { username: 'node-red', password: 'ignored' });
    await a.publishAsync(`/status/${A}`, JSON.stringify({ uptimemillis: 1 }), { qos: 1 });
    await backendInbox.until((t) => t === `/status/${A}`);
    const connected = await until((e) => e.type === 'connected' && e.clientId === 'any-client-id');
    assert.deepEqual([connected.type === 'connected' && connected.identity, connected.type === 'connected' && connected.kind], [A, 'device']);
    assert.deepEqual(broker.counts(), { devices: 1, backends: 1, unknown: 0 });
  });

  it("refuses a device's subscription to other devices' commands or to #, and drops it for publishing another's status", async () => {
    const a = await device(A, `${A}-spoof`);
    const filters = [`/command/${A}/#`, `/command/${A}/reboot`, `/command/${B}/#`, '/command/#', '/command/+/reboot', '#', '$SYS/#'];
    const codes: number[] = [];
    for (const f of filters) codes.push(await granted(a, f));
    assert.deepEqual(codes, [0, 0, 128, 128, 128, 128, 128]);
    a.publish(`/status/${B}`, 'forged');
    await closed(a);
    await until((e) => e.type === 'denied' && e.action === 'publish' && e.topic === `/status/${B}`);
    // The backend's order: a later genuine status arrives, the forgery never did.
    const b = await device(B);
    await b.publishAsync(`/status/${B}`, 'genuine');
    await backendInbox.until((t, p) => t === `/status/${B}` && p === 'genuine');
    assert.ok(!backendInbox.messages.some((m) => m.payload === 'forged'));
  });

  it("delivers the backend's commands only to the addressed device; the backend may not read commands", async () => {
    const a = await device(A, `${A}-cmd`);
    const b = await device(B, `${B}-cmd`);
    const [inboxA, inboxB] = [new Inbox(a), new Inbox(b)];
    await a.subscribeAsync(`/command/${A}/#`);
    await b.subscribeAsync(`/command/${B}/#`);
    assert.equal(await granted(backend, '/command/+/#'), 128);
    await backend.publishAsync(`/command/${B}/reboot`, '', { qos: 1 });
    await backend.publishAsync(`/command/${A}/firmware`, '', { qos: 1 });
    await inboxA.until((t) => t === `/command/${A}/firmware`);
    await inboxB.until((t) => t === `/command/${B}/reboot`);
    assert.deepEqual(inboxA.topics(), [`/command/${A}/firmware`]);
    assert.deepEqual(inboxB.topics(), [`/command/${B}/reboot`]);
  });

  it('publishes the LWT when a device drops without DISCONNECT', async () => {
    const a = await device(A, `${A}-lwt`, { will: { topic: `/will/${A}/will`, payload: Buffer.from('offline-lwt'), qos: 0, retain: false } });
    a.stream.destroy();
    await backendInbox.until((t, p) => t === `/will/${A}/will` && p === 'offline-lwt');
  });

  it("keeps client ids per identity: a device reusing another's client id does not take over its session", async () => {
    const b = await device(B, 'shared-id');
    await device(A, 'shared-id');
    await b.publishAsync(`/status/${B}`, 'still-here', { qos: 1 });
    await backendInbox.until((t, p) => t === `/status/${B}` && p === 'still-here');
    assert.ok(b.connected);
  });

  it('refuses a client without a certificate and one with a certificate of another CA', async () => {
    const caOnly = { ca: deviceIdentity(A).ca };
    await assert.rejects(connectTls(port, caOnly, 'anonymous'), /refused|closed/);
    const foreign = await CaStore.open({ dir: path.join(tmp.path, 'foreign') });
    await foreign.issueDevice(B);
    await assert.rejects(connectTls(port, deviceIdentity(B, foreign), `${B}-foreign`), /refused|closed/);
    await until((e) => e.type === 'refused' && /TLS handshake/.test(e.reason));
  });

  it('closes a connection that announces a packet over the size limit', async () => {
    const a = await device(A, `${A}-big`);
    a.publish(`/status/${A}`, Buffer.alloc(300 * 1024));
    await closed(a);
    await until((e) => e.type === 'refused' && /exceeds/.test(e.reason));
  });

  it('admits a device issued after the start, without a restart', async () => {
    await store.issueDevice(C);
    const c = await device(C);
    await c.publishAsync(`/status/${C}`, 'hello');
    await backendInbox.until((t) => t === `/status/${C}`);
  });

  it('on revoke, disconnects the connected device at once and refuses it afterwards; others stay', async () => {
    const b = await device(B, `${B}-revoked`);
    const a = await device(A, `${A}-bystander`);
    const serial = store.list({ kind: 'device' }).find((r) => r.commonName === B)!.serial;
    await store.revoke(serial, 'keyCompromise');
    await closed(b);
    await until((e) => e.type === 'disconnected' && e.clientId === `${B}-revoked` && /revoked/.test(e.reason));
    await assert.rejects(connectTls(port, deviceIdentity(B), `${B}-after`), /refused|closed/);
    assert.ok(a.connected);
    await a.publishAsync(`/status/${A}`, 'after-revoke');
    await backendInbox.until((t, p) => t === `/status/${A}` && p === 'after-revoke');
  });

  it('close() frees the port: a second broker binds it', async () => {
    const second = await EmbeddedBroker.start({ store, port: 0, host: '127.0.0.1', serverNames: ['localhost'] });
    const p = second.port;
    const a = await connectTls(p, deviceIdentity(A), `${A}-second`);
    await second.close();
    await closed(a);
    const third = await EmbeddedBroker.start({ store, port: p, host: '127.0.0.1', serverNames: ['localhost'] });
    await third.close();
    // Nothing listens any more.
    await assert.rejects(
      new Promise((resolve, reject) => {
        const s = tls.connect({ port: p, host: '127.0.0.1', rejectUnauthorized: false }, () => resolve(s));
        s.on('error', reject);
      }),
      /ECONNREFUSED/,
    );
  });
});
