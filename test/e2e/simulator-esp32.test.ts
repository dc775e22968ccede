import { strict as assert } from 'node:assert';
import * as path from 'node:path';
import { readFileSync, writeFileSync } from 'node:fs';
import { generateKeyPairSync } from 'node:crypto';
import { CaStore } from '../../lib/pki/ca-store';
import { writeMosquittoConfig } from '../../lib/mosquitto/folders';
import { FirmwareService } from '../../lib/firmware/firmware-service';
import { startUpdateServer, RunningUpdateServer } from '../../lib/firmware/update-server';
import { signEsp32V1 } from '../../lib/firmware/signing';
import { FleetClient } from '../../lib/fleet/fleet-client';
import { DeviceRegistry } from '../../lib/fleet/registry';
import { TopicScheme } from '../../lib/fleet/topic-scheme';
import { buildCommand, BuiltCommand } from '../../lib/fleet/commands';
import { backendIdentity } from '../../lib/fleet/backend-identity';
import { SimulatedEsp32 } from '../../lib/sim/esp32-device';
import { deviceIds, identityFromFolder } from '../../lib/sim/fleet-simulator';
import { publishEsp32SimImage } from '../../lib/sim/publish';
import { buildEsp32SimImage } from '../../lib/sim/esp32-sim-image';
import { freePort, startMosquitto, RunningMosquitto } from '../support/mosquitto';
import { localServerOptions } from '../support/update-server';
import { startCuttingRelay, startImageStandIn } from '../support/image-stand-in';
import { tempDir } from '../support/temp-dir';

const PROJECT = 'SIMESP32';

