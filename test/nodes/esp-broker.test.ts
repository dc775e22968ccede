import { strict as assert } from 'node:assert';
import * as net from 'node:net';
import * as path from 'node:path';
import { CaStore } from '../../lib/pki/ca-store';
import { tempDir } from '../support/temp-dir';
import { freePort } from '../support/mosquitto';
import { FakeDevice } from '../support/fake-device';
import { helper, catchNode } from '../support/node-red';
import espCa = require('../../nodes/esp-ca/esp-ca');
import espBroker = require('../../nodes/esp-broker/esp-broker');
import espFleet = require('../../nodes/esp-fleet/esp-fleet');
import espStatus = require('../../nodes/esp-status/esp-status');
import type { EspFleetNode } from '../../nodes/esp-fleet/types';

type Msg = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any
interface Status {
  fill: string;
  text: string;
}

const A = '84f3eb00003a';
const nodes = [espCa, espBroker, espFleet, espStatus, catchNode];

class Collector {
  readonly msgs: Msg[] = [];
  constructor(nodeId: string) {
    helper.getNode(nodeId).on('input', (m: Msg) => this.msgs.push(m));
  }
  async until(match: (m: Msg) => boolean, ms = 10_000): Promise<Msg> {
    for (const end = Date.now() + ms; Date.now() < end; await new Promise((r) => setTimeout(r, 20))) {
      const found = this.msgs.find(match);
      if (found) return found;
    }
    throw new Error(`no matching msg within ${ms} ms; got ${JSON.stringify(this.msgs.map((m) => [m.topic, m.payload])).slice(0, 600)}`);
  }
}

