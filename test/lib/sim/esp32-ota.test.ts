import { strict as assert } from 'node:assert';
import * as path from 'node:path';
import { writeFileSync } from 'node:fs';
import { createPublicKey } from 'node:crypto';
import { CaStore } from '../../../lib/pki/ca-store';
import { deviceGet } from '../../../lib/sim/device-https';
import { espHttpsOta, OtaRequestLog, resumeOffset } from '../../../lib/sim/esp32-ota-download';
import { buildEsp32SimImage, readEsp32SimTrusts } from '../../../lib/sim/esp32-sim-image';
import { checkEsp32Image } from '../../../lib/sim/esp32-image-check';
import { NvsFile } from '../../../lib/sim/esp32-nvs';
import { FirmwareService } from '../../../lib/firmware/firmware-service';
import { readAppDescriptor } from '../../../lib/firmware/app-descriptor';
import { publishEsp32SimImage } from '../../../lib/sim/publish';
import { startImageStandIn, startCuttingRelay } from '../../support/image-stand-in';
import { tempDir } from '../../support/temp-dir';

describe('simulated ESP32 parts: esp_https_ota requests, the image checks, NVS, test images', function () {
  this.timeout(30_000);
  const tmp = tempDir('esp32-ota');
  let store: CaStore;
  let service: FirmwareService;
  const image = buildEsp32SimImage({ projectName: 'OTA_T', version: '1.2.3', trusts: [], size: 64 * 1024 });
  const closers: (() => Promise<void>)[] = [];

  before(async () => {
    store = await CaStore.open({ dir: path.join(tmp.path, 'ca') });
    await store.issueServer({ commonName: 'localhost' });
    service = await FirmwareService.open(path.join(tmp.path, 'fw'));
  });
  after(async () => {
    for (const c of closers) await c();
    await store.idle();
    tmp.remove();
  });

  const ota = (port: number, written: Buffer, log: OtaRequestLog[], opts: { resumption?: boolean } = {}) =>
    espHttpsOta(new URL(`https://localhost:${port}/app.bin`), written, {
      resumption: opts.resumption ?? true,
      flashEncryption: true,
      get: (target, p, o) => deviceGet(target, p, { ca: store.caCertificatePem }, o),
      request: { timeoutMs: 10_000 },
      log: (e) => log.push(e),
    });

  it('resumes with Range: bytes=<written>- from a server that answers 206, and splices the rest on what was written', async () => {
    const standIn = await startImageStandIn(store, new Map([['/app.bin', image]]), { ranges: true });
    closers.push(standIn.close);
    const log: OtaRequestLog[] = [];
    const result = await ota(standIn.port, image.subarray(0, 20 * 1024), log);
    assert.equal(result.kind, 'complete');
    assert.ok(result.kind === 'complete' && result.bytes.equals(image) && result.resumedFrom === 20 * 1024);
    assert.deepEqual(log.map((e) => [e.headers.Range, e.status]), [[`bytes=${20 * 1024}-`, 206]]);
    // HTTP/1.1 keeps the connection open: the reply ended at its Content-Length, not at a close.
    assert.equal(standIn.seen[0].httpVersion, '1.1');
    assert.deepEqual(standIn.seen[0].rawHeaders, [['User-Agent', 'ESP32 HTTP Client/1.0'], ['Host', `localhost:${standIn.port}`], ['Range', `bytes=${20 * 1024}-`]]);
  });

  it('starts over without Range after a 416 or a 200; without resumption it never sends Range', async () => {
    const standIn = await startImageStandIn(store, new Map([['/app.bin', image.subarray(0, 8 * 1024)]]), { ranges: true });
    closers.push(standIn.close);
    const log: OtaRequestLog[] = [];
    // 20 KB written of an image that is 8 KB now: past the end.
    const r = await ota(standIn.port, image.subarray(0, 20 * 1024), log);
    assert.ok(r.kind === 'complete' && r.bytes.equals(image.subarray(0, 8 * 1024)) && r.resumedFrom === 0);
    assert.deepEqual(log.map((e) => [e.headers.Range, e.status]), [[`bytes=${20 * 1024}-`, 416], [undefined, 200]]);
    const plain = await startImageStandIn(store, new Map([['/app.bin', image]]));
    closers.push(plain.close);
    const log2: OtaRequestLog[] = [];
    assert.equal((await ota(plain.port, Buffer.alloc(0), log2)).kind, 'complete');
    assert.deepEqual(log2.map((e) => [e.headers.Range, e.status]), [['bytes=0-', 200], [undefined, 200]]);
    const log3: OtaRequestLog[] = [];
    assert.equal((await ota(plain.port, image.subarray(0, 4096), log3, { resumption: false })).kind, 'complete');
    assert.deepEqual(log3.map((e) => [e.headers.Range, e.status]), [[undefined, 200]]);
  });

  it('a connection cut mid-body keeps the bytes that arrived', async () => {
    const standIn = await startImageStandIn(store, new Map([['/app.bin', image]]), { ranges: true });
    closers.push(standIn.close);
    const relay = await startCuttingRelay(standIn.port, 1, 24 * 1024);
    closers.push(relay.close);
    const r = await ota(relay.port, Buffer.alloc(0), []);
    assert.equal(r.kind, 'cut');
    assert.ok(r.kind === 'cut' && r.bytes.length > 1024 && r.bytes.length < 24 * 1024 && r.total === image.length);
    assert.ok(r.kind === 'cut' && r.bytes.equals(image.subarray(0, r.bytes.length)), 'what arrived is the start of the image');
  });

  it('resumes only from 1024 bytes written, rounded down to 16 with flash encryption', () => {
    assert.deepEqual([resumeOffset(1023, true), resumeOffset(1024, true), resumeOffset(5000, true), resumeOffset(5000, false), resumeOffset(5007, false)], [0, 1024, 4992, 5000, 5007]);
  });

  it('test images: valid app layout the update server publishes by its descriptor, in both schemes, checked as the device does', async () => {
    const ec = (await service.keyring.current('esp32-ecdsa-v1')).id;
    const rsa = (await service.keyring.current('esp32-sbv2-rsa')).id;
    const a = await publishEsp32SimImage(service, { projectName: 'OTA_T', version: '1.0.0', secureVersion: 3, trusts: [ec, rsa] });
    const b = await publishEsp32SimImage(service, { projectName: 'OTA_T', version: '1.0.1', scheme: 'esp32-sbv2-rsa', secureVersion: 3, trusts: [ec, rsa] });
    assert.deepEqual([a.entry.name, a.entry.platform, a.entry.signedWith, b.entry.name, b.entry.signedWith], ['OTA_T-1.0.0', 'esp32', ec, 'OTA_T-1.0.1', rsa]);
    const desc = readAppDescriptor(image)!;
    assert.deepEqual([desc.projectName, desc.version, desc.secureVersion, image[0], image.length % 16], ['OTA_T', '1.2.3', 0, 0xe9, 0]);
    const trusts = [ec, rsa].map((id) => createPublicKey(service.keyring.exportPublic(id).pem));
    const sbv2 = await service.keyring.sign(rsa, buildEsp32SimImage({ projectName: 'OTA_T', version: '1.0.2', secureVersion: 3, trusts: ['K'] }));
    const ok = checkEsp32Image(sbv2, { projectName: 'OTA_T', version: '1.0.1', secureVersion: 3, trusts });
    assert.ok(ok.ok && ok.name === 'OTA_T-1.0.2');
    assert.deepEqual(readEsp32SimTrusts(sbv2.subarray(0, ok.ok ? ok.payloadLength : 0)), ['K']);
    assert.match((checkEsp32Image(sbv2, { projectName: 'OTA_T', version: '1.0.1', secureVersion: 4, trusts }) as { reason: string }).reason, /secure_version 3, below the chip's 4/);
    assert.match((checkEsp32Image(sbv2, { projectName: 'OTA_T', version: '1.0.1', secureVersion: 3, trusts: trusts.slice(0, 1) }) as { reason: string }).reason, /^signature check failed/);
  });

  it('NVS: written atomically per device, read back; an unreadable file reads as erased', async () => {
    const dir = path.join(tmp.path, 'nvs');
    const nvs = NvsFile.forDevice(dir, 'aa0000000001');
    assert.deepEqual(await nvs.read(2), { useUrl: 0, interval: 86_400, secureVersion: 2 });
    await Promise.all([nvs.write({ useUrl: 1, interval: 300, secureVersion: 2, url: 'https://a/b' }), nvs.write({ useUrl: 1, interval: 600, secureVersion: 3, url: 'https://a/c' })]);
    assert.deepEqual(await nvs.read(0), { useUrl: 1, interval: 600, secureVersion: 3, url: 'https://a/c', ota: undefined }, 'the last write wins');
    assert.equal((await nvs.read(5)).secureVersion, 5, 'never below the running app\'s');
    writeFileSync(path.join(dir, 'aa0000000001.json'), '{not json');
    assert.deepEqual(await nvs.read(0), { useUrl: 0, interval: 86_400, secureVersion: 0 });
  });
});
