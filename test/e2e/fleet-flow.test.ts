import { strict as assert } from 'node:assert';
import * as path from 'node:path';
import { CaStore } from '../../lib/pki/ca-store';
import { writeMosquittoConfig } from '../../lib/mosquitto/folders';
import { buildSimImage } from '../../lib/sim/sim-image';
import { SimulatedDevice } from '../../lib/sim/simulated-device';
import { deviceIds, identityFromFolder } from '../../lib/sim/fleet-simulator';
import { connectTls } from '../support/mqtt-client';
import { tempDir } from '../support/temp-dir';
import { freePort, startMosquitto, RunningMosquitto } from '../support/mosquitto';
import { helper, catchNode, Collector } from '../support/node-red';
import espCa = require('../../nodes/esp-ca/esp-ca');
import espFleet = require('../../nodes/esp-fleet/esp-fleet');
import espStatus = require('../../nodes/esp-status/esp-status');
import espCommand = require('../../nodes/esp-command/esp-command');
import espFirmwareServer = require('../../nodes/esp-firmware-server/esp-firmware-server');
import espBroker = require('../../nodes/esp-broker/esp-broker');
import { opensslEspHandshake } from '../support/openssl';
import type { EspCaNode } from '../../nodes/esp-ca/types';

type Msg = { topic?: string; payload?: unknown; [key: string]: unknown };
type Outcome = { device: string; outcome: string; image?: string; error?: string };

const P = 'ESP8266_FLOW';
const nodes = [espCa, espFleet, espStatus, espCommand, espFirmwareServer, catchNode];

class Inbox extends Collector<Msg> {}

interface BrokerUnderTest {
  name: string;
  /** Starts the broker (or returns the flow nodes that run it), on `port`, for the CA in `caDir`. */
  start(store: CaStore, port: number, dir: string): Promise<{ flowNodes: Msg[]; afterRevoke(): Promise<void>; stop(): Promise<void> }>;
}

const mosquitto: BrokerUnderTest = {
  name: 'a real Mosquitto with the generated config',
  async start(store, port, dir) {
    const setup = await writeMosquittoConfig(store, { dir: path.join(dir, 'mosquitto'), serverName: 'localhost', backendName: 'node-red', port });
    const broker: RunningMosquitto = await startMosquitto(setup.dir);
    // The esp-ca node keeps the folder's CRL current; mosquitto reads it on SIGHUP.
    return { flowNodes: [], afterRevoke: () => broker.reload(), stop: () => broker.stop() };
  },
};

/** The default where nothing is installed: aedes inside Node-RED, from the same esp-ca. */
const embedded: BrokerUnderTest = {
  name: 'the embedded broker (esp-broker)',
  async start(_store, port) {
    const flowNodes = [{ id: 'broker', z: 'tab', x: 100, y: 500, type: 'esp-broker', ca: 'ca', port: String(port), bindAddress: '127.0.0.1', serverNames: 'localhost', maxClients: '50', scheme: 'secure-esp8266', wires: [['br']] }];
    // The broker reloads the CRL itself and drops a revoked client: nothing to do after a revoke.
    return { flowNodes, afterRevoke: async () => undefined, stop: async () => undefined };
  },
};

/**
 * The flow a user wires: CA, fleet connection, status, command and update server nodes; the
 * devices are simulated, everything else is real (TLS, certificates, HTTPS, signatures).
 */
