import { strict as assert } from 'node:assert';
import { promises as fs } from 'node:fs';
import * as path from 'node:path';
import { deviceIds } from '../../lib/sim/fleet-simulator';
import { buildSimImage } from '../../lib/sim/sim-image';
import { tempDir } from '../support/temp-dir';
import { ExampleFixture, flowsLinksToExamples, V1, V2 } from '../support/example-fixture';
import { FlowNode, loadExample, nodeById, PACKAGE_ROOT, tap, tapOutput, tapped, untilTapped } from '../support/node-red-process';
import { EnrollingBoard } from '../support/enroll-board';

/** Where an example's node types may come from. */
const ALLOWED_MODULES = new Set(['node-red', 'node-red-contrib-esp-fleet', '@flowfuse/node-red-dashboard']);

/** What a healthy deploy of each example logs once its nodes are up. */
const READY: Record<string, RegExp[]> = {
  'certificate-authority.json': [/^CA "/],
  'fleet-dashboard.json': [/^broker mqtts:\/\/localhost:\d+: connected$/, /^update server on https:\/\//],
  'nightly-update.json': [/^broker mqtts:\/\/localhost:\d+: connected$/, /^update server on https:\/\//],
  'certificate-lifecycle.json': [/^broker mqtts:\/\/localhost:\d+: connected$/, /^CA "/],
  'offline-alert.json': [/^broker mqtts:\/\/localhost:\d+: connected$/],
  'publish-firmware.json': [/^update server on https:\/\//],
  'enrollment.json': [/^broker mqtts:\/\/localhost:\d+: connected$/, /^update server on https:\/\//, /^enrollment \(EST\) on https:\/\/localhost:\d+\/\.well-known\/est\/ \(policy manual\)$/],
};

/**
 * The shipped example flows in the real Node-RED runtime (with Dashboard 2.0 installed), wired
 * to a real Mosquitto, the update server and simulated devices: each one deploys cleanly, and
 * the nightly update, certificate lifecycle, offline alert and publish flows do their job.
 */
describe('example flows in the Node-RED runtime', function () {
  this.timeout(120_000);
  const tmp = tempDir('examples');
  const fleetIds = deviceIds('a4cf14', 3);
  const [shortLived, silent] = deviceIds('a4cf15', 2);
  let fx: ExampleFixture;

  const deploy = async (name: string, edit: (flows: FlowNode[]) => void = () => undefined): Promise<number> => {
    const flows = fx.patch(await loadExample(name));
    edit(flows);
    const from = await fx.red.deploy(flows);
    for (const ready of READY[name]) await fx.red.waitForLog((e) => ready.test(e.msg), 20_000, from);
    return from;
  };

  before(async () => {
    fx = await ExampleFixture.start({ root: tmp.path, deviceIds: [...fleetIds, silent], shortLivedIds: [shortLived] });
  });

  after(async () => {
    await fx?.stop();
    tmp.remove();
  });

  it('ships one set of flows: flows/ is a link to examples/ (what Import > Examples reads)', () => {
    assert.ok(flowsLinksToExamples(PACKAGE_ROOT), 'flows must be a symlink to examples');
  });

  it('every example parses, uses only our, core and Dashboard 2.0 node types, and deploys without errors or warnings', async () => {
    const files = (await fs.readdir(path.join(PACKAGE_ROOT, 'examples'))).filter((f) => f.endsWith('.json')).sort();
    assert.deepEqual(files, Object.keys(READY).sort(), 'every example has a readiness check here');
    const types = await fx.red.nodeTypes();
    for (const file of files) {
      const flows = await loadExample(file);
      assert.ok(Array.isArray(flows) && flows.length > 0, `${file} is a non-empty array of nodes`);
      assert.equal(new Set(flows.map((n) => n.id)).size, flows.length, `${file}: node ids are unique`);
      assert.ok(flows.some((n) => n.type === 'comment'), `${file} explains what to set first`);
      for (const n of flows) {
        if (n.type === 'tab') continue;
        const module = types.get(n.type);
        assert.ok(module && ALLOWED_MODULES.has(module), `${file}: node ${n.id} has type ${n.type} from ${module ?? 'nowhere'}`);
        assert.notEqual(n.id, n.type, `${file}: node id ${n.id} equals its type`);
      }
      const from = await deploy(file);
      assert.deepEqual(
        fx.red.problemsSince(from).map((e) => `${e.level} [${e.type}:${e.name || e.id}] ${e.msg}`),
        [],
        `${file} deployed with problems`,
      );
    }
  });

  it('nightly update: at "night" the newest image goes out as an esp-rollout (canary, then a wave), and its start and end reach the notification hook', async () => {
    const from = await deploy('nightly-update.json', (flows) => {
      // The test's own eyes on the fleet: an esp-status whose table shows when the devices are online.
      flows.push({ id: 'nightly-status', type: 'esp-status', z: 'nightly-update-tab', fleet: 'fleet-broker-conn', devices: '', imagePrefix: '', table: true, outputs: 4, x: 130, y: 400, wires: [[], [], [], []] });
      tap(flows, 'nightly-notify');
      tapOutput(flows, 'nightly-status', 3);
      tapOutput(flows, 'nightly-rollout', 1);
      // A short soak so the test does not wait 5 minutes per wave.
      Object.assign(nodeById(flows, 'nightly-rollout'), { soakS: '1', folder: 'nightly-rollouts' });
    });
    const fleet = await fx.startDevices(fleetIds);
    // The fleet table (what the night hands the update server) lists every device, online with its image.
    const tableOn = (image: string) => (m: { payload?: unknown }): boolean => {
      const rows = Array.isArray(m.payload) ? (m.payload as { id: string; online: boolean; image: string }[]) : [];
      return fleetIds.every((id) => rows.some((r) => r.id === id && r.online && r.image === image));
    };
    await untilTapped(fx.red, 'nightly-status-tap-3', tableOn(V1), 20_000, from);
    await fx.red.inject('nightly-at-night');
    // The start msg reached esp-rollout: it answers with the rollout it started, each device to the newest image the server offers it.
    const started = (await untilTapped(fx.red, 'nightly-rollout-tap-1', (m) => m.topic === 'status', 20_000, from)).payload as { target: string; status: string; waves: number; devices: Record<string, { target?: string }> };
    assert.deepEqual([started.target, started.status], ['newest', 'running']);
    assert.deepEqual(Object.keys(started.devices).sort(), [...fleetIds].sort());
    assert.deepEqual(Object.values(started.devices).map((d) => d.target), fleetIds.map(() => V2));
    // 10 % canaries of 3 devices is one device, then one wave of the other two.
    assert.equal(started.waves, 2);
    const running = await untilTapped(fx.red, 'nightly-notify', () => true, 20_000, from);
    assert.deepEqual([running.topic, running.payload], ['Nightly update', 'rollout of the newest images running: 3 devices in 2 waves']);
    const done = await untilTapped(fx.red, 'nightly-notify', (m) => String(m.payload).includes(' done'), 90_000, from);
    assert.equal(done.payload, 'rollout of the newest images done: 3 updated, 0 failed, 0 offline (skipped)');
    assert.deepEqual(fleet.images(), { [V2]: 3 });
    const waves = tapped(fx.red, 'nightly-rollout-tap-1', from).filter((m) => m.topic === 'wave').map((m) => m.payload as { wave: number; state: string; passed: number });
    assert.deepEqual(waves.map((w) => `${w.wave} ${w.state} ${w.passed}`), ['1 started 0', '1 passed 1', '2 started 0', '2 passed 2'], 'the canary passed its gate before the wave started');

    // A second night, once the table shows the new images, finds nothing to do.
    await untilTapped(fx.red, 'nightly-status-tap-3', tableOn(V2), 20_000, from);
    const again = fx.red.logs.length;
    await fx.red.inject('nightly-at-night');
    const nothing = await untilTapped(fx.red, 'nightly-notify', () => true, 20_000, again);
    assert.equal(nothing.payload, 'rollout of the newest images done: nothing to do, 3 up to date');
  });

  it('certificate lifecycle: issues for a new MAC, renews what expires within 30 days and sends cert, revokes every certificate of a lost device', async () => {
    const from = await deploy('certificate-lifecycle.json', (flows) => {
      for (const id of ['cert-expiring-list', 'cert-renewed', 'cert-sent', 'cert-results']) tap(flows, id);
      nodeById(flows, 'cert-lost-device').payload = JSON.stringify({ device: shortLived, reason: 'keyCompromise' });
    });
    await fx.red.inject('cert-new-device');
    const issued = await untilTapped(fx.red, 'cert-results', () => true, 20_000, from);
    assert.deepEqual([(issued.payload as { action: string }).action, (issued.payload as { commonName: string }).commonName], ['device', '84f3eb012345']);

    await fx.red.inject('cert-expiring-daily');
    const expiring = (await untilTapped(fx.red, 'cert-expiring-list', () => true, 20_000, from)).payload as { days: number; renewed: { commonName: string }[] };
    assert.equal(expiring.days, 30);
    assert.deepEqual(expiring.renewed.map((c) => c.commonName), [shortLived], 'only the short-lived certificate expires within 30 days');
    const renewed = (await untilTapped(fx.red, 'cert-renewed', () => true, 20_000, from)).payload as { commonName: string; notAfter: string; serial: string; renewedFrom: string };
    assert.equal(renewed.commonName, shortLived);
    assert.ok(Date.parse(renewed.notAfter) > Date.now() + 800 * 86_400_000, 'renewed for the CA default validity');
    const sent = await untilTapped(fx.red, 'cert-sent', () => true, 20_000, from);
    assert.deepEqual([sent.topic, (sent.payload as { command: string }).command], [shortLived, 'cert']);

    await fx.red.inject('cert-lost-device');
    const result = (await untilTapped(fx.red, 'cert-results', (m) => m.topic === 'revoke-device', 20_000, from)).payload as {
      device: string;
      revoked: { serial: string; commonName: string; revocationReason: string }[];
    };
    // Both the renewed certificate and the one it replaced (still valid until it expires).
    assert.equal(result.device, shortLived);
    assert.deepEqual(result.revoked.map((r) => r.serial).sort(), [renewed.serial, renewed.renewedFrom].sort());
    for (const record of result.revoked) assert.deepEqual([record.commonName, record.revocationReason], [shortLived, 'keyCompromise']);
  });

  it('offline alert: a device that goes silent raises one alert after the debounce; devices that keep reporting do not', async () => {
    // The devices boot from the update server (config.json): borrow it from the nightly example.
    const server = nodeById(await loadExample('nightly-update.json'), 'fleet-update-server');
    const from = await deploy('offline-alert.json', (flows) => {
      tap(flows, 'offline-alert-hook');
      Object.assign(nodeById(flows, 'offline-debounce'), { duration: '1', units: 's' });
      flows.push(fx.patch([{ ...server, z: 'offline-alert-tab', wires: [[], []] }])[0]);
    });
    await fx.startDevices([silent], { silentAfterMs: 2500 });
    const alert = await untilTapped(fx.red, 'offline-alert-hook', () => true, 30_000, from);
    assert.equal(alert.topic, silent);
    assert.match(String(alert.payload), new RegExp(`^ESP measure-${silent} \\(${silent}\\) offline since .+ \\((timeout|lwt)\\), running ${V1}$`));
    assert.deepEqual(tapped(fx.red, 'offline-alert-hook', from).map((m) => m.topic), [silent]);
  });

  it('publish firmware: no open route signs; the editor upload (admin API, login) and the build-file inject publish', async () => {
    const from = await deploy('publish-firmware.json', (flows) => tap(flows, 'publish-results'));
    const catalogue = await fs.readFile(path.join(fx.red.userDir, 'esp-fleet-firmware', 'catalogue', 'catalogue.json'), 'utf8');
    const image = buildSimImage({ image: 'SIM_UPLOAD-1.0.0', build: 'test', trusts: [fx.trustedKeyPem] }, 16 * 1024);
    const publishUrl = `${fx.red.url}/admin/esp-fleet/firmware/fleet-update-server/publish?platform=esp8266&product=SIM_UPLOAD&version=1.0.0`;

    // Nothing on http-in: the old upload route is gone, with or without the login.
    for (const method of ['GET', 'POST']) {
      const res = await fetch(`${fx.red.url}/esp-fleet/upload`, { method, headers: fx.red.nodeHeaders(), body: method === 'POST' ? new Uint8Array(image) : undefined });
      assert.equal(res.status, 404, `${method} /esp-fleet/upload`);
    }
    // The admin endpoint without a login: refused, nothing stored.
    const anonymous = await fetch(publishUrl, { method: 'POST', body: new Uint8Array(image), headers: { 'content-type': 'application/octet-stream' } });
    assert.equal(anonymous.status, 401);
    assert.equal(await fs.readFile(path.join(fx.red.userDir, 'esp-fleet-firmware', 'catalogue', 'catalogue.json'), 'utf8'), catalogue);

    // Logged in, as the node's dialog posts it.
    const res = await fetch(publishUrl, { method: 'POST', body: new Uint8Array(image), headers: await fx.red.adminHeaders({ 'content-type': 'application/octet-stream' }) });
    const text = await res.text();
    assert.equal(res.status, 200, text);
    const published = JSON.parse(text) as { image: { name: string }; signature: string };
    assert.deepEqual([published.image.name, published.signature], ['SIM_UPLOAD-1.0.0', 'signed']);
    const list = await fetch(`${fx.red.url}/admin/esp-fleet/firmware/fleet-update-server/catalogue`, { headers: await fx.red.adminHeaders() });
    const names = ((await list.json()) as { images: { name: string }[] }).images.map((e) => e.name);
    for (const name of [V1, V2, 'SIM_UPLOAD-1.0.0']) assert.ok(names.includes(name), `catalogue lists ${name}`);

    // A refused upload is a short text (no version for an ESP8266 image), and changes nothing.
    const before = await fs.readFile(path.join(fx.red.userDir, 'esp-fleet-firmware', 'catalogue', 'catalogue.json'), 'utf8');
    const refused = await fetch(publishUrl.replace('&version=1.0.0', ''), { method: 'POST', body: new Uint8Array(image), headers: await fx.red.adminHeaders({ 'content-type': 'application/octet-stream' }) });
    assert.equal(refused.status, 400);
    const reason = await refused.text();
    assert.ok(reason.length < 300 && !/\n\s+at /.test(reason), reason);
    assert.equal(await fs.readFile(path.join(fx.red.userDir, 'esp-fleet-firmware', 'catalogue', 'catalogue.json'), 'utf8'), before);

    // The flow's own way: a build file in the user directory, published by the inject.
    await fs.mkdir(path.join(fx.red.userDir, 'builds'), { recursive: true });
    const build = buildSimImage({ image: 'ESP8266_WEMOS_D1MINIPRO-00.00.09', build: 'test', trusts: [fx.trustedKeyPem] }, 16 * 1024);
    await fs.writeFile(path.join(fx.red.userDir, 'builds', 'sketch.ino.bin'), build);
    await fx.red.inject('publish-build-file');
    const result = await untilTapped(fx.red, 'publish-results', (m) => m.topic === 'publish', 20_000, from);
    assert.equal((result.payload as { image?: { name: string } }).image?.name, 'ESP8266_WEMOS_D1MINIPRO-00.00.09', JSON.stringify(result));
  });

  it('enrollment with approval: a new board\'s request is a notification; approved, the same request gets its certificate and the board comes online; rejected, it stays out', async () => {
    const [joining, refused] = deviceIds('e57a11', 2);
    const from = await deploy('enrollment.json', (flows) => {
      for (const id of ['enroll-notify', 'enroll-bootstrap-debug', 'enroll-decisions', 'enroll-issued', 'enroll-online']) tap(flows, id);
      nodeById(flows, 'enroll-approve').payload = joining;
      nodeById(flows, 'enroll-reject').payload = refused;
    });
    const ca = await fs.readFile(path.join(fx.deviceFilesDir, 'ca.crt'), 'utf8');
    // The line for bootstrap.txt, as the flow's button shows it.
    await fx.red.inject('enroll-show-bootstrap');
    const line = String((await untilTapped(fx.red, 'enroll-bootstrap-debug', () => true, 20_000, from)).payload);
    assert.match(line, /^fleet:\S{16,}$/);

    const board = new EnrollingBoard(joining);
    const asked = await board.ask(fx.enrollPort, ca, line);
    assert.equal(asked.status, 202, asked.body);
    assert.match(String(asked.headers['retry-after']), /^\d+$/);
    // The request comes out as the notification msg, in words.
    const notice = await untilTapped(fx.red, 'enroll-notify', (m) => String(m.payload).includes(joining), 20_000, from);
    assert.equal(notice.topic, 'enroll-request');
    assert.match(String(notice.payload), new RegExp(`^New board ${joining} asks to join \\(from \\S*127\\.0\\.0\\.1, ec key\\)\\. Approve or reject it by this id\\.$`));
    // Until someone decides, the board keeps waiting.
    assert.equal((await board.ask(fx.enrollPort, ca, line)).status, 202);
    assert.deepEqual(tapped(fx.red, 'enroll-issued', from), []);

    await fx.red.inject('enroll-approve');
    const decided = (await untilTapped(fx.red, 'enroll-decisions', (m) => m.topic === 'approve', 20_000, from)).payload as { decided: { id: string; serial: string }[]; failed: unknown[] };
    assert.deepEqual([decided.decided.map((d) => d.id), decided.failed], [[joining], []]);
    const issued = (await untilTapped(fx.red, 'enroll-issued', () => true, 20_000, from)).payload as { id: string; serial: string };
    assert.deepEqual([issued.id, issued.serial], [joining, decided.decided[0].serial]);
    // The same request again: the certificate, for the board's own key.
    const answer = await board.ask(fx.enrollPort, ca, line);
    assert.equal(answer.status, 200, answer.body);
    const cert = board.certificateOf(answer);

    // With it the board boots from the update server, connects to the broker, and fleet status shows it online.
    await fx.admitToBroker(joining);
    await fx.startDevices([joining], { identity: async () => board.files(ca, cert) });
    const online = (await untilTapped(fx.red, 'enroll-online', (m) => (m.payload as { id?: string }).id === joining, 30_000, from)).payload as { online: boolean };
    assert.equal(online.online, true);

    // A rejected board: the same request is refused from then on.
    const other = new EnrollingBoard(refused);
    assert.equal((await other.ask(fx.enrollPort, ca, line)).status, 202);
    await untilTapped(fx.red, 'enroll-notify', (m) => String(m.payload).includes(refused), 20_000, from);
    await fx.red.inject('enroll-reject');
    await untilTapped(fx.red, 'enroll-decisions', (m) => m.topic === 'reject', 20_000, from);
    const after = await other.ask(fx.enrollPort, ca, line);
    assert.equal(after.status, 403, after.body);
    assert.deepEqual(tapped(fx.red, 'enroll-issued', from).map((m) => (m.payload as { id: string }).id), [joining], 'only the approved board got a certificate');
    await fx.red.inject('enroll-list-pending');
    const pending = (await untilTapped(fx.red, 'enroll-decisions', (m) => m.topic === 'pending', 20_000, from)).payload as { requests: { id: string }[] };
    assert.deepEqual(pending.requests.filter((r) => r.id === joining || r.id === refused), [], 'nothing of theirs waits');
  });
});
