import { strict as assert } from 'node:assert';
import { generateKeyPairSync, X509Certificate } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import * as path from 'node:path';
import type { MqttClient } from 'mqtt';
import { CaStore } from '../../lib/pki/ca-store';
import { buildCsr } from '../../lib/pki/csr-builder';
import { toPem } from '../../lib/pki/x509';
import { writeMosquittoConfig } from '../../lib/mosquitto/folders';
import { EmbeddedBroker } from '../../lib/broker/embedded-broker';
import { startUpdateServer, RunningUpdateServer } from '../../lib/firmware/update-server';
import { tempDir } from '../support/temp-dir';
import { freePort, startMosquitto, RunningMosquitto } from '../support/mosquitto';
import { connectTls, Inbox, TlsIdentity } from '../support/mqtt-client';
import { localServerOptions } from '../support/update-server';
import { rawRequest } from '../support/raw-https';
import { opensslEspHandshake, opensslOk } from '../support/openssl';

/** A device whose P-256 key was made by the CA store (keyType ec). */
const MADE = '84f3eb0ec001';
/** A device that made its own P-256 key and sent a CSR (the key never reaches the store). */
const OWN = '84f3eb0ec002';

/**
 * TLS clients with EC P-256 client certificates from the store, accepted by every TLS server of
 * the fleet: real Mosquitto with the generated config, the embedded broker, the update server.
 * Each also refuses an EC certificate of a foreign CA, so the acceptance is the CA's doing.
 */
