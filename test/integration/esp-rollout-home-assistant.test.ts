import { strict as assert } from 'node:assert';
import * as path from 'node:path';
import type { MqttClient } from 'mqtt';
import { CaStore } from '../../lib/pki/ca-store';
import { writeMosquittoConfig } from '../../lib/mosquitto/folders';
import { freePort, startMosquitto, RunningMosquitto } from '../support/mosquitto';
import { connectTls } from '../support/mqtt-client';
import { FakeDevice } from '../support/fake-device';
import { tempDir } from '../support/temp-dir';
import { helper, catchNode, Collector } from '../support/node-red';
import espCa = require('../../nodes/esp-ca/esp-ca');
import espFleet = require('../../nodes/esp-fleet/esp-fleet');
import espRollout = require('../../nodes/esp-rollout/esp-rollout');
import type { EspFleetNode } from '../../nodes/esp-fleet/types';
import { validConfig, validState } from '../support/ha-schema';

type Msg = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any

const DEVICES = ['84f3eb300001', '84f3eb300002'];
const OLD = 'PORCH-1.0.0';
const NEW = 'PORCH-2.0.0';

/**
 * esp-rollout's Home Assistant link on a real Mosquitto with our generated config: "Home
 * Assistant" is an MQTT client with a backend certificate of the CA, subscribed the way HA
 * subscribes for discovery. It sees one update entity per device (checked against the schema
 * written from HA's documentation), the state following the rollout, and its install press
 * becomes a one-device rollout; a device's own certificate cannot press install.
 */