export function describeFleetFlow(broker: BrokerUnderTest, extraNodes: unknown[] = []): void {
  describe(`the fleet flow end to end, against ${broker.name}`, function () {
    this.timeout(120_000);
    const tmp = tempDir('e2e-flow');
    const ids = deviceIds('a4cf14', 6);
    const revoked = deviceIds('a4cf15', 1)[0];
    const devices: SimulatedDevice[] = [];
    let running: Awaited<ReturnType<BrokerUnderTest['start']>>;
    let brokerPort: number;
    let fwPort: number;
    let status: Inbox;
    let presence: Inbox;
    let outcomes: Inbox;
    let firmwareOut: Inbox;
    let audit: Inbox;
    let caught: Inbox;
    let caDir: string;

    const flow = (): Msg[] => [
      { id: 'tab', type: 'tab', label: 'fleet' },
      { id: 'ca', type: 'esp-ca', folder: caDir },
      { id: 'fleet', type: 'esp-fleet', broker: `mqtts://localhost:${brokerPort}`, tlsSource: 'esp-ca', ca: 'ca', backendName: 'node-red', scheme: 'secure-esp8266', statusInterval: '1000', registryFile: path.join(tmp.path, 'registry.json') },
      { id: 'status', z: 'tab', x: 100, y: 100, type: 'esp-status', fleet: 'fleet', wires: [['st'], ['pr'], []] },
      { id: 'cmd', z: 'tab', x: 100, y: 200, type: 'esp-command', fleet: 'fleet', command: 'firmware', devices: '*', onlineOnly: true, maxInFlight: '3', outcomeTimeout: '30', wires: [[], ['oc'], []] },
      { id: 'fw', z: 'tab', x: 100, y: 300, type: 'esp-firmware-server', ca: 'ca', hostname: 'localhost', port: String(fwPort), bindAddress: '127.0.0.1', downloadPath: 'fw', clientCertificates: 'required', folder: path.join(tmp.path, 'firmware'), maxDownloads: '10', mqttport: String(brokerPort), statusinterval: '1000', retrytimeout: '1000', wires: [['fo'], ['au']] },
      { id: 'catcher', z: 'tab', x: 100, y: 400, type: 'catch', scope: null, uncaught: false, wires: [['ca-out']] },
      ...running.flowNodes,
      ...['st', 'pr', 'oc', 'fo', 'au', 'ca-out', 'br'].map((id) => ({ id, z: 'tab', x: 300, y: 100, type: 'helper' })),
    ];

    async function firmwareAction(msg: Msg): Promise<Msg> {
      const before = firmwareOut.msgs.length;
      helper.getNode('fw').receive(msg);
      return firmwareOut.until((m) => firmwareOut.msgs.indexOf(m) >= before);
    }

    before(async () => {
      caDir = path.join(tmp.path, 'ca');
      const store = await CaStore.open({ dir: caDir });
      for (const id of [...ids, revoked]) await store.issueDevice(id);
      brokerPort = await freePort();
      fwPort = await freePort();
      running = await broker.start(store, brokerPort, tmp.path);
      await store.idle(); // from here on the esp-ca node is the store's only writer
      await helper.startServer();
      await helper.load([...nodes, ...extraNodes] as never, flow());
      [status, presence, outcomes, firmwareOut, audit, caught] = ['st', 'pr', 'oc', 'fo', 'au', 'ca-out'].map((id) => new Inbox(id));
    });
    // Each test looks only at the msgs since it began: none passes on an earlier test's msg.
    beforeEach(() => [status, presence, outcomes, firmwareOut, audit, caught].forEach((c) => c.mark()));
    after(async () => {
      await Promise.all(devices.map((d) => d.stop()));
      await helper.unload();
      await helper.stopServer();
      await running?.stop();
      tmp.remove();
    });

    it('publishes simulator builds through the node, signed with its key', async () => {
      const key = (await firmwareAction({ topic: 'public-key' })).payload as { pem: string };
      for (const version of ['1.0.0', '1.1.0']) {
        const data = buildSimImage({ image: `${P}-${version}`, build: 'test', trusts: [key.pem] }, 48 * 1024);
        const out = (await firmwareAction({ topic: 'publish', payload: data, platform: 'esp8266', product: P, version })).payload as { signature: string; image: { name: string } };
        assert.deepEqual([out.signature, out.image.name], ['signed', `${P}-${version}`]);
      }
      for (const id of ids) {
        const d = new SimulatedDevice({ id, bootstrap: { host: 'localhost', port: fwPort, path: '/fw' }, files: await identityFromFolder(path.join(caDir, 'devices'))(id), image: `${P}-1.0.0`, trusts: [key.pem], rebootDelayMs: 200, timing: 'fast' });
        devices.push(d);
        d.start();
      }
    });

    it('devices appear in esp-status with their image, online', async () => {
      for (const id of ids) {
        const msg = await status.until((m) => m.topic === id);
        assert.equal((msg.payload as { espimage: string }).espimage, `${P}-1.0.0`);
        await presence.until((m) => m.topic === id && (m.payload as { online: boolean }).online);
      }
      assert.ok(audit.sinceMark().some((m) => m.topic === 'file' && (m.payload as { path: string }).path === '/fw/config.json'));
    });

    it('esp-command firmware to one device: success, and the device reports the new image', async () => {
      helper.getNode('cmd').receive({ payload: 'firmware', device: ids[0] });
      const outcome = (await outcomes.until((m) => m.topic === ids[0])).payload as Outcome;
      assert.deepEqual([outcome.outcome, outcome.image], ['success', `${P}-1.1.0`]);
      await status.until((m) => m.topic === ids[0] && (m.payload as { espimage: string }).espimage === `${P}-1.1.0`);
      assert.ok(audit.sinceMark().some((m) => m.topic === 'download-complete' && (m.payload as { deviceId: string }).deviceId === ids[0]));
    });

    it('fleet-wide firmware: the rest update within the cap and all end on the latest image', async () => {
      helper.getNode('cmd').receive({ payload: 'firmware', device: ids.slice(1) });
      for (const id of ids.slice(1)) {
        const o = (await outcomes.until((m) => m.topic === id)).payload as Outcome;
        assert.deepEqual([o.outcome, o.image], ['success', `${P}-1.1.0`], JSON.stringify(o));
      }
      assert.ok(devices.every((d) => d.image === `${P}-1.1.0`));
      assert.deepEqual(caught.msgs, []);
    });

    it('a revoked device cannot connect to the broker', async () => {
      const store = await (helper.getNode('ca') as unknown as EspCaNode).store();
      const files = await identityFromFolder(path.join(caDir, 'devices'))(revoked);
      await store.revoke(store.currentIdentity('device', revoked)!.serial, 'keyCompromise');
      await store.idle();
      await running.afterRevoke();
      await assert.rejects(connectTls(brokerPort, files, revoked), /refused|closed/);
    });

    it('the broker speaks TLS 1.2 and echoes max_fragment_length 512, as ESP8266 BearSSL asks', async () => {
      const dir = path.join(caDir, 'devices');
      const out = await opensslEspHandshake(brokerPort, { cert: path.join(dir, `${ids[0]}.crt`), key: path.join(dir, `${ids[0]}.key`), ca: path.join(dir, 'ca.crt') });
      assert.match(out, /Protocol\s*: TLSv1\.2/);
      assert.match(out, /TLS server extension "max fragment length"/);
      assert.match(out, /Verify return code: 0 \(ok\)/);
    });
  });
}

describeFleetFlow(mosquitto);
describeFleetFlow(embedded, [espBroker]);
