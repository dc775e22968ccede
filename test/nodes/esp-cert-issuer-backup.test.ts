import { strict as assert } from 'node:assert';
import { createHash, randomBytes, X509Certificate } from 'node:crypto';
import { promises as fs, readFileSync, statSync, writeFileSync, mkdirSync } from 'node:fs';
import * as path from 'node:path';
import { helper, catchNode, firstMessage } from '../support/node-red';
import { tempDir } from '../support/temp-dir';
import { freePort } from '../support/mosquitto';
import type { EspCaNode } from '../../nodes/esp-ca/types';
import espCa = require('../../nodes/esp-ca/esp-ca');
import espCertIssuer = require('../../nodes/esp-cert-issuer/esp-cert-issuer');
import espFirmwareServer = require('../../nodes/esp-firmware-server/esp-firmware-server');
import espFleet = require('../../nodes/esp-fleet/esp-fleet');

type Msg = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any

const nodes = [espCa, espCertIssuer, espFirmwareServer, espFleet, catchNode];
const PASSPHRASE = 'node test passphrase 9f2c';
const DEV = '84f3eb0000e7';
const P = 'GARAGE_D1MINI';

/**
 * backup and restore through the esp-cert-issuer node in a real Node-RED runtime: the issuer
 * finds the firmware server and the fleet of its own esp-ca, the passphrase never leaves the
 * node, and a restore into a fresh user directory comes back after a restart of the flows.
 */