describe('esp-broker node (real Node-RED runtime): esp-fleet and devices on the embedded broker', function () {
  this.timeout(60_000);
  const tmp = tempDir('broker-node');
  let store: CaStore;
  let port: number;
  const devices: FakeDevice[] = [];

  const flow = (broker: Msg = {}): Msg[] => [
    { id: 'tab', type: 'tab', label: 'broker' },
    { id: 'ca', type: 'esp-ca', folder: store.dir },
    { id: 'fleet', type: 'esp-fleet', broker: `mqtts://localhost:${port}`, tlsSource: 'esp-ca', ca: 'ca', backendName: 'node-red', scheme: 'secure-esp8266', registryFile: path.join(tmp.path, 'registry.json') },
    { id: 'brk', z: 'tab', x: 100, y: 100, type: 'esp-broker', ca: 'ca', port: String(port), bindAddress: '127.0.0.1', serverNames: 'localhost', scheme: 'secure-esp8266', wires: [['events']], ...broker },
    { id: 'status', z: 'tab', x: 100, y: 100, type: 'esp-status', fleet: 'fleet', wires: [['s1'], ['s2'], ['s3']] },
    { id: 'catcher', z: 'tab', x: 100, y: 100, type: 'catch', scope: null, uncaught: false, wires: [['caught']] },
    ...['events', 's1', 's2', 's3', 'caught'].map((id) => ({ id, z: 'tab', x: 100, y: 100, type: 'helper' })),
  ];

  before(async () => {
    store = await CaStore.open({ dir: path.join(tmp.path, 'ca') });
    await store.issueDevice(A);
    await store.idle(); // the esp-ca node opens the same folder
    port = await freePort();
    await helper.startServer();
  });
  afterEach(async () => {
    await Promise.all(devices.splice(0).map((d) => d.close()));
    await helper.unload();
  });
  after(async () => {
    await helper.stopServer();
    tmp.remove();
  });

  async function deploy(broker?: Msg): Promise<{ events: Collector; status: Collector; caught: Collector; statuses: Status[] }> {
    const statuses: Status[] = [];
    await helper.load(nodes, flow(broker));
    helper.getNode('brk').on('call:status', (call: { args: Status[] }) => statuses.push(call.args[0]));
    // Collecting from the start: a failure reaches the Catch node before the red badge.
    const collected = { events: new Collector('events'), status: new Collector('s1'), caught: new Collector('caught'), statuses };
    // Started (green) or failed (red): the broker listens, or never will.
    for (let i = 0; !statuses.some((s) => s.fill === 'green' || s.fill === 'red'); i++) {
      if (i > 400) throw new Error(`esp-broker did not start: ${JSON.stringify(statuses)}`);
      await new Promise((r) => setTimeout(r, 25));
    }
    return collected;
  }

  it('a device on the embedded broker shows up in esp-status output; connect events and the badge count it', async () => {
    const { events, status, statuses } = await deploy();
    const client = await (helper.getNode('fleet') as unknown as EspFleetNode).fleet();
    for (let i = 0; client.state !== 'connected'; i++) {
      if (i > 400) throw new Error(`fleet did not connect: ${client.state}`);
      await new Promise((r) => setTimeout(r, 25));
    }
    const backend = await events.until((m) => m.topic === 'connected' && m.payload.kind === 'backend');
    assert.equal(backend.payload.identity, 'node-red');
    const device = await FakeDevice.connect(port, store, A);
    devices.push(device);
    await device.publishStatus({ rssi: -55 });
    const msg = await status.until((m) => m.topic === A);
    assert.equal(msg.payload.rssi, -55);
    await events.until((m) => m.topic === 'connected' && m.payload.identity === A && m.payload.kind === 'device');
    // The badge follows events at most every 500 ms.
    for (let i = 0; !statuses.some((s) => s.fill === 'green' && s.text === '1 device connected · 1 backend'); i++) {
      if (i > 100) throw new Error(JSON.stringify(statuses));
      await new Promise((r) => setTimeout(r, 25));
    }
  });

  it('applies the limits from the editor; the badge counts refusals and each one is a msg with its cause', async () => {
    const { events, statuses } = await deploy({ sessionsPerDevice: '1', handshakeTimeout: '1' });
    const first = await FakeDevice.connect(port, store, A, 'first');
    devices.push(first);
    await assert.rejects(FakeDevice.connect(port, store, A, 'second'), /refused|closed/);
    const msg = await events.until((m) => m.topic === 'refused' && m.payload.cause === 'sessions-per-identity');
    assert.equal(msg.payload.identity, A);
    // A TCP connection that never starts TLS is dropped after the 1 s deadline.
    const idle = net.connect(port, '127.0.0.1');
    idle.on('error', () => undefined);
    const closedAfter = await new Promise<number>((resolve) => {
      const t0 = Date.now();
      idle.on('close', () => resolve(Date.now() - t0));
    });
    assert.ok(closedAfter < 3_000, `idle socket held ${closedAfter} ms`);
    await events.until((m) => m.topic === 'refused' && m.payload.cause === 'handshake-timeout');
    for (let i = 0; !statuses.some((s) => s.fill === 'green' && /· 2 refused$/.test(s.text)); i++) {
      if (i > 100) throw new Error(`no badge with 2 refusals: ${JSON.stringify(statuses)}`);
      await new Promise((r) => setTimeout(r, 25));
    }
  });

  it('in a flood of refusals sends 20 a second one by one and counts the rest in a refused-summary msg', async () => {
    const { events } = await deploy({ maxHandshakesPerAddress: '1', handshakeTimeout: '30' });
    const sockets: net.Socket[] = [];
    try {
      // One handshake slot for 127.0.0.2: the first socket holds it, the other 59 are refused.
      for (let i = 0; i < 60; i++) sockets.push(net.connect({ port, host: '127.0.0.1', localAddress: '127.0.0.2' }).on('error', () => undefined));
      const summary = await events.until((m) => m.topic === 'refused-summary', 5_000);
      const single = events.msgs.filter((m) => m.topic === 'refused').length;
      assert.equal(single, 20);
      assert.equal(summary.payload.count, 59 - single);
      assert.deepEqual(summary.payload.byCause, { 'handshakes-per-address': 59 - single });
    } finally {
      sockets.forEach((s) => s.destroy());
    }
  });

  it('frees the port on redeploy: the next deploy binds it again, and nothing listens after the last one', async () => {
    await deploy();
    await helper.unload();
    const { events } = await deploy();
    const device = await FakeDevice.connect(port, store, A);
    devices.push(device);
    await events.until((m) => m.topic === 'connected' && m.payload.identity === A);
    await Promise.all(devices.splice(0).map((d) => d.close()));
    await helper.unload();
    await assert.rejects(FakeDevice.connect(port, store, A), /refused|closed/);
  });

  it('reports a port in use with node.error (to Catch nodes) and a red badge, without crashing', async () => {
    // The fleet node dials the port too: hang up on it so the blocker can close.
    const blocker = net.createServer((socket) => socket.destroy());
    await new Promise<void>((resolve) => blocker.listen(port, '127.0.0.1', resolve));
    try {
      const { caught, statuses } = await deploy();
      const err = await caught.until(() => true);
      assert.match(String((err.error as { message: string }).message), /EADDRINUSE/);
      assert.ok(statuses.some((s) => s.fill === 'red' && /EADDRINUSE/.test(s.text)), JSON.stringify(statuses));
    } finally {
      await new Promise((r) => blocker.close(r));
    }
  });
});
