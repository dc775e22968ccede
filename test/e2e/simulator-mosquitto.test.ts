import { strict as assert } from 'node:assert';
import { localServerOptions } from '../support/update-server';
import * as path from 'node:path';
import { CaStore } from '../../lib/pki/ca-store';
import { writeMosquittoConfig } from '../../lib/mosquitto/folders';
import { FirmwareService } from '../../lib/firmware/firmware-service';
import { startUpdateServer, RunningUpdateServer, UpdateEvent } from '../../lib/firmware/update-server';
import { publishSimImage } from '../../lib/sim/publish';
import { SimulatedDevice, SimulatedDeviceOptions } from '../../lib/sim/simulated-device';
import { deviceIds, FleetSimulator, identityFromFolder } from '../../lib/sim/fleet-simulator';
import { deviceGet } from '../../lib/sim/device-https';
import { connectTls } from '../support/mqtt-client';
import { freePort, startMosquitto, RunningMosquitto } from '../support/mosquitto';
import { tempDir } from '../support/temp-dir';
import { Backend } from '../support/fleet-backend';

const P = 'ESP8266_SIM_D1MINI';
const V1 = `${P}-00.00.01`;
const LATEST = `${P}-00.00.03`;
const CAP = 8;

/**
 * The whole chain without hardware: CA → Mosquitto with the generated config → simulated
 * devices → telemetry → command → signed image over mutual-TLS HTTPS → device on the new version.
 */
