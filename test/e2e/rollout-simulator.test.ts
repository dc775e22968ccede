import { strict as assert } from 'node:assert';
import * as path from 'node:path';
import { CaStore } from '../../lib/pki/ca-store';
import { writeMosquittoConfig } from '../../lib/mosquitto/folders';
import { FirmwareService } from '../../lib/firmware/firmware-service';
import { startUpdateServer, RunningUpdateServer, UpdateEvent } from '../../lib/firmware/update-server';
import { publishSimImage } from '../../lib/sim/publish';
import { deviceIds, FleetSimulator, identityFromFolder } from '../../lib/sim/fleet-simulator';
import { freePort, startMosquitto, RunningMosquitto } from '../support/mosquitto';
import { localServerOptions } from '../support/update-server';
import { tempDir } from '../support/temp-dir';
import { helper, catchNode, Collector } from '../support/node-red';
import espCa = require('../../nodes/esp-ca/esp-ca');
import espFleet = require('../../nodes/esp-fleet/esp-fleet');
import espRollout = require('../../nodes/esp-rollout/esp-rollout');
import type { EspFleetNode } from '../../nodes/esp-fleet/types';
import type { FleetClient } from '../../lib/fleet/fleet-client';

type Msg = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any

const P = 'ESP8266_SIM_ROLLOUT';
const V1 = `${P}-1.0.0`;
const V2 = `${P}-2.0.0`;
const FLEET = 40;

/**
 * esp-rollout in the Node-RED runtime with simulated devices (lib/sim, `fast` timing: a real
 * ESP8266's steps a hundred times quicker) on a real Mosquitto and the real update server with
 * signed images: a device gets the command when it asks the update server for firmware.bin
 * (the server's `check` event, authenticated by its client certificate), so what the devices did
 * is read from the server, not from the node under test.
 */
