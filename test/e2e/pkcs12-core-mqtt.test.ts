import { strict as assert } from 'node:assert';
import { readFileSync, statSync } from 'node:fs';
import type { ConnectionOptions } from 'node:tls';
import * as path from 'node:path';
import mqtt, { MqttClient } from 'mqtt';
import { CaStore } from '../../lib/pki/ca-store';
import { nodeRedChoice, resolveFromNodeRed } from '../../scripts/node-red-choice';
import { freePort } from '../support/mosquitto';
import { connectTls, identityFromFiles } from '../support/mqtt-client';
import { FlowNode, NodeRedProcess, tap, untilTapped } from '../support/node-red-process';
import { openssl } from '../support/openssl';
import { tempDir } from '../support/temp-dir';

const NODE_RED = nodeRedChoice();
const DEVICE = '84f3eb5a5b5c';
const BACKEND = 'node-red';
const PASSWORD = 'p12 password for the core node';

/**
 * Node-RED's core tls-config reads a PKCS#12 file (certType "pfx", property `p12`) since
 * Node-RED 5.0; 4.1's tls-config only takes PEM certificate, key and CA. Checked from the
 * runtime's own 05-tls.js, so this test changes its claim only when Node-RED does.
 */
function coreTlsConfigTakesP12(): boolean {
  const source = readFileSync(resolveFromNodeRed(NODE_RED, '@node-red/nodes/core/network/05-tls.js'), 'utf8');
  return /certType === "pfx"/.test(source) && /opts\.pfx = this\.pfx/.test(source);
}

/**
 * An esp-cert-issuer exports the backend identity as a .p12 in a real, secured Node-RED; the
 * core MQTT nodes then connect with that one file to the embedded broker (esp-broker) and
 * receive a device's status.
 */
