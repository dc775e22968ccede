import { strict as assert } from 'node:assert';
import { spawn, ChildProcess } from 'node:child_process';
import { readFileSync, statSync } from 'node:fs';
import * as http from 'node:http';
import * as path from 'node:path';
import { chromium } from 'playwright-core';
import { freePort } from '../support/mosquitto';
import { tempDir } from '../support/temp-dir';
import { CaStore } from '../../lib/pki/ca-store';
import { deviceIds } from '../../lib/sim/fleet-simulator';
import { buildSimImage } from '../../lib/sim/sim-image';
import { adminBearer, basicAuthorization, Login } from '../../scripts/node-red-auth';
import { nodeRedChoice } from '../../scripts/node-red-choice';

const DEMO = path.join(__dirname, '..', '..', 'scripts', 'demo.js');
const CHROMIUM = '/usr/bin/chromium';
const CHROMIUM_ARGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'];

/** What the test reads of the editor page. */
interface EditorWindow {
  RED: { nodes: { getType(type: string): { defaults: Record<string, { validate?: (v: string) => unknown }> } | undefined } };
}

interface Demo {
  child: ChildProcess;
  output(): string;
}

function getJson(port: number, urlPath: string, headers: Record<string, string> = {}): Promise<{ status: number; body: unknown }> {
  return new Promise((resolve, reject) => {
    http
      .get({ host: '127.0.0.1', port, path: urlPath, headers }, (res) => {
        let text = '';
        res.on('data', (c: Buffer) => (text += c.toString()));
        res.on('end', () => {
          try {
            resolve({ status: res.statusCode ?? 0, body: JSON.parse(text) });
          } catch {
            resolve({ status: res.statusCode ?? 0, body: text });
          }
        });
      })
      .on('error', reject);
  });
}

/**
 * `npm start` as a newcomer runs it (after the build): Node-RED with the fleet dashboard flow,
 * the embedded broker, the update server and simulated devices, in a user directory of its own.
 */
