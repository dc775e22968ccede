import { strict as assert } from 'node:assert';
import { promises as fs, readFileSync } from 'node:fs';
import * as path from 'node:path';
import { X509Certificate, createPrivateKey, createPublicKey } from 'node:crypto';
import { freePort } from '../support/mosquitto';
import { tempDir } from '../support/temp-dir';
import { FlowNode, loadExample, NodeRedProcess, PACKAGE_ROOT } from '../support/node-red-process';
import { openssl } from '../support/openssl';

/** What a healthy deploy of each example on fresh stores logs once its nodes are up. */
const READY: Record<string, RegExp[]> = {
  'certificate-authority.json': [/^CA "/],
  'fleet-dashboard.json': [/^MQTT broker on mqtts:/, /^update server on https:\/\//, /^broker mqtts:\/\/localhost:\d+: connected$/],
  'nightly-update.json': [/^update server on https:\/\//],
  'certificate-lifecycle.json': [/^CA "/],
  'offline-alert.json': [/^CA "/],
  'publish-firmware.json': [/^update server on https:\/\//],
  'enrollment.json': [/^enrollment \(EST\) on https:\/\//, /^update server on https:\/\//],
};

interface JournalCert {
  t: 'cert' | 'revoke';
  r?: { serial: string; kind: string; dnsNames?: string[]; commonName: string };
  serial?: string;
}

/** Valid server certificates per DNS name, read from the CA's journal (the store is Node-RED's while it runs). */
function validServersByName(caDir: string): Map<string, string[]> {
  const lines = readFileSync(path.join(caDir, 'journal.jsonl'), 'utf8').split('\n').filter(Boolean).map((l) => JSON.parse(l) as JournalCert);
  const revoked = new Set(lines.filter((l) => l.t === 'revoke').map((l) => l.serial));
  const names = new Map<string, string[]>();
  for (const l of lines) {
    if (l.t !== 'cert' || l.r?.kind !== 'server' || revoked.has(l.r.serial)) continue;
    for (const n of l.r.dnsNames ?? []) names.set(n, [...(names.get(n) ?? []), l.r.serial]);
  }
  return names;
}

/**
 * First deploys on fresh stores, as a new user's first click on Deploy: every example once,
 * and the fleet dashboard ten times, where the broker and the update server start together and
 * both need the `localhost` server identity. Before identities were one serialized step, about
 * one deploy in three left a certificate and a key of two different issuances.
 */
describe('security: fresh deploys (one identity, one certificate)', function () {
  this.timeout(240_000);
  const tmp = tempDir('fresh');
  let red: NodeRedProcess;
  let ports: { mqtt: number; fw: number; enroll: number };

  before(async () => {
    await fs.mkdir(path.join(tmp.path, 'user'), { recursive: true });
    red = await NodeRedProcess.start(path.join(tmp.path, 'user'));
    ports = { mqtt: await freePort(), fw: await freePort(), enroll: await freePort() };
  });
  after(async () => {
    await red?.stop();
    tmp.remove();
  });

  /** The example with stores of its own (`run`) and this test's ports. */
  async function fresh(name: string, run: string): Promise<FlowNode[]> {
    const flows = await loadExample(name);
    for (const n of flows) {
      if (n.type === 'esp-ca') n.folder = `${run}/ca`;
      if (n.type === 'esp-firmware-server') Object.assign(n, { folder: `${run}/firmware`, port: String(ports.fw), mqttport: String(ports.mqtt), bindAddress: '127.0.0.1' }, n.enrollPort ? { enrollPort: String(ports.enroll) } : {});
      if (n.type === 'esp-broker') Object.assign(n, { port: String(ports.mqtt), bindAddress: '127.0.0.1' });
      if (n.type === 'esp-fleet') Object.assign(n, { broker: `mqtts://localhost:${ports.mqtt}`, registryFile: `${run}/registry.json` });
    }
    return flows;
  }

  async function deployFresh(name: string, run: string): Promise<void> {
    const from = await red.deploy(await fresh(name, run));
    for (const ready of READY[name]) await red.waitForLog((e) => ready.test(e.msg), 30_000, from);
    // Give a late failure (a server that could not load its key) the moment to show.
    await new Promise((r) => setTimeout(r, 300));
    // The runtime's own note on the test settings' credentialSecret: false is not a problem of ours.
    const problems = red.problemsSince(from).filter((e) => e.msg !== 'Using unencrypted credentials');
    assert.deepEqual(problems.map((e) => `${e.level} [${e.type}:${e.name || e.id}] ${e.msg}`), [], `${name} (${run}) deployed with problems`);
  }

  it('every example deploys on fresh stores with no error or warning', async () => {
    const files = (await fs.readdir(path.join(PACKAGE_ROOT, 'examples'))).filter((f) => f.endsWith('.json')).sort();
    assert.deepEqual(files, Object.keys(READY).sort());
    for (const file of files) await deployFresh(file, `once-${file.replace('.json', '')}`);
  });

  it('the fleet dashboard ten times on fresh stores: broker and update server always start, each host name has one valid server certificate', async () => {
    for (let i = 0; i < 10; i++) {
      const run = `dashboard-${i}`;
      await deployFresh('fleet-dashboard.json', run);
      const caDir = path.join(red.userDir, run, 'ca');
      const byName = validServersByName(caDir);
      assert.deepEqual([...byName.keys()], ['localhost'], `run ${i}`);
      assert.equal(byName.get('localhost')!.length, 1, `run ${i}: one valid certificate for localhost, got ${byName.get('localhost')!.join(', ')}`);
      // The files on disk are one issuance: the certificate and its key.
      const cert = readFileSync(path.join(caDir, 'servers', 'localhost.crt'), 'utf8');
      const key = readFileSync(path.join(caDir, 'servers', 'localhost.key'), 'utf8');
      assert.ok(new X509Certificate(cert).publicKey.export({ type: 'spki', format: 'der' }).equals(createPublicKey(createPrivateKey(key)).export({ type: 'spki', format: 'der' })), `run ${i}: key belongs to certificate`);
      // Both servers present that certificate (the broker and the update server).
      for (const port of [ports.mqtt, ports.fw]) {
        const shown = openssl(['s_client', '-connect', `127.0.0.1:${port}`, '-servername', 'localhost', '-showcerts'], '').stdout;
        const served = /-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/.exec(shown)?.[0];
        assert.equal(served && new X509Certificate(served).serialNumber, new X509Certificate(cert).serialNumber, `run ${i}: port ${port} serves the one certificate`);
      }
    }
  });
});
