import { strict as assert } from 'node:assert';
import { readFileSync } from 'node:fs';
import * as path from 'node:path';
import { X509Certificate } from 'node:crypto';
import { spawnSync } from 'node:child_process';
import type { MqttClient } from 'mqtt';
import { CaStore } from '../../lib/pki/ca-store';
import { writeMosquittoConfig } from '../../lib/mosquitto/folders';
import { MOSQUITTO_CHANGES, mosquittoSeries } from '../../lib/mosquitto/mosquitto-config';
import { tempDir } from '../support/temp-dir';
import { freePort, startMosquitto, RunningMosquitto } from '../support/mosquitto';
import { connectTls, identityFromFiles, TlsIdentity } from '../support/mqtt-client';
import { openssl } from '../support/openssl';

const A = '84f3eb00010a';
const B = '84f3eb00010b';

/** The Mosquitto installed here, e.g. "2.0.11". */
const MOSQUITTO_VERSION = /mosquitto version (\d+\.\d+\.\d+)/.exec(spawnSync('mosquitto', ['-h'], { encoding: 'utf8' }).stdout)?.[1] ?? 'unknown';
/** What our table says this version needs. */
const EXPECTED = MOSQUITTO_CHANGES[mosquittoSeries(MOSQUITTO_VERSION)];

/**
 * What a SIGHUP applies and what needs a restart, on the real Mosquitto (Debian's 2.0), for each
 * change our CA makes to the generated folder. The folder's README and the `mosquitto` action's
 * hint say the same (MOSQUITTO_CHANGES): this test keeps them honest.
 */