describe('the demo (npm start)', function () {
  this.timeout(180_000);
  const tmp = tempDir('demo');
  const devices = 4;
  let ports: { editor: number; mqtt: number; fw: number; enroll: number };

  function start(): Demo {
    let out = '';
    const env = { ...process.env, ESP_FLEET_DEMO_DIR: tmp.path, PORT: String(ports.editor), MQTT_PORT: String(ports.mqtt), FW_PORT: String(ports.fw), ENROLL_PORT: String(ports.enroll), NEW_DEVICES: '2', DEVICES: String(devices) };
    const child = spawn(process.execPath, [DEMO], { env, stdio: ['ignore', 'pipe', 'pipe'] });
    child.stdout!.on('data', (c: Buffer) => (out += c.toString()));
    child.stderr!.on('data', (c: Buffer) => (out += c.toString()));
    return { child, output: () => out };
  }

  /** The demo's login: user admin and the password it made on first run (0600 in its folder). */
  function login(): Login {
    return { username: 'admin', password: readFileSync(path.join(tmp.path, 'demo-password'), 'utf8').trim() };
  }

  /** Waits until `expected` devices have reported since `since` (the registry outlives a restart). */
  async function devicesOnline(demo: Demo, since = Date.now(), expected = devices): Promise<{ id: string; online: boolean; image?: string; lastSeen: string }[]> {
    const until = Date.now() + 90_000;
    let bearer: string | undefined;
    for (;;) {
      if (demo.child.exitCode !== null) throw new Error(`the demo stopped:\n${demo.output()}`);
      // The password file appears on the demo's first start, the token once Node-RED is up.
      bearer ??= await Promise.resolve()
        .then(() => adminBearer(`http://127.0.0.1:${ports.editor}`, login()))
        .catch(() => undefined);
      const res = bearer ? await getJson(ports.editor, '/esp-fleet/fleet/fleet-broker-conn/devices', { authorization: bearer }).catch(() => undefined) : undefined;
      const list = (res?.body as { devices?: { id: string; online: boolean; image?: string; lastSeen: string }[] } | undefined)?.devices ?? [];
      if (list.filter((d) => d.online && Date.parse(d.lastSeen) >= since).length === expected) return list;
      if (Date.now() > until) throw new Error(`devices not online in the demo (${list.length} known):\n${demo.output().slice(-3000)}`);
      await new Promise((r) => setTimeout(r, 500));
    }
  }

  async function stop(demo: Demo): Promise<number | null> {
    const exited = new Promise<number | null>((resolve) => demo.child.once('exit', (code) => resolve(code)));
    demo.child.kill('SIGINT');
    const timer = setTimeout(() => demo.child.kill('SIGKILL'), 20_000);
    const code = await exited;
    clearTimeout(timer);
    return code;
  }

  before(async () => {
    ports = { editor: await freePort(), mqtt: await freePort(), fw: await freePort(), enroll: await freePort() };
  });
  after(() => tmp.remove());

  it('starts Node-RED with the fleet flow, the embedded broker and simulated devices that report in', async () => {
    const demo = start();
    try {
      const list = await devicesOnline(demo);
      assert.ok(list.every((d) => d.image === 'ESP8266_DEMO-1.0.0'), JSON.stringify(list));
      assert.match(demo.output(), new RegExp(`dashboard +http://127\\.0\\.0\\.1:${ports.editor}/dashboard`));
      // It says which Node-RED it runs: 5 where this Node.js allows it, else 4.1.
      assert.match(demo.output(), new RegExp(`demo: Node-RED ${nodeRedChoice().version.replace(/\./g, '\\.')} \\(`));
      // The login is printed and kept 0600; without it nothing answers but the login itself.
      assert.ok(demo.output().includes(`login      user admin, password ${login().password}`));
      assert.equal(statSync(path.join(tmp.path, 'demo-password')).mode & 0o777, 0o600);
      assert.equal((await getJson(ports.editor, '/dashboard/')).status, 401);
      assert.equal((await getJson(ports.editor, '/esp-fleet/fleet/fleet-broker-conn/devices')).status, 401);
      assert.equal((await getJson(ports.editor, '/flows')).status, 401);
      const dashboard = await getJson(ports.editor, '/dashboard/', { authorization: basicAuthorization(login()) });
      assert.equal(dashboard.status, 200);
      // The two new boards (no certificate) asked to join and wait for approval.
      const requests = path.join(tmp.path, 'esp-fleet-ca', 'enrollment', 'requests.log');
      const waiting = (): string[] => {
        try {
          return readFileSync(requests, 'utf8').trim().split('\n').map((l) => JSON.parse(l) as { id: string; state: string }).filter((r) => r.state === 'pending').map((r) => r.id);
        } catch {
          return [];
        }
      };
      const deadline = Date.now() + 60_000;
      while (new Set(waiting()).size < 2 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 250));
      assert.deepEqual([...new Set(waiting())].sort(), deviceIds('a4cf13', 2));
      assert.match(demo.output(), /2 new boards ask to join/);
    } finally {
      assert.equal(await stop(demo), 0, `Ctrl-C ends the demo cleanly:\n${demo.output().slice(-2000)}`);
    }
  });

  it("the editor loads every node's form with the shared helpers (resources/), and their checks work", async () => {
    const demo = start();
    const browser = await chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_ARGS });
    try {
      await devicesOnline(demo);
      const page = await browser.newPage();
      const errors: string[] = [];
      page.on('pageerror', (e) => errors.push(e.message));
      await page.goto(`http://127.0.0.1:${ports.editor}/`);
      // The editor asks for the demo's login first.
      await page.locator('#node-dialog-login-username').fill(login().username);
      await page.locator('#node-dialog-login-password').fill(login().password);
      await page.locator('#node-dialog-login-submit').click();
      await page.waitForFunction(() => (window as unknown as EditorWindow).RED?.nodes?.getType?.('esp-broker') !== undefined, undefined, { timeout: 60_000 });
      const checks = await page.evaluate(() => {
        const types = (window as unknown as EditorWindow).RED.nodes;
        const validate = (type: string, prop: string, v: string): boolean => types.getType(type)!.defaults[prop]!.validate!(v) === true;
        return [
          validate('esp-broker', 'port', '8883'),
          validate('esp-broker', 'port', '70000'),
          validate('esp-firmware-server', 'port', ''),
          validate('esp-firmware-server', 'hostname', 'fw.local'),
          validate('esp-firmware-server', 'hostname', 'bad_name'),
          validate('esp-command', 'maxInFlight', '0'),
          validate('esp-fleet', 'statusInterval', '500'),
        ];
      });
      assert.deepEqual(checks, [true, false, true, true, false, false, false]);
      // The update server's dialog signs and publishes an image through the admin API, as the logged-in user.
      type EditorRed = { RED: { editor: { edit(n: unknown): void }; nodes: { node(id: string): unknown } } };
      await page.waitForFunction(() => Boolean((window as unknown as EditorRed).RED.nodes.node('fleet-update-server')), undefined, { timeout: 30_000 });
      await page.evaluate(() => {
        const red = (window as unknown as EditorRed).RED;
        red.editor.edit(red.nodes.node('fleet-update-server'));
      });
      const image = buildSimImage({ image: 'ESP8266_DEMO-3.0.0', build: 'editor', trusts: [] }, 8 * 1024);
      await page.locator('#esp-firmware-upload-file').setInputFiles({ name: 'demo.bin', mimeType: 'application/octet-stream', buffer: image });
      await page.locator('#esp-firmware-upload-product').fill('ESP8266_DEMO');
      await page.locator('#esp-firmware-upload-version').fill('3.0.0');
      await page.locator('#esp-firmware-upload-button').click();
      await page.locator('#esp-firmware-upload-result', { hasText: /published ESP8266_DEMO-3\.0\.0 \(signed, \d+ bytes\)/ }).waitFor({ timeout: 20_000 });
      assert.deepEqual(errors, []);
    } finally {
      await browser.close();
      assert.equal(await stop(demo), 0);
    }
  });

  it('a second start reuses the same CA and catalogue, and a device revoked in between stays revoked and offline', async () => {
    const caCert = readFileSync(path.join(tmp.path, 'esp-fleet-ca', 'ca.crt'), 'utf8');
    const catalogue = readFileSync(path.join(tmp.path, 'esp-fleet-firmware', 'catalogue', 'catalogue.json'), 'utf8');
    // Revoked while the demo is down (the CA has one writer at a time).
    const [lost] = deviceIds('a4cf12', 1);
    const ca = await CaStore.open({ dir: path.join(tmp.path, 'esp-fleet-ca') });
    await ca.revoke(ca.currentIdentity('device', lost)!.serial, 'keyCompromise');
    await ca.idle();
    const since = Date.now();
    const demo = start();
    try {
      const list = await devicesOnline(demo, since, devices - 1);
      assert.ok(!list.some((d) => d.id === lost && Date.parse(d.lastSeen) >= since), `${lost} is revoked and must not report`);
    } finally {
      assert.equal(await stop(demo), 0, demo.output().slice(-3000));
    }
    assert.equal(readFileSync(path.join(tmp.path, 'esp-fleet-ca', 'ca.crt'), 'utf8'), caCert);
    assert.equal(readFileSync(path.join(tmp.path, 'esp-fleet-firmware', 'catalogue', 'catalogue.json'), 'utf8'), catalogue);
    const after = await CaStore.open({ dir: path.join(tmp.path, 'esp-fleet-ca') });
    assert.equal(after.currentIdentity('device', lost), undefined, 'the restart did not issue the revoked device again');
  });
});
