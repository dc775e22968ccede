import { strict as assert } from 'node:assert';
import * as path from 'node:path';
import { CaStore } from '../../lib/pki/ca-store';
import { writeMosquittoConfig } from '../../lib/mosquitto/folders';
import { FirmwareService } from '../../lib/firmware/firmware-service';
import { publishSimImage } from '../../lib/sim/publish';
import { deviceIds, FleetSimulator, identityFromFolder } from '../../lib/sim/fleet-simulator';
import { freePort, startMosquitto, RunningMosquitto } from '../support/mosquitto';
import { tempDir } from '../support/temp-dir';
import { helper, catchNode, Collector } from '../support/node-red';
import espCa = require('../../nodes/esp-ca/esp-ca');
import espFleet = require('../../nodes/esp-fleet/esp-fleet');
import espFirmwareServer = require('../../nodes/esp-firmware-server/esp-firmware-server');
import espRollout = require('../../nodes/esp-rollout/esp-rollout');
import type { EspFleetNode } from '../../nodes/esp-fleet/types';
import type { EspFirmwareServerNode } from '../../nodes/esp-firmware-server/types';
import type { FleetClient } from '../../lib/fleet/fleet-client';
import type { UpdateEvent } from '../../lib/firmware/update-server';
import { connectTls } from '../support/mqtt-client';

type Msg = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any

const LAMP = 'ESP8266_LAMP';
const PLUG = 'ESP8266_PLUG';

/**
 * esp-rollout linked to an esp-firmware-server node in the same Node-RED runtime, with
 * simulated devices of two products on real Mosquitto: the rollout takes only the devices the
 * server would offer the target to, `newest` gives each device its own product's next image,
 * `group:` selects by the server's device groups, and the progress comes from the linked server
 * with no wire. What the devices did is read from the devices and the server's own events.
 */
