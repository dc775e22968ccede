import { strict as assert } from 'node:assert';
import { spawnSync } from 'node:child_process';
import { existsSync, promises as fs, readFileSync } from 'node:fs';
import * as path from 'node:path';
import { freePort } from '../support/mosquitto';
import { tempDir } from '../support/temp-dir';
import { FlowNode, loadExample, NodeRedProcess, PACKAGE_ROOT } from '../support/node-red-process';

const MODULE = 'node-red-contrib-esp-fleet';
const DASHBOARD = '@flowfuse/node-red-dashboard';

/** What a healthy deploy of each example logs once its nodes are up. */
const READY: Record<string, RegExp> = {
  'certificate-authority.json': /^CA "/,
  'fleet-dashboard.json': /^update server on https:\/\//,
  'nightly-update.json': /^update server on https:\/\//,
  'certificate-lifecycle.json': /^CA "/,
  'offline-alert.json': /^CA "/,
  'publish-firmware.json': /^update server on https:\/\//,
  'enrollment.json': /^enrollment \(EST\) on https:\/\//,
};

/**
 * The package as a hobbyist installs it: `npm pack`, then the palette manager's own install path
 * (the admin API the editor's Manage palette > Install > upload uses, POST /nodes with the
 * tarball) into a fresh user directory of the Node-RED this Node.js runs (5 first); Dashboard
 * 2.0 from the registry the same way. Every example deploys with no error or warning; then the
 * module is removed (DELETE /nodes/<module>) and leaves no node type and no files behind.
 */
describe('installed through the palette manager', function () {
  this.timeout(300_000);
  const tmp = tempDir('palette');
  let red: NodeRedProcess;
  let tarball: string;

  before(async () => {
    // The build is in dist/ already (npm test builds first): pack without running it again.
    const packed = spawnSync('npm', ['pack', '--ignore-scripts', '--pack-destination', tmp.path, PACKAGE_ROOT], { encoding: 'utf8' });
    assert.equal(packed.status, 0, packed.stderr);
    tarball = path.join(tmp.path, packed.stdout.trim().split('\n').pop()!);
    await fs.mkdir(path.join(tmp.path, 'user'));
    red = await NodeRedProcess.start(path.join(tmp.path, 'user'), { linkModules: false });
  });
  after(async () => {
    await red?.stop();
    tmp.remove();
  });

  const types = async (): Promise<Map<string, string>> => red.nodeTypes();

  it('installs the packed tarball and Dashboard 2.0 through the admin API the editor uses', async () => {
    const form = new FormData();
    form.append('tarball', new Blob([readFileSync(tarball)], { type: 'application/gzip' }), path.basename(tarball));
    const res = await fetch(`${red.url}/admin/nodes`, { method: 'POST', body: form, headers: await red.adminHeaders({ 'Node-RED-API-Version': 'v1' }) });
    assert.equal(res.status, 200, await res.clone().text());
    const info = (await res.json()) as { name: string; nodes: { types: string[] }[] };
    assert.equal(info.name, MODULE);
    const version = (JSON.parse(readFileSync(require.resolve(`${DASHBOARD}/package.json`), 'utf8')) as { version: string }).version;
    const dash = await fetch(`${red.url}/admin/nodes`, {
      method: 'POST',
      body: JSON.stringify({ module: DASHBOARD, version }),
      headers: await red.adminHeaders({ 'content-type': 'application/json', 'Node-RED-API-Version': 'v1' }),
    });
    assert.equal(dash.status, 200, await dash.clone().text());
    const loaded = await types();
    for (const t of ['esp-ca', 'esp-cert-issuer', 'esp-fleet', 'esp-status', 'esp-command', 'esp-firmware-server', 'esp-broker']) assert.equal(loaded.get(t), MODULE, t);
    assert.ok(existsSync(path.join(red.userDir, 'node_modules', MODULE, 'dist', 'nodes', 'esp-ca', 'esp-ca.html')));
  });

  it('deploys every example with no error or warning', async () => {
    const ports = { mqtt: await freePort(), fw: await freePort(), enroll: await freePort() };
    const files = (await fs.readdir(path.join(PACKAGE_ROOT, 'examples'))).filter((f) => f.endsWith('.json')).sort();
    assert.deepEqual(files, Object.keys(READY).sort());
    for (const file of files) {
      const flows: FlowNode[] = await loadExample(file);
      for (const n of flows) {
        if (n.type === 'esp-firmware-server') Object.assign(n, { port: String(ports.fw), mqttport: String(ports.mqtt), bindAddress: '127.0.0.1' }, n.enrollPort ? { enrollPort: String(ports.enroll) } : {});
        if (n.type === 'esp-broker') Object.assign(n, { port: String(ports.mqtt), bindAddress: '127.0.0.1' });
        if (n.type === 'esp-fleet') n.broker = `mqtts://localhost:${ports.mqtt}`;
      }
      const from = await red.deploy(flows);
      await red.waitForLog((e) => READY[file].test(e.msg), 30_000, from);
      await new Promise((r) => setTimeout(r, 300));
      // The runtime's note on the test settings' credentialSecret: false is not a problem of ours;
      // nor is an esp-fleet node that finds no broker (only fleet-dashboard.json runs one).
      const problems = red
        .problemsSince(from)
        .filter((e) => e.msg !== 'Using unencrypted credentials' && !(e.type === 'esp-fleet' && /ECONNREFUSED|connect/i.test(e.msg)));
      assert.deepEqual(problems.map((e) => `${e.level} [${e.type}] ${e.msg}`), [], `${file} deployed with problems`);
    }
  });

  it('is removed cleanly: no node type, no files, and the runtime keeps running', async () => {
    await red.deploy([]);
    const res = await fetch(`${red.url}/admin/nodes/${MODULE}`, { method: 'DELETE', headers: await red.adminHeaders() });
    assert.equal(res.status, 204, await res.text());
    const left = [...(await types())].filter(([, m]) => m === MODULE);
    assert.deepEqual(left, []);
    assert.equal(existsSync(path.join(red.userDir, 'node_modules', MODULE)), false);
    const pkg = JSON.parse(readFileSync(path.join(red.userDir, 'package.json'), 'utf8')) as { dependencies?: Record<string, string> };
    assert.equal(pkg.dependencies?.[MODULE], undefined);
    // Still serving, with nothing crashed in the removal.
    const flows = await fetch(`${red.url}/admin/flows`, { headers: await red.adminHeaders() });
    assert.equal(flows.status, 200);
    assert.deepEqual(red.logs.filter((e) => e.level === 'fatal' || /uncaught/i.test(e.msg)), []);
  });
});
