import { strict as assert } from 'node:assert';
import { existsSync, mkdirSync, promises as fs } from 'node:fs';
import * as path from 'node:path';
import { chromium, Browser, Page } from 'playwright-core';
import { deviceIds } from '../../lib/sim/fleet-simulator';
import { tempDir } from '../support/temp-dir';
import { ExampleFixture, V1, V2 } from '../support/example-fixture';
import { EnrollingBoard } from '../support/enroll-board';
import { loadExample, nodeById, PACKAGE_ROOT, tapOutput, untilTapped } from '../support/node-red-process';

const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';
/** Devices in the fleet; DASHBOARD_DEVICES=10 DASHBOARD_SCREENSHOT=docs/dashboard.png makes the README picture. */
const COUNT = Number(process.env.DASHBOARD_DEVICES ?? 5);
const ARTIFACTS = path.join(PACKAGE_ROOT, 'test-artifacts');
/** Two more products, so a rollout of theirs offers nothing to the other devices (lib/rollout/offers.ts): one whose boards refuse every image, one with a big image. */
const HALT_PRODUCT = 'ESP8266_SIM_HALT';
const BIG_PRODUCT = 'ESP8266_SIM_BIG';
/** Big enough that a download takes a few hundred ms at the simulator's fast pace, small enough for its flash. */
const BIG_IMAGE_BYTES = 512 * 1024;
/** The ESP32 app beside them (a project name of its own, esp_app_desc_t's), in two signed versions. */
const ESP32_PROJECT = 'SIMESP32DASH';
const [E32_V1, E32_V2] = [`${ESP32_PROJECT}-1.0.0`, `${ESP32_PROJECT}-1.0.1`];

/**
 * examples/fleet-dashboard.json as a user sees it: the real Node-RED runtime serves the
 * Dashboard 2.0 page, headless Chromium (Debian's, driven by playwright-core) shows the
 * simulated devices, and a row's update button updates that device.
 */
