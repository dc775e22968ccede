import { strict as assert } from 'node:assert';
import * as path from 'node:path';
import { tempDir } from '../support/temp-dir';
import { MosquittoBed } from '../support/mosquitto-bed';
import type { FakeDevice } from '../support/fake-device';
import { helper, catchNode, Collector as SharedCollector } from '../support/node-red';
import espCa = require('../../nodes/esp-ca/esp-ca');
import espFleet = require('../../nodes/esp-fleet/esp-fleet');
import espRollout = require('../../nodes/esp-rollout/esp-rollout');
import type { EspFleetNode } from '../../nodes/esp-fleet/types';

type Msg = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any
class Collector extends SharedCollector<Msg> {}

const DEVICES = Array.from({ length: 6 }, (_, i) => `84f3eb2000${i.toString(16).padStart(2, '0')}`);
const OLD = 'GARAGE-1.0.0';
const NEW = 'GARAGE-2.0.0';
const nodes = [espCa, espFleet, espRollout, catchNode];

describe('esp-rollout on a real Mosquitto (devices that update, refuse or stay silent)', function () {
  this.timeout(90_000);
  const tmp = tempDir('rollout');
  let bed: MosquittoBed;
  let devicesOut: Collector;
  let statusOut: Collector;
  let caught: Collector;
  let run = 0;

  const flow = (folder: string, more: Msg = {}): Msg[] => [
    { id: 'tab', type: 'tab', label: 'rollout' },
    { id: 'ca', type: 'esp-ca', folder: bed.store.dir },
    { id: 'fleet', type: 'esp-fleet', broker: `mqtts://localhost:${bed.port}`, tlsSource: 'esp-ca', ca: 'ca', backendName: 'node-red', scheme: 'secure-esp8266', registryFile: path.join(folder, 'registry.json') },
    { id: 'ro', z: 'tab', x: 100, y: 100, type: 'esp-rollout', fleet: 'fleet', target: NEW, devices: DEVICES.join(','), canary: '1', waveSize: '2', cap: '2', soakS: '1', updateTimeoutS: '30', haltAt: '1', folder, wires: [['d'], ['s']], ...more },
    { id: 'catcher', z: 'tab', x: 100, y: 100, type: 'catch', scope: null, uncaught: false, wires: [['caught']] },
    ...['d', 's', 'caught'].map((id) => ({ id, z: 'tab', x: 100, y: 100, type: 'helper' })),
  ];

  async function deploy(folder: string, more: Msg = {}): Promise<void> {
    await helper.load(nodes, flow(folder, more));
    [devicesOut, statusOut, caught] = ['d', 's', 'caught'].map((id) => new Collector(id));
    const client = await (helper.getNode('fleet') as unknown as EspFleetNode).fleet();
    for (let i = 0; client.state !== 'connected'; i++) {
      if (i > 200) throw new Error(`fleet did not connect: ${client.state}`);
      await new Promise((r) => setTimeout(r, 25));
    }
  }

  /** The devices online on the old image; each reacts to `firmware` as `react` says. */
  async function devices(react: (d: FakeDevice) => void): Promise<FakeDevice[]> {
    const list = await Promise.all(DEVICES.map((id) => bed.device(id)));
    for (const d of list) {
      d.react(() => react(d));
      await d.publishStatus({ espimage: OLD, errormessage: '' });
    }
    return list;
  }

  const registryKnows = async (): Promise<void> => {
    const client = await (helper.getNode('fleet') as unknown as EspFleetNode).fleet();
    for (let i = 0; DEVICES.some((id) => client.registry.get(id)?.image !== OLD); i++) {
      if (i > 200) throw new Error('the registry never heard every device');
      await new Promise((r) => setTimeout(r, 25));
    }
  };

  before(async () => {
    bed = await MosquittoBed.start(tmp.path, DEVICES);
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

  it('halts when a wave trips the threshold (a device refuses the image); nobody outside that wave starts', async () => {
    const folder = path.join(tmp.path, `run-${++run}`);
    await deploy(folder);
    const tampered = DEVICES[3];
    const list = await devices((d) => void d.publishStatus(d.id === tampered ? { errormessage: 'Update failed: signature verification failed' } : { espimage: NEW, errormessage: '' }));
    await registryKnows();
    helper.getNode('ro').receive({ topic: 'start' });
    const halted = await statusOut.until((m) => m.topic === 'halted', 20_000);
    assert.match(halted.payload.reason, /1 of 2 devices of wave 3 failed/);
    assert.match(halted.text, /halted/);
    const failed = await devicesOut.until((m) => m.payload.state === 'failed');
    assert.equal(failed.topic, tampered);
    assert.match(failed.payload.reason, /refused the image: Update failed: signature verification failed/);
    // Every device msg carries the whole rollout as table rows, queued devices included.
    assert.deepEqual(failed.rows.map((r: Msg) => r.device), DEVICES);
    assert.equal(failed.rows.find((r: Msg) => r.device === tampered).state, 'failed');
    // Wave 3 is (3, 4): 4 still finishes; 5 never gets the command.
    await devicesOut.until((m) => m.topic === DEVICES[4] && m.payload.state === 'passed', 10_000);
    await new Promise((r) => setTimeout(r, 1_500));
    assert.deepEqual(list.map((d) => d.commands.length), [1, 1, 1, 1, 1, 0]);
    assert.ok(statusOut.msgs.filter((m) => m.topic === 'wave' && m.payload.state === 'passed').length >= 2, 'waves 1 and 2 passed their gates');
    assert.equal(caught.msgs.length, 0);
  });

  it('after a restart it resumes: devices caught mid-update are not commanded again, and are judged by what they report', async () => {
    const folder = path.join(tmp.path, `run-${++run}`);
    await deploy(folder, { canary: '2', cap: '2', haltAt: '50%' });
    const list = await devices(() => undefined); // they take the command, then say nothing yet
    await registryKnows();
    helper.getNode('ro').receive({ topic: 'start' });
    await devicesOut.until((m) => m.payload.state === 'updating' && m.topic === DEVICES[1]);
    await helper.unload();
    await deploy(folder, { canary: '2', cap: '2', haltAt: '50%' });
    // The two updating canaries now report the target: the rollout, read back, carries on.
    for (const d of list.slice(0, 2)) await d.publishStatus({ espimage: NEW });
    await devicesOut.until((m) => m.topic === DEVICES[1] && m.payload.state === 'passed', 15_000);
    await devicesOut.until((m) => m.topic === DEVICES[2] && m.payload.state === 'updating', 15_000);
    assert.deepEqual(list.slice(0, 2).map((d) => d.commands.length), [1, 1], 'no second command after the restart');
    helper.getNode('ro').receive({ topic: 'abort' });
    const answer = await statusOut.until((m) => m.topic === 'status');
    assert.equal(answer.payload.status, 'aborted');
  });

  it('bad input goes to Catch and starts nothing: a bad target, a wave size of 0, a threshold out of range', async () => {
    const folder = path.join(tmp.path, `run-${++run}`);
    await deploy(folder);
    const list = await devices(() => undefined);
    await registryKnows();
    for (const payload of [{ target: 'no spaces allowed' }, { waveSize: 0 }, { haltAt: '150%' }]) {
      caught.mark();
      helper.getNode('ro').receive({ topic: 'start', payload });
      const err = await caught.until(() => true);
      assert.match(err.error.message, /target must be|wave size|halt threshold/);
    }
    helper.getNode('ro').receive({ topic: 'pause' });
    assert.match((await caught.until((m) => /no rollout/.test(m.error.message))).error.message, /send start first/);
    await new Promise((r) => setTimeout(r, 300));
    assert.ok(list.every((d) => d.commands.length === 0), 'nothing was sent');
  });
});
