import { strict as assert } from 'node:assert';
import { createHash } from 'node:crypto';
import { promises as fs, readdirSync, readFileSync, statSync } from 'node:fs';
import * as path from 'node:path';
import { tempDir } from '../support/temp-dir';
import { ExampleFixture } from '../support/example-fixture';
import { FlowNode, loadExample, NodeRedProcess, PACKAGE_ROOT } from '../support/node-red-process';
import { recordAttack } from './support/attack-tally';

/** Node types that sign, issue, revoke or command. */
const POWER = new Set(['esp-cert-issuer', 'esp-command', 'esp-firmware-server', 'esp-rollout']);

/** Hash of every file under `dir`: what an attack must leave as it was. */
function snapshot(dir: string): string {
  const h = createHash('sha256');
  const walk = (d: string): void => {
    for (const name of readdirSync(d).sort()) {
      const p = path.join(d, name);
      if (statSync(p).isDirectory()) walk(p);
      else h.update(`${path.relative(dir, p)}\0`).update(readFileSync(p));
    }
  };
  walk(dir);
  return h.digest('hex');
}

/** Every node reachable from `start` through wires (link nodes included). */
function reachable(flows: FlowNode[], start: FlowNode): Set<string> {
  const byId = new Map(flows.map((n) => [n.id, n]));
  const seen = new Set<string>();
  const queue = [start.id];
  while (queue.length) {
    const n = byId.get(queue.pop()!);
    if (!n || seen.has(n.id)) continue;
    seen.add(n.id);
    for (const out of (n.wires as string[][] | undefined) ?? []) queue.push(...out);
    if (n.type === 'link out') queue.push(...((n.links as string[] | undefined) ?? []));
  }
  return seen;
}

/** Dashboard 2.0's socket.io handshake over engine.io polling: true when the namespace accepts the client. */
async function dashboardSocketAccepts(base: string, headers: Record<string, string>): Promise<boolean> {
  const url = `${base}/dashboard/socket.io/?EIO=4&transport=polling`;
  const open = await (await fetch(url, { headers })).text();
  const sid = /"sid":"([^"]+)"/.exec(open)?.[1];
  assert.ok(sid, `engine.io handshake: ${open}`);
  await fetch(`${url}&sid=${sid}`, { method: 'POST', headers: { ...headers, 'content-type': 'text/plain;charset=UTF-8' }, body: '40' });
  const answer = await (await fetch(`${url}&sid=${sid}`, { headers })).text();
  if (answer.startsWith('44')) return false; // CONNECT_ERROR
  assert.match(answer, /^40\{"sid"/, `socket.io answer: ${answer}`);
  return true;
}

/**
 * With the shipped examples deployed as they are, nobody without the login can sign or publish
 * firmware, issue or revoke, or send a command: no example routes an open http-in to a node of
 * power, and the editor, admin API and dashboard (pages and socket.io) all ask for the login.
 */
