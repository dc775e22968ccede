import { strict as assert } from 'node:assert';
import * as path from 'node:path';
import { CaStore } from '../../lib/pki/ca-store';
import { writeMosquittoConfig } from '../../lib/mosquitto/folders';
import { FirmwareService } from '../../lib/firmware/firmware-service';
import { startUpdateServer, RunningUpdateServer } from '../../lib/firmware/update-server';
import { publishEsp32SimImage, publishSimImage } from '../../lib/sim/publish';
import { deviceIds, FleetSimulator, identityFromFolder } from '../../lib/sim/fleet-simulator';
import { SimulatedEsp32 } from '../../lib/sim/esp32-device';
import { freePort, startMosquitto, RunningMosquitto } from '../support/mosquitto';
import { localServerOptions } from '../support/update-server';
import { tempDir } from '../support/temp-dir';
import { helper, catchNode, Collector } from '../support/node-red';
import espCa = require('../../nodes/esp-ca/esp-ca');
import espFleet = require('../../nodes/esp-fleet/esp-fleet');
import espStatus = require('../../nodes/esp-status/esp-status');
import espCommand = require('../../nodes/esp-command/esp-command');
import type { EspFleetNode } from '../../nodes/esp-fleet/types';
import type { FleetClient } from '../../lib/fleet/fleet-client';

type Msg = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any

const P8 = 'ESP8266_SIM_MIXED';
const P32 = 'SIMESP32MIXED';