describe('end to end: simulated devices, real Mosquitto, update server, commands', function () {
  this.timeout(120_000);
  const tmp = tempDir('e2e-mosq');
  const fleetIds = deviceIds('a4cf12', 50);
  const [lonely, tampered, revoked, rotating] = deviceIds('a4cf13', 4);
  let store: CaStore;
  let service: FirmwareService;
  let broker: RunningMosquitto;
  let server: RunningUpdateServer;
  let backend: Backend;
  let brokerPort: number;
  let k1Pem: string;
  const events: UpdateEvent[] = [];
  const running: (SimulatedDevice | FleetSimulator)[] = [];

  const deviceOptions = async (id: string, extra: Partial<SimulatedDeviceOptions> = {}): Promise<SimulatedDeviceOptions> => ({
    id,
    bootstrap: { host: 'localhost', port: server.port, path: '/fw' },
    files: await identityFromFolder(store.deviceFilesDir)(id),
    image: V1,
    trusts: [k1Pem],
    rebootDelayMs: 200,
    // A hundred times a real ESP8266 (lib/sim/device-timing.ts): the same steps, quickly.
    timing: 'fast',
    ...extra,
  });
  const startDevice = async (id: string, extra: Partial<SimulatedDeviceOptions> = {}): Promise<SimulatedDevice> => {
    const d = new SimulatedDevice(await deviceOptions(id, extra));
    running.push(d);
    d.start();
    return d;
  };

  before(async () => {
    store = await CaStore.open({ dir: path.join(tmp.path, 'ca') });
    await store.issueServer({ commonName: 'localhost' });
    for (const id of [...fleetIds, lonely, tampered, revoked, rotating]) await store.issueDevice(id);
    brokerPort = await freePort();
    const setup = await writeMosquittoConfig(store, { dir: path.join(tmp.path, 'mosquitto'), serverName: 'localhost', backendName: 'node-red', port: brokerPort });
    broker = await startMosquitto(setup.dir);

    service = await FirmwareService.open(path.join(tmp.path, 'firmware'));
    const k1 = (await service.keyring.current('esp8266-rsa')).id;
    k1Pem = service.keyring.exportPublic(k1).pem;
    for (const v of ['00.00.01', '00.00.02', '00.00.03']) await publishSimImage(service, { product: P, version: v, size: 96 * 1024 });
    // A rotation on its own product: v1 (key 1) → v2 bridge (signed key 1, trusts key 2) → v3 (key 2).
    await publishSimImage(service, { product: 'SIM_ROTATION', version: '1.0.0', size: 32 * 1024 });
    const k2 = (await service.keyring.rotate('esp8266-rsa')).id;
    await publishSimImage(service, { product: 'SIM_ROTATION', version: '2.0.0', signWith: k1, trusts: [k2], size: 32 * 1024 });
    await publishSimImage(service, { product: 'SIM_ROTATION', version: '3.0.0', size: 32 * 1024 });

    const defaults = { mqttserver: 'localhost', mqttport: brokerPort, mqtttls: true, statusinterval: 1000, retrytimeout: 1000 };
    server = await startUpdateServer({
      ...(await localServerOptions(store)),
      deviceConfig: (id) => service.deviceConfig(defaults, id),
      images: service.imageSource(),
      maxConcurrentDownloads: 50,
      onEvent: (e) => events.push(e),
    });
    store.onCrlChange((crl) => server.setCrl(crl));
    backend = await Backend.connect(store, brokerPort, { maxInFlight: CAP });
  });

  after(async () => {
    await Promise.all(running.map((d) => d.stop()));
    await backend?.close();
    await server?.close();
    await broker?.stop();
    await store?.idle();
    tmp.remove();
  });

  it('devices fetch config.json, connect with their own certificates and report status', async () => {
    const fleet = new FleetSimulator({ ...(await deviceOptions(fleetIds[0])), ids: fleetIds, identity: identityFromFolder(store.deviceFilesDir), trusts: [k1Pem], bootsPerSecond: 200 });
    running.push(fleet);
    await fleet.start();
    await startDevice(lonely);
    await backend.waitOnline([...fleetIds, lonely]);
    const entry = backend.registry.get(lonely)!;
    assert.equal(entry.image, V1);
    assert.equal(entry.lastStatus!.espname, `measure-${lonely}`);
    assert.ok(events.some((e) => e.type === 'file' && e.deviceId === lonely && e.path === '/fw/config.json'), 'config.json was fetched with the device certificate');
  });

  it('firmware to one device: it downloads, verifies, installs, reboots and reports the latest image', async () => {
    const [outcome] = await backend.command([lonely], 'firmware');
    assert.equal(outcome.outcome, 'success', JSON.stringify(outcome));
    assert.equal(outcome.image, LATEST);
    assert.equal(outcome.previousImage, V1);
    const done = events.find((e) => e.type === 'download-complete' && e.deviceId === lonely);
    assert.equal(done?.image, LATEST);
  });

  it('a fleet-wide update of 50 devices keeps to the cap and ends with all on the latest image', async () => {
    const from = events.length;
    const outcomes = await backend.command(fleetIds, 'firmware');
    assert.deepEqual(outcomes.filter((o) => o.outcome !== 'success'), []);
    assert.ok(fleetIds.every((id) => backend.registry.get(id)?.image === LATEST));
    // Devices updating at any moment (from the start of their download until they boot again and
    // fetch config.json) never exceed the commands in flight. Not downloads alone: on loopback a
    // 96 KiB download may be over before the next one starts, whatever the cap.
    const busy = new Set<string>();
    let peak = 0;
    for (const e of events.slice(from)) {
      if (e.type === 'download-start' && e.deviceId) busy.add(e.deviceId);
      if (e.type === 'file' && e.path === '/fw/config.json' && e.deviceId) busy.delete(e.deviceId);
      peak = Math.max(peak, busy.size);
    }
    assert.ok(peak <= CAP, `peak devices updating ${peak} > cap ${CAP}`);
    assert.ok(peak > 1, 'the rollout ran devices in parallel');
    assert.equal(events.slice(from).filter((e) => e.type === 'download-complete').length, 50);
  });

  it('a device at the latest image is told 304 and reports that nothing newer exists', async () => {
    const [outcome] = await backend.command([lonely], 'firmware');
    assert.equal(outcome.outcome, 'failed');
    assert.match(outcome.error!, /^firmware: no newer image for ESP8266_SIM_D1MINI-00\.00\.03 \(304\)$/);
    assert.equal(backend.registry.get(lonely)?.image, LATEST);
  });

  it('a device whose trusted key was tampered with refuses the image and reports why', async () => {
    const other = (await service.keyring.current('esp8266-rsa')).publicKeyPem; // key 2: not what V1..V3 are signed with
    const device = await startDevice(tampered, { trusts: [other] });
    await backend.waitOnline([tampered]);
    const [outcome] = await backend.command([tampered], 'firmware');
    assert.equal(outcome.outcome, 'failed');
    assert.match(outcome.error!, /signature check failed: RSA signature does not verify/);
    assert.equal(device.image, V1, 'nothing was installed');
  });

  it('staged mode: firmware downloads and verifies, flash installs and reboots (the secure ESP8266 framework)', async () => {
    const [id] = deviceIds('a4cf16', 1);
    await store.issueDevice(id);
    await store.idle();
    await broker.reload(); // the ACL gained the new device
    const device = await startDevice(id, { updateMode: 'staged' });
    await backend.waitOnline([id]);
    const staged = new Promise((resolve) => device.once('staged', resolve));
    const firmware = backend.command([id], 'firmware');
    assert.equal(await staged, LATEST);
    assert.equal(device.image, V1, 'nothing installed before flash');
    const [flash] = await backend.command([id], 'flash');
    assert.deepEqual([flash.outcome, flash.image], ['success', LATEST]);
    assert.equal((await firmware)[0].outcome, 'superseded');
  });

  it('walks the rotation chain v1 (key 1) → v2 (bridge) → v3 (key 2)', async () => {
    const device = await startDevice(rotating, { image: 'SIM_ROTATION-1.0.0' });
    await backend.waitOnline([rotating]);
    const [first] = await backend.command([rotating], 'firmware');
    assert.equal(first.image, 'SIM_ROTATION-2.0.0', JSON.stringify(first));
    await backend.waitOnline([rotating]);
    const [second] = await backend.command([rotating], 'firmware');
    assert.equal(second.image, 'SIM_ROTATION-3.0.0', JSON.stringify(second));
    assert.equal(device.image, 'SIM_ROTATION-3.0.0');
  });

  it('cert: a device downloads its renewed certificate over mutual TLS and reconnects with it', async () => {
    const device = running.find((d): d is SimulatedDevice => d instanceof SimulatedDevice && d.id === lonely)!;
    const old = store.currentIdentity('device', lonely)!;
    const renewed = await store.renew({ serial: old.serial });
    await store.idle();
    const states: string[] = [];
    device.on('state', (s) => states.push(s));
    const [sent] = await backend.command([lonely], 'cert');
    assert.equal(sent.outcome, 'sent');
    const until = Date.now() + 10_000;
    while (!(states.includes('online') && device.online)) {
      if (Date.now() > until) throw new Error(`no reconnect: ${states.join(' → ')}`);
      await new Promise((r) => setTimeout(r, 25));
    }
    assert.equal(device.errormessage, '');
    assert.ok(events.some((e) => e.type === 'file' && e.path === `/fw/${lonely}.crt` && e.deviceId === lonely));
    assert.equal(device.certificatePem, renewed.certificatePem, 'it presents the renewed certificate');
  });

  it('faults: a weak-signal device drops and comes back; a silent one goes offline by its LWT', async () => {
    const [weak, silent] = deviceIds('a4cf17', 2);
    for (const id of [weak, silent]) await store.issueDevice(id);
    await store.idle();
    await broker.reload();
    const w = await startDevice(weak, { weakSignal: true });
    await startDevice(silent, { silentAfterMs: 1500 });
    await backend.waitOnline([weak, silent]);
    const states: string[] = [];
    w.on('state', (s) => states.push(s));
    const until = Date.now() + 15_000;
    while (!(states.includes('offline') && w.online)) {
      if (Date.now() > until) throw new Error(`the weak device never dropped and came back: ${states.join(' → ')}`);
      await new Promise((r) => setTimeout(r, 50));
    }
    while (backend.registry.get(silent)?.online) {
      if (Date.now() > until) throw new Error('the silent device still counts as online');
      await new Promise((r) => setTimeout(r, 50));
    }
    assert.ok((backend.registry.get(weak)?.lastStatus?.rssi ?? 0) < -80, 'a weak signal reports a poor RSSI');
  });

  it("a device asking for another device's key gets 403", async () => {
    const files = await identityFromFolder(store.deviceFilesDir)(lonely);
    const res = await deviceGet({ host: 'localhost', port: server.port }, `/fw/${tampered}.key`, files);
    assert.equal(res.status, 403);
    assert.ok(events.some((e) => e.type === 'rejected' && e.status === 403 && e.deviceId === lonely));
  });

  it('a revoked device can reach neither the update server nor the broker', async () => {
    const files = await identityFromFolder(store.deviceFilesDir)(revoked);
    await store.revoke(store.currentIdentity('device', revoked)!.serial, 'keyCompromise');
    await store.idle();
    await broker.reload();
    await assert.rejects(connectTls(brokerPort, files, revoked), /refused|closed/);
    const device = await startDevice(revoked);
    await new Promise((r) => setTimeout(r, 1500));
    assert.notEqual(device.state, 'online');
    assert.equal(backend.registry.get(revoked), undefined);
  });
});

