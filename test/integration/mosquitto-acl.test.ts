import { strict as assert } from 'node:assert';
import * as path from 'node:path';
import type { MqttClient } from 'mqtt';
import { CaStore } from '../../lib/pki/ca-store';
import { writeMosquittoConfig } from '../../lib/mosquitto/folders';
import { tempDir } from '../support/temp-dir';
import { freePort, startMosquitto, RunningMosquitto } from '../support/mosquitto';
import { connectTls, identityFromFiles, Inbox, TlsIdentity } from '../support/mqtt-client';

const A = '84f3eb00000a';
const B = '84f3eb00000b';

describe('a real Mosquitto with the generated config', function () {
  this.timeout(60_000);
  const tmp = tempDir('mosq');
  let store: CaStore;
  let broker: RunningMosquitto;
  let port: number;
  let backend: MqttClient;
  let backendInbox: Inbox;
  const clients: MqttClient[] = [];
  const deviceIdentity = (id: string): TlsIdentity =>
    identityFromFiles(path.join(store.deviceFilesDir, 'ca.crt'), path.join(store.deviceFilesDir, `${id}.crt`), path.join(store.deviceFilesDir, `${id}.key`));
  const track = (c: MqttClient): MqttClient => {
    clients.push(c);
    return c;
  };

  before(async () => {
    store = await CaStore.open({ dir: path.join(tmp.path, 'ca') });
    await store.issueDevice(A);
    await store.issueDevice(B);
    port = await freePort();
    const setup = await writeMosquittoConfig(store, { dir: path.join(tmp.path, 'mosquitto'), serverName: 'localhost', backendName: 'node-red', port });
    broker = await startMosquitto(setup.dir);
    const backendId = identityFromFiles(path.join(setup.dir, 'ca.crt'), path.join(store.dir, 'backends', 'node-red.crt'), path.join(store.dir, 'backends', 'node-red.key'));
    backend = track(await connectTls(port, backendId, 'node-red'));
    backendInbox = new Inbox(backend);
    await backend.subscribeAsync(['/status/+', '/will/+/will']);
  });

  // Each test looks only at what the backend received since it began.
  beforeEach(() => backendInbox.mark());

  after(async () => {
    await Promise.all(clients.map((c) => c.endAsync(true).catch(() => undefined)));
    await broker?.stop();
    tmp.remove();
  });

  it('lets a device publish its own status, which the backend receives', async () => {
    const device = track(await connectTls(port, deviceIdentity(A), A, { will: { topic: `/will/${A}/will`, payload: Buffer.from('offline'), qos: 0, retain: false } }));
    await device.publishAsync(`/status/${A}`, JSON.stringify({ uptimemillis: 1 }));
    await backendInbox.until((t) => t === `/status/${A}`);
  });

  it("drops a device's publish to another device's status topic", async () => {
    const device = track(await connectTls(port, deviceIdentity(A), `${A}-spoof`));
    await device.publishAsync(`/status/${B}`, 'forged');
    await device.publishAsync(`/command/${B}/reboot`, 'forged');
    // Mosquitto keeps one publisher's order: once this sentinel is in, the forgery would be too.
    await device.publishAsync(`/status/${A}`, 'sentinel');
    await backendInbox.until((t, p) => t === `/status/${A}` && p === 'sentinel');
    assert.ok(!backendInbox.messages.some((m) => m.topic === `/status/${B}`), 'forged status must not reach the backend');
  });

  it("delivers the backend's commands only to the addressed device", async () => {
    const a = track(await connectTls(port, deviceIdentity(A), `${A}-cmd`));
    const b = track(await connectTls(port, deviceIdentity(B), B));
    const inboxA = new Inbox(a);
    const inboxB = new Inbox(b);
    await a.subscribeAsync([`/command/${A}/#`, `/command/${B}/#`]);
    await b.subscribeAsync(`/command/${B}/#`);
    await backend.publishAsync(`/command/${B}/reboot`, '');
    await backend.publishAsync(`/command/${A}/firmware`, '');
    await inboxA.until((t) => t === `/command/${A}/firmware`);
    await inboxB.until((t) => t === `/command/${B}/reboot`);
    assert.deepEqual(inboxA.topics(), [`/command/${A}/firmware`]);
  });

  it('refuses a client without a certificate and one with a certificate of another CA', async () => {
    const caOnly = { ca: deviceIdentity(A).ca };
    await assert.rejects(connectTls(port, caOnly, 'anonymous'), /refused|closed/);
    const foreign = await CaStore.open({ dir: path.join(tmp.path, 'foreign') });
    await foreign.issueDevice(B);
    const foreignId = identityFromFiles(path.join(store.deviceFilesDir, 'ca.crt'), path.join(foreign.deviceFilesDir, `${B}.crt`), path.join(foreign.deviceFilesDir, `${B}.key`));
    await assert.rejects(connectTls(port, foreignId, `${B}-foreign`), /refused|closed/);
  });

  it('admits a device issued later once mosquitto reloads the ACL we keep current', async () => {
    const C = '84f3eb00000c';
    await store.issueDevice(C);
    await broker.reload();
    const device = track(await connectTls(port, deviceIdentity(C), C));
    await device.publishAsync(`/status/${C}`, 'hello');
    await backendInbox.until((t) => t === `/status/${C}`);
  });

  it('refuses a revoked device after mosquitto reloads the CRL we keep current', async () => {
    const serial = store.list({ kind: 'device' }).find((r) => r.commonName === B)!.serial;
    // Still admitted before the revoke.
    track(await connectTls(port, deviceIdentity(B), `${B}-before`));
    await store.revoke(serial, 'keyCompromise');
    await broker.reload();
    await assert.rejects(connectTls(port, deviceIdentity(B), `${B}-after`), /refused|closed/);
    // Others are unaffected.
    track(await connectTls(port, deviceIdentity(A), `${A}-after`));
  });
});
