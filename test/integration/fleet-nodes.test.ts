import { strict as assert } from 'node:assert';
import * as path from 'node:path';
import { CaStore } from '../../lib/pki/ca-store';
import { tempDir } from '../support/temp-dir';
import { MosquittoBed } from '../support/mosquitto-bed';
import type { FakeDevice } from '../support/fake-device';
import { helper, catchNode, firstMessage, Collector as SharedCollector } from '../support/node-red';
import espCa = require('../../nodes/esp-ca/esp-ca');
import espFleet = require('../../nodes/esp-fleet/esp-fleet');
import espStatus = require('../../nodes/esp-status/esp-status');
import espCommand = require('../../nodes/esp-command/esp-command');
import type { EspFleetNode } from '../../nodes/esp-fleet/types';
import type { FleetClient } from '../../lib/fleet/fleet-client';

type Msg = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any

const DEVICES = Array.from({ length: 8 }, (_, i) => `84f3eb1000${i.toString(16).padStart(2, '0')}`);
const [A, B] = DEVICES;
const nodes = [espCa, espFleet, espStatus, espCommand, catchNode];

class Collector extends SharedCollector<Msg> {}

describe('esp-fleet, esp-status and esp-command against a real Mosquitto with mutual TLS', function () {
  this.timeout(90_000);
  const tmp = tempDir('fleet');
  let store: CaStore;
  let bed: MosquittoBed;
  let port: number;
  let status: Collector;
  let presence: Collector;
  let deviceMsgs: Collector;
  let sent: Collector;
  let outcomes: Collector;
  let summaries: Collector;
  let caught: Collector;
  let table: Collector;

  const flow = (statusInterval = 60_000): Msg[] => [
    { id: 'tab', type: 'tab', label: 'fleet' },
    { id: 'ca', type: 'esp-ca', folder: store.dir },
    { id: 'fleet', type: 'esp-fleet', broker: `mqtts://localhost:${port}`, tlsSource: 'esp-ca', ca: 'ca', backendName: 'node-red', scheme: 'secure-esp8266', statusInterval: String(statusInterval), registryFile: path.join(tmp.path, 'registry.json') },
    { id: 'status', z: 'tab', x: 100, y: 100, type: 'esp-status', fleet: 'fleet', wires: [['s1'], ['s2'], ['s3']] },
    // The same fleet with output 4 on, limited to A and B (a device outside is never a row).
    { id: 'statusTable', z: 'tab', x: 100, y: 100, type: 'esp-status', fleet: 'fleet', devices: `${A}, ${B}`, table: true, wires: [[], [], [], ['t4']] },
    { id: 'cmd', z: 'tab', x: 100, y: 100, type: 'esp-command', fleet: 'fleet', command: 'firmware', devices: '*', onlineOnly: false, maxInFlight: '3', outcomeTimeout: '3', wires: [['c1'], ['c2'], ['c3']] },
    { id: 'catcher', z: 'tab', x: 100, y: 100, type: 'catch', scope: null, uncaught: false, wires: [['caught']] },
    ...['s1', 's2', 's3', 't4', 'c1', 'c2', 'c3', 'caught'].map((id) => ({ id, z: 'tab', x: 100, y: 100, type: 'helper' })),
  ];

  async function deploy(statusInterval?: number): Promise<FleetClient> {
    await helper.load(nodes, flow(statusInterval));
    [status, presence, deviceMsgs, table, sent, outcomes, summaries, caught] = ['s1', 's2', 's3', 't4', 'c1', 'c2', 'c3', 'caught'].map((id) => new Collector(id));
    const client = await (helper.getNode('fleet') as unknown as EspFleetNode).fleet();
    for (let i = 0; client.state !== 'connected'; i++) {
      if (i > 200) throw new Error(`fleet did not connect: ${client.state}`);
      await new Promise((r) => setTimeout(r, 25));
    }
    return client;
  }

  const device = (id: string, clientId = id): Promise<FakeDevice> => bed.device(id, clientId);

  before(async () => {
    bed = await MosquittoBed.start(tmp.path, DEVICES);
    ({ store, port } = bed);
    await helper.startServer();
  });
  afterEach(async () => {
    await bed.closeDevices();
    await helper.unload();
  });
  after(async () => {
    await helper.stopServer();
    await bed.stop();
    tmp.remove();
  });

  it('turns a device status into a validated msg with its registry entry, and reports it online', async () => {
    await deploy();
    const a = await device(A);
    await a.publishStatus({ rssi: -70 });
    const msg = await status.until((m) => m.topic === A);
    assert.equal(msg.payload.rssi, -70);
    assert.equal(typeof msg.payload.uptimemillis, 'number');
    assert.equal(Object.keys(msg.payload).length, 10);
    assert.equal(msg.device.id, A);
    assert.equal(msg.device.online, true);
    const online = await presence.until((m) => m.topic === A);
    assert.deepEqual([online.payload.status, online.payload.reason], ['online', 'status']);
  });

  it('emits a newly reported errormessage on the third output, once', async () => {
    await deploy();
    const a = await device(A);
    await a.publishStatus({ errormessage: 'Updateserver-certificate doesn\'t match' });
    await a.publishStatus({ uptimemillis: 5000 });
    await status.until((m) => m.topic === A && m.payload.uptimemillis === 5000);
    assert.deepEqual(deviceMsgs.msgs.map((m) => m.payload.errormessage), ["Updateserver-certificate doesn't match"]);
  });

  it('ignores bad payloads with a counted warning, leaves the registry untouched and keeps working', async () => {
    const client = await deploy();
    const a = await device(A);
    await a.publishStatus({ espimage: 'GOOD-00.00.01.a' });
    await status.until((m) => m.topic === A);
    const before = JSON.stringify(client.registry.get(A)!.lastStatus);
    const warnings: string[] = [];
    helper.getNode('status').on('call:warn', (call: { args: string[] }) => warnings.push(call.args[0]));
    await a.publishRaw(`/status/${A}`, '{not json');
    await a.publishRaw(`/status/${A}`, JSON.stringify({ ...a.status, rssi: 'strong' }));
    await a.publishRaw(`/status/${A}`, JSON.stringify({ uptimemillis: 1 }));
    await a.publishRaw(`/status/${A}`, Buffer.alloc(17 * 1024, 0x20));
    await a.publishStatus({ espimage: 'GOOD-00.00.02.a' });
    await status.until((m) => m.topic === A && m.payload.espimage === 'GOOD-00.00.02.a');
    assert.equal(status.msgs.filter((m) => m.topic === A).length, 2, 'only the two good reports became msgs');
    assert.equal(warnings.length, 4);
    assert.match(warnings[0], new RegExp(`ignored message #\\d+ on /status/${A}: payload is not JSON`));
    assert.match(warnings[1], /rssi is not a number/);
    assert.match(warnings[2], /maxmillis missing/);
    assert.match(warnings[3], /exceeds 16384/);
    assert.notEqual(JSON.stringify(client.registry.get(A)!.lastStatus), before, 'the good report after the bad ones was recorded');
  });

  it('goes offline on the LWT when a device dies, and on silence past 2.5 × its interval', async () => {
    await deploy(400);
    const a = await device(A);
    const b = await device(B);
    await a.publishStatus();
    await b.publishStatus();
    await presence.until((m) => m.topic === B && m.payload.online);
    a.dropConnection();
    const lwt = await presence.until((m) => m.topic === A && !m.payload.online);
    assert.equal(lwt.payload.reason, 'lwt');
    // B stays connected but says nothing: after 2.5 × 400 ms (swept each second) it is offline.
    const silent = await presence.until((m) => m.topic === B && !m.payload.online, 5_000);
    assert.equal(silent.payload.reason, 'timeout');
  });

  it('fleet table (output 4): the filtered fleet as sorted rows with a summary, redrawn at most every 300 ms', async () => {
    await deploy();
    const [a, b, other] = [await device(B), await device(A), await device(DEVICES[2])];
    // A burst of 40 reports over ~0.4 s: a handful of redraws, not 40.
    for (let i = 0; i < 20; i++) {
      await Promise.all([a.publishStatus({ rssi: -60 - i, uptimemillis: 3_723_000 }), b.publishStatus({ rssi: -50 }), other.publishStatus()]);
      await new Promise((r) => setTimeout(r, 20));
    }
    const full = await table.until((m) => m.payload.length === 2 && m.payload[0].rssi === -50 && m.payload[1].rssi === -79);
    assert.ok(table.msgs.length <= 4, `redrawn ${table.msgs.length} times for 60 reports`);
    assert.deepEqual(full.payload.map((r: Msg) => r.id), [A, B], 'sorted by id; the unlisted device is no row');
    assert.deepEqual(full.payload[1], { id: B, name: `measure-${B}`, platform: 'esp8266', online: true, image: full.payload[1].image, rssi: -79, freeHeap: full.payload[1].freeHeap, uptime: '1h 02m', lastSeen: full.payload[1].lastSeen, lastError: '' });
    assert.equal(full.topic, 'fleet');
    assert.deepEqual(full.summary, { online: 2, offline: 0, known: 2 });
    assert.equal(full.text, '2 online · 0 offline · 2 known');
    // A going offline is redrawn too, with no status report.
    b.dropConnection();
    const after = await table.until((m) => m.payload[0].online === false);
    assert.equal(after.payload[0].id, A);
    assert.equal(after.summary.known, 2);
  });

  it('keeps the registry across a redeploy', async () => {
    let client = await deploy();
    const a = await device(A);
    await a.publishStatus({ espimage: 'KEEP-00.00.03.a' });
    await status.until((m) => m.topic === A);
    await helper.unload();
    client = await deploy();
    assert.equal(client.registry.get(A)?.image, 'KEEP-00.00.03.a');
    const res = await helper.request().get('/esp-fleet/fleet/fleet/devices');
    assert.equal(res.status, 200);
    assert.ok((res.body as { devices: { id: string }[] }).devices.some((d) => d.id === A));
  });

  it('sends a command to exactly the addressed device and reports success when it reboots', async () => {
    await deploy();
    const a = await device(A);
    const b = await device(B);
    await a.publishStatus({ uptimemillis: 90_000 });
    await b.publishStatus({ uptimemillis: 90_000 });
    await status.until((m) => m.topic === B);
    a.react((command) => {
      if (command === 'reboot') void a.publishStatus({ uptimemillis: 300 });
    });
    helper.getNode('cmd').receive({ payload: 'reboot', device: '84:F3:EB:10:00:00' });
    const outcome = await outcomes.until((m) => m.topic === A);
    assert.equal(outcome.payload.outcome, 'success');
    assert.equal(outcome.payload.command, 'reboot');
    assert.deepEqual(a.commands, ['reboot']);
    assert.deepEqual(b.commands, []);
    const summary = await summaries.until(() => true);
    assert.deepEqual([summary.payload.devices, summary.payload.success], [1, 1]);
  });

  it('fleet-wide firmware: every known device, never more than the cap in flight, outcomes as devices react', async () => {
    await deploy();
    const fleet = await Promise.all(DEVICES.map((id) => device(id)));
    let inFlight = 0;
    let peak = 0;
    for (const [i, d] of fleet.entries()) {
      await d.publishStatus({ espimage: 'FW-00.00.01.a' });
      d.react((command) => {
        if (command !== 'firmware') return;
        inFlight++;
        peak = Math.max(peak, inFlight);
        setTimeout(() => {
          inFlight--;
          if (i === 1) void d.publishStatus({ errormessage: 'Signature verification failed' });
          else if (i === 2) return; // silent: timeout
          else void d.publishStatus({ espimage: 'FW-00.00.02.a', uptimemillis: 200 });
        }, 150);
      });
    }
    await status.until(() => status.msgs.length >= DEVICES.length);
    helper.getNode('cmd').receive({ payload: 'firmware', device: '*' });
    const summary = await summaries.until(() => true, 20_000);
    assert.equal(summary.payload.devices, DEVICES.length);
    assert.deepEqual([summary.payload.success, summary.payload.failed, summary.payload.timeout], [DEVICES.length - 2, 1, 1]);
    assert.ok(peak <= 3, `at most 3 devices updating at once, saw ${peak}`);
    assert.ok(peak >= 2, 'the cap is used, not serialised');
    assert.equal(sent.msgs.length, DEVICES.length);
    assert.ok(fleet.every((d) => d.commands.length === 1 && d.commands[0] === 'firmware'));
    const failed = outcomes.msgs.find((m) => m.topic === DEVICES[1])!;
    assert.deepEqual([failed.payload.outcome, failed.payload.error], ['failed', 'Signature verification failed']);
    assert.equal(outcomes.msgs.find((m) => m.topic === DEVICES[2])!.payload.outcome, 'timeout');
    // Ready for a notification and a dashboard table: one line, and the last outcomes newest first.
    assert.match(summary.text, new RegExp(`^firmware to 8 device\\(s\\): 6 succeeded, 1 failed, 1 timed out in \\d+ s — ${DEVICES[1]}: Signature verification failed; ${DEVICES[2]}: timeout$`));
    const last = outcomes.msgs[outcomes.msgs.length - 1];
    // The window is the fleet's (it outlives a redeploy): this run's outcomes are its newest 8.
    assert.ok(last.recent.length >= DEVICES.length && last.recent.length <= 30, `window of ${last.recent.length}`);
    assert.deepEqual(last.recent.slice(0, DEVICES.length).map((r: Msg) => r.device), outcomes.msgs.map((m) => m.topic).reverse());
    assert.deepEqual(last.recent[0], { at: last.recent[0].at, device: last.payload.device, command: 'firmware', outcome: last.payload.outcome, image: last.payload.image ?? '', detail: last.payload.error ?? (last.payload.outcome === 'success' ? 'from FW-00.00.01.a' : '') });
  });

  const badCommands: [string, Msg, RegExp][] = [
    ['an unknown command', { payload: 'selfdestruct', device: A }, /unknown command "selfdestruct"/],
    ['an ESP32 command on the ESP8266 scheme', { payload: 'update/url', argument: 'https://x.local/a.bin', device: A }, /unknown command "update\/url"/],
    ['a malformed device id', { payload: 'reboot', device: '84:F3:EB:10:00' }, /invalid device id/],
    ['a list with a bad id', { payload: 'reboot', device: [A, 'nope'] }, /invalid device id "nope"/],
  ];
  for (const [what, msg, error] of badCommands) {
    it(`refuses ${what}: Catch gets the msg, nothing is published`, async () => {
      await deploy();
      const a = await device(A);
      await a.publishStatus();
      await status.until((m) => m.topic === A);
      helper.getNode('cmd').receive({ ...msg, _marker: 'bad' });
      const err = await caught.until(() => true);
      assert.equal(err._marker, 'bad');
      assert.match(err.error.message, error);
      // A valid command afterwards arrives alone: the bad one published nothing.
      helper.getNode('cmd').receive({ payload: 'cert', device: A });
      await outcomes.until((m) => m.topic === A);
      await new Promise((r) => setTimeout(r, 100));
      assert.deepEqual(a.commands, ['cert']);
    });
  }

  it('reconnects and resubscribes after a broker restart, without a redeploy', async () => {
    const client = await deploy();
    await bed.stopBroker();
    for (let i = 0; client.state === 'connected'; i++) {
      if (i > 200) throw new Error('the fleet did not notice the broker stopping');
      await new Promise((r) => setTimeout(r, 25));
    }
    await bed.startBroker();
    const a = await device(A, `${A}-after-restart`);
    const deadline = Date.now() + 30_000;
    // Publish until the fleet is back: its backoff decides when.
    while (!status.msgs.some((m) => m.topic === A && m.payload.espname === 'after-restart')) {
      if (Date.now() > deadline) throw new Error(`no status after the restart; fleet state ${client.state}`);
      await a.publishStatus({ espname: 'after-restart' });
      await new Promise((r) => setTimeout(r, 200));
    }
    assert.equal(client.state, 'connected');
  });

  it('rejects a template that cannot identify the device at deploy, and reports it to a Catch node on use', async () => {
    const broken = flow().map((n) =>
      n.id === 'fleet' ? { ...n, scheme: 'custom', statusTemplate: '/status', willTemplate: '/will/{id}', commandTemplate: '/c/{id}/{command}' } : n,
    );
    await helper.load(nodes, broken);
    const fleetNode = helper.getNode('fleet') as unknown as EspFleetNode;
    await assert.rejects(fleetNode.fleet(), /status template "\/status" cannot identify the device/);
    const first = firstMessage(['c1', 'caught']);
    helper.getNode('cmd').receive({ payload: 'reboot', device: A });
    const { nodeId, msg } = await first;
    assert.equal(nodeId, 'caught');
    assert.match((msg.error as { message: string }).message, /cannot identify the device/);
  });
});
