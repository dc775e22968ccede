import { strict as assert } from 'node:assert';
import * as path from 'node:path';
import { CaStore } from '../../lib/pki/ca-store';
import { tempDir } from '../support/temp-dir';
import { MosquittoBed } from '../support/mosquitto-bed';
import type { FakeDevice } from '../support/fake-device';
import { helper, catchNode, Collector } from '../support/node-red';
import espCa = require('../../nodes/esp-ca/esp-ca');
import espFleet = require('../../nodes/esp-fleet/esp-fleet');
import espCommand = require('../../nodes/esp-command/esp-command');
import type { EspFleetNode } from '../../nodes/esp-fleet/types';

type Msg = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any

const [A, B] = ['84f3eb200001', '84f3eb200002'];
const PASSWORD = 'correct horse battery';

/**
 * esp-command's `wifi` on a real Node-RED runtime and a real Mosquitto with mutual TLS
 * (docs/wire-contract.md, MQTT topics: wifi): the password reaches the device in the MQTT
 * payload and nowhere else, the broker keeps nothing, and a bad argument publishes nothing.
 */
describe('esp-command wifi: the password only in the MQTT payload', function () {
  this.timeout(60_000);
  const tmp = tempDir('wifi-cmd');
  let store: CaStore;
  let bed: MosquittoBed;
  let port: number;
  let sent: Collector<Msg>;
  let outcomes: Collector<Msg>;
  let summaries: Collector<Msg>;
  let caught: Collector<Msg>;
  /** Everything the node said besides its outputs: badges, errors, warnings, logs. */
  let said: string[];

  async function deploy(): Promise<void> {
    await helper.load([espCa, espFleet, espCommand, catchNode], [
      { id: 'tab', type: 'tab', label: 'wifi' },
      { id: 'ca', type: 'esp-ca', folder: store.dir },
      { id: 'fleet', type: 'esp-fleet', broker: `mqtts://localhost:${port}`, tlsSource: 'esp-ca', ca: 'ca', backendName: 'node-red', scheme: 'secure-esp8266', statusInterval: '60000', registryFile: path.join(tmp.path, 'registry.json') },
      { id: 'cmd', z: 'tab', type: 'esp-command', fleet: 'fleet', command: 'reboot', devices: '', onlineOnly: false, maxInFlight: '3', outcomeTimeout: '3', wires: [['c1'], ['c2'], ['c3']] },
      { id: 'catcher', z: 'tab', type: 'catch', scope: null, uncaught: false, wires: [['caught']] },
      ...['c1', 'c2', 'c3', 'caught'].map((id) => ({ id, z: 'tab', type: 'helper' })),
    ]);
    [sent, outcomes, summaries, caught] = ['c1', 'c2', 'c3', 'caught'].map((id) => new Collector<Msg>(id));
    said = [];
    const cmd = helper.getNode('cmd');
    for (const call of ['status', 'error', 'warn', 'log']) cmd.on(`call:${call}`, (c: { args: unknown[] }) => said.push(JSON.stringify(c.args)));
    const client = await (helper.getNode('fleet') as unknown as EspFleetNode).fleet();
    for (let i = 0; client.state !== 'connected'; i++) {
      if (i > 200) throw new Error(`fleet did not connect: ${client.state}`);
      await new Promise((r) => setTimeout(r, 25));
    }
  }

  const device = (id: string, clientId = id): Promise<FakeDevice> => bed.device(id, clientId);

  /** Every msg and every word the node produced, as one text to search. */
  const everything = (): string => JSON.stringify([sent.msgs, outcomes.msgs, summaries.msgs, caught.msgs, said]);

  before(async () => {
    bed = await MosquittoBed.start(tmp.path, [A, B]);
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

  it('valid: published with QoS 1 and not retained, success on reconnect; no output, badge or log carries the password', async () => {
    await deploy();
    const a = await device(A);
    const b = await device(B);
    await a.publishStatus({ mqttmillis: 90_000 });
    await b.publishStatus({ mqttmillis: 90_000 });
    const received: { payload: string; qos: number; retain: boolean }[] = [];
    a.client.on('message', (_topic, payload, packet) => received.push({ payload: payload.toString(), qos: packet.qos, retain: packet.retain }));
    a.react((command) => {
      // Joined the new network: the MQTT connection starts over.
      if (command === 'wifi') void a.publishStatus({ mqttmillis: 150, errormessage: '' });
    });
    b.react((command) => {
      if (command === 'wifi') void b.publishStatus({ mqttmillis: 120, errormessage: 'wifi: cannot join office within 30 s; back on home' });
    });
    const argument = { ssid: 'office', password: PASSWORD };
    helper.getNode('cmd').receive({ payload: 'wifi', device: [A, B], argument, _marker: 'good' });
    const summary = await summaries.until(() => true, 15_000);
    assert.deepEqual([summary.payload.devices, summary.payload.success, summary.payload.failed], [2, 1, 1]);
    assert.deepEqual(received, [{ payload: JSON.stringify({ ssid: 'office', password: PASSWORD }), qos: 1, retain: false }]);
    const out = outcomes.msgs.map((m) => [m.topic, m.payload.outcome, m.payload.error]).sort();
    assert.deepEqual(out, [
      [A, 'success', undefined],
      [B, 'failed', 'wifi: cannot join office within 30 s; back on home'],
    ]);
    assert.equal(sent.msgs.length, 2);
    assert.deepEqual(outcomes.msgs[0].argument, { ssid: 'office' }, 'the ssid stays on the msg, the password does not');
    assert.equal(summary._marker, 'good');
    assert.ok(said.length > 0, 'the badges were watched');
    assert.ok(!everything().includes(PASSWORD), 'the password appears in an output, a badge or a log');
    // The broker kept nothing: a subscriber that arrives later gets no command.
    const late = await device(A, `${A}-late`);
    await new Promise((r) => setTimeout(r, 400));
    assert.deepEqual(late.commands, []);
  });

  const bad: [string, unknown, RegExp][] = [
    ['a passphrase of 7 characters', { ssid: 'office', password: 'seven77' }, /wifi: password must be empty, 8 to 63/],
    ['an unknown key', { ssid: 'office', password: PASSWORD, channel: 6 }, /wifi takes only ssid and password, not "channel"/],
    ['a 33-byte ssid', { ssid: 'x'.repeat(33), password: PASSWORD }, /ssid must be 1 to 32 bytes/],
    ['JSON text with a control character in the passphrase', JSON.stringify({ ssid: 'office', password: `${PASSWORD}\n` }), /password must be empty/],
  ];
  for (const [what, argument, error] of bad) {
    it(`invalid (${what}): Catch gets the msg without the password, nothing is published`, async () => {
      await deploy();
      const a = await device(A);
      await a.publishStatus();
      helper.getNode('cmd').receive({ payload: 'wifi', device: A, argument, _marker: 'bad' });
      const err = await caught.until(() => true);
      assert.equal(err._marker, 'bad');
      assert.match(err.error.message, error);
      assert.equal(typeof err.argument, 'object');
      assert.ok(!('password' in err.argument), `Catch msg argument ${JSON.stringify(err.argument)}`);
      assert.equal(err.argument.ssid, typeof argument === 'string' ? 'office' : (argument as { ssid: string }).ssid);
      // A valid command afterwards arrives alone: the bad one published nothing.
      helper.getNode('cmd').receive({ payload: 'cert', device: A });
      await outcomes.until((m) => m.topic === A);
      await new Promise((r) => setTimeout(r, 100));
      assert.deepEqual(a.commands, ['cert']);
      const seven = (argument as { password?: string }).password ?? PASSWORD;
      assert.ok(!everything().includes(seven) && !everything().includes(PASSWORD), 'the password appears in an output, a badge or a log');
    });
  }

  it('while the broker is down, a refused wifi msg carries no password either', async () => {
    await deploy();
    const client = await (helper.getNode('fleet') as unknown as EspFleetNode).fleet();
    await bed.stopBroker();
    try {
      for (let i = 0; client.state === 'connected'; i++) {
        if (i > 200) throw new Error('the fleet did not notice the broker stopping');
        await new Promise((r) => setTimeout(r, 25));
      }
      helper.getNode('cmd').receive({ payload: 'wifi', device: A, argument: { ssid: 'office', password: PASSWORD } });
      const err = await caught.until(() => true);
      assert.match(err.error.message, /not connected to the broker/);
      assert.deepEqual(err.argument, { ssid: 'office' });
      assert.ok(!everything().includes(PASSWORD));
    } finally {
      await bed.startBroker();
    }
  });
});