describe('esp-rollout: Home Assistant update entities on a real Mosquitto', function () {
  this.timeout(60_000);
  const tmp = tempDir('rollout-ha');
  let store: CaStore;
  let broker: RunningMosquitto;
  let port: number;
  let ha: MqttClient | undefined;
  const devices: FakeDevice[] = [];
  let run = 0;
  let haIdentity: { ca: string; cert: string; key: string };

  const wait = async <T>(what: string, get: () => T | undefined, ms = 10_000): Promise<T> => {
    const until = Date.now() + ms;
    for (;;) {
      const v = get();
      if (v !== undefined) return v;
      if (Date.now() > until) throw new Error(`${what}: not within ${ms} ms`);
      await new Promise((r) => setTimeout(r, 25));
    }
  };

  before(async () => {
    store = await CaStore.open({ dir: path.join(tmp.path, 'ca') });
    for (const id of DEVICES) await store.issueDevice(id);
    const issued = await store.issueBackend({ commonName: 'homeassistant' });
    haIdentity = { ca: issued.caCertificatePem, cert: issued.certificatePem, key: issued.privateKeyPem! };
    port = await freePort();
    const { dir } = await writeMosquittoConfig(store, { dir: path.join(tmp.path, 'mosquitto'), serverName: 'localhost', backendName: 'node-red', port });
    broker = await startMosquitto(dir);
    await helper.startServer();
  });
  afterEach(async () => {
    await ha?.endAsync(true).catch(() => undefined);
    ha = undefined;
    await Promise.all(devices.splice(0).map((d) => d.close()));
    await helper.unload();
  });
  after(async () => {
    await helper.stopServer();
    await broker?.stop();
    await store?.idle();
    tmp.remove();
  });

  /** Home Assistant as an MQTT client: its backend certificate, its discovery subscriptions; every message kept (retained ones too). */
  async function homeAssistant(): Promise<{ client: MqttClient; seen: { topic: string; payload: string; retain: boolean }[] }> {
    const client = await connectTls(port, haIdentity, `ha-${++run}`, { reconnectPeriod: 0 });
    const seen: { topic: string; payload: string; retain: boolean }[] = [];
    client.on('message', (topic, payload, packet) => seen.push({ topic, payload: payload.toString(), retain: packet.retain }));
    // HA's own discovery subscriptions (its MQTT integration), and the states it reads.
    await client.subscribeAsync(['homeassistant/+/+/config', 'homeassistant/+/+/+/config', 'esp-fleet/ha/+/state'], { qos: 1 });
    ha = client;
    return { client, seen };
  }

  async function deploy(more: Msg = {}): Promise<{ statusOut: Collector<Msg>; devicesOut: Collector<Msg>; caught: Collector<Msg> }> {
    const folder = path.join(tmp.path, `run-${++run}`);
    await helper.load([espCa, espFleet, espRollout, catchNode], [
      { id: 'tab', type: 'tab', label: 'ha' },
      { id: 'ca', type: 'esp-ca', folder: store.dir },
      { id: 'fleet', type: 'esp-fleet', broker: `mqtts://localhost:${port}`, tlsSource: 'esp-ca', ca: 'ca', backendName: 'node-red', scheme: 'secure-esp8266', registryFile: path.join(folder, 'registry.json') },
      { id: 'ro', z: 'tab', x: 100, y: 100, type: 'esp-rollout', fleet: 'fleet', target: NEW, devices: '*', canary: '1', waveSize: '2', cap: '2', soakS: '1', updateTimeoutS: '30', haltAt: '1', folder, homeAssistant: true, wires: [['d'], ['s']], ...more },
      { id: 'catcher', z: 'tab', x: 100, y: 200, type: 'catch', scope: null, uncaught: false, wires: [['caught']] },
      ...['d', 's', 'caught'].map((id, i) => ({ id, z: 'tab', x: 300, y: 100 * i, type: 'helper' })),
    ]);
    const [devicesOut, statusOut, caught] = ['d', 's', 'caught'].map((id) => new Collector<Msg>(id));
    const client = await (helper.getNode('fleet') as unknown as EspFleetNode).fleet();
    await wait('esp-fleet connected', () => (client.state === 'connected' ? true : undefined));
    for (const id of DEVICES) {
      const d = await FakeDevice.connect(port, store, id);
      devices.push(d);
      // A device that takes the update: it reports the new image 1.5 s after the firmware command (a real one takes a minute).
      d.react((command) => {
        if (command === 'firmware') setTimeout(() => void d.publishStatus({ espimage: NEW, errormessage: '' }), 1_500);
      });
      await d.publishStatus({ espimage: OLD, errormessage: '' });
    }
    await wait('the registry knows every device', () => (DEVICES.every((id) => client.registry.get(id)?.image === OLD) ? true : undefined));
    return { statusOut, devicesOut, caught };
  }

  const lastOn = (seen: { topic: string; payload: string }[], topic: string): Msg | undefined => {
    const m = seen.filter((s) => s.topic === topic).at(-1);
    return m && m.payload ? (JSON.parse(m.payload) as Msg) : undefined;
  };

  it('publishes one retained update entity per device that HA\'s schema accepts, with the state following the rollout', async () => {
    const { statusOut } = await deploy();
    const { seen } = await homeAssistant();
    for (const id of DEVICES) {
      const config = await wait(`the config of ${id}`, () => lastOn(seen, `homeassistant/update/esp-fleet/${id}/config`));
      assert.ok(validConfig(config), JSON.stringify(validConfig.errors));
      assert.equal(config.command_topic, `esp-fleet/ha/${id}/install`);
      assert.equal(config.device.sw_version, OLD);
      const state = await wait(`the state of ${id}`, () => lastOn(seen, `esp-fleet/ha/${id}/state`));
      assert.ok(validState(state), JSON.stringify(validState.errors));
      // No update server chosen: nothing newer is known, so HA shows it up to date.
      assert.deepEqual([state.installed_version, state.latest_version, state.in_progress], [OLD, OLD, false]);
    }
    // A Home Assistant that starts later finds every config and state retained.
    const later = await connectTls(port, haIdentity, `ha-later-${run}`, { reconnectPeriod: 0 });
    const found: string[] = [];
    later.on('message', (topic, _payload, packet) => packet.retain && found.push(topic));
    await later.subscribeAsync(['homeassistant/+/+/+/config', 'esp-fleet/ha/+/state'], { qos: 1 });
    await wait('the retained configs and states', () => (found.length >= 2 * DEVICES.length ? true : undefined));
    await later.endAsync(true);
    assert.deepEqual(found.sort(), DEVICES.flatMap((id) => [`esp-fleet/ha/${id}/state`, `homeassistant/update/esp-fleet/${id}/config`]).sort());
    helper.getNode('ro').receive({ topic: 'start' });
    await statusOut.until((m) => m.topic === 'done', 20_000);
    for (const id of DEVICES) {
      const states = seen.filter((s) => s.topic === `esp-fleet/ha/${id}/state`).map((s) => JSON.parse(s.payload) as Msg);
      assert.ok(states.some((s) => s.in_progress === true), `${id} was shown in progress`);
      await wait(`${id} shown on the new image`, () => (lastOn(seen, `esp-fleet/ha/${id}/state`)?.installed_version === NEW ? true : undefined));
      const last = lastOn(seen, `esp-fleet/ha/${id}/state`)!;
      assert.deepEqual([last.in_progress, last.update_percentage], [false, null]);
      for (const s of states) assert.ok(validState(s), JSON.stringify(validState.errors));
    }
  });

  it('HA\'s install press starts a one-device rollout; a retained or wrong payload, a busy rollout and a device\'s own certificate start nothing', async () => {
    const [a, b] = DEVICES as [string, string];
    // An install left retained (while Node-RED was away) reaches the node as retained when it subscribes: refused.
    const { client } = await homeAssistant();
    await client.publishAsync(`esp-fleet/ha/${a}/install`, 'install', { qos: 1, retain: true });
    const { statusOut, devicesOut } = await deploy();
    await client.publishAsync(`esp-fleet/ha/${a}/install`, 'INSTALL', { qos: 1 });
    await new Promise((r) => setTimeout(r, 800));
    assert.equal(statusOut.msgs.filter((m) => m.topic === 'running' || m.topic === 'install').length, 0, 'a retained or wrong payload starts nothing');
    await client.publishAsync(`esp-fleet/ha/${a}/install`, '', { qos: 1, retain: true }); // clear it

    await client.publishAsync(`esp-fleet/ha/${a}/install`, 'install', { qos: 1 });
    const install = await statusOut.until((m) => m.topic === 'install');
    assert.equal(install.payload.device, a);
    const started = await statusOut.until((m) => m.topic === 'running');
    assert.match(started.payload.reason, /^1 devices in 1 waves$/);
    // A second press while it runs is refused with the reason.
    await client.publishAsync(`esp-fleet/ha/${b}/install`, 'install', { qos: 1 });
    const refused = await statusOut.until((m) => m.topic === 'install-refused');
    assert.deepEqual([refused.payload.device, refused.payload.reason], [b, 'a rollout is running: abort it first']);
    await statusOut.until((m) => m.topic === 'done', 20_000);
    assert.deepEqual([...new Set(devicesOut.msgs.map((m) => m.topic))], [a], 'only the pressed device took part');
    assert.deepEqual(devices.map((d) => d.commands.filter((c) => c === 'firmware').length), [1, 0]);

    // A device's own certificate may not press install for itself (Mosquitto's ACL drops it).
    statusOut.mark();
    await devices[1]!.publishRaw(`esp-fleet/ha/${b}/install`, 'install');
    await new Promise((r) => setTimeout(r, 800));
    assert.equal(statusOut.sinceMark().filter((m) => m.topic === 'install' || m.topic === 'running').length, 0);
    assert.equal(devices[1]!.commands.length, 0);
  });
});