async function until(what: string, ms: number, ok: () => boolean): Promise<void> {
  const end = Date.now() + ms;
  while (!ok()) {
    if (Date.now() > end) throw new Error(`not within ${ms} ms: ${what}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

/**
 * One esp-fleet connection with the `mixed` scheme in the Node-RED runtime, on a real Mosquitto
 * with the generated mixed config (ACL of both schemes), the real update server holding signed
 * images of both platforms, simulated ESP8266s (secure-esp8266 topics) and simulated ESP32s
 * (secure-esp32 topics) side by side: each device is known with its platform and gets its own
 * platform's commands from one esp-command.
 */
describe('mixed fleet on Mosquitto: ESP8266 and ESP32 simulated devices on one esp-fleet', function () {
  this.timeout(90_000);
  const tmp = tempDir('mixed-fleet');
  const esp8266 = deviceIds('a4cf5a', 2);
  const esp32 = deviceIds('24a16a', 2);
  const all = [...esp8266, ...esp32];
  let store: CaStore;
  let broker: RunningMosquitto;
  let server: RunningUpdateServer;
  let service: FirmwareService;
  let port: number;
  let fleet: FleetSimulator | undefined;
  const boards: SimulatedEsp32[] = [];
  let client: FleetClient;
  let statusOut: Collector<Msg>;
  let tableOut: Collector<Msg>;
  let outcomes: Collector<Msg>;
  let summaries: Collector<Msg>;

  before(async () => {
    store = await CaStore.open({ dir: path.join(tmp.path, 'ca') });
    await store.issueServer({ commonName: 'localhost' });
    for (const id of all) await store.issueDevice(id);
    port = await freePort();
    const { dir } = await writeMosquittoConfig(store, { dir: path.join(tmp.path, 'mosquitto'), serverName: 'localhost', backendName: 'node-red', port, scheme: 'mixed' });
    broker = await startMosquitto(dir);
    service = await FirmwareService.open(path.join(tmp.path, 'firmware'));
    // Both platforms' images in the one catalogue of the one update server.
    for (const v of ['1.0.0', '1.0.1']) await publishSimImage(service, { product: P8, version: v, size: 32 * 1024 });
    const ecdsa = (await service.keyring.current('esp32-ecdsa-v1')).id;
    for (const v of ['1.0.0', '1.0.1']) await publishEsp32SimImage(service, { projectName: P32, version: v, trusts: [ecdsa], size: 64 * 1024 });
    const defaults = { mqttserver: 'localhost', mqttport: port, mqtttls: true, statusinterval: 1000, retrytimeout: 500 };
    server = await startUpdateServer({ ...(await localServerOptions(store)), deviceConfig: (id) => service.deviceConfig(defaults, id), images: service.imageSource() });
    await helper.startServer();
    const flow = [
      { id: 'tab', type: 'tab', label: 'mixed' },
      { id: 'ca', type: 'esp-ca', folder: store.dir },
      { id: 'fleet', type: 'esp-fleet', broker: `mqtts://localhost:${port}`, tlsSource: 'esp-ca', ca: 'ca', backendName: 'node-red', scheme: 'mixed', statusInterval: '2000', registryFile: path.join(tmp.path, 'registry.json') },
      { id: 'status', z: 'tab', type: 'esp-status', fleet: 'fleet', devices: '', imagePrefix: '', table: true, wires: [['s1'], [], [], ['s4']] },
      { id: 'cmd', z: 'tab', type: 'esp-command', fleet: 'fleet', command: 'update', devices: '*', onlineOnly: false, maxInFlight: '4', outcomeTimeout: '40', wires: [[], ['c2'], ['c3']] },
      { id: 'catcher', z: 'tab', type: 'catch', scope: null, uncaught: false, wires: [['caught']] },
      ...['s1', 's4', 'c2', 'c3', 'caught'].map((id) => ({ id, z: 'tab', type: 'helper' })),
    ];
    await helper.load([espCa, espFleet, espStatus, espCommand, catchNode], flow);
    [statusOut, tableOut, outcomes, summaries] = ['s1', 's4', 'c2', 'c3'].map((id) => new Collector<Msg>(id));
    client = await (helper.getNode('fleet') as unknown as EspFleetNode).fleet();
    await until('esp-fleet connected', 10_000, () => client.state === 'connected');
    const identity = identityFromFolder(store.deviceFilesDir);
    const bootstrap = { host: 'localhost', port: server.port, path: '/fw' };
    fleet = new FleetSimulator({ ids: esp8266, identity, bootstrap, image: `${P8}-1.0.0`, trusts: [service.keyring.exportPublic((await service.keyring.current('esp8266-rsa')).id).pem], timing: 'fast' });
    await fleet.start();
    for (const id of esp32) {
      const board = new SimulatedEsp32({ id, files: await identity(id), bootstrap, mqtt: { host: 'localhost', port }, image: `${P32}-1.0.0`, trusts: [service.keyring.exportPublic(ecdsa).pem], nvsDir: path.join(tmp.path, 'nvs'), timing: 'fast', statusIntervalMs: 500 });
      boards.push(board);
      board.start();
    }
    await until('every device online in the registry', 20_000, () => all.every((id) => client.registry.get(id)?.online === true && !!client.registry.get(id)?.lastStatus));
  });

  after(async () => {
    await fleet?.stop();
    await Promise.all(boards.map((b) => b.stop()));
    await helper.unload();
    await helper.stopServer();
    await server?.close();
    await broker?.stop();
    await store?.idle();
    tmp.remove();
  });

  beforeEach(() => [statusOut, tableOut, outcomes, summaries].forEach((c) => c.mark()));

  /** Sends msg to esp-command and waits for its summary; the outcomes per device. */
  const command = async (msg: Msg): Promise<{ summary: Msg; text: string; byDevice: Map<string, Msg> }> => {
    outcomes.mark();
    summaries.mark();
    helper.getNode('cmd').receive(msg);
    const done = await summaries.until(() => true, 60_000);
    return { summary: done.payload, text: done.text, byDevice: new Map(outcomes.sinceMark().map((m) => [m.payload.device as string, m.payload as Msg])) };
  };

  it('both platforms online in the registry with their platform, in esp-status msgs and the fleet table', async () => {
    for (const id of esp8266) assert.equal(client.registry.get(id)!.platform, 'esp8266', id);
    for (const id of esp32) assert.equal(client.registry.get(id)!.platform, 'esp32', id);
    const seen = await statusOut.until((m) => m.topic === esp32[0], 10_000);
    assert.equal(seen.device.platform, 'esp32');
    assert.equal((await statusOut.until((m) => m.topic === esp8266[0], 10_000)).device.platform, 'esp8266');
    const table = await tableOut.until((m) => (m.payload as Msg[]).length === all.length, 10_000);
    assert.deepEqual(Object.fromEntries((table.payload as Msg[]).map((r) => [r.id, r.platform])), Object.fromEntries(all.map((id) => [id, esp32.includes(id) ? 'esp32' : 'esp8266'])));
  });

  it('update to every device installs the next signed image of each platform: firmware to the ESP8266s, update/run to the ESP32s', async () => {
    const { summary, byDevice } = await command({ payload: 'update', device: '*' });
    assert.deepEqual([summary.command, summary.devices, summary.success, summary.failed, summary.timeout, summary.refused], ['update', 4, 4, 0, 0, 0]);
    for (const id of esp8266) assert.deepEqual([byDevice.get(id)!.command, byDevice.get(id)!.outcome, byDevice.get(id)!.image], ['firmware', 'success', `${P8}-1.0.1`], id);
    for (const id of esp32) assert.deepEqual([byDevice.get(id)!.command, byDevice.get(id)!.outcome, byDevice.get(id)!.image], ['update/run', 'success', `${P32}-1.0.1`], id);
    assert.deepEqual(fleet!.images(), { [`${P8}-1.0.1`]: 2 });
    assert.deepEqual(boards.map((b) => b.image), [`${P32}-1.0.1`, `${P32}-1.0.1`]);
  });

  it('restart reboots both platforms: reboot to the ESP8266s, restart to the ESP32s', async () => {
    const before = fleet!.rebootCounts();
    const { summary, byDevice } = await command({ payload: 'restart', device: all });
    assert.deepEqual([summary.success, summary.failed, summary.timeout, summary.refused], [4, 0, 0, 0]);
    assert.deepEqual(all.map((id) => byDevice.get(id)!.command), ['reboot', 'reboot', 'restart', 'restart']);
    const afterCounts = fleet!.rebootCounts();
    const rebooted = Object.values(afterCounts).reduce((a, b) => a + b, 0) - Object.values(before).reduce((a, b) => a + b, 0);
    assert.ok(rebooted >= 2, `both ESP8266s rebooted (${JSON.stringify(afterCounts)})`);
    await until('every device back online', 20_000, () => all.every((id) => client.registry.get(id)?.online === true));
  });

  it('an ESP32-only command to an ESP8266 is refused in its outcome, never sent; the ESP32 gets it', async () => {
    const [e8266, e32] = [esp8266[0], esp32[0]];
    const { summary, text, byDevice } = await command({ payload: 'update/use_url', argument: 1, device: [e8266, e32] });
    assert.deepEqual([summary.devices, summary.sent, summary.refused, summary.failed], [2, 1, 1, 0]);
    assert.equal(byDevice.get(e8266)!.outcome, 'refused');
    assert.match(byDevice.get(e8266)!.error, /^update\/use_url is an esp32 command, and this device is esp8266/);
    assert.equal(byDevice.get(e32)!.outcome, 'sent');
    await until('the ESP32 stored use_url 1 in its NVS', 10_000, () => boards[0].settings?.useUrl === 1);
    assert.match(text, new RegExp(`1 refused in \\d+ s — ${e8266}: update/use_url is an esp32 command`));
    // The ESP8266 side's own command to an ESP32 is refused the same way.
    const back = await command({ payload: 'flash', device: [e32] });
    assert.deepEqual([back.byDevice.get(e32)!.outcome, back.summary.refused], ['refused', 1]);
    assert.match(back.byDevice.get(e32)!.error, /^flash is an esp8266 command, and this device is esp32/);
  });
});