describe(`Mosquitto ${MOSQUITTO_VERSION}: which changes a SIGHUP applies`, function () {
  this.timeout(60_000);
  const tmp = tempDir('mosq-reload');
  let store: CaStore;
  let broker: RunningMosquitto;
  let port: number;
  let dir: string;
  const clients: MqttClient[] = [];
  const device = (id: string): TlsIdentity => identityFromFiles(path.join(store.deviceFilesDir, 'ca.crt'), path.join(store.deviceFilesDir, `${id}.crt`), path.join(store.deviceFilesDir, `${id}.key`));
  const backendId = (): TlsIdentity => identityFromFiles(path.join(dir, 'ca.crt'), path.join(store.dir, 'backends', 'node-red.crt'), path.join(store.dir, 'backends', 'node-red.key'));
  const connects = async (id: TlsIdentity, clientId: string): Promise<boolean> => {
    try {
      clients.push(await connectTls(port, id, clientId));
      return true;
    } catch {
      return false;
    }
  };
  /** Whether a device's status reaches the backend (the ACL lets it publish). */
  const statusArrives = async (id: string): Promise<boolean> => {
    const backend = await connectTls(port, backendId(), `node-red-${Date.now()}`);
    clients.push(backend);
    await backend.subscribeAsync(`/status/${id}`);
    const got = new Promise<boolean>((resolve) => {
      backend.on('message', () => resolve(true));
      setTimeout(() => resolve(false), 1_500);
    });
    const d = await connectTls(port, device(id), `${id}-${Date.now()}`);
    clients.push(d);
    await d.publishAsync(`/status/${id}`, '{}');
    return got;
  };
  const servedSerial = (): string => {
    const out = openssl(['s_client', '-connect', `127.0.0.1:${port}`, '-servername', 'localhost'], '').stdout;
    return new X509Certificate(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/.exec(out)![0]).serialNumber;
  };

  before(async () => {
    store = await CaStore.open({ dir: path.join(tmp.path, 'ca') });
    await store.issueDevice(A);
    port = await freePort();
    dir = (await writeMosquittoConfig(store, { dir: path.join(tmp.path, 'mosquitto'), serverName: 'localhost', port })).dir;
    broker = await startMosquitto(dir);
  });
  after(async () => {
    // Some of them were connected to a Mosquitto the test restarted: end without waiting on them.
    for (const c of clients) c.end(true);
    await broker?.stop();
    tmp.remove();
  });

  it('the folder says when to reload and when to restart, and sets max_packet_size itself', () => {
    const readme = readFileSync(path.join(dir, 'README.md'), 'utf8');
    assert.match(readme, /\| a different CA \(ca\.crt\) \| SIGHUP \| restart \|/);
    assert.match(readFileSync(path.join(dir, 'mosquitto.conf'), 'utf8'), /^max_packet_size 262144$/m);
  });

  it(`a device issued after start may publish once SIGHUP reloads the ACL (${EXPECTED.issue})`, async () => {
    await store.issueDevice(B);
    await store.idle();
    assert.equal(await statusArrives(B), false, 'before the reload the ACL does not know it');
    await broker.reload();
    assert.equal(await statusArrives(B), true);
    assert.equal(EXPECTED.issue, 'reload');
  });

  it(`a revoked device is refused once SIGHUP reloads the CRL (${EXPECTED.revoke})`, async () => {
    await store.revoke(store.currentIdentity('device', B)!.serial, 'keyCompromise');
    await store.idle();
    await broker.reload();
    assert.equal(await connects(device(B), `${B}-after-revoke`), false);
    assert.equal(await connects(device(A), `${A}-after-revoke`), true, 'others still get in');
    assert.equal(EXPECTED.revoke, 'reload');
  });

  it(`a renewed server certificate: what a SIGHUP does, and a restart serves it (${EXPECTED.serverCertificate})`, async () => {
    const before = servedSerial();
    await store.renew({ commonName: 'localhost', newKey: true });
    await store.idle();
    const onDisk = new X509Certificate(readFileSync(path.join(dir, 'server.crt'))).serialNumber;
    assert.notEqual(onDisk, before, 'the folder holds the renewed certificate');
    await broker.reload();
    const afterReload = servedSerial();
    // The table must say what this Mosquitto does: a reload that serves it, or a restart.
    assert.equal(afterReload === onDisk ? 'reload' : 'restart', EXPECTED.serverCertificate, `served ${afterReload} after SIGHUP, on disk ${onDisk}`);
    await broker.stop();
    broker = await startMosquitto(dir);
    assert.equal(servedSerial(), onDisk);
  });

  it(`a new CA: what a SIGHUP does, and a restart loads it (${EXPECTED.ca})`, async () => {
    // Another CA's device: whether a SIGHUP loads the new ca.crt is what the table says for this version.
    const other = await CaStore.open({ dir: path.join(tmp.path, 'other-ca') });
    const issued = await other.issueDevice(A);
    const foreign: TlsIdentity = { ca: readFileSync(path.join(dir, 'ca.crt'), 'utf8'), cert: issued.certificatePem, key: issued.privateKeyPem! };
    const { writeFileSync } = await import('node:fs');
    writeFileSync(path.join(dir, 'ca.crt'), other.caCertificatePem);
    writeFileSync(path.join(dir, 'crl.pem'), await other.crlPem());
    await broker.reload();
    const afterReload = await connects(foreign, 'foreign-after-reload');
    assert.equal(afterReload ? 'reload' : 'restart', EXPECTED.ca);
    await broker.stop();
    broker = await startMosquitto(dir);
    assert.equal(await connects(foreign, 'foreign-after-restart'), true, 'a restart loads the new CA');
  });
});

describe('the hints for applying a change to Mosquitto', () => {
  it('say SIGHUP only where every version applies the change on one, and restart otherwise', async () => {
    const { mosquittoApplyHint } = await import('../../lib/mosquitto/mosquitto-config');
    for (const change of ['issue', 'revoke', 'serverCertificate', 'ca'] as const) {
      const hint = mosquittoApplyHint(change, '/etc/mosquitto/fleet/mosquitto.conf');
      const everywhere = MOSQUITTO_CHANGES['2.0'][change] === 'reload' && MOSQUITTO_CHANGES['2.1'][change] === 'reload';
      assert.equal(hint.startsWith('reload mosquitto'), everywhere, `${change}: ${hint}`);
      if (!everywhere) assert.match(hint, /^restart mosquitto/, `${change}: ${hint}`);
    }
  });
});