describe('EC P-256 device identities on the brokers and the update server', function () {
  this.timeout(60_000);
  const tmp = tempDir('ec-identities');
  let store: CaStore;
  const ids: Record<string, TlsIdentity> = {};
  let foreign: TlsIdentity;
  const clients: MqttClient[] = [];
  const track = (c: MqttClient): MqttClient => {
    c.on('error', () => undefined);
    clients.push(c);
    return c;
  };
  const closeClients = async (): Promise<void> => {
    await Promise.all(clients.splice(0).map((c) => Promise.race([c.endAsync(true).catch(() => undefined), new Promise((r) => setTimeout(r, 500))])));
  };

  before(async () => {
    store = await CaStore.open({ dir: path.join(tmp.path, 'ca') });
    await store.issueServer({ commonName: 'localhost' });
    await store.issueBackend({ commonName: 'node-red' });
    const made = await store.issueDevice(MADE, { keyType: 'ec' });
    ids[MADE] = { ca: store.caCertificatePem, cert: made.certificatePem, key: readFileSync(made.files.privateKey!, 'utf8') };
    const ownKey = generateKeyPairSync('ec', { namedCurve: 'prime256v1' }).privateKey;
    const own = await store.signCsr(toPem('CERTIFICATE REQUEST', buildCsr({ commonName: OWN, privateKey: ownKey })), { deviceId: OWN, keyType: 'ec' });
    ids[OWN] = { ca: store.caCertificatePem, cert: own.certificatePem, key: ownKey.export({ type: 'pkcs8', format: 'pem' }).toString() };
    for (const id of [MADE, OWN]) {
      const cert = new X509Certificate(ids[id].cert!);
      assert.equal(cert.publicKey.asymmetricKeyType, 'ec', `${id} must hold an EC key`);
      assert.equal(cert.publicKey.asymmetricKeyDetails?.namedCurve, 'prime256v1');
    }
    // The same CN, a P-256 key, but signed by a CA of its own.
    const key = path.join(tmp.path, 'foreign.key');
    const crt = path.join(tmp.path, 'foreign.crt');
    opensslOk(['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', key, '-subj', `/CN=${MADE}`, '-days', '2', '-out', crt]);
    foreign = { ca: store.caCertificatePem, cert: readFileSync(crt, 'utf8'), key: readFileSync(key, 'utf8') };
  });
  after(async () => {
    await closeClients();
    await store.idle();
    tmp.remove();
  });

  const backendIdentity = (): TlsIdentity => {
    const files = store.identityFiles('backend', 'node-red');
    return { ca: store.caCertificatePem, cert: readFileSync(files.certificate, 'utf8'), key: readFileSync(files.privateKey, 'utf8') };
  };

  /** Both EC devices connect and publish their own status; the backend gets both; the foreign one is refused. */
  async function devicesPublish(port: number): Promise<void> {
    const backend = track(await connectTls(port, backendIdentity(), 'node-red-ec'));
    const inbox = new Inbox(backend);
    await backend.subscribeAsync('/status/+');
    for (const id of [MADE, OWN]) {
      const device = track(await connectTls(port, ids[id], id));
      await device.publishAsync(`/status/${id}`, JSON.stringify({ uptimemillis: 1 }));
      await inbox.until((t) => t === `/status/${id}`);
    }
    await assert.rejects(connectTls(port, foreign, 'foreign-ec'), /refused|closed before CONNACK/);
  }

  describe('real Mosquitto with the generated config', () => {
    let broker: RunningMosquitto | undefined;
    after(async () => {
      await closeClients();
      await broker?.stop();
    });
    it('accepts the EC devices (and their ACL identity), refuses a foreign EC certificate', async () => {
      const port = await freePort();
      const setup = await writeMosquittoConfig(store, { dir: path.join(tmp.path, 'mosquitto'), serverName: 'localhost', backendName: 'node-red', port });
      broker = await startMosquitto(setup.dir);
      await devicesPublish(port);
    });
  });

  describe('the embedded broker', () => {
    let broker: EmbeddedBroker | undefined;
    after(async () => {
      await closeClients();
      await broker?.close();
    });
    it('accepts the EC devices (identity from the certificate CN), refuses a foreign EC certificate', async () => {
      const port = await freePort();
      broker = await EmbeddedBroker.start({ store, port, host: '127.0.0.1', serverNames: ['localhost'] });
      await devicesPublish(port);
      assert.equal(broker.counts().devices, 2);
    });
  });

  describe('the update server', () => {
    let server: RunningUpdateServer | undefined;
    after(async () => {
      await server?.close();
    });
    it('serves the EC devices their files (Node TLS and an ESP-like openssl TLS 1.2 handshake), refuses a foreign EC certificate', async () => {
      server = await startUpdateServer({
        ...(await localServerOptions(store)),
        deviceConfig: () => ({ mqttserver: 'localhost', mqttport: 8883 }),
        images: { next: () => ({ kind: 'none', reason: 'up-to-date', detail: 'test' }) },
      });
      const port = server.port;
      for (const id of [MADE, OWN]) {
        const config = await rawRequest(port, ids[id], 'GET /fw/config.json HTTP/1.0\r\nHost: localhost\r\nConnection: close\r\n\r\n');
        assert.equal(config.status, 200, `${id}: ${config.head}`);
        assert.equal(JSON.parse(config.body.toString()).mqttserver, 'localhost');
        const crt = await rawRequest(port, ids[id], `GET /fw/${id}.crt HTTP/1.0\r\nHost: localhost\r\nConnection: close\r\n\r\n`);
        assert.equal(crt.body.toString(), ids[id].cert);
      }
      // The device whose key was made here fetches it with its certificate; the one with its own key has none to fetch.
      assert.equal((await rawRequest(port, ids[MADE], `GET /fw/${MADE}.key HTTP/1.0\r\nHost: localhost\r\nConnection: close\r\n\r\n`)).body.toString(), ids[MADE].key);
      assert.notEqual((await rawRequest(port, ids[OWN], `GET /fw/${OWN}.key HTTP/1.0\r\nHost: localhost\r\nConnection: close\r\n\r\n`)).status, 200);

      const write = (name: string, text: string): string => {
        const f = path.join(tmp.path, name);
        writeFileSync(f, text);
        return f;
      };
      const files = { cert: write('ec.crt', ids[MADE].cert!), key: write('ec.key', ids[MADE].key!), ca: write('ca.crt', store.caCertificatePem) };
      const esp = await opensslEspHandshake(port, files, 'GET /fw/config.json HTTP/1.0\r\nHost: localhost\r\n\r\n');
      assert.match(esp, /HTTP\/1\.[01] 200/);
      assert.match(esp, /Protocol\s*: TLSv1\.2/);

      const refused = await rawRequest(port, foreign, 'GET /fw/config.json HTTP/1.0\r\nHost: localhost\r\nConnection: close\r\n\r\n').then(
        (r) => r.status,
        (err: Error) => err.message,
      );
      assert.notEqual(refused, 200);
    });
  });
});