describe('esp-fleet-sim command line', function () {
  this.timeout(30_000);
  const cli = path.join(__dirname, '../../lib/sim/cli.js');

  it('explains a missing or bad option with exit code 2 and touches nothing', async () => {
    const { spawn } = await import('node:child_process');
    const run = (args: string[]): Promise<{ code: number | null; stderr: string }> =>
      new Promise((resolve) => {
        const child = spawn(process.execPath, [cli, ...args], { stdio: ['ignore', 'ignore', 'pipe'] });
        let stderr = '';
        child.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
        child.on('exit', (code) => resolve({ code, stderr }));
      });
    assert.deepEqual(await run([]), { code: 2, stderr: 'esp-fleet-sim: --server is required (see --help)\n' });
    const bad = await run(['--server', 'http://localhost:1/fw', '--certs', '.']);
    assert.equal(bad.code, 2);
    assert.match(bad.stderr, /must be an https:\/\/ URL/);
    const prefix = await run(['--server', 'https://localhost:1/fw', '--certs', '.', '--prefix', 'zz', '--trust', cli, '--image', 'X-1']);
    assert.match(prefix.stderr, /MAC prefix "zz" must be 2 to 10 hex digits/);
    const base = ['--server', 'https://localhost:1/fw', '--certs', '.', '--trust', cli, '--image', 'X-1'];
    assert.match((await run([...base, '--timing', 'slow'])).stderr, /--timing is esp8266 or fast/);
    assert.match((await run([...base, '--download-rate', '0'])).stderr, /--download-rate must be a number ≥ 1/);
    // A bad network is named, its password never printed.
    const wifi = await run([...base, '--wifi-networks', 'office:short12,cafe']);
    assert.equal(wifi.code, 2);
    assert.match(wifi.stderr, /--wifi-networks "office": wifi: password must be empty, 8 to 63/);
    assert.ok(!wifi.stderr.includes('short12'));
  });
});