describe('fleet dashboard example in a browser', function () {
  this.timeout(120_000);
  const tmp = tempDir('dashboard');
  const ids = deviceIds('a4cf16', COUNT);
  /** Boards that trust a wrong key (started by the halt test), and boards for the big image (started by the download test). */
  const haltIds = deviceIds('b0a716', 2);
  const bigIds = deviceIds('b16b16', 3);
  /** A simulated ESP32 (started by its own test). */
  const [esp32Id] = deviceIds('24a1da', 1);
  let fx: ExampleFixture;
  let browser: Browser | undefined;
  let page: Page;
  /** The tap on the update server's action results (output 1). */
  let answers: string;

  before(async function () {
    if (!existsSync(CHROMIUM)) throw new Error(`${CHROMIUM} is missing: apt-get install -y chromium (the CI script does)`);
    fx = await ExampleFixture.start({
      root: tmp.path,
      deviceIds: [...ids, ...haltIds, ...bigIds, esp32Id],
      statusIntervalMs: 1000,
      broker: 'embedded',
      extraImages: [
        { product: HALT_PRODUCT, version: '00.00.01' },
        { product: HALT_PRODUCT, version: '00.00.02' },
        { product: BIG_PRODUCT, version: '00.00.01' },
        { product: BIG_PRODUCT, version: '00.00.02', size: BIG_IMAGE_BYTES },
      ],
      esp32Images: { projectName: ESP32_PROJECT, versions: ['1.0.0', '1.0.1'] },
    });
    const flows = fx.patch(await loadExample('fleet-dashboard.json'));
    // A soak of 2 s instead of 2 minutes, so a wave passes its gate within the test.
    Object.assign(nodeById(flows, 'fleet-rollout'), { soakS: '2' });
    // The test's own button for the bootstrap line (the enrollment example has one for users).
    flows.push({ id: 'test-bootstrap', type: 'inject', z: 'fleet-dashboard-tab', name: '', props: [{ p: 'payload' }, { p: 'topic', vt: 'str' }], repeat: '', crontab: '', once: false, topic: 'bootstrap', payload: '', payloadType: 'str', x: 0, y: 0, wires: [['fleet-update-server']] });
    answers = tapOutput(flows, 'fleet-update-server', 0);
    const from = await fx.red.deploy(flows);
    await fx.red.waitForLog((e) => /^update server on https:/.test(e.msg), 20_000, from);
    await fx.red.waitForLog((e) => /^enrollment \(EST\) on https:/.test(e.msg), 20_000, from);
    await fx.red.waitForLog((e) => /^broker mqtts:\/\/localhost:\d+: connected$/.test(e.msg), 20_000, from);
    await fx.startDevices(ids);
    browser = await chromium.launch({
      executablePath: CHROMIUM,
      args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
    });
    // The dashboard is behind httpNodeAuth (and its socket.io behind the same login), as in the demo.
    const login = fx.red.login!;
    page = await browser.newPage({ viewport: { width: 1400, height: 1000 }, httpCredentials: { username: login.username, password: login.password } });
  });

  after(async () => {
    await browser?.close();
    await fx?.stop();
    tmp.remove();
  });

  /** The device table's row of a device (the widget's class comes from the example's ui-table). */
  const row = (id: string) => page.locator('.esp-fleet-devices tr', { hasText: id });

  it('shows every simulated device in the table with its image and telemetry', async () => {
    await page.goto(`${fx.red.url}/dashboard`);
    for (const id of ids) await row(id).filter({ hasText: V1 }).waitFor({ timeout: 30_000 });
    const cells = await row(ids[0]).locator('td').allInnerTexts();
    // Device, its three row buttons (update, reboot, renew cert), then name, platform, online, image, RSSI, heap.
    assert.equal(cells[0], ids[0]);
    assert.deepEqual(cells.slice(1, 4).map((c) => c.trim().toLowerCase()), ['update', 'reboot', 'renew cert']);
    assert.equal(cells[4], `measure-${ids[0]}`);
    assert.equal(cells[5], 'esp8266', 'the platform its topics came in on');
    assert.equal(cells[7], V1);
    assert.match(cells[8], /^-\d+$/, 'RSSI in dBm');
    assert.match(cells[9], /^\d+$/, 'free heap in bytes');
  });

  it("on a 1280-px-wide screen every row's update, reboot and renew cert buttons are on screen", async () => {
    await page.setViewportSize({ width: 1280, height: 1000 });
    try {
      // Dashboard 2.0 lays the page out again on resize; the table's last column is the one to wait for.
      await row(ids[0]).locator('td[data-column-key="renew cert"] button').waitFor({ timeout: 10_000 });
      await page.waitForTimeout(500);
      mkdirSync(ARTIFACTS, { recursive: true });
      await page.screenshot({ path: path.join(ARTIFACTS, 'fleet-dashboard-1280.png') });
      const off: string[] = [];
      for (const id of ids) {
        for (const column of ['update', 'reboot', 'renew cert']) {
          const button = row(id).locator(`td[data-column-key="${column}"] button`);
          const box = await button.boundingBox();
          if (!box || box.width === 0 || box.x < 0 || box.x + box.width > 1280) off.push(`${id} ${column}: ${box ? `x ${Math.round(box.x)}–${Math.round(box.x + box.width)}` : 'not drawn'}`);
          else assert.ok(await button.isVisible(), `${id} ${column} is visible`);
        }
      }
      assert.deepEqual(off, [], 'buttons outside a 1280-px-wide screen (see test-artifacts/fleet-dashboard-1280.png)');
    } finally {
      await page.setViewportSize({ width: 1400, height: 1000 });
    }
  });

  it("a row's update button updates that device, and the table shows its new image", async () => {
    const target = ids[1];
    await row(target).locator('td[data-column-key="update"] button').click();
    await row(target).filter({ hasText: V2 }).waitFor({ timeout: 60_000 });
    // Only that device was updated.
    for (const id of ids.filter((i) => i !== target)) assert.ok((await row(id).innerText()).includes(V1), `${id} still runs ${V1}`);
    await page.locator('.esp-fleet-outcomes tr', { hasText: target }).filter({ hasText: 'success' }).waitFor({ timeout: 10_000 });
  });

  it("a row's reboot and renew cert buttons reboot the device and renew its certificate (then the cert command)", async () => {
    const target = ids[0];
    const outcome = (command: string, result: string) =>
      page.locator('.esp-fleet-outcomes tr', { hasText: target }).filter({ hasText: command }).filter({ hasText: result }).waitFor({ timeout: 30_000 });
    await row(target).locator('td[data-column-key="reboot"] button').click();
    await outcome('reboot', 'success');
    await row(target).locator('td[data-column-key="renew cert"] button').click();
    await outcome('cert', 'sent');
  });

  it('the rollout panel starts an esp-rollout: its devices appear in the table with their state; pause, resume and abort change the status shown', async () => {
    /** The rollout table's row of a device, and the rollout's status line. */
    const rolloutRow = (id: string) => page.locator('.esp-fleet-rollout-devices tr', { hasText: id });
    const rolloutRows = page.locator('.esp-fleet-rollout-devices tbody tr');
    const status = (text: string) => page.locator('.esp-fleet-rollout-progress', { hasText: text }).waitFor({ timeout: 20_000 });
    // ids[1] runs V2 already (the row test above): the rollout leaves it out.
    const outdated = ids.filter((id) => id !== ids[1]);

    await page.locator('.esp-fleet-rollout-image .v-field').click();
    await page.locator('.v-overlay .v-list-item', { hasText: V2 }).click();
    const cap = page.locator('.esp-fleet-rollout-cap input');
    await cap.fill('2');
    await cap.press('Enter');
    await page.getByRole('button', { name: 'Start rollout' }).click();
    // One canary, then waves of 10 (the node's setting): two waves.
    await status(`rollout of ${V2} running: ${outdated.length} devices in 2 waves`);
    // The canary is the first device the table shows (the rollout takes them in the fleet's order).
    await rolloutRows.first().waitFor({ timeout: 20_000 });
    // Paused: the canary is still judged to the end, but the next wave does not start.
    await page.getByRole('button', { name: 'Pause' }).click();
    const canary = (await rolloutRows.first().locator('td').first().innerText()).trim();
    assert.ok(outdated.includes(canary), `the canary ${canary} is one of the outdated devices`);
    const rest = outdated.filter((id) => id !== canary);
    await status(`rollout of ${V2} paused: paused by msg`);
    await rolloutRow(canary).filter({ hasText: 'passed' }).waitFor({ timeout: 30_000 });
    await page.waitForTimeout(2500);
    // The table lists every device of the rollout (esp-rollout's msg.rows): the rest wait, queued.
    assert.equal(await rolloutRows.filter({ hasNotText: 'queued' }).count(), 1, 'only the canary started while paused');
    for (const id of rest) await rolloutRow(id).filter({ hasText: 'queued' }).waitFor({ timeout: 1000 });
    assert.deepEqual((await rolloutRow(canary).locator('td').allInnerTexts()).slice(0, 3).map((c) => c.trim()), [canary, '1', 'passed']);

    // Resumed: the second wave starts, at most the cap (2) updating at once.
    await page.getByRole('button', { name: 'Resume' }).click();
    await status(`rollout of ${V2} running`);
    await page.locator('.esp-fleet-rollout-wave', { hasText: 'wave 2 started' }).waitFor({ timeout: 20_000 });
    for (const id of rest) await rolloutRow(id).filter({ hasNotText: 'queued' }).waitFor({ timeout: 20_000 });
    const updating = await page.locator('.esp-fleet-rollout-devices tbody tr', { hasText: 'updating' }).count();
    assert.ok(updating <= 2, `${updating} updating at once with a cap of 2`);

    // Aborted for good: the status says so, and another start is possible.
    await page.getByRole('button', { name: 'Abort' }).click();
    await status(`rollout of ${V2} aborted: aborted by msg`);
    // The devices already commanded are still judged to the end; none is left updating or soaking.
    await page.waitForFunction(() => {
      const states = Array.from(document.querySelectorAll('.esp-fleet-rollout-devices tbody tr')).map((r) => r.textContent ?? '');
      return states.length > 0 && states.every((t) => !/updating|soaking/.test(t));
    }, undefined, { timeout: 60_000 });
    // A new start takes the devices the aborted one left on V1, and finishes.
    await page.getByRole('button', { name: 'Start rollout' }).click();
    await status(`rollout of ${V2} done`);
    for (const id of ids) await row(id).filter({ hasText: V2 }).waitFor({ timeout: 20_000 });
    mkdirSync(ARTIFACTS, { recursive: true });
    await page.screenshot({ path: path.join(ARTIFACTS, 'fleet-dashboard.png'), fullPage: true });
    if (process.env.DASHBOARD_SCREENSHOT) await page.screenshot({ path: path.resolve(PACKAGE_ROOT, process.env.DASHBOARD_SCREENSHOT), fullPage: true });
  });

  it('New devices lists a board that asks to join: approve issues its certificate (the same request then gets 200), reject keeps the other out (403)', async () => {
    const [approved, rejected] = deviceIds('e57a16', 2);
    const ca = await fs.readFile(path.join(fx.deviceFilesDir, 'ca.crt'), 'utf8');
    const from = fx.red.logs.length;
    await fx.red.inject('test-bootstrap');
    const line = ((await untilTapped(fx.red, answers, (m) => m.topic === 'bootstrap', 20_000, from)).payload as { line: string }).line;
    await page.goto(`${fx.red.url}/dashboard`);
    await page.locator('.esp-fleet-enroll').waitFor({ timeout: 20_000 });
    const waiting = (id: string) => page.locator('.esp-fleet-enroll tr', { hasText: id });
    assert.equal(await page.locator('.esp-fleet-enroll tr', { hasText: 'e57a16' }).count(), 0, 'nobody waits before the boards ask');

    const boards = [new EnrollingBoard(approved), new EnrollingBoard(rejected)];
    for (const board of boards) {
      assert.equal((await board.ask(fx.enrollPort, ca, line)).status, 202);
      await waiting(board.id).waitFor({ timeout: 20_000 });
      // And a notification says so (a newer one takes the place of the last).
      await page.getByText(`New board ${board.id} asks to join`).first().waitFor({ timeout: 10_000 });
    }
    // Device, its approve and reject buttons, then key type, address and when it asked.
    const cells = await waiting(approved).locator('td').allInnerTexts();
    assert.equal(cells[0], approved);
    assert.deepEqual(cells.slice(1, 3).map((c) => c.trim().toLowerCase()), ['approve', 'reject']);
    assert.equal(cells[3], 'ec');
    assert.match(cells[4], /127\.0\.0\.1$/);
    assert.notEqual(cells[5].trim(), '', 'when it asked');

    await waiting(approved).locator('td[data-column-key="approve"] button').click();
    await waiting(approved).waitFor({ state: 'detached', timeout: 20_000 });
    const answer = await boards[0].ask(fx.enrollPort, ca, line);
    assert.equal(answer.status, 200, answer.body);
    boards[0].certificateOf(answer);

    await waiting(rejected).locator('td[data-column-key="reject"] button').click();
    await waiting(rejected).waitFor({ state: 'detached', timeout: 20_000 });
    const refused = await boards[1].ask(fx.enrollPort, ca, line);
    assert.equal(refused.status, 403, refused.body);
    assert.equal(await waiting(rejected).count(), 0, 'the rejected board is not listed again');
  });

  /** Picks the rollout panel's target image and cap, and presses Start (as a user does). */
  async function startRolloutFromPanel(image: string, cap: number): Promise<void> {
    await page.locator('.esp-fleet-rollout-image .v-field').click();
    await page.locator('.v-overlay .v-list-item', { hasText: image }).click();
    const capInput = page.locator('.esp-fleet-rollout-cap input');
    await capInput.fill(String(cap));
    await capInput.press('Enter');
    await page.getByRole('button', { name: 'Start rollout' }).click();
  }
  /** The rollout table's row of a device. */
  const rolloutRowOf = (id: string) => page.locator('.esp-fleet-rollout-devices tbody tr', { hasText: id });
  /** A test of its own: a rollout an earlier test left running, paused or halted is aborted first (a start would be refused). */
  async function abortLiveRollout(): Promise<void> {
    const line = page.locator('.esp-fleet-rollout-progress');
    await line.waitFor({ timeout: 20_000 });
    if (!/ (running|paused|halted)\b/.test(await line.innerText())) return;
    await page.getByRole('button', { name: 'Abort' }).click();
    await page.locator('.esp-fleet-rollout-progress', { hasText: ' aborted' }).waitFor({ timeout: 20_000 });
  }

  it('a rollout that halts shows a notification with the reason, the status line says halted, and the failed row says why', async () => {
    const [v1, v2] = [`${HALT_PRODUCT}-00.00.01`, `${HALT_PRODUCT}-00.00.02`];
    await fx.startDevices(haltIds, { image: v1, tamperedShare: 1 });
    await page.goto(`${fx.red.url}/dashboard`);
    for (const id of haltIds) await row(id).filter({ hasText: v1 }).waitFor({ timeout: 30_000 });
    await abortLiveRollout();
    const halted = `rollout of ${v2} halted: 1 of 1 devices of wave 1 failed (threshold 20 %)`;
    assert.equal(await page.getByText(halted).count(), 0, 'no halt shown before the rollout');

    await startRolloutFromPanel(v2, 1);
    try {
      // The notification (Dashboard 2.0's ui-notification: a Vuetify snackbar; it does not apply the node's class) carries esp-rollout's msg.text.
      const notice = page.locator('.nrdb-ui-notification', { hasText: halted });
      await notice.waitFor({ state: 'visible', timeout: 30_000 });
      await page.locator('.esp-fleet-rollout-progress', { hasText: halted }).waitFor({ timeout: 10_000 });
      // The canary (the first board the fleet heard from) failed with the board's own words; the other never started.
      const failedRow = page.locator('.esp-fleet-rollout-devices tbody tr', { hasText: 'failed' });
      await failedRow.waitFor({ timeout: 10_000 });
      const cells = (await failedRow.locator('td').allInnerTexts()).map((c) => c.trim());
      const canary = cells[0];
      assert.ok(haltIds.includes(canary), `${canary} is one of the boards that refuse`);
      assert.deepEqual(cells.slice(1, 3), ['1', 'failed']);
      assert.match(cells[cells.length - 1], /^refused the image: firmware: signature check failed/);
      await page.waitForTimeout(1500);
      const other = (await rolloutRowOf(haltIds.find((id) => id !== canary)!).locator('td').allInnerTexts()).map((c) => c.trim());
      assert.deepEqual(other.slice(1, 3), ['2', 'queued'], `the second wave did not start: ${JSON.stringify(other)}`);
      for (const id of haltIds) assert.ok((await row(id).innerText()).includes(v1), `${id} still runs ${v1}`);

      // Closed by the user.
      await notice.getByRole('button', { name: 'Close' }).click();
      await notice.waitFor({ state: 'hidden', timeout: 10_000 });
    } finally {
      // Aborted, so a later start is possible whatever happened above.
      await page.getByRole('button', { name: 'Abort' }).click();
      await page.locator('.esp-fleet-rollout-progress', { hasText: `rollout of ${v2} aborted` }).waitFor({ timeout: 20_000 });
    }
  });

  it("the rollout table's download column shows each device's percent from the update server, rising to 100", async () => {
    const [v1, v2] = [`${BIG_PRODUCT}-00.00.01`, `${BIG_PRODUCT}-00.00.02`];
    await fx.startDevices(bigIds, { image: v1 });
    await page.goto(`${fx.red.url}/dashboard`);
    for (const id of bigIds) await row(id).filter({ hasText: v1 }).waitFor({ timeout: 30_000 });
    await abortLiveRollout();

    // The canary, then the other two at once (cap 2).
    await startRolloutFromPanel(v2, 2);
    // What the page shows, read from the DOM until every device passed (at most 40 s): each row's
    // device, state and the value of its bar (Vuetify's v-progress-linear: aria-valuenow). Read
    // every 5 ms and on each change of the table (a MutationObserver), since on 127.0.0.1 the
    // kernel's socket buffers take the whole image within ~0.1 s, so the server's progress events
    // (bytes the socket has taken) come close together.
    type Shown = { device: string; state: string; percent: string | null };
    const shown = await page.evaluate(
      async ({ devices, ms }) => {
        const out: Shown[][] = [];
        const read = (): Shown[] =>
          Array.from(document.querySelectorAll('.esp-fleet-rollout-devices tbody tr')).map((r) => {
            const cells = Array.from(r.querySelectorAll('td'));
            const bar = r.querySelector('td[data-column-key="percent"] [role="progressbar"]');
            return { device: (cells[0]?.textContent ?? '').trim(), state: (cells[2]?.textContent ?? '').trim(), percent: bar ? bar.getAttribute('aria-valuenow') : null };
          });
        const observer = new MutationObserver(() => out.push(read()));
        observer.observe(document.body, { subtree: true, childList: true, characterData: true, attributes: true, attributeFilter: ['aria-valuenow'] });
        try {
          const until = Date.now() + ms;
          while (Date.now() < until) {
            const rows = read();
            out.push(rows);
            if (devices.every((d) => rows.some((r) => r.device === d && r.state === 'passed'))) break;
            await new Promise((r) => setTimeout(r, 5));
          }
        } finally {
          observer.disconnect();
        }
        return out;
      },
      { devices: bigIds, ms: 40_000 },
    );
    const last = shown[shown.length - 1];
    for (const id of bigIds) assert.ok(last.some((r) => r.device === id && r.state === 'passed'), `${id} passed within 40 s: ${JSON.stringify(last)}`);
    const seen = new Map<string, number[]>(bigIds.map((id) => [id, []]));
    for (const rows of shown) {
      for (const r of rows) {
        const values = seen.get(r.device);
        if (!values) continue;
        // Once past the download the bar is full.
        if (r.state === 'soaking' || r.state === 'passed') assert.equal(r.percent, '100', `${r.device} ${r.state} shows ${r.percent}`);
        // Queued, or updating before the first progress event: no value (an empty bar).
        const p = r.percent === null || r.percent === '' ? NaN : Number(r.percent);
        if (Number.isNaN(p)) {
          assert.ok(r.state === 'queued' || r.state === 'updating', `${r.device} ${r.state} shows no value`);
          continue;
        }
        if (values[values.length - 1] !== p) values.push(p);
      }
    }
    const report = JSON.stringify(Object.fromEntries(seen));
    for (const [id, values] of seen) {
      assert.ok(values.every((p) => p >= 0 && p <= 100), `${id}: ${report}`);
      assert.ok(values.every((p, i) => i === 0 || p >= values[i - 1]), `${id}'s percent never goes down: ${report}`);
      assert.equal(values[values.length - 1], 100, `${id} ends at 100: ${report}`);
    }
    assert.ok([...seen.values()].flat().some((p) => p > 0 && p < 100), `a value between 0 and 100 was shown while downloading: ${report}`);
    console.log(`      (values shown: ${report})`);
    await page.locator('.esp-fleet-rollout-progress', { hasText: `rollout of ${v2} done` }).waitFor({ timeout: 20_000 });
  });

  it('an ESP32 beside the ESP8266s: its row says esp32, and its update button installs the next signed ESP32 image', async () => {
    const [board] = await fx.startEsp32([esp32Id], E32_V1);
    await page.goto(`${fx.red.url}/dashboard`);
    await row(esp32Id).filter({ hasText: E32_V1 }).waitFor({ timeout: 20_000 });
    const cells = await row(esp32Id).locator('td').allInnerTexts();
    assert.equal(cells[0], esp32Id);
    assert.equal(cells[5], 'esp32', 'the platform its topics came in on (secure-esp32)');
    assert.equal(cells[7], E32_V1);
    // The ESP8266 rows beside it keep theirs; what they run now is kept to compare after the click.
    const before = new Map<string, string>();
    for (const id of ids) {
      const c = await row(id).locator('td').allInnerTexts();
      assert.equal(c[5], 'esp8266', `${id}'s platform`);
      before.set(id, c[7]);
    }

    const requests = board.otaRequests.length;
    await row(esp32Id).locator('td[data-column-key="update"] button').click();
    // esp-command sent the ESP32's own command for `update`, and judged it by the image its status names.
    await page.locator('.esp-fleet-outcomes tr', { hasText: esp32Id }).filter({ hasText: 'update/run' }).filter({ hasText: 'success' }).filter({ hasText: E32_V2 }).waitFor({ timeout: 30_000 });
    await row(esp32Id).filter({ hasText: E32_V2 }).waitFor({ timeout: 10_000 });
    assert.equal((await row(esp32Id).locator('td').allInnerTexts())[7], E32_V2);
    // The device itself runs the next image: one GET of the update server's next-image route, as
    // esp_https_ota with resumption sends it from scratch (Range from 0, answered 206), then verified.
    assert.equal(board.image, E32_V2);
    const fetched = board.otaRequests.slice(requests);
    assert.deepEqual(fetched.map((r) => [r.path, r.headers.Range, r.status]), [[`/fw/firmware.bin?curimage=${encodeURIComponent(E32_V1)}`, 'bytes=0-', 206]]);
    // Only the ESP32 changed.
    for (const id of ids) assert.equal((await row(id).locator('td').allInnerTexts())[7], before.get(id), `${id} still runs ${before.get(id)}`);
  });
});