describe('esp-rollout linked to the update server node', function () {
  this.timeout(60_000);
  const tmp = tempDir('rollout-link');
  const lamps = deviceIds('5ccf7f', 4);
  const plugs = deviceIds('bcddc2', 3);
  let store: CaStore;
  let broker: RunningMosquitto;
  let brokerPort: number;
  let run = 0;
  let sims: FleetSimulator[] = [];
  let haIdentity: { ca: string; cert: string; key: string };

  const wait = async (what: string, ok: () => boolean, ms: number): Promise<void> => {
    const until = Date.now() + ms;
    while (!ok()) {
      if (Date.now() > until) throw new Error(`${what}: not within ${ms} ms`);
      await new Promise((r) => setTimeout(r, 25));
    }
  };

  before(async () => {
    store = await CaStore.open({ dir: path.join(tmp.path, 'ca') });
    for (const id of [...lamps, ...plugs]) await store.issueDevice(id);
    const ha = await store.issueBackend({ commonName: 'homeassistant' });
    haIdentity = { ca: ha.caCertificatePem, cert: ha.certificatePem, key: ha.privateKeyPem! };
    brokerPort = await freePort();
    const { dir } = await writeMosquittoConfig(store, { dir: path.join(tmp.path, 'mosquitto'), serverName: 'localhost', backendName: 'node-red', port: brokerPort });
    broker = await startMosquitto(dir);
    await helper.startServer();
  });
  afterEach(async () => {
    await Promise.all(sims.map((s) => s.stop()));
    sims = [];
    await helper.unload();
  });
  after(async () => {
    await helper.stopServer();
    await broker?.stop();
    await store?.idle();
    tmp.remove();
  });

  /**
   * A fresh flow: CA, fleet, update server (its own catalogue, filled by `catalogue`) and a
   * rollout linked to it; lamps on LAMP-1.0.0 and plugs on PLUG-1.0.0, online.
   */
  async function setUp(rollout: Msg, catalogue: (service: FirmwareService) => Promise<void>): Promise<{ client: FleetClient; service: FirmwareService; devicesOut: Collector<Msg>; statusOut: Collector<Msg>; caught: Collector<Msg>; events: UpdateEvent[] }> {
    const folder = path.join(tmp.path, `run-${++run}`);
    const fwPort = await freePort();
    await helper.load([espCa, espFleet, espFirmwareServer, espRollout, catchNode], [
      { id: 'tab', type: 'tab', label: 'rollout' },
      { id: 'ca', type: 'esp-ca', folder: store.dir },
      { id: 'fleet', type: 'esp-fleet', broker: `mqtts://localhost:${brokerPort}`, tlsSource: 'esp-ca', ca: 'ca', backendName: 'node-red', scheme: 'secure-esp8266', statusInterval: '1000', registryFile: path.join(folder, 'registry.json') },
      // The server's output 2 goes nowhere: the rollout hears it through the link.
      { id: 'fw', z: 'tab', x: 100, y: 100, type: 'esp-firmware-server', ca: 'ca', hostname: 'localhost', port: String(fwPort), bindAddress: '127.0.0.1', downloadPath: 'fw', clientCertificates: 'required', folder: path.join(folder, 'firmware'), maxDownloads: '10', mqttport: String(brokerPort), statusinterval: '1000', retrytimeout: '500', wires: [[], []] },
      { id: 'ro', z: 'tab', x: 300, y: 100, type: 'esp-rollout', fleet: 'fleet', server: 'fw', target: '', devices: '*', updateTimeoutS: '20', soakS: '1', cap: '3', folder, wires: [['d'], ['s']], ...rollout },
      { id: 'catcher', z: 'tab', type: 'catch', scope: null, uncaught: false, wires: [['caught']] },
      ...['d', 's', 'caught'].map((id) => ({ id, z: 'tab', type: 'helper' })),
    ]);
    const [devicesOut, statusOut, caught] = ['d', 's', 'caught'].map((id) => new Collector<Msg>(id));
    const serverNode = helper.getNode('fw') as unknown as EspFirmwareServerNode;
    const service = await serverNode.firmware();
    const events: UpdateEvent[] = [];
    serverNode.onServerEvent((e) => events.push(e));
    for (const p of [LAMP, PLUG]) await publishSimImage(service, { product: p, version: '1.0.0', size: 16 * 1024 });
    await catalogue(service);
    const trusts = [service.keyring.exportPublic((await service.keyring.current('esp8266-rsa')).id).pem];
    const client = await (helper.getNode('fleet') as unknown as EspFleetNode).fleet();
    await wait('esp-fleet connected', () => client.state === 'connected', 10_000);
    const bootstrap = { host: 'localhost', port: fwPort, path: '/fw' };
    sims = [
      new FleetSimulator({ ids: lamps, identity: identityFromFolder(store.deviceFilesDir), bootstrap, image: `${LAMP}-1.0.0`, trusts, timing: 'fast', bootsPerSecond: 200 }),
      new FleetSimulator({ ids: plugs, identity: identityFromFolder(store.deviceFilesDir), bootstrap, image: `${PLUG}-1.0.0`, trusts, timing: 'fast', bootsPerSecond: 200 }),
    ];
    await Promise.all(sims.map((s) => s.start()));
    await wait('every device online in the registry', () => [...lamps, ...plugs].every((id) => client.registry.get(id)?.online && client.registry.get(id)?.image), 15_000);
    return { client, service, devicesOut, statusOut, caught, events };
  }

  const commanded = (events: UpdateEvent[]): string[] => [...new Set(events.filter((e) => e.type === 'download-start' && e.deviceId).map((e) => e.deviceId!))].sort();

  it('newest: each device gets its own product\'s next image, devices with nothing newer are left out, progress arrives with no wire', async () => {
    const { devicesOut, statusOut, caught, events } = await setUp({ homeAssistant: true }, async (service) => {
      await publishSimImage(service, { product: LAMP, version: '1.1.0', size: 256 * 1024 });
    });
    // Home Assistant, with a backend certificate, reads the update entities' states.
    const ha = await connectTls(brokerPort, haIdentity, 'ha-link', { reconnectPeriod: 0 });
    const states: { id: string; state: Msg }[] = [];
    ha.on('message', (topic, payload) => payload.length && states.push({ id: topic.split('/')[2]!, state: JSON.parse(payload.toString()) as Msg }));
    await ha.subscribeAsync('esp-fleet/ha/+/state', { qos: 1 });
    await wait('a state of every device', () => [...lamps, ...plugs].every((id) => states.some((s) => s.id === id)), 10_000);
    for (const id of lamps) assert.deepEqual(states.filter((s) => s.id === id).at(-1)!.state.latest_version, `${LAMP}-1.1.0`, 'latest is what the server would offer');
    for (const id of plugs) assert.deepEqual(states.filter((s) => s.id === id).at(-1)!.state.latest_version, `${PLUG}-1.0.0`, 'nothing newer: up to date');
    helper.getNode('ro').receive({ topic: 'start' });
    const started = await statusOut.until((m) => m.topic === 'running');
    assert.match(started.payload.reason, /^4 devices in 2 waves, 3 up to date$/);
    const done = await statusOut.until((m) => m.topic === 'done', 30_000);
    assert.match(done.payload.reason, /^4 updated, 0 failed, 0 offline \(skipped\)$/);
    assert.deepEqual(commanded(events), [...lamps].sort(), 'only the lamps downloaded; the plugs were never commanded');
    assert.deepEqual(sims[0]!.images(), { [`${LAMP}-1.1.0`]: 4 });
    assert.deepEqual(sims[1]!.images(), { [`${PLUG}-1.0.0`]: 3 });
    for (const id of lamps) {
      const percents = devicesOut.msgs.filter((m) => m.topic === id && m.payload.percent !== undefined).map((m) => m.payload.percent as number);
      assert.ok(percents.length >= 2, `${id}: progress msgs from the linked server (${percents.join(', ')})`);
      assert.deepEqual(percents, [...percents].sort((a, b) => a - b), `${id}: the percent only rises`);
      assert.equal(percents.at(-1), 100, id);
    }
    // HA saw the downloads as they went, and each lamp end up to date on the new image.
    await wait('HA shows every lamp on 1.1.0', () => lamps.every((id) => states.filter((s) => s.id === id).at(-1)?.state.installed_version === `${LAMP}-1.1.0`), 10_000);
    await ha.endAsync(true);
    for (const id of lamps) {
      const shown = states.filter((s) => s.id === id).map((s) => s.state);
      assert.ok(shown.some((s) => s.in_progress === true && typeof s.update_percentage === 'number' && s.update_percentage > 0), `${id}: a percent while downloading`);
      assert.deepEqual([shown.at(-1)!.latest_version, shown.at(-1)!.in_progress], [`${LAMP}-1.1.0`, false]);
    }
    const rows = devicesOut.msgs.at(-1)!.rows as Msg[];
    assert.deepEqual(rows.map((r) => [r.target, r.state]), lamps.map(() => [`${LAMP}-1.1.0`, 'passed']));
    assert.equal(caught.msgs.length, 0);
  });

  it('a named target leaves out the devices the server would not offer it to, and says why', async () => {
    const { statusOut, caught, events } = await setUp({ target: `${PLUG}-2.0.0`, devices: '*' }, async (service) => {
      await publishSimImage(service, { product: PLUG, version: '2.0.0', size: 16 * 1024 });
      // One plug is pinned to stay where it is: the server offers it nothing.
      await service.catalogue.assign({ target: plugs[2]!, pin: `${PLUG}-1.0.0` });
    });
    const ro = helper.getNode('ro');
    ro.receive({ topic: 'start' });
    const started = await statusOut.until((m) => m.topic === 'running');
    assert.match(started.payload.reason, /^2 devices in 2 waves; 5 left out \(4 offered nothing: .*; 1 offered nothing: .*pinned/);
    await statusOut.until((m) => m.topic === 'done', 30_000);
    assert.deepEqual(commanded(events), plugs.slice(0, 2).sort());
    statusOut.mark();
    ro.receive({ topic: 'status' });
    const status = await statusOut.until((m) => m.topic === 'status');
    assert.deepEqual(status.payload.excluded.map((e: Msg) => e.device).sort(), [...lamps, plugs[2]!].sort());
    assert.equal(caught.msgs.length, 0);
  });

  it('group: selects by the update server\'s device groups; image: by what devices report', async () => {
    const { statusOut, caught, events, service } = await setUp({ devices: `group:porch, image:${PLUG}-1.` }, async (s) => {
      await publishSimImage(s, { product: LAMP, version: '1.1.0', size: 16 * 1024 });
      await publishSimImage(s, { product: PLUG, version: '1.1.0', size: 16 * 1024 });
    });
    await service.setGroups(lamps[1], ['porch']);
    helper.getNode('ro').receive({ topic: 'start' });
    const started = await statusOut.until((m) => m.topic === 'running');
    assert.match(started.payload.reason, /^4 devices in /);
    await statusOut.until((m) => m.topic === 'done', 30_000);
    assert.deepEqual(commanded(events), [lamps[1]!, ...plugs].sort());
    assert.equal(caught.msgs.length, 0);
  });

  it('an unknown target, or one no selected device would be offered, goes to Catch and starts nothing', async () => {
    const { statusOut, caught, events, service } = await setUp({ target: `${LAMP}-9.9.9` }, async () => undefined);
    const ro = helper.getNode('ro');
    ro.receive({ topic: 'start' });
    assert.match((await caught.until(() => true)).error.message, /^Error: unknown image ESP8266_LAMP-9\.9\.9: the update server's catalogue does not hold it/);
    // An image signed with a key the devices do not trust: the server would offer them nothing it could verify.
    const rotated = await service.keyring.rotate('esp8266-rsa');
    await publishSimImage(service, { product: LAMP, version: '3.0.0', signWith: rotated.id, size: 16 * 1024 });
    caught.mark();
    ro.receive({ topic: 'start', payload: { target: `${LAMP}-3.0.0` } });
    assert.match((await caught.until(() => true)).error.message, /^Error: no selected device would be offered ESP8266_LAMP-3\.0\.0: /);
    caught.mark();
    ro.receive({ topic: 'start', payload: { devices: 'group:Bad_Name' } });
    assert.match((await caught.until(() => true)).error.message, /^Error: devices: "group:Bad_Name" is not a device id/);
    await new Promise((r) => setTimeout(r, 500));
    assert.equal(statusOut.msgs.filter((m) => m.topic === 'running').length, 0, 'nothing started');
    assert.deepEqual(commanded(events), []);
  });
});