describe(`PKCS#12 export used by Node-RED's core tls-config (Node-RED ${NODE_RED.version}, Node.js ${process.versions.node})`, function () {
  this.timeout(120_000);
  const tmp = tempDir('p12-core');
  const userDir = path.join(tmp.path, 'user');
  const caDir = path.join(userDir, 'esp-fleet-ca');
  let red: NodeRedProcess;
  let port: number;
  let deviceFiles: { ca: string; cert: string; key: string };
  const clients: MqttClient[] = [];

  before(async () => {
    // Issued before Node-RED opens the store: afterwards only its esp-ca writes it.
    const store = await CaStore.open({ dir: caDir });
    await store.issueServer({ commonName: 'localhost' });
    await store.issueBackend({ commonName: BACKEND });
    const device = await store.issueDevice(DEVICE);
    deviceFiles = { ca: device.files.ca!, cert: device.files.certificate, key: device.files.privateKey! };
    await store.idle();
    port = await freePort();
    red = await NodeRedProcess.start(userDir);
  });
  afterEach(async () => {
    for (const c of clients.splice(0)) await c.endAsync(true);
  });
  after(async () => {
    await red?.stop();
    tmp.remove();
  });

  /** The esp-ca, the embedded broker and an inject → esp-cert-issuer (p12) → tap. */
  function fleetNodes(file: string): FlowNode[] {
    const flows: FlowNode[] = [
      { id: 'tab', type: 'tab', label: 'p12' },
      { id: 'ca', type: 'esp-ca', folder: caDir },
      { id: 'brk', z: 'tab', x: 100, y: 60, type: 'esp-broker', ca: 'ca', port: String(port), bindAddress: '127.0.0.1', serverNames: 'localhost', scheme: 'secure-esp8266', wires: [[]] },
      {
        id: 'inj', z: 'tab', x: 100, y: 120, type: 'inject', name: '', props: [{ p: 'payload' }, { p: 'topic', vt: 'str' }], repeat: '', once: false,
        topic: 'p12', payload: JSON.stringify({ kind: 'backend', name: BACKEND, password: PASSWORD, file }), payloadType: 'json', wires: [['iss']],
      },
      { id: 'iss', z: 'tab', x: 300, y: 120, type: 'esp-cert-issuer', ca: 'ca', action: 'p12', wires: [['iss-out']] },
      { id: 'iss-out', z: 'tab', x: 500, y: 120, type: 'debug' },
    ];
    tap(flows, 'iss-out');
    return flows;
  }

  /** Step one: deploy and press the inject; resolves with the issuer's output and the file's path. */
  async function exportP12(name: string): Promise<{ file: string; p12: Buffer; payload: Record<string, unknown> }> {
    const flows = fleetNodes(`certs/${name}`);
    const from = await red.deploy(flows);
    await red.waitForLog((e) => /^MQTT broker on mqtts:/.test(e.msg), 30_000, from);
    await red.inject('inj');
    const out = await untilTapped(red, 'iss-out', () => true, 20_000, from);
    const payload = out.payload as Record<string, unknown>;
    assert.equal(out.topic, 'p12');
    const p12 = Buffer.from((payload.p12 as { data: number[] }).data);
    return { file: payload.file as string, p12, payload };
  }

  /** A device publishes its status until `received` settles (bounded: 40 × 250 ms). */
  async function publishStatusUntil(received: Promise<unknown>): Promise<void> {
    const device = await connectTls(port, identityFromFiles(deviceFiles.ca, deviceFiles.cert, deviceFiles.key), DEVICE);
    clients.push(device);
    let done = false;
    void received.then(() => (done = true), () => (done = true));
    for (let i = 0; i < 40 && !done; i++) {
      await device.publishAsync(`/status/${DEVICE}`, JSON.stringify({ id: DEVICE, version: 'ESP8266_SIM_D1MINI-00.00.01', uptime: i }));
      await new Promise((r) => setTimeout(r, 250));
    }
  }

  it('esp-cert-issuer writes the backend .p12 (0600, the password nowhere in the output) and openssl 3 reads it without -legacy', async () => {
    const { file, p12, payload } = await exportP12('backend.p12');
    assert.equal(file, path.join(userDir, 'certs', 'backend.p12'));
    assert.equal(statSync(file).mode & 0o777, 0o600);
    assert.ok(readFileSync(file).equals(p12), 'the file is the msg’s p12');
    assert.equal(payload.kind, 'backend');
    assert.equal(payload.commonName, BACKEND);
    const logged = red.logs.map((e) => e.msg).join('\n');
    assert.ok(!JSON.stringify(payload).includes(PASSWORD), 'no password in the output msg');
    assert.ok(!logged.includes(PASSWORD), 'no password in the log');
    const r = openssl(['pkcs12', '-info', '-nodes', '-in', file, '-passin', `pass:${PASSWORD}`]);
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stdout, /subject=CN = node-red/);
    assert.match(r.stdout, /BEGIN PRIVATE KEY/);
  });

  it('with the .p12 alone, as the TLS options the core tls-config gives mqtt.js (pfx, passphrase), the backend subscribes to /status/+ and gets a device status', async () => {
    const { file } = await exportP12('mqttjs.p12');
    // What 05-tls.js addTLSOptions builds for certType "pfx": no separate CA, the file's chain entry trusts the broker.
    // mqtt.js hands its options to tls.connect; its own type leaves pfx out.
    const tlsOptions: ConnectionOptions = { pfx: readFileSync(file), passphrase: PASSWORD, servername: 'localhost', rejectUnauthorized: true };
    const backend = await mqtt.connectAsync({ protocol: 'mqtts', host: '127.0.0.1', port, clientId: 'p12-backend', reconnectPeriod: 0, connectTimeout: 5_000, ...tlsOptions } as mqtt.IClientOptions);
    clients.push(backend);
    await backend.subscribeAsync('/status/+');
    const received = new Promise<{ topic: string; payload: string }>((resolve) => backend.once('message', (topic, payload) => resolve({ topic, payload: payload.toString() })));
    await publishStatusUntil(received);
    const m = await Promise.race([received, new Promise<never>((_, reject) => setTimeout(() => reject(new Error('no status')), 1_000))]);
    assert.equal(m.topic, `/status/${DEVICE}`);
    assert.equal((JSON.parse(m.payload) as { id: string }).id, DEVICE);
  });

  if (NODE_RED.major >= 5) {
    it('Node-RED 5: core tls-config (certType pfx) + mqtt-broker + mqtt in receive the status with the exported identity', async () => {
      assert.ok(coreTlsConfigTakesP12(), 'Node-RED 5 tls-config reads PKCS#12');
      const { file } = await exportP12('core.p12');
      // Step two: the core nodes, deployed once the file exists (tls-config reads it when it starts).
      const flows = fleetNodes('certs/core.p12');
      flows.push(
        { id: 'tls', type: 'tls-config', name: 'esp fleet backend (.p12)', certType: 'pfx', p12: file, cert: '', key: '', ca: '', certname: '', keyname: '', caname: '', servername: 'localhost', verifyservercert: true, alpnprotocol: '', credentials: { passphrase: PASSWORD } },
        {
          id: 'mb', type: 'mqtt-broker', name: '', broker: '127.0.0.1', port: String(port), tls: 'tls', clientid: 'core-mqtt-in', autoConnect: true, usetls: true,
          protocolVersion: '4', keepalive: '60', cleansession: true, autoUnsubscribe: true, birthTopic: '', closeTopic: '', willTopic: '',
        },
        { id: 'min', z: 'tab', x: 100, y: 200, type: 'mqtt in', name: '', topic: '/status/+', qos: '0', datatype: 'json', broker: 'mb', nl: false, rap: true, rh: 0, inputs: 0, wires: [['min-out']] },
        { id: 'min-out', z: 'tab', x: 300, y: 200, type: 'debug' },
      );
      tap(flows, 'min-out');
      const from = await red.deploy(flows);
      await red.waitForLog((e) => e.type === 'mqtt-broker' && /^Connected to broker: core-mqtt-in@mqtts:\/\/127\.0\.0\.1:\d+$/.test(e.msg), 30_000, from);
      const received = untilTapped(red, 'min-out', (m) => m.topic === `/status/${DEVICE}`, 15_000, from);
      await publishStatusUntil(received);
      const m = await received;
      assert.equal((m.payload as { id: string }).id, DEVICE, 'the core mqtt in parsed the device’s JSON status');
      const problems = red.problemsSince(from).filter((e) => e.msg !== 'Using unencrypted credentials');
      assert.deepEqual(problems.map((e) => `${e.level} [${e.type}] ${e.msg}`), []);
    });
  } else {
    it(`Node-RED ${NODE_RED.version}: its core tls-config takes no PKCS#12 (certType "pfx" came with Node-RED 5), so the core nodes are tested on Node-RED 5 only`, () => {
      assert.equal(coreTlsConfigTakesP12(), false, 'this Node-RED 4 tls-config reads .p12 files now: run the core-node test on it too');
    });
  }
});