describe('esp-rollout with simulated devices, real Mosquitto and the update server', function () {
  this.timeout(60_000);
  const tmp = tempDir('rollout-sim');
  const ids = deviceIds('a4cf50', FLEET);
  let store: CaStore;
  let broker: RunningMosquitto;
  let server: RunningUpdateServer;
  let port: number;
  let trusts: string[];
  let fleet: FleetSimulator | undefined;
  let run = 0;
  const events: UpdateEvent[] = [];
  /** When set, the update server's events also reach the rollout, as its output 2 wired in would. */
  let wired: ((e: UpdateEvent) => void) | undefined;

  /** Devices that asked the update server for an image (got the command), with how often, since `from`. */
  const asked = (from: number): Map<string, number> => {
    const out = new Map<string, number>();
    for (const e of events.slice(from)) if (e.type === 'check' && e.deviceId && e.authenticated) out.set(e.deviceId, (out.get(e.deviceId) ?? 0) + 1);
    return out;
  };

  const wait = async (what: string, ok: () => boolean, ms: number): Promise<void> => {
    const until = Date.now() + ms;
    while (!ok()) {
      if (Date.now() > until) throw new Error(`${what}: not within ${ms} ms`);
      await new Promise((r) => setTimeout(r, 25));
    }
  };

  /** A fresh flow (own registry and rollout folder) and `count` simulated devices online on V1 in it. */
  async function setUp(count: number, rollout: Msg, fleetOptions: { tamperedShare?: number; resetDuringUpdateShare?: number } = {}): Promise<{ client: FleetClient; devicesOut: Collector<Msg>; statusOut: Collector<Msg>; caught: Collector<Msg>; list: string[]; restart: () => Promise<{ devicesOut: Collector<Msg>; statusOut: Collector<Msg>; caught: Collector<Msg> }> }> {
    const folder = path.join(tmp.path, `run-${++run}`);
    const list = ids.slice(0, count);
    const flow = [
      { id: 'tab', type: 'tab', label: 'rollout' },
      { id: 'ca', type: 'esp-ca', folder: store.dir },
      { id: 'fleet', type: 'esp-fleet', broker: `mqtts://localhost:${port}`, tlsSource: 'esp-ca', ca: 'ca', backendName: 'node-red', scheme: 'secure-esp8266', statusInterval: '1000', registryFile: path.join(folder, 'registry.json') },
      { id: 'ro', z: 'tab', type: 'esp-rollout', fleet: 'fleet', target: V2, devices: list.join(','), updateTimeoutS: '20', folder, wires: [['d'], ['s']], ...rollout },
      { id: 'catcher', z: 'tab', type: 'catch', scope: null, uncaught: false, wires: [['caught']] },
      ...['d', 's', 'caught'].map((id) => ({ id, z: 'tab', type: 'helper' })),
    ];
    await helper.load([espCa, espFleet, espRollout, catchNode], structuredClone(flow));
    const [devicesOut, statusOut, caught] = ['d', 's', 'caught'].map((id) => new Collector<Msg>(id));
    /**
     * Node-RED stops and starts again with the same flow and folders (the devices go on meanwhile).
     * Away for 3 s, longer than 2.5 status intervals: the time nobody listened is not silence.
     */
    const restart = async (): Promise<{ devicesOut: Collector<Msg>; statusOut: Collector<Msg>; caught: Collector<Msg> }> => {
      await helper.unload();
      await new Promise((r) => setTimeout(r, 3_000));
      await helper.load([espCa, espFleet, espRollout, catchNode], structuredClone(flow));
      const [d, st, c] = ['d', 's', 'caught'].map((id) => new Collector<Msg>(id));
      return { devicesOut: d!, statusOut: st!, caught: c! };
    };
    const client = await (helper.getNode('fleet') as unknown as EspFleetNode).fleet();
    await wait('esp-fleet connected', () => client.state === 'connected', 10_000);
    fleet = new FleetSimulator({ ids: list, identity: identityFromFolder(store.deviceFilesDir), bootstrap: { host: 'localhost', port: server.port, path: '/fw' }, image: V1, trusts, timing: 'fast', bootsPerSecond: 200, ...fleetOptions });
    await fleet.start();
    await wait('every device online on V1 in the registry', () => list.every((id) => client.registry.get(id)?.online && client.registry.get(id)?.image === V1), 15_000);
    return { client, devicesOut: devicesOut!, statusOut: statusOut!, caught: caught!, list, restart };
  }

  before(async () => {
    store = await CaStore.open({ dir: path.join(tmp.path, 'ca') });
    await store.issueServer({ commonName: 'localhost' });
    for (const id of ids) await store.issueDevice(id);
    port = await freePort();
    const { dir } = await writeMosquittoConfig(store, { dir: path.join(tmp.path, 'mosquitto'), serverName: 'localhost', backendName: 'node-red', port });
    broker = await startMosquitto(dir);
    const service = await FirmwareService.open(path.join(tmp.path, 'firmware'));
    for (const v of ['1.0.0', '2.0.0']) await publishSimImage(service, { product: P, version: v, size: 32 * 1024 });
    trusts = [service.keyring.exportPublic((await service.keyring.current('esp8266-rsa')).id).pem];
    const defaults = { mqttserver: 'localhost', mqttport: port, mqtttls: true, statusinterval: 1000, retrytimeout: 500 };
    server = await startUpdateServer({ ...(await localServerOptions(store)), deviceConfig: (id) => service.deviceConfig(defaults, id), images: service.imageSource(), maxConcurrentDownloads: FLEET, onEvent: (e) => {
        events.push(e);
        wired?.(e);
      },
    });
    await helper.startServer();
  });
  afterEach(async () => {
    wired = undefined;
    await fleet?.stop();
    fleet = undefined;
    await helper.unload();
  });
  after(async () => {
    await helper.stopServer();
    await server?.close();
    await broker?.stop();
    await store?.idle();
    tmp.remove();
  });

  it('40 devices, 10 % with a tampered trust key: wave 2 trips the threshold, the rollout halts with the reason, nobody past wave 2 gets the command', async () => {
    // Waves by the list's order: canary 10 % = ids 0-3, then 4-15, 16-27, 28-39. The simulator
    // tampers every 10th device from index 8 (8, 18, 28, 38): wave 2 holds the first one.
    const { devicesOut, statusOut, caught } = await setUp(FLEET, { canary: '10%', waveSize: '12', cap: '4', soakS: '1', haltAt: '5%' }, { tamperedShare: 0.1 });
    const from = events.length;
    helper.getNode('ro').receive({ topic: 'start' });
    const halted = await statusOut.until((m) => m.topic === 'halted', 30_000);
    assert.match(halted.payload.reason, /^1 of 12 devices of wave 2 failed \(threshold 5 %\)$/);
    assert.match(halted.text, /^rollout of ESP8266_SIM_ROLLOUT-2\.0\.0 halted: 1 of 12/);
    const failed = devicesOut.msgs.filter((m) => m.payload.state === 'failed');
    assert.deepEqual(failed.map((m) => m.topic), [ids[8]]);
    assert.match(failed[0].payload.reason, /^refused the image: firmware: signature check failed/);
    assert.equal(failed[0].payload.wave, 2);
    assert.ok(statusOut.msgs.some((m) => m.topic === 'wave' && m.payload.wave === 1 && m.payload.state === 'passed' && m.payload.passed === 4), 'the canaries passed their gate');
    // In-flight devices finish; then nothing more happens.
    await wait('no device updating', () => devicesOut.msgs.filter((m) => m.payload.state === 'updating').every((u) => devicesOut.msgs.some((m) => m.topic === u.topic && ['passed', 'failed', 'soaking'].includes(m.payload.state))), 10_000);
    await new Promise((r) => setTimeout(r, 1_500));
    const got = asked(from);
    assert.ok(got.has(ids[8]!), 'the tampered device asked for the image');
    assert.deepEqual([...got.keys()].filter((id) => ids.indexOf(id) >= 16), [], 'no device past wave 2 got the command');
    assert.ok([...got.values()].every((n) => n === 1), 'each device got the command once');
    for (const id of ids.slice(0, 4)) assert.equal(got.get(id), 1, `canary ${id} was updated`);
    assert.deepEqual(fleet!.images(), { [V2]: [...got.keys()].length - 1, [V1]: FLEET - ([...got.keys()].length - 1) }, 'exactly the commanded devices but the tampered one run V2');
    assert.equal(caught.msgs.length, 0);
  });

  it('pause holds new starts, resume goes on, a halt is retried by retry-failed, abort ends it', async () => {
    // 8 devices, the simulator tampers index 6 (every 8th from index 6); canary 2, then 2-7 with cap 2.
    const { devicesOut, statusOut, caught, list } = await setUp(8, { canary: '2', waveSize: '6', cap: '2', soakS: '1', haltAt: '1' }, { tamperedShare: 0.125 });
    const from = events.length;
    const ro = helper.getNode('ro');
    ro.receive({ topic: 'start' });
    ro.receive({ topic: 'pause' });
    const paused = await statusOut.until((m) => m.topic === 'status' && m.payload.status === 'paused');
    assert.equal(paused.payload.wave, 1);
    // Judging goes on: the canaries pass; no other device starts while paused.
    await devicesOut.until((m) => m.topic === list[1] && m.payload.state === 'passed', 10_000);
    await devicesOut.until((m) => m.topic === list[0] && m.payload.state === 'passed', 10_000);
    await new Promise((r) => setTimeout(r, 1_500));
    assert.deepEqual([...asked(from).keys()].sort(), list.slice(0, 2).sort(), 'only the canaries got the command while paused');

    statusOut.mark();
    ro.receive({ topic: 'resume' });
    const halted = await statusOut.until((m) => m.topic === 'halted', 15_000);
    assert.match(halted.payload.reason, /^1 of 6 devices of wave 2 failed \(threshold 1\)$/);
    assert.equal(asked(from).get(list[6]!), 1);

    statusOut.mark();
    devicesOut.mark();
    // From here the update server's events reach the rollout (its output 2 wired in).
    wired = (e) => ro.receive({ topic: e.type, payload: e });
    const retriedAt = Date.now();
    ro.receive({ topic: 'retry-failed' });
    // The failed device is queued in the running wave and commanded again; the halted rollout runs again.
    await statusOut.until((m) => m.topic === 'running');
    await devicesOut.until((m) => m.topic === list[6] && m.payload.state === 'queued');
    await wait('the retried device asked again', () => asked(from).get(list[6]!) === 2, 5_000);
    // It fails the same way again, with the very same message: judged when it reports, not at the 20 s timeout.
    const again = await devicesOut.until((m) => m.topic === list[6] && m.payload.state === 'failed', 10_000);
    assert.match(again.payload.reason, /^refused the image: firmware: signature check failed/);
    assert.ok(Date.now() - retriedAt < 10_000, 'failed at once, not at the update timeout');
    await statusOut.until((m) => m.topic === 'halted');

    statusOut.mark();
    ro.receive({ topic: 'abort' });
    const answer = await statusOut.until((m) => m.topic === 'status');
    assert.equal(answer.payload.status, 'aborted');
    const before = events.length;
    await new Promise((r) => setTimeout(r, 1_000));
    assert.equal(asked(before).size, 0, 'nothing starts after abort');
    ro.receive({ topic: 'resume' });
    assert.match((await caught.until(() => true)).error.message, /aborted: only a paused or halted one can resume/);
  });

  it('devices offline at their turn are skipped, and updated when they come back', async () => {
    // 10 devices; 5, 6, 7 stop (their LWT makes them offline) before the start.
    const { client, devicesOut, statusOut, caught, list } = await setUp(10, { canary: '2', waveSize: '8', cap: '4', soakS: '3', haltAt: '50%' });
    const away = [5, 6, 7].map((i) => fleet!.devices[i]!);
    await Promise.all(away.map((d) => d.stop()));
    await wait('the three are offline in the registry', () => away.every((d) => client.registry.get(d.id)?.online === false), 10_000);
    const from = events.length;
    helper.getNode('ro').receive({ topic: 'start' });
    for (const d of away) await devicesOut.until((m) => m.topic === d.id && m.payload.state === 'skipped', 15_000);
    assert.deepEqual([...asked(from).keys()].filter((id) => away.some((d) => d.id === id)), [], 'no command to an offline device');
    for (const d of away) d.start();
    const done = await statusOut.until((m) => m.topic === 'done', 30_000);
    assert.match(done.payload.reason, /^10 updated, 0 failed, 0 offline \(skipped\)$/);
    for (const d of away) {
      const seen = devicesOut.msgs.filter((m) => m.topic === d.id).map((m) => m.payload.state);
      assert.deepEqual(seen, ['skipped', 'queued', 'updating', 'soaking', 'passed'], d.id);
      assert.equal(d.image, V2);
    }
    const got = asked(from);
    assert.deepEqual(list.map((id) => got.get(id)), list.map(() => 1), 'every device got the command once');
    assert.equal(caught.msgs.length, 0);
  });
  it('a device that comes back on its old image (a watchdog reset mid-update) and one that goes offline while soaking both fail', async () => {
    // 6 devices in one wave; the simulator resets index 3 while it writes the update (every 6th from 3).
    const { devicesOut, statusOut, caught, list } = await setUp(6, { canary: '6', waveSize: '6', cap: '6', soakS: '4', haltAt: '100%' }, { resetDuringUpdateShare: 1 / 6 });
    helper.getNode('ro').receive({ topic: 'start' });
    // The first device to soak is taken off the network (its LWT tells the broker) before its soak ends.
    const soaking = await devicesOut.until((m) => m.payload.state === 'soaking' && m.topic !== list[3], 20_000);
    const leaver = fleet!.devices.find((d) => d.id === soaking.topic)!;
    await leaver.stop();
    const done = await statusOut.until((m) => m.topic === 'done', 30_000);
    assert.match(done.payload.reason, /^4 updated, 2 failed, 0 offline \(skipped\)$/);
    const failed = new Map(devicesOut.msgs.filter((m) => m.payload.state === 'failed').map((m) => [m.topic as string, m.payload.reason as string]));
    assert.deepEqual([...failed.keys()].sort(), [list[3]!, leaver.id].sort());
    assert.equal(failed.get(list[3]!), `came back on ${V1}, not ${V2}`);
    assert.equal(failed.get(leaver.id), 'went offline while soaking');
    assert.equal(fleet!.devices[3]!.image, V1, 'the reset device still runs the old image');
    assert.equal(caught.msgs.length, 0);
  });

  it('Node-RED restarts in the middle of a wave: the rollout resumes and finishes, and no device gets the command twice', async () => {
    const { devicesOut, restart, list } = await setUp(10, { canary: '2', waveSize: '8', cap: '3', soakS: '5', haltAt: '50%' });
    const from = events.length;
    helper.getNode('ro').receive({ topic: 'start' });
    // Wave 2 is under way: a device soaking (it must not fail for the time nobody listened), others updating or queued.
    await devicesOut.until((m) => m.payload.wave === 2 && m.payload.state === 'soaking', 20_000);
    const after = await restart();
    const done = await after.statusOut.until((m) => m.topic === 'done', 40_000);
    const failures = after.devicesOut.msgs.filter((m) => m.payload.state === 'failed').map((m) => `${m.topic}: ${m.payload.reason}`);
    assert.match(done.payload.reason, /^10 updated, 0 failed, 0 offline \(skipped\)$/, failures.join('; '));
    const got = asked(from);
    assert.deepEqual(list.map((id) => got.get(id)), list.map(() => 1), 'every device got the command exactly once across the restart');
    assert.deepEqual(fleet!.images(), { [V2]: 10 });
    assert.equal(after.caught.msgs.length, 0);
  });
});
