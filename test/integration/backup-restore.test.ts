import { strict as assert } from 'node:assert';
import { localServerOptions } from '../support/update-server';
import { createPublicKey, X509Certificate } from 'node:crypto';
import { readFileSync } from 'node:fs';
import * as path from 'node:path';
import type { MqttClient } from 'mqtt';
import { CaStore } from '../../lib/pki/ca-store';
import { EmbeddedBroker } from '../../lib/broker/embedded-broker';
import { FirmwareService } from '../../lib/firmware/firmware-service';
import { startUpdateServer, RunningUpdateServer } from '../../lib/firmware/update-server';
import { verifyImage } from '../../lib/firmware/signing';
import { RegistryFile } from '../../lib/fleet/registry-file';
import { createBackup, restoreBackup } from '../../lib/backup/backup';
import { tempDir } from '../support/temp-dir';
import { freePort, startMosquitto, RunningMosquitto } from '../support/mosquitto';
import { connectTls, identityFromFiles, Inbox, TlsIdentity } from '../support/mqtt-client';
import { rawRequest, esp8266UpdateRequest } from '../support/raw-https';
import { makeFleetState, FleetState, PASSPHRASE, DEVICES, PRODUCT, unsignedBuild } from '../support/fleet-state';

/**
 * A fleet backed up, then restored into a fresh set of folders as a new Node-RED would have
 * them (its own new CA with only its server and backend identities): the devices from before
 * reconnect with the certificates they carry, to a broker and an update server started on the
 * restored store; the images verify; the serials go on.
 */