async function until(what: string, ms: number, ok: () => boolean): Promise<void> {
  const end = Date.now() + ms;
  while (!ok()) {
    if (Date.now() > end) throw new Error(`not within ${ms} ms: ${what}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

/**
 * Simulated ESP32s on the secure-esp32 scheme against a real Mosquitto (its generated config
 * and ACL), the real update server and certificates of one CA: settings kept in NVS, the update
 * routine with ESP-IDF's requests, and the device's checks of what it downloads.
 */
describe('simulated ESP32 on the secure-esp32 scheme: NVS settings, esp_https_ota downloads, image checks', function () {
  this.timeout(60_000);
  const tmp = tempDir('sim-esp32');
  const ids = deviceIds('24a16e', 8);
  const cliIds = deviceIds('24a17e', 2);
  const [booter, settler, interval, updater, refuser, cutter, rollback] = ids;
  let store: CaStore;
  let broker: RunningMosquitto;
  let server: RunningUpdateServer;
  let service: FirmwareService;
  let client: FleetClient;
  let registry: DeviceRegistry;
  let ecdsaId: string;
  let rsaId: string;
  let brokerPort: number;
  const logs = new Map<string, string[]>();
  const running: SimulatedEsp32[] = [];
  const closers: (() => Promise<void>)[] = [];

  before(async () => {
    store = await CaStore.open({ dir: path.join(tmp.path, 'ca') });
    await store.issueServer({ commonName: 'localhost' });
    for (const id of [...ids, ...cliIds]) await store.issueDevice(id);
    brokerPort = await freePort();
    const { dir } = await writeMosquittoConfig(store, { dir: path.join(tmp.path, 'mosquitto'), serverName: 'localhost', backendName: 'node-red', port: brokerPort, scheme: 'secure-esp32' });
    broker = await startMosquitto(dir);
    service = await FirmwareService.open(path.join(tmp.path, 'firmware'));
    ecdsaId = (await service.keyring.current('esp32-ecdsa-v1')).id;
    rsaId = (await service.keyring.current('esp32-sbv2-rsa')).id;
    // 1.0.0 is what the devices run: the catalogue knows which keys it trusts.
    for (const [version, scheme] of [['1.0.0', 'esp32-ecdsa-v1'], ['1.0.1', 'esp32-ecdsa-v1']] as const) {
      await publishEsp32SimImage(service, { projectName: PROJECT, version, scheme, trusts: [ecdsaId, rsaId], size: 96 * 1024 });
    }
    server = await startUpdateServer({ ...(await localServerOptions(store)), deviceConfig: (id) => service.deviceConfig({}, id), images: service.imageSource() });
    registry = new DeviceRegistry();
    client = new FleetClient({ url: `mqtts://localhost:${brokerPort}`, tls: await backendIdentity(store, 'node-red'), scheme: TopicScheme.named('secure-esp32'), registry });
    client.on('log', (id, line) => logs.set(id, [...(logs.get(id) ?? []), line]));
    const connected = new Promise<void>((resolve) => client.on('state', (s) => s === 'connected' && resolve()));
    client.start();
    await connected;
  });
  after(async () => {
    await Promise.all(running.map((d) => d.stop()));
    for (const close of closers) await close();
    await client?.close();
    await server?.close();
    await broker?.stop();
    await store?.idle();
    tmp.remove();
  });

  const trusted = (): string[] => [ecdsaId, rsaId].map((id) => service.keyring.exportPublic(id).pem);
  const device = async (id: string, extra: Partial<ConstructorParameters<typeof SimulatedEsp32>[0]> = {}): Promise<SimulatedEsp32> => {
    const d = new SimulatedEsp32({
      id,
      files: await identityFromFolder(store.deviceFilesDir)(id),
      bootstrap: { host: 'localhost', port: server.port, path: '/fw' },
      mqtt: { host: 'localhost', port: brokerPort },
      image: `${PROJECT}-1.0.0`,
      trusts: trusted(),
      nvsDir: path.join(tmp.path, 'nvs'),
      timing: 'fast',
      statusIntervalMs: 500,
      log: process.env.SIM_LOG ? (line) => console.log(line) : undefined,
      ...extra,
    });
    running.push(d);
    d.start();
    await until(`${id} online in the registry`, 15_000, () => registry.get(id)?.online === true && !!registry.get(id)?.lastStatus);
    return d;
  };
  const send = (id: string, command: string, arg?: unknown): Promise<void> => client.publishCommand(id, buildCommand('esp32', command, arg));
  /** What buildCommand would refuse, published anyway (another backend, or a hand-typed mosquitto_pub). */
  const sendRaw = (id: string, command: string, payload: string): Promise<void> => client.publishCommand(id, { command, payload, tracking: 'none' } as BuiltCommand);
  const logOf = (id: string): string[] => logs.get(id) ?? [];
  /** A line matching `pattern` among the device's `log` lines, from line `since` on. */
  const waitLog = (id: string, pattern: RegExp, ms = 10_000, since = 0): Promise<void> => until(`${id} logs ${pattern}`, ms, () => logOf(id).slice(since).some((l) => pattern.test(l)));
  const nvsFile = (id: string, dir = path.join(tmp.path, 'nvs')): Record<string, unknown> => JSON.parse(readFileSync(path.join(dir, `${id}.json`), 'utf8')) as Record<string, unknown>;

  it('boots over mutual TLS, reports the status under /esp/<id>/status, and its will takes it offline on restart', async () => {
    const d = await device(booter);
    const entry = registry.get(booter)!;
    assert.equal(entry.lastStatus!.espimage, `${PROJECT}-1.0.0`);
    assert.ok(entry.lastStatus!.espfreeheap > 100_000, 'an ESP32 has far more heap than an ESP8266');
    await waitLog(booter, /^mqtt: connected, running SIMESP32-1\.0\.0$/);
    const presence: boolean[] = [];
    client.on('presence', (p) => p.id === booter && presence.push(p.online));
    await send(booter, 'restart');
    await until('offline by the will, then online again', 15_000, () => presence.includes(false) && presence.lastIndexOf(true) > presence.indexOf(false));
    assert.equal(d.state, 'online');
    await waitLog(booter, /^restart: rebooting$/);
  });

  it('update/url and use_url 1 switch the source and survive a reboot (NVS); the GET is what esp_https_ota sends', async () => {
    const image = await service.keyring.sign(ecdsaId, buildEsp32SimImage({ projectName: PROJECT, version: '1.0.0', trusts: trusted() }));
    const standIn = await startImageStandIn(store, new Map([['/other/app.bin', image]]));
    closers.push(standIn.close);
    const d = await device(settler);
    const url = `https://localhost:${standIn.port}/other/app.bin`;
    await send(settler, 'update/url', url);
    await waitLog(settler, /^update\/url: stored .*\(in use once update\/use_url is 1\)$/);
    await send(settler, 'update/use_url', 1);
    await waitLog(settler, new RegExp(`^update/use_url: stored 1: updates come from ${url.replace(/[.?/]/g, '\\$&')}$`));
    assert.deepEqual([nvsFile(settler).url, nvsFile(settler).useUrl], [url, 1]);

    await send(settler, 'restart');
    await until('rebooted and back', 15_000, () => d.state === 'rebooting');
    await until('back online', 15_000, () => d.state === 'online');
    assert.deepEqual([d.settings?.url, d.settings?.useUrl], [url, 1], 'read back from NVS at boot');
    await send(settler, 'update/run');
    await until('the stand-in was asked', 10_000, () => standIn.seen.length >= 1);
    const first = standIn.seen[0];
    assert.equal(first.method, 'GET');
    assert.equal(first.path, '/other/app.bin?curimage=SIMESP32-1.0.0', 'the stored URL with the running image the device adds');
    assert.equal(first.httpVersion, '1.1');
    // esp_http_client's defaults, then esp_https_ota's Range (ESP-IDF 5.5.5 always ranges first with ota_resumption).
    assert.deepEqual(first.rawHeaders, [['User-Agent', 'ESP32 HTTP Client/1.0'], ['Host', `localhost:${standIn.port}`], ['Range', 'bytes=0-']]);
    // The stand-in ignores Range (200): the device starts over without it, as ESP-IDF does.
    await until('the second GET', 10_000, () => standIn.seen.length >= 2);
    assert.deepEqual(standIn.seen[1].rawHeaders, [['User-Agent', 'ESP32 HTTP Client/1.0'], ['Host', `localhost:${standIn.port}`]]);
    await waitLog(settler, /^update: the server ignored Range \(HTTP 200\); starting the download over$/);
    await waitLog(settler, /^update\/run: refused: SIMESP32-1\.0\.0 is the running version; keeps running SIMESP32-1\.0\.0$/);
  });

  it('an interval out of range is refused on log and not stored; one in range is stored and runs the update after a restart', async () => {
    assert.throws(() => buildCommand('esp32', 'update/interval', 299), /300 to 9999999/);
    const d = await device(interval);
    for (const bad of ['299', '10000000', 'often', '600.5']) {
      await sendRaw(interval, 'update/interval', bad);
      await waitLog(interval, new RegExp(`^update/interval: refused: .*${bad.replace('.', '\\.')}.*; not stored$`));
    }
    assert.equal(d.settings?.interval, 86_400, 'still the default');
    assert.throws(() => nvsFile(interval), /ENOENT/, 'nothing was written');
    await send(interval, 'update/interval', 300);
    await waitLog(interval, /^update\/interval: stored 300 s; takes effect after restart$/);
    assert.equal(nvsFile(interval).interval, 300);
    const before = d.otaRequests.length;
    await send(interval, 'restart');
    await until('rebooting', 10_000, () => d.state === 'rebooting');
    // 300 s at the fast timing's scale (0.01) is 3 s: the routine runs on its own.
    await waitLog(interval, /^update: interval elapsed, checking https:\/\/localhost:\d+\/fw\/firmware\.bin$/, 15_000);
    await until('its GET', 10_000, () => d.otaRequests.length > before);
    assert.match(d.otaRequests[before].path, /^\/fw\/firmware\.bin\?curimage=SIMESP32-1\.0\.0$/);
  });

  it('update/run installs the next signed image, ECDSA signed app then secure boot v2 RSA, and reports it in espimage; then 304', async () => {
    const d = await device(updater);
    await send(updater, 'update/run');
    await until('1.0.1 in the status', 15_000, () => registry.get(updater)?.lastStatus?.espimage === `${PROJECT}-1.0.1`);
    await waitLog(updater, /^update: SIMESP32-1\.0\.1 verified \(signature, project, version, secure_version 0\); rebooting into it$/);
    // The next one is a secure boot v2 app (RSA-3072, RSA-PSS).
    await publishEsp32SimImage(service, { projectName: PROJECT, version: '1.0.2', scheme: 'esp32-sbv2-rsa', secureVersion: 1, trusts: [ecdsaId, rsaId], size: 96 * 1024 });
    await send(updater, 'update/run');
    await until('1.0.2 in the status', 15_000, () => registry.get(updater)?.lastStatus?.espimage === `${PROJECT}-1.0.2`);
    assert.equal(d.image, `${PROJECT}-1.0.2`);
    await send(updater, 'update/run');
    await waitLog(updater, /^update\/run: no newer image for SIMESP32-1\.0\.2 \(304\)$/);
    assert.equal(registry.get(updater)?.lastStatus?.errormessage, 'update/run: no newer image for SIMESP32-1.0.2 (304)');
  });

  it('refuses a tampered image, another key, another project and a lower version, logs why and keeps running', async () => {
    const good = await service.keyring.sign(ecdsaId, buildEsp32SimImage({ projectName: PROJECT, version: '2.0.0', trusts: trusted() }));
    const tampered = Buffer.from(good);
    tampered[5000] ^= 0x01;
    const otherKey = signEsp32V1(buildEsp32SimImage({ projectName: PROJECT, version: '2.0.0', trusts: trusted() }), generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey);
    const otherProject = await service.keyring.sign(ecdsaId, buildEsp32SimImage({ projectName: 'OTHERAPP', version: '2.0.0', trusts: trusted() }));
    const lower = await service.keyring.sign(rsaId, buildEsp32SimImage({ projectName: PROJECT, version: '0.9.0', trusts: trusted() }));
    const files = new Map([['/tampered.bin', tampered], ['/other-key.bin', otherKey], ['/other-project.bin', otherProject], ['/lower.bin', lower]]);
    const standIn = await startImageStandIn(store, files);
    closers.push(standIn.close);
    const d = await device(refuser);
    await send(refuser, 'update/use_url', 1);
    const cases: [string, RegExp][] = [
      ['/tampered.bin', /^update\/run: refused: signature check failed: ECDSA signature does not verify with key [0-9a-f]{16} \(image altered, or signed with another key\); .*; keeps running SIMESP32-1\.0\.0$/],
      ['/other-key.bin', /^update\/run: refused: signature check failed: ECDSA signature does not verify .*; keeps running SIMESP32-1\.0\.0$/],
      ['/other-project.bin', /^update\/run: refused: OTHERAPP-2\.0\.0 is project "OTHERAPP", not "SIMESP32"; keeps running SIMESP32-1\.0\.0$/],
      ['/lower.bin', /^update\/run: refused: SIMESP32-0\.9\.0 is lower than the running 1\.0\.0; keeps running SIMESP32-1\.0\.0$/],
    ];
    const reboots: string[] = [];
    d.on('reboot', (r) => reboots.push(r));
    for (const [file, why] of cases) {
      const since = logOf(refuser).length;
      await send(refuser, 'update/url', `https://localhost:${standIn.port}${file}`);
      await waitLog(refuser, new RegExp(`^update/url: stored https://localhost:${standIn.port}${file}$`), 10_000, since);
      await send(refuser, 'update/run');
      await waitLog(refuser, /^update\/run: /, 10_000, since);
      assert.match(logOf(refuser).slice(since).find((l) => l.startsWith('update/run: '))!, why);
    }
    assert.deepEqual(reboots, []);
    assert.equal(d.image, `${PROJECT}-1.0.0`);
    assert.equal(registry.get(refuser)?.lastStatus?.espimage, `${PROJECT}-1.0.0`);
    assert.ok(registry.get(refuser)?.online);
  });

  it('anti-rollback: an image with a lower secure_version is refused, an equal one installs', async () => {
    const low = await service.keyring.sign(ecdsaId, buildEsp32SimImage({ projectName: PROJECT, version: '3.0.0', secureVersion: 1, trusts: trusted() }));
    const same = await service.keyring.sign(ecdsaId, buildEsp32SimImage({ projectName: PROJECT, version: '3.0.1', secureVersion: 2, trusts: trusted() }));
    const standIn = await startImageStandIn(store, new Map([['/low.bin', low], ['/same.bin', same]]));
    closers.push(standIn.close);
    const d = await device(rollback, { image: `${PROJECT}-2.5.0`, secureVersion: 2 });
    await send(rollback, 'update/url', `https://localhost:${standIn.port}/low.bin`);
    await send(rollback, 'update/use_url', 1);
    await send(rollback, 'update/run');
    await waitLog(rollback, /^update\/run: refused: SIMESP32-3\.0\.0 has secure_version 1, below the chip's 2 \(anti-rollback\); keeps running SIMESP32-2\.5\.0$/);
    assert.equal(nvsFile(rollback).secureVersion, 2);
    await send(rollback, 'update/url', `https://localhost:${standIn.port}/same.bin`);
    await send(rollback, 'update/run');
    await until('3.0.1 runs', 15_000, () => registry.get(rollback)?.lastStatus?.espimage === `${PROJECT}-3.0.1`);
    assert.equal(d.image, `${PROJECT}-3.0.1`);
  });

  it('an interrupted download resumes with Range: bytes=<written>- and the result verifies', async () => {
    // Connection 1: the first GET (Range: bytes=0-, answered 206 with the whole image), cut after 40 KB.
    const relay = await startCuttingRelay(server.port, 1, 40 * 1024);
    closers.push(relay.close);
    const d = await device(cutter);
    // The device adds ?curimage=<running image>: the URL names the update server's next-image endpoint.
    const url = `https://localhost:${relay.port}/fw/firmware.bin`;
    await send(cutter, 'update/url', url);
    await send(cutter, 'update/use_url', 1);
    await send(cutter, 'update/run');
    await waitLog(cutter, /^update\/run: connection lost after \d+ of \d+ bytes; the next run resumes from byte \d+$/, 15_000);
    const written = (nvsFile(cutter).ota as { url: string; writtenKb: number }).writtenKb;
    assert.ok(written >= 1 && written < 40, `${written} KB recorded in NVS`);
    assert.equal((nvsFile(cutter).ota as { url: string }).url, `${url}?curimage=${PROJECT}-1.0.0`, 'the resumption record names the URL as requested');
    const before = d.otaRequests.length;
    await send(cutter, 'update/run');
    await waitLog(cutter, new RegExp(`^update: checking https://localhost:${relay.port}/fw/firmware\\.bin \\(resuming from byte ${written * 1024}\\)$`));
    // The newest image signed with a key 1.0.0 trusts (1.0.1, or 1.0.2 once the update test published it).
    const next = (service.offerFor(cutter, `${PROJECT}-1.0.0`) as { next: string }).next;
    await until(`${next} runs`, 15_000, () => registry.get(cutter)?.lastStatus?.espimage === next);
    const resumed = d.otaRequests.slice(before);
    // The update server answers the Range with 206: the rest of the same image, spliced and verified, in one request.
    assert.deepEqual([resumed[0].headers.Range, resumed[0].status, resumed.length], [`bytes=${written * 1024}-`, 206, 1]);
    await waitLog(cutter, new RegExp(`^update: downloaded \\d+ bytes \\(resumed at byte ${written * 1024}\\); verifying$`));
    await waitLog(cutter, new RegExp(`^update: ${next.replace(/\./g, '\\.')} verified`));
    assert.equal(nvsFile(cutter).ota, undefined, 'the resumption record is gone once the download completed');
  });

  it('esp-fleet-sim --platform esp32 runs such devices, and says what an ESP32 fleet needs', async () => {
    const { spawn } = await import('node:child_process');
    const cli = path.join(__dirname, '../../lib/sim/cli.js');
    const trustFile = path.join(tmp.path, 'ecdsa.pem');
    writeFileSync(trustFile, service.keyring.exportPublic(ecdsaId).pem);
    const base = ['--platform', 'esp32', '--server', `https://localhost:${server.port}/fw`, '--certs', store.deviceFilesDir, '--trust', trustFile, '--image', `${PROJECT}-1.0.0`];
    const run = (args: string[]): Promise<{ code: number | null; stderr: string }> =>
      new Promise((resolve) => {
        const child = spawn(process.execPath, [cli, ...args], { stdio: ['ignore', 'ignore', 'pipe'] });
        let stderr = '';
        child.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
        child.on('exit', (code) => resolve({ code, stderr }));
      });
    assert.deepEqual(await run([...base, '--mqtt-host', 'localhost', '--mqtt-port', String(brokerPort)]), { code: 2, stderr: "esp-fleet-sim: --platform esp32 needs --nvs-dir DIR (the devices' NVS files)\n" });
    assert.match((await run([...base, '--nvs-dir', tmp.path])).stderr, /--platform esp32 needs --mqtt-host and --mqtt-port/);
    assert.match((await run([...base, '--platform', 'esp99'])).stderr, /--platform is esp8266 or esp32/);

    const nvsDir = path.join(tmp.path, 'cli-nvs');
    const child = spawn(process.execPath, [cli, ...base, '--mqtt-host', 'localhost', '--mqtt-port', String(brokerPort), '--nvs-dir', nvsDir, '--prefix', '24a17e', '--count', '2', '--timing', 'fast', '--duration', '25'], { stdio: ['ignore', 'pipe', 'pipe'] });
    const exited = new Promise<void>((r) => child.on('exit', () => r()));
    try {
      await until('both CLI devices online', 20_000, () => cliIds.every((id) => registry.get(id)?.online && registry.get(id)?.lastStatus?.espimage === `${PROJECT}-1.0.0`));
      await send(cliIds[0], 'update/interval', 4000);
      await waitLog(cliIds[0], /^update\/interval: stored 4000 s; takes effect after restart$/);
      assert.equal(nvsFile(cliIds[0], nvsDir).interval, 4000);
    } finally {
      child.kill('SIGTERM');
      await exited;
    }
  });
});