describe('esp-cert-issuer backup and restore (real Node-RED runtime)', function () {
  this.timeout(60_000);
  const tmp = tempDir('backup-node');
  const oldHome = path.join(tmp.path, 'old-user-dir');
  const newHome = path.join(tmp.path, 'new-user-dir');
  let fwPort: number;
  let brokerPort: number;

  // Every folder is the node's default, inside the user directory.
  const flow = (): Msg[] => [
    { id: 'tab', type: 'tab', label: 'backup' },
    { id: 'ca1', type: 'esp-ca', folder: '' },
    { id: 'fleet1', type: 'esp-fleet', broker: `mqtts://127.0.0.1:${brokerPort}`, tlsSource: 'esp-ca', ca: 'ca1', backendName: 'node-red', scheme: 'secure-esp8266', registryFile: '' },
    { id: 'iss', z: 'tab', x: 100, y: 100, type: 'esp-cert-issuer', ca: 'ca1', action: 'list', wires: [['out']] },
    { id: 'fw1', z: 'tab', x: 100, y: 100, type: 'esp-firmware-server', ca: 'ca1', hostname: 'localhost', port: String(fwPort), bindAddress: '127.0.0.1', downloadPath: 'fw', clientCertificates: 'required', folder: '', action: 'publish', wires: [['fwout'], []] },
    { id: 'catcher', z: 'tab', x: 100, y: 100, type: 'catch', scope: null, uncaught: false, wires: [['caught']] },
    ...['out', 'fwout', 'caught'].map((id) => ({ id, z: 'tab', x: 100, y: 100, type: 'helper' })),
  ];
  async function send(node: string, msg: Msg, outputs = ['out', 'caught']): Promise<{ out?: Msg; caught?: Msg }> {
    const first = firstMessage([...outputs]);
    helper.getNode(node).receive(msg);
    const { nodeId, msg: got } = await first;
    return nodeId === 'caught' ? { caught: got } : { out: got };
  }
  const store = () => (helper.getNode('ca1') as unknown as EspCaNode).store();
  /** Deploys the flow in a user directory and waits until the CA and the firmware server are up. */
  async function deploy(home: string): Promise<void> {
    helper.settings({ userDir: home });
    await helper.load(nodes, flow());
    await store();
    // The firmware server has started once it answers an action.
    await send('fw1', { topic: 'list', payload: {} }, ['fwout', 'caught']);
  }
  const logged = (): string => JSON.stringify(helper.log().args);

  before(async () => {
    [fwPort, brokerPort] = [await freePort(), await freePort()];
    mkdirSync(oldHome);
    mkdirSync(newHome);
    // A registry as esp-fleet leaves it after devices reported.
    writeFileSync(path.join(oldHome, 'esp-fleet-registry-fleet1.json'), JSON.stringify({ version: 1, devices: [{ id: DEV, online: false, firstSeen: '2025-01-01T00:00:00.000Z', lastSeen: '2025-01-01T00:00:00.000Z' }] }));
    await helper.startServer();
  });
  afterEach(() => helper.unload());
  after(async () => {
    helper.settings({});
    await helper.stopServer();
    tmp.remove();
  });

  let oldCa: string;
  let backupFile: string;

  it('backup: writes the CA, the firmware folder and the registry of its esp-ca into one 0600 file; the passphrase appears nowhere', async () => {
    await deploy(oldHome);
    await send('iss', { topic: 'device', payload: DEV });
    const published = await send('fw1', { topic: 'publish', payload: Buffer.concat([Buffer.from([0xe9]), randomBytes(30_000)]), platform: 'esp8266', product: P, version: '1.0.0' }, ['fwout', 'caught']);
    assert.ok(published.out, JSON.stringify(published.caught?.error));
    oldCa = (await store()).caCertificatePem;

    const { out, caught } = await send('iss', { topic: 'backup', payload: { passphrase: PASSPHRASE, file: 'backups/fleet.efb' }, _marker: 1 });
    assert.ok(out, JSON.stringify(caught?.error));
    const p = out!.payload;
    backupFile = path.join(oldHome, 'backups', 'fleet.efb');
    assert.equal(p.file, backupFile);
    assert.equal(p.size, statSync(backupFile).size);
    assert.equal(p.sha256, createHash('sha256').update(readFileSync(backupFile)).digest('hex'));
    assert.equal(statSync(backupFile).mode & 0o777, 0o600);
    assert.deepEqual(p.parts.map((x: Msg) => x.id).sort(), ['ca', 'firmware:fw1', 'registry:fleet1']);
    // localhost (update server), node-red (esp-fleet) and the device.
    assert.deepEqual(p.counts, { certificates: 3, images: 1, devices: 1 });
    assert.equal(out!._marker, 1);
    assert.ok(!JSON.stringify(out).includes(PASSPHRASE), 'not in the output msg');
    assert.ok(!logged().includes(PASSPHRASE), 'not in the log');
  });

  it('backup and restore errors reach a Catch node without the passphrase', async () => {
    await deploy(oldHome);
    const cases: [Msg, RegExp][] = [
      [{ passphrase: 'short' }, /at least 12 characters/],
      [{ passphrase: PASSPHRASE, file: '../outside.efb' }, /leaves the Node-RED user directory/],
      [{ passphrase: PASSPHRASE, file: 'flows.json' }, /ends in \.efb/],
      [{ passphrase: `${PASSPHRASE} but wrong`, file: 'backups/fleet.efb' }, /wrong passphrase or damaged archive/],
    ];
    for (const [payload, error] of cases) {
      const topic = payload.file === 'backups/fleet.efb' ? 'restore' : 'backup';
      const { caught, out } = await send('iss', { topic, payload });
      assert.equal(out, undefined);
      assert.match(caught!.error.message, error);
      assert.equal(caught!.payload.passphrase, undefined, 'the Catch node gets the msg without the passphrase');
      assert.ok(!JSON.stringify(caught).includes(String(payload.passphrase)));
    }
    assert.ok(!logged().includes(PASSPHRASE));
    assert.equal((await store()).caCertificatePem, oldCa, 'the wrong passphrase changed nothing');
  });

  it('restore into a fresh user directory: refuses further actions until flows restart, then runs on the restored CA, catalogue and registry', async () => {
    await fs.copyFile(backupFile, path.join(newHome, 'fleet.efb'));
    await deploy(newHome);
    const freshCa = (await store()).caCertificatePem;
    assert.notEqual(freshCa, oldCa, 'a fresh Node-RED made its own CA');

    const { out, caught } = await send('iss', { topic: 'restore', payload: { passphrase: PASSPHRASE, file: 'fleet.efb' } });
    assert.ok(out, JSON.stringify(caught?.error));
    const p = out!.payload;
    assert.equal(p.restartRequired, true);
    assert.match(p.hint, /Restart Flows/);
    assert.deepEqual(p.restored.map((r: Msg) => [r.id, path.relative(newHome, r.path)]).sort(), [
      ['ca', 'esp-fleet-ca'],
      ['firmware:fw1', 'esp-fleet-firmware'],
      ['registry:fleet1', 'esp-fleet-registry-fleet1.json'],
    ]);
    assert.ok(p.restored.find((r: Msg) => r.id === 'ca').keptAside, 'the fresh CA is kept aside');
    assert.ok(!JSON.stringify(out).includes(PASSPHRASE));
    const after = await send('iss', { topic: 'list', payload: {} });
    assert.match(after.caught!.error.message, /restart flows/);

    // Deploy ▸ Restart Flows.
    await helper.unload();
    await deploy(newHome);
    const restored = await store();
    assert.equal(new X509Certificate(restored.caCertificatePem).fingerprint256, new X509Certificate(oldCa).fingerprint256);
    const listed = await send('iss', { topic: 'list', payload: { kind: 'device' } });
    assert.deepEqual(listed.out!.payload.certificates.map((c: Msg) => c.commonName), [DEV]);
    const images = await send('fw1', { topic: 'list', payload: {} }, ['fwout', 'caught']);
    assert.deepEqual(images.out!.payload.images.map((i: Msg) => i.name), [`${P}-1.0.0`]);
    const registry = JSON.parse(readFileSync(path.join(newHome, 'esp-fleet-registry-fleet1.json'), 'utf8'));
    assert.deepEqual(registry.devices.map((d: Msg) => d.id), [DEV]);
  });
});