describe('restore into a fresh Node-RED: devices reconnect, images verify, serials continue', function () {
  this.timeout(60_000);
  const tmp = tempDir('restore');
  let fleet: FleetState;
  let freshRoot: string;
  let restored: CaStore;
  let oldSerials: number[];
  const clients: MqttClient[] = [];
  let broker: EmbeddedBroker | undefined;
  let server: RunningUpdateServer | undefined;
  let mosquitto: RunningMosquitto | undefined;
  let mosquittoPort: number;

  /** A device as it is out in the field: the files it was given before the backup. */
  const deviceFromBefore = (id: string): TlsIdentity =>
    identityFromFiles(path.join(fleet.store.deviceFilesDir, 'ca.crt'), path.join(fleet.store.deviceFilesDir, `${id}.crt`), path.join(fleet.store.deviceFilesDir, `${id}.key`));
  const track = (c: MqttClient): MqttClient => {
    c.on('error', () => undefined);
    clients.push(c);
    return c;
  };

  before(async () => {
    mosquittoPort = await freePort();
    fleet = await makeFleetState(path.join(tmp.path, 'old-node-red'), { mosquittoPort });
    oldSerials = fleet.store.list({ includeRevoked: true }).map((r) => parseInt(r.serial, 16));
    const file = path.join(tmp.path, 'fleet.efb');
    // The default scrypt cost, as the node uses it.
    await createBackup(fleet.sources, PASSPHRASE, file, { home: fleet.root });

    // A fresh Node-RED: the nodes have just made their own CA and identities, nothing else.
    freshRoot = path.join(tmp.path, 'new-node-red');
    const fresh = await CaStore.open({ dir: path.join(freshRoot, 'esp-fleet-ca') });
    await fresh.issueServer({ commonName: 'localhost' });
    await fresh.issueBackend({ commonName: 'node-red' });
    await fresh.idle();
    await FirmwareService.open(path.join(freshRoot, 'esp-fleet-firmware'));
    const summary = await restoreBackup(
      file,
      PASSPHRASE,
      [
        { role: 'ca', path: path.join(freshRoot, 'esp-fleet-ca') },
        { role: 'firmware', key: 'fw1', path: path.join(freshRoot, 'esp-fleet-firmware') },
        { role: 'registry', key: 'fleet1', path: path.join(freshRoot, 'esp-fleet-registry-fleet1.json') },
      ],
      { home: freshRoot },
    );
    assert.equal(summary.restored.length, 3);
    restored = await CaStore.open({ dir: path.join(freshRoot, 'esp-fleet-ca') });
  });

  after(async () => {
    await Promise.all(clients.map((c) => Promise.race([c.endAsync(true).catch(() => undefined), new Promise((r) => setTimeout(r, 500))])));
    await broker?.close();
    await server?.close();
    await mosquitto?.stop();
    await restored?.idle();
    tmp.remove();
  });

  it('is the same CA, with the same records', () => {
    assert.equal(new X509Certificate(restored.caCertificatePem).fingerprint256, new X509Certificate(fleet.store.caCertificatePem).fingerprint256);
    assert.deepEqual(restored.list({ includeRevoked: true }), fleet.store.list({ includeRevoked: true }));
  });

  it('a device from before connects to an embedded broker started on the restored store and publishes; the revoked one stays out', async () => {
    broker = await EmbeddedBroker.start({ store: restored, port: 0, host: '127.0.0.1', serverNames: ['localhost'] });
    const backendFiles = restored.identityFiles('backend', 'node-red');
    const backend = track(await connectTls(broker.port, identityFromFiles(path.join(restored.deviceFilesDir, 'ca.crt'), backendFiles.certificate, backendFiles.privateKey), 'restored-backend'));
    const inbox = new Inbox(backend);
    await backend.subscribeAsync('/status/+');
    const device = track(await connectTls(broker.port, deviceFromBefore(DEVICES[0]), DEVICES[0]));
    await device.publishAsync(`/status/${DEVICES[0]}`, '{"espname":"garage"}');
    await inbox.until((topic, payload) => topic === `/status/${DEVICES[0]}` && payload.includes('garage'));
    await assert.rejects(connectTls(broker.port, deviceFromBefore('84f3eb0000ff'), '84f3eb0000ff'), /refused|closed before CONNACK/);
  });

  it('the restored Mosquitto folder points at its new place: real Mosquitto admits a device from before', async () => {
    const dir = path.join(freshRoot, 'esp-fleet-ca', 'mosquitto');
    assert.match(readFileSync(path.join(dir, 'mosquitto.conf'), 'utf8'), new RegExp(`^certfile ${path.join(dir, 'server.crt')}$`, 'm'));
    mosquitto = await startMosquitto(dir);
    const device = track(await connectTls(mosquittoPort, deviceFromBefore(DEVICES[1]), DEVICES[1]));
    await device.publishAsync(`/status/${DEVICES[1]}`, '{}');
  });

  it('every catalogue image verifies with the restored keyring, and an update server on the restored store serves a device from before', async () => {
    const service = await FirmwareService.open(path.join(freshRoot, 'esp-fleet-firmware'));
    const images = service.catalogue.list();
    assert.equal(images.length, 2);
    for (const e of images) {
      const key = service.keyring.get(e.signedWith)!;
      const result = verifyImage(key.scheme, await service.catalogue.read(e), createPublicKey(key.publicKeyPem));
      assert.ok(result.ok, `${e.name} verifies with ${e.signedWith}`);
    }
    assert.deepEqual(service.groupsOf(DEVICES[0]), ['garage']);
    // The signing keys came back too: a new build is signed with the rotated key.
    const published = await service.publish({ data: unsignedBuild(), platform: 'esp8266', product: PRODUCT, version: '00.00.03.a' });
    assert.equal(published.entry.signedWith, fleet.service.keyring.peekCurrent('esp8266-rsa')!.id);

    server = await startUpdateServer({
      ...(await localServerOptions(restored)),
      deviceConfig: () => ({}),
      images: service.imageSource(),
    });
    const id = deviceFromBefore(DEVICES[2]);
    const r = await rawRequest(server.port, { ca: id.ca, cert: id.cert, key: id.key }, esp8266UpdateRequest(`/fw/firmware.bin?curimage=${PRODUCT}-00.00.02.a`, { mac: DEVICES[2] }));
    assert.equal(r.status, 200);
    const key = service.keyring.get(published.entry.signedWith)!;
    assert.ok(verifyImage('esp8266-rsa', r.body, createPublicKey(key.publicKeyPem)).ok, 'the image served verifies');
    const revoked = deviceFromBefore('84f3eb0000ff');
    await assert.rejects(rawRequest(server.port, { ca: revoked.ca, cert: revoked.cert, key: revoked.key }, esp8266UpdateRequest('/fw/firmware.bin', { mac: '84f3eb0000ff' })));
  });

  it('the registry holds the devices from before', async () => {
    const registry = await RegistryFile.open(path.join(freshRoot, 'esp-fleet-registry-fleet1.json'));
    assert.deepEqual(registry.registry.ids().sort(), [...DEVICES].sort());
  });

  it('the next certificate has a serial above every serial in the backup', async () => {
    const next = parseInt((await restored.issueDevice('84f3eb0000b9')).record.serial, 16);
    assert.ok(next > Math.max(...oldSerials), `${next.toString(16)} > ${Math.max(...oldSerials).toString(16)}`);
  });
});
