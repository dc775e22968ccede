import { strict as assert } from 'node:assert';
import { randomBytes } from 'node:crypto';
import { readFileSync, writeFileSync, readdirSync } from 'node:fs';
import * as path from 'node:path';
import { CaStore } from '../../lib/pki/ca-store';
import { FirmwareService } from '../../lib/firmware/firmware-service';
import { runFirmwareAction } from '../../lib/firmware/server-actions';
import { startUpdateServer, RunningUpdateServer } from '../../lib/firmware/update-server';
import { tempDir } from '../support/temp-dir';
import { openssl } from '../support/openssl';
import { rawRequest, esp8266UpdateRequest } from '../support/raw-https';

const DEV = '84f3eb0000c3';
const P = 'ESP8266_WEMOS_D1MINIPRO';
const unsignedBuild = (size = 200_000): Buffer => Buffer.concat([Buffer.from([0xe9]), randomBytes(size - 1)]);

describe('publishing signed firmware and serving it over mutual TLS, with a key rotation', function () {
  this.timeout(60_000);
  const tmp = tempDir('fw');
  let store: CaStore;
  let service: FirmwareService;
  let server: RunningUpdateServer;
  let k1: string;
  let k2: string;
  const device = (): { ca: string; cert: string; key: string } => ({
    ca: store.caCertificatePem,
    cert: readFileSync(path.join(store.deviceFilesDir, `${DEV}.crt`), 'utf8'),
    key: readFileSync(path.join(store.deviceFilesDir, `${DEV}.key`), 'utf8'),
  });
  const check = (current: string): ReturnType<typeof rawRequest> =>
    rawRequest(server.port, device(), esp8266UpdateRequest(`/fw/firmware.bin?curimage=${current}`, { mac: '84:F3:EB:00:00:C3' }));

  /** What the device's Updater does, done by openssl: trailer length, then RSA SHA-256 over the payload. */
  function opensslVerifies(signed: Buffer, keyId: string): boolean {
    const sigLen = signed.readUInt32LE(signed.length - 4);
    const payload = signed.subarray(0, signed.length - 4 - sigLen);
    const sig = signed.subarray(signed.length - 4 - sigLen, signed.length - 4);
    const files = { payload: path.join(tmp.path, 'payload.bin'), sig: path.join(tmp.path, 'sig.bin'), key: path.join(tmp.path, `${keyId}.pem`) };
    writeFileSync(files.payload, payload);
    writeFileSync(files.sig, sig);
    writeFileSync(files.key, service.keyring.exportPublic(keyId).pem);
    const r = openssl(['dgst', '-sha256', '-verify', files.key, '-signature', files.sig, files.payload]);
    return r.status === 0 && /Verified OK/.test(r.stdout);
  }

  before(async () => {
    store = await CaStore.open({ dir: path.join(tmp.path, 'ca') });
    await store.issueServer({ commonName: 'localhost' });
    await store.issueDevice(DEV);
    service = await FirmwareService.open(path.join(tmp.path, 'firmware'));
    k1 = (await service.keyring.current('esp8266-rsa')).id;
    await service.publish({ data: unsignedBuild(), platform: 'esp8266', product: P, version: '00.00.01.a' });
    k2 = (await service.keyring.rotate('esp8266-rsa')).id;
    // The bridge: still signed with the old key, carrying the new one for the next update.
    await service.publish({ data: unsignedBuild(), platform: 'esp8266', product: P, version: '00.00.02.a', signWith: k1, trusts: [k2] });
    await service.publish({ data: unsignedBuild(), platform: 'esp8266', product: P, version: '00.00.03.a' });
    const tls = store.identityFiles('server', 'localhost');
    server = await startUpdateServer({
      port: 0,
      host: '127.0.0.1',
      tls: { key: readFileSync(tls.privateKey, 'utf8'), cert: readFileSync(tls.certificate, 'utf8'), ca: store.caCertificatePem },
      clientCertificates: 'required',
      downloadPath: '/fw',
      deviceFilesDir: store.deviceFilesDir,
      deviceConfig: () => ({}),
      images: service.imageSource(),
    });
  });
  after(async () => {
    await server.close();
    tmp.remove();
  });

  it('walks a device v1 → v2 (the bridge) → v3, each image verifiable with the key the running one trusts', async () => {
    assert.notEqual(k1, k2);
    const fromV1 = await check(`${P}-00.00.01.a`);
    assert.equal(fromV1.status, 200);
    assert.ok(fromV1.body.equals(readFileSync(service.catalogue.pathOf(`${P}-00.00.02.a`))), 'v1 gets the bridge, not v3');
    assert.ok(opensslVerifies(fromV1.body, k1), 'v1 trusts k1, the bridge is signed with k1');
    assert.ok(!opensslVerifies(fromV1.body, k2));
    const fromV2 = await check(`${P}-00.00.02.a`);
    assert.equal(fromV2.status, 200);
    assert.ok(fromV2.body.equals(readFileSync(service.catalogue.pathOf(`${P}-00.00.03.a`))));
    assert.ok(opensslVerifies(fromV2.body, k2), 'the bridge trusts k2, v3 is signed with k2');
    assert.equal((await check(`${P}-00.00.03.a`)).status, 304);
  });

  it('outdated: the devices the server would offer an image now, by the rule it serves with', async () => {
    const other = '84f3eb0000c4';
    const r = (await runFirmwareAction(service, 'outdated', {
      payload: {
        [DEV]: { id: DEV, image: `${P}-00.00.01.a`, online: true },
        [other]: { id: '84:F3:EB:00:00:C4', image: `${P}-00.00.03.a` },
      },
    })) as { outdated: { device: string; next: string; product: string }[]; devices: string[]; upToDate: number };
    assert.deepEqual(r.outdated, [{ device: DEV, image: `${P}-00.00.01.a`, product: P, next: `${P}-00.00.02.a` }], 'v1 gets the bridge next');
    assert.deepEqual([r.devices, r.upToDate], [[DEV], 1]);
    await assert.rejects(runFirmwareAction(service, 'outdated', { payload: [{ id: 'nope', image: 'X-1' }] }), /invalid device id "nope"/);
    await assert.rejects(runFirmwareAction(service, 'outdated', { payload: [{ id: DEV }] }), /has no image/);
    // Fleet-table rows (esp-status output 4): offline rows, and online rows with no image yet, are skipped.
    const rows = (await runFirmwareAction(service, 'outdated', {
      payload: [
        { id: DEV, online: true, image: `${P}-00.00.01.a` },
        { id: '84f3eb0000f1', online: false, image: `${P}-00.00.01.a` },
        { id: '84f3eb0000f2', online: true, image: '' },
      ],
    })) as { devices: string[]; upToDate: number; skipped: number };
    assert.deepEqual([rows.devices, rows.upToDate, rows.skipped], [[DEV], 0, 2]);
    await assert.rejects(runFirmwareAction(service, 'outdated', { payload: 'all' }), /needs msg.payload = a list of devices/);
  });

  it('never serves a lower version, unless an operator assigns a rollback the device can verify', async () => {
    await service.publish({ data: unsignedBuild(), platform: 'esp8266', product: P, version: '00.00.04.a' });
    assert.equal((await check(`${P}-00.00.04.a`)).status, 304);
    await service.catalogue.assign({ target: DEV, rollback: `${P}-00.00.03.a` });
    const back = await check(`${P}-00.00.04.a`);
    assert.equal(back.status, 200);
    assert.ok(back.body.equals(readFileSync(service.catalogue.pathOf(`${P}-00.00.03.a`))));
    // Back across the rotation is impossible: v4 trusts only k2, v1 is signed with k1.
    await service.catalogue.assign({ target: DEV, rollback: `${P}-00.00.01.a` });
    assert.equal((await check(`${P}-00.00.04.a`)).status, 304);
    await service.catalogue.unassign(DEV);
  });

  it('verifies a build that arrives already signed, and refuses a tampered one or a wrong magic; the catalogue is unchanged', async () => {
    const signed = await service.keyring.sign(k2, unsignedBuild());
    const ok = await service.publish({ data: signed, platform: 'esp8266', product: P, version: '00.00.05.a' });
    assert.equal(ok.signature, 'verified');
    assert.ok(readFileSync(service.catalogue.pathOf(ok.entry)).equals(signed), 'stored as it came, not signed twice');
    const before = JSON.stringify(service.catalogue.list());
    const filesBefore = readdirSync(service.catalogue.imagesDir).sort();
    const tampered = Buffer.from(await service.keyring.sign(k2, unsignedBuild()));
    tampered[100] ^= 0xff;
    await assert.rejects(service.publish({ data: tampered, platform: 'esp8266', product: P, version: '00.00.06.a' }), /carries a signature that key .* does not verify/);
    const foreignKey = await service.keyring.sign(k1, unsignedBuild());
    await assert.rejects(service.publish({ data: foreignKey, platform: 'esp8266', product: P, version: '00.00.06.a', signWith: k2 }), /does not verify/);
    await assert.rejects(service.publish({ data: Buffer.concat([Buffer.from([0x00]), randomBytes(5000)]), platform: 'esp8266', product: P, version: '00.00.06.a' }), /0xE9/);
    await assert.rejects(service.publish({ file: '/nonexistent/fw.bin', platform: 'esp8266', product: P, version: '00.00.06.a' }), /no image file/);
    await assert.rejects(service.publish({ data: unsignedBuild(), platform: 'esp8266', product: '../evil', version: '1.0.0' }), /invalid/);
    assert.equal(JSON.stringify(service.catalogue.list()), before);
    assert.deepEqual(readdirSync(service.catalogue.imagesDir).sort(), filesBefore);
  });

  it('offers a beta image only to devices in a group assigned the beta channel; membership survives a reopen', async () => {
    await service.publish({ data: unsignedBuild(), platform: 'esp8266', product: P, version: '00.00.07.a', channel: 'beta' });
    assert.equal((await check(`${P}-00.00.05.a`)).status, 304, 'stable devices do not see beta images');
    await service.catalogue.assign({ target: 'group:beta', channel: 'beta' });
    await service.setGroups(DEV, ['beta']);
    const beta = await check(`${P}-00.00.05.a`);
    assert.equal(beta.status, 200);
    assert.ok(beta.body.equals(readFileSync(service.catalogue.pathOf(`${P}-00.00.07.a`))));
    const reopened = await FirmwareService.open(path.join(tmp.path, 'firmware'));
    assert.deepEqual(reopened.groupsOf(DEV), ['beta']);
    await assert.rejects(service.setGroups(DEV, ['Beta Testers']), /groups must be a list of names/);
    await service.setGroups(DEV, []);
    assert.equal((await check(`${P}-00.00.05.a`)).status, 304);
  });

  it('reads an ESP32 image’s name from its app descriptor and signs it with the ECDSA scheme', async () => {
    const image = Buffer.alloc(64 * 1024, 0);
    image[0] = 0xe9;
    image.writeUInt32LE(0xabcd5432, 32);
    image.write('1.4.2', 32 + 16, 'latin1');
    image.write('garage-door', 32 + 48, 'latin1');
    const { entry, signature } = await service.publish({ data: image, platform: 'esp32' });
    assert.equal(signature, 'signed');
    assert.equal(entry.name, 'garage_door-1.4.2');
    assert.equal(entry.platform, 'esp32');
    const stored = readFileSync(service.catalogue.pathOf(entry));
    assert.equal(stored.length, image.length + 68, 'image || uint32(0) || r || s');
    assert.equal(stored.readUInt32LE(image.length), 0);
  });
});