describe('security: no anonymous path to power', function () {
  this.timeout(120_000);
  const tmp = tempDir('no-anon');
  let fx: ExampleFixture;

  before(async () => {
    fx = await ExampleFixture.start({ root: tmp.path, deviceIds: [], broker: 'embedded' });
  });
  after(async () => {
    await fx?.stop();
    tmp.remove();
  });

  it('no example wires an http-in route to a node that signs, issues, revokes or commands', async () => {
    const files = (await fs.readdir(path.join(PACKAGE_ROOT, 'examples'))).filter((f) => f.endsWith('.json'));
    for (const file of files) {
      const flows = await loadExample(file);
      for (const entry of flows.filter((n) => n.type === 'http in' || n.type === 'websocket in' || n.type === 'tcp in' || n.type === 'udp in')) {
        const powers = [...reachable(flows, entry)].map((id) => flows.find((n) => n.id === id)!).filter((n) => POWER.has(n.type));
        assert.deepEqual(powers.map((n) => n.id), [], `${file}: ${entry.type} ${String(entry.url ?? '')} reaches ${powers.map((n) => n.type).join(', ')}`);
      }
    }
  });

  it('the deployed fleet dashboard: every admin route, http route and the dashboard socket refuse a client without the login; nothing changes', async () => {
    const flows = fx.patch(await loadExample('fleet-dashboard.json'));
    const from = await fx.red.deploy(flows);
    await fx.red.waitForLog((e) => /^update server on https:/.test(e.msg), 20_000, from);
    const ca = path.join(fx.red.userDir, 'esp-fleet-ca');
    const firmware = path.join(fx.red.userDir, 'esp-fleet-firmware');
    const before = [snapshot(ca), snapshot(firmware)];
    const base = fx.red.url;
    const injects = flows.filter((n) => n.type === 'inject').map((n) => n.id);
    const attempts: { method: string; url: string; body?: string }[] = [
      { method: 'GET', url: '/admin/flows' },
      { method: 'POST', url: '/admin/flows', body: '[]' },
      ...injects.map((id) => ({ method: 'POST', url: `/admin/inject/${id}` })),
      { method: 'POST', url: '/admin/esp-fleet/firmware/fleet-update-server/publish?platform=esp8266&product=EVIL&version=9.9.9', body: '\u00e9evil' },
      { method: 'GET', url: '/admin/esp-fleet/firmware/fleet-update-server/catalogue' },
      { method: 'GET', url: '/admin/esp-fleet/ca/fleet-ca/summary' },
      { method: 'GET', url: '/admin/esp-fleet/ca/fleet-ca/ca.crt' },
      { method: 'GET', url: '/admin/esp-fleet/fleet/fleet-broker-conn/devices' },
      { method: 'POST', url: '/admin/nodes', body: '{"module":"evil"}' },
      { method: 'GET', url: '/dashboard/' },
      { method: 'GET', url: '/dashboard/_setup' },
    ];
    for (const a of attempts) {
      const res = await fetch(`${base}${a.url}`, { method: a.method, body: a.body, headers: a.body ? { 'content-type': a.url.endsWith('flows') || a.url.endsWith('nodes') ? 'application/json' : 'application/octet-stream' } : {} });
      assert.equal(res.status, 401, `${a.method} ${a.url} answered ${res.status}`);
      recordAttack('node-red', 'refused');
    }
    // A wrong password is no better than none.
    const wrong = { authorization: `Basic ${Buffer.from('admin:guess').toString('base64')}` };
    assert.equal((await fetch(`${base}/dashboard/`, { headers: wrong })).status, 401);
    assert.equal(await dashboardSocketAccepts(base, wrong), false, 'the dashboard socket refuses a wrong login');
    assert.equal(await dashboardSocketAccepts(base, {}), false, 'the dashboard socket refuses no login');
    recordAttack('node-red', 'refused', 3);
    // The login opens them (so the refusals above are the login's doing, not a missing route).
    assert.equal(await dashboardSocketAccepts(base, fx.red.nodeHeaders()), true);
    const summary = await fetch(`${base}/admin/esp-fleet/ca/fleet-ca/summary`, { headers: await fx.red.adminHeaders() });
    assert.equal(summary.status, 200);
    assert.deepEqual([snapshot(ca), snapshot(firmware)], before, 'nothing stored changed');
  });

  it('an open Node-RED (no adminAuth) gets one warning for the whole process, however many nodes', async () => {
    const userDir = path.join(tmp.path, 'open');
    await fs.mkdir(userDir, { recursive: true });
    const red = await NodeRedProcess.start(userDir, { open: true });
    try {
      const flows = fx.patch(await loadExample('certificate-authority.json'));
      await red.deploy(flows);
      const from = await red.deploy(flows.map((n) => (n.type === 'esp-cert-issuer' ? { ...n, name: 'again' } : n)));
      await red.waitForLog((e) => /^CA "/.test(e.msg), 20_000, from);
      const warnings = red.logs.filter((e) => /without adminAuth/.test(e.msg));
      assert.equal(warnings.length, 1, red.tail(20));
      assert.equal(warnings[0].level, 'warn');
    } finally {
      await red.stop();
    }
  });
});
