/**
 * bench/fleet: how large a fleet one machine holds, end to end. Simulated devices (lib/sim, in
 * forked processes) boot like the secure ESP8266 framework's firmware — config.json from `esp-firmware-server`
 * over mutual-TLS HTTPS, then MQTT over mutual TLS with their own certificates to a real
 * Mosquitto running the config our CA generates — and report status every 60 s into
 * `esp-fleet` + `esp-status` on the real Node-RED runtime (this process). Then `esp-command`
 * rolls a new signed image out to part of the fleet with a cap on devices updating at once;
 * each device downloads from `esp-firmware-server`, verifies the RSA signature like the
 * ESP8266 Updater, reboots and reports the new image.
 *
 * Printed: devices connected (as the devices and as Node-RED see them) and how long it took,
 * Node-RED's RSS and CPU while connecting, in steady state and during the rollout, the time to
 * full rollout and, as the reference, its lower bound: ceil(rollout / cap) × the time one
 * device takes on its own (measured first, in the same run: the mean of five devices, one at a time).
 *
 * Then the same rollout size on other devices through `esp-rollout` (issue 15): a canary of one
 * cap's worth and --waves waves in all, each gated by a soak of --soak-s, the cap the same;
 * timed from `start` to the node's `done`, against waves × soak + ceil(rollout / cap) × alone.
 *
 *   npm run bench:fleet                    # build + full run: 10,000 devices, an outage, two 1,000-device rollouts (~30 min, estimated)
 *   node dist/bench/fleet.js --quick       # 200 devices, 50-device rollout: a smoke run
 *
 * Outage phase (after the steady state): Mosquitto is stopped for --outage-s seconds and started
 * again on the same config; printed are the times until 99 % and 100 % of the devices are back
 * online (counted from the broker's restart), the peak reconnects per second, Node-RED's CPU and
 * memory, and how many devices rebooted through the waittimeout rule (goal: all back within
 * 2 minutes, none rebooted for an outage shorter than waittimeout; docs/wire-contract.md,
 * Device timing).
 *
 * Sizes: --devices N (BENCH_DEVICES), --rollout R (BENCH_ROLLOUT), --cap C (BENCH_CAP),
 * --sim-procs P (BENCH_SIM_PROCS), --boots-per-second B per process (BENCH_BOOTS), --steady-s S
 * (BENCH_STEADY_S), --image-kib K (BENCH_IMAGE_KIB), --outage-s O (BENCH_OUTAGE_S, 0 skips),
 * --waves W (BENCH_WAVES), --soak-s S (BENCH_SOAK_S), --keep.
 */
import * as os from 'node:os';
import * as path from 'node:path';
import { promises as fs, rmSync } from 'node:fs';
import { performance } from 'node:perf_hooks';
import { webcrypto } from 'node:crypto';
import { x509, toPem } from '../lib/pki/x509';
import { CaStore } from '../lib/pki/ca-store';
import { writeMosquittoConfig } from '../lib/mosquitto/folders';
import { FirmwareService } from '../lib/firmware/firmware-service';
import { publishSimImage } from '../lib/sim/publish';
import { deviceIds } from '../lib/sim/fleet-simulator';
import type { FleetClient } from '../lib/fleet/fleet-client';
import { freePort } from '../test/support/mosquitto';
import { intOption, machineInfo, parseArgs, round, runPool, table } from './lib/common';
import { startBenchMosquitto } from './lib/bench-mosquitto';
import { startNodeRed } from './lib/node-red-runtime';
import { cpuBetween, processMemory, snapshot, CpuSnapshot } from './lib/proc-cpu';
import { IpcChild } from './lib/ipc-child';
import type { SimCommand, SimReply, SimStats } from './lib/sim-fleet-child';
import { benchWaves, runRollout } from './lib/rollout-phase';

const GOAL_DEVICES = 10_000;
/** All devices back online within this long after the broker is back. */
const GOAL_BACK_MS = 120_000;
/** What esp-firmware-server serves the devices as config.json (its defaults but retry 5 s). */
const RETRY_MS = 5_000;
const WAIT_MS = 20_000;
const PRODUCT = 'ESP8266_BENCH';
const V1 = `${PRODUCT}-1.0.0`;
const V2 = `${PRODUCT}-1.1.0`;

const args = parseArgs(process.argv.slice(2));
if (args.has('help')) {
  process.stdout.write('usage: node dist/bench/fleet.js [--quick] [--devices N] [--rollout R] [--cap C] [--sim-procs P] [--boots-per-second B] [--steady-s S] [--image-kib K] [--outage-s O] [--waves W] [--soak-s S] [--timing esp8266|fast] [--keep]\n');
  process.exit(0);
}
const quick = args.has('quick');
const N = {
  devices: intOption(args, 'devices', 'BENCH_DEVICES', quick ? 200 : GOAL_DEVICES),
  rollout: intOption(args, 'rollout', 'BENCH_ROLLOUT', quick ? 50 : 1_000),
  cap: intOption(args, 'cap', 'BENCH_CAP', quick ? 10 : 50),
  simProcs: intOption(args, 'sim-procs', 'BENCH_SIM_PROCS', 2),
  boots: intOption(args, 'boots-per-second', 'BENCH_BOOTS', quick ? 100 : 60),
  steadyS: intOption(args, 'steady-s', 'BENCH_STEADY_S', quick ? 5 : 65),
  imageKib: intOption(args, 'image-kib', 'BENCH_IMAGE_KIB', 320),
  outageS: intOption(args, 'outage-s', 'BENCH_OUTAGE_S', quick ? 5 : 10),
  /** Devices with a real ESP8266's timing (downloads at 20 KB/s, 2 s handshakes, boots of ~4 s), or `fast`. */
  timing: (args.get('timing') ?? process.env.BENCH_TIMING ?? 'esp8266') as 'esp8266' | 'fast',
  /** esp-rollout: waves in all (the canary is the first) and the soak of each gate. */
  waves: intOption(args, 'waves', 'BENCH_WAVES', 3),
  soakS: 0,
};
if (N.timing !== 'esp8266' && N.timing !== 'fast') throw new Error('--timing is esp8266 or fast');
// A short soak: a tenth of a minute with a real ESP8266's timing, two seconds with `fast` (a device's update takes ~0.3 s there).
N.soakS = intOption(args, 'soak-s', 'BENCH_SOAK_S', quick || N.timing === 'fast' ? 2 : 10);
/**
 * Devices that measure a lone update, one after the other; their mean is the reference. A mean,
 * because a device's first MQTT attempt after its reboot waits a jitter of up to config.json's
 * retrytimeout (5 s here, not scaled by `fast`; docs/wire-contract.md, Device timing), so one
 * update takes its work plus 0–5 s, and a cap's slots pass devices at the mean rate.
 */
const LONE = 5;
if (2 * N.rollout + LONE > N.devices) throw new Error(`--devices must be at least 2 × --rollout + ${LONE} (esp-command's rollout, esp-rollout's, and ${LONE} lone updates)`);
const plan = benchWaves(N.rollout, N.cap, N.waves);

const log = (line: string): void => void process.stderr.write(`${line}\n`);
const mb = (bytes: number | undefined): string => (bytes === undefined ? '?' : `${Math.round(bytes / 1048576)} MB`);
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** CSRs for many devices from a small pool of keys: key generation is not what this measures. */
async function issueDevices(store: CaStore, ids: string[]): Promise<string[]> {
  const alg = { name: 'RSASSA-PKCS1-v1_5', hash: 'SHA-256', publicExponent: new Uint8Array([1, 0, 1]), modulusLength: 2048 };
  const pool = await Promise.all(Array.from({ length: 4 }, () => webcrypto.subtle.generateKey(alg, true, ['sign', 'verify']) as Promise<CryptoKeyPair>));
  await runPool(ids, 16, async (id) => {
    const keys = pool[parseInt(id.slice(-4), 16) % pool.length]!;
    const csr = await x509.Pkcs10CertificateRequestGenerator.create({ name: `CN=${id}`, keys, signingAlgorithm: alg });
    await store.signCsr(csr.toString('pem'), { deviceId: id });
  });
  return Promise.all(
    pool.map(async (k) => {
      return toPem('PRIVATE KEY', await webcrypto.subtle.exportKey('pkcs8', k.privateKey));
    }),
  );
}

async function main(): Promise<void> {
  const info = machineInfo();
  log(`bench/fleet on ${info.cpus} × ${info.cpuModel}, Node ${process.version}: ${N.devices} devices, rollout ${N.rollout} with cap ${N.cap} (esp-command), then ${plan.sizes.join(' + ')} with soak ${N.soakS} s (esp-rollout)`);
  const tmp = await fs.mkdtemp(path.join(os.tmpdir(), 'esp-fleet-bench-fleet-'));
  if (!args.has('keep')) process.on('exit', () => rmSync(tmp, { recursive: true, force: true }));

  // Preparation, not timed: CA, device certificates, broker, firmware releases.
  const t0 = performance.now();
  const store = await CaStore.open({ dir: path.join(tmp, 'ca') });
  await store.issueServer({ commonName: 'localhost' });
  const ids = deviceIds('b0fe00', N.devices);
  const keys = await issueDevices(store, ids);
  const mqttPort = await freePort();
  const fwPort = await freePort();
  const setup = await writeMosquittoConfig(store, { dir: path.join(tmp, 'mosquitto'), serverName: 'localhost', backendName: 'node-red', port: mqttPort });
  await store.idle(); // the esp-ca node in Node-RED is the store's only writer from here on
  let broker = await startBenchMosquitto(setup.dir);
  const fwDir = path.join(tmp, 'firmware');
  const service = await FirmwareService.open(fwDir);
  for (const version of ['1.0.0', '1.1.0']) await publishSimImage(service, { product: PRODUCT, version, size: N.imageKib * 1024 });
  const trusts = [service.keyring.exportPublic((await service.keyring.current('esp8266-rsa')).id).pem];
  log(`prepared in ${round((performance.now() - t0) / 1000)} s (${N.devices} device certificates from CSRs, mosquitto ${broker.version})`);

  const red = await startNodeRed({ requiredTypes: ['esp-ca', 'esp-fleet', 'esp-status', 'esp-command', 'esp-firmware-server', 'esp-rollout'] });
  await red.deploy([
    { id: 'tab', type: 'tab', label: 'fleet' },
    { id: 'ca', type: 'esp-ca', folder: store.dir },
    { id: 'fleet', type: 'esp-fleet', broker: `mqtts://localhost:${mqttPort}`, tlsSource: 'esp-ca', ca: 'ca', backendName: 'node-red', scheme: 'secure-esp8266', statusInterval: '60000', registryFile: path.join(tmp, 'registry.json') },
    { id: 'status', z: 'tab', x: 100, y: 100, type: 'esp-status', fleet: 'fleet', wires: [[], [], []] },
    { id: 'cmd', z: 'tab', x: 100, y: 200, type: 'esp-command', fleet: 'fleet', command: 'firmware', devices: '*', onlineOnly: true, maxInFlight: String(N.cap), outcomeTimeout: '300', wires: [[], [], []] },
    // Every simulated device connects from 127.0.0.1: the connection caps lifted above the rollout's needs.
    // esp-rollout: the same cap; the update server's events wired in (download progress, 304s), as a dashboard wires them.
    { id: 'roll', z: 'tab', x: 100, y: 400, type: 'esp-rollout', fleet: 'fleet', target: V2, devices: '', canary: String(plan.canary), waveSize: String(plan.waveSize), cap: String(N.cap), soakS: String(N.soakS), updateTimeoutS: '300', haltAt: '20%', folder: '', wires: [['roll-d'], ['roll-s']] },
    { id: 'roll-d', z: 'tab', x: 300, y: 400, type: 'bench-count', wires: [] },
    { id: 'roll-s', z: 'tab', x: 300, y: 450, type: 'bench-count', wires: [] },
    { id: 'fw', z: 'tab', x: 100, y: 300, type: 'esp-firmware-server', ca: 'ca', hostname: 'localhost', port: String(fwPort), bindAddress: '127.0.0.1', downloadPath: 'fw', folder: fwDir, maxDownloads: String(N.cap * 2), maxConnections: '4096', maxConnectionsPerAddress: '4096', mqttport: String(mqttPort), statusinterval: '60000', retrytimeout: String(RETRY_MS), waittimeout: String(WAIT_MS), wires: [[], ['roll']] },
  ]);
  let fleetNode: { fleet(): Promise<FleetClient> } | null = null;
  for (let i = 0; !(fleetNode = red.getNode('fleet')); i++) {
    if (i > 400) throw new Error('the flow did not start');
    await sleep(25);
  }
  const client = await fleetNode.fleet();
  for (let i = 0; client.state !== 'connected'; i++) {
    if (i > 400) throw new Error(`esp-fleet did not connect: ${client.state}`);
    await sleep(25);
  }

  const sims = Array.from({ length: N.simProcs }, (_, i) => IpcChild.fork<SimCommand, SimReply>(path.join(__dirname, 'lib', 'sim-fleet-child.js'), `sim-${i}`));
  const pids: Record<string, number | 'self'> = { 'node-red': 'self', mosquitto: broker.pid, ...Object.fromEntries(sims.map((s) => [s.name, s.pid])) };
  const simStats = async (): Promise<SimStats[]> => Promise.all(sims.map((s) => s.request({ cmd: 'stats' }, 'stats').then((r) => r.stats)));
  const totals = (stats: SimStats[]): { online: number; images: Record<string, number>; rss: number; errors: string[]; reboots: Record<string, number>; attempts: number } => {
    const images: Record<string, number> = {};
    const reboots: Record<string, number> = {};
    for (const s of stats) for (const [k, v] of Object.entries(s.images)) images[k] = (images[k] ?? 0) + v;
    for (const s of stats) for (const [k, v] of Object.entries(s.reboots)) reboots[k] = (reboots[k] ?? 0) + (v ?? 0);
    return { online: stats.reduce((a, s) => a + s.online, 0), images, rss: stats.reduce((a, s) => a + s.rss, 0), errors: stats.flatMap((s) => s.errors), reboots, attempts: stats.reduce((a, s) => a + s.connectAttempts, 0) };
  };
  let peakRss = 0;
  const rssTimer = setInterval(() => (peakRss = Math.max(peakRss, processMemory('self')?.rss ?? 0)), 250);
  const phase = (name: string, a: CpuSnapshot, b: CpuSnapshot): string[] => {
    const use = cpuBetween(a, b);
    const simCores = sims.reduce((x, s) => x + (use?.cores[s.name] ?? 0), 0);
    return [name, `${round((b.at - a.at) / 1000)} s`, `${round(use?.cores['node-red'] ?? 0, 2)}`, `${round(use?.cores.mosquitto ?? 0, 2)}`, `${round(simCores, 2)}`, mb(processMemory('self')?.rss)];
  };
  const rows: string[][] = [];

  // 1. Connect the fleet.
  const c0 = snapshot(pids);
  const share = Math.ceil(N.devices / N.simProcs);
  await Promise.all(
    sims.map((s, i) =>
      s.request({ cmd: 'start', start: { ids: ids.slice(i * share, (i + 1) * share), certDir: store.deviceFilesDir, keys, bootstrap: { host: 'localhost', port: fwPort, path: '/fw' }, image: V1, trusts, bootsPerSecond: N.boots, timing: N.timing } }, 'started'),
    ),
  );
  const connectLimit = performance.now() + (N.devices / (N.boots * N.simProcs)) * 1000 + 180_000;
  let simOnline = 0;
  let redOnline = 0;
  for (let last = 0; ; ) {
    simOnline = totals(await simStats()).online;
    redOnline = client.registry.counts().online;
    if (performance.now() - last > 10_000) {
      log(`  connecting: ${simOnline} devices online, Node-RED sees ${redOnline}`);
      last = performance.now();
    }
    if ((simOnline >= N.devices && redOnline >= N.devices) || performance.now() > connectLimit) break;
    await sleep(500);
  }
  const c1 = snapshot(pids);
  const connectS = (c1.at - c0.at) / 1000;
  rows.push(phase('connect', c0, c1));
  log(`connected: ${simOnline} / ${N.devices} devices in ${round(connectS)} s; Node-RED sees ${redOnline} online`);

  // 2. Steady state: status every 60 s from every device.
  await sleep(N.steadyS * 1000);
  const c2 = snapshot(pids);
  rows.push(phase('steady', c1, c2));

  // 3. Outage: the broker goes away for --outage-s and comes back on the same config.
  const outage = N.outageS > 0 ? await brokerOutage() : undefined;

  // 4. Reference: one device updated on its own (five, one after the other; the mean), then the rollout with the cap.
  // Done when the device's status reports the new image: read from the status events, not polled.
  const waitImage = (targets: string[], limitMs: number): Promise<number> =>
    new Promise((resolve) => {
      const left = new Set(targets.filter((id) => client.registry.get(id)?.image !== V2));
      const onStatus = (id: string, update: { entry: { image?: string } }): void => {
        if (update.entry.image === V2 && left.delete(id) && left.size === 0) finish();
      };
      const finish = (): void => {
        clearTimeout(timer);
        client.off('status', onStatus);
        resolve(targets.length - left.size);
      };
      const timer = setTimeout(finish, limitMs);
      client.on('status', onStatus);
      if (left.size === 0) finish();
    });
  const lones: number[] = [];
  for (const lone of ids.slice(-LONE)) {
    const l0 = performance.now();
    red.getNode<{ receive(msg: object): void }>('cmd')!.receive({ payload: 'firmware', device: lone });
    if ((await waitImage([lone], 120_000)) !== 1) throw new Error(`the lone update of ${lone} did not arrive within 120 s`);
    lones.push((performance.now() - l0) / 1000);
  }
  const loneS = lones.reduce((a, b) => a + b, 0) / lones.length;
  log(`one device alone: ${lones.map((x) => round(x, 2)).join(' / ')} s (mean ${round(loneS, 2)} s)`);
  const rolloutIds = ids.slice(0, N.rollout);
  const r0 = snapshot(pids);
  peakRss = 0;
  red.getNode<{ receive(msg: object): void }>('cmd')!.receive({ payload: 'firmware', device: rolloutIds });
  const updated = await waitImage(rolloutIds, 30 * 60_000);
  const r1 = snapshot(pids);
  const rolloutS = (r1.at - r0.at) / 1000;
  rows.push(phase('rollout (esp-command)', r0, r1));
  const rolloutPeak = peakRss;
  log(`esp-command: ${updated} of ${N.rollout} on ${V2} in ${round(rolloutS)} s`);

  // 5. The same size through esp-rollout, on devices still on V1: waves, gates with a soak.
  const waveIds = ids.slice(N.rollout, 2 * N.rollout);
  const boundWavesS = N.waves * N.soakS + Math.ceil(N.rollout / N.cap) * loneS;
  const w0 = snapshot(pids);
  peakRss = 0;
  const waved = await runRollout(red, { rollout: 'roll', devicesOut: 'roll-d', statusOut: 'roll-s' }, waveIds, Math.max(10 * 60_000, 3 * boundWavesS * 1000));
  const w1 = snapshot(pids);
  rows.push(phase('rollout (esp-rollout)', w0, w1));
  const wavedPeak = peakRss;
  const wavedOnTarget = waveIds.filter((id) => client.registry.get(id)?.image === V2).length;
  const wavedS = waved.ms / 1000;
  log(`esp-rollout: ${waved.end ? `${waved.end.status}: ${waved.end.reason}` : '** no end **'} in ${round(wavedS)} s; gates at ${waved.gates.map((g) => round(g / 1000)).join(', ')} s`);
  clearInterval(rssTimer);
  const after = totals(await simStats());

  const lowerBound = Math.ceil(N.rollout / N.cap) * loneS;
  const outageRows: string[][] = outage
    ? [
        [`broker down ${N.outageS} s (waittimeout ${WAIT_MS / 1000} s): 99 % back`, outage.t99Ms === undefined ? '** never **' : `${round(outage.t99Ms / 1000, 1)} s after the restart`, ''],
        ['100 % back', outage.t100Ms === undefined ? `** ${outage.lastOnline} of ${N.devices} **` : `${round(outage.t100Ms / 1000, 1)} s`, `<= ${GOAL_BACK_MS / 1000} s ${outage.t100Ms !== undefined && outage.t100Ms <= GOAL_BACK_MS ? 'met' : '** not met **'}`],
        ['peak reconnects per second (connect attempts started per second)', `${outage.peakPerSecond}/s (${outage.peakAttemptsPerSecond}/s)`, ''],
        ['rebooted by the waittimeout rule', `${outage.waittimeoutReboots}`, N.outageS * 1000 < WAIT_MS ? `0 ${outage.waittimeoutReboots === 0 ? 'met' : '** not met **'}` : '(outage longer than waittimeout)'],
        ['other reboots during the outage (watchdog, command, update)', `${outage.otherReboots}`, ''],
        ['Node-RED back on the broker', outage.nodeRedBackMs === undefined ? '** never **' : `${round(outage.nodeRedBackMs / 1000, 1)} s`, ''],
        ['Node-RED peak RSS during the outage', mb(outage.peakRss), ''],
      ]
    : [];
  process.stdout.write(
    `\n# bench/fleet: ${N.devices} simulated devices, Node-RED ${red.version}, mosquitto ${broker.version}, ${info.cpus} × ${info.cpuModel}\n\n` +
      table(['phase', 'time', 'Node-RED cores', 'mosquitto cores', 'simulator cores', 'Node-RED RSS'], rows) +
      '\n' +
      table(
        ['measure', 'value', 'goal'],
        [
          ['devices connected (devices / Node-RED online)', `${simOnline} / ${redOnline} of ${N.devices}`, `${GOAL_DEVICES} ${simOnline >= GOAL_DEVICES ? 'met' : '** not met **'}`],
          ['time to connect all', `${round(connectS)} s (boots paced at ${N.boots * N.simProcs}/s)`, ''],
          [`one device alone: command → new image (mean of ${LONE})`, `${round(loneS, 2)} s (${lones.map((x) => round(x, 2)).join(' / ')})`, ''],
          [`esp-command: rollout of ${N.rollout}, cap ${N.cap}`, `${updated} updated in ${round(rolloutS)} s`, `${updated === N.rollout ? 'all' : '** not all **'}`],
          ['  lower bound ceil(R/cap) × alone', `${round(lowerBound)} s`, ''],
          ['  efficiency (lower bound / actual)', `${round(lowerBound / rolloutS, 2)}×`, ''],
          ['  Node-RED peak RSS', mb(rolloutPeak), ''],
          [`esp-rollout: ${N.rollout} in ${plan.sizes.length} waves (${plan.sizes.join(' + ')}), cap ${N.cap}, soak ${N.soakS} s`, `${waved.end ? `${waved.end.status} in ${round(wavedS)} s: ${waved.end.reason}` : `** no end within ${round(wavedS)} s **`}; ${wavedOnTarget} on ${V2}`, `${waved.end?.status === 'done' && wavedOnTarget === N.rollout ? 'all' : '** not all **'}`],
          ['  gates passed at', waved.gates.map((g) => `${round(g / 1000)} s`).join(', '), ''],
          ['  lower bound waves × soak + ceil(R/cap) × alone', `${round(boundWavesS)} s`, ''],
          ['  efficiency (lower bound / actual)', `${round(boundWavesS / wavedS, 2)}×`, `>= 0.9 ${boundWavesS / wavedS >= 0.9 ? 'met' : '** not met **'}`],
          ['  msgs out of esp-rollout (per device / waves and status; with a percent)', `${waved.deviceMsgs} / ${waved.statusMsgs} (${waved.percentMsgs})`, ''],
          ['  Node-RED peak RSS', mb(wavedPeak), ''],
          ...outageRows,
          ['simulator RSS (all processes)', mb(after.rss), ''],
        ],
      ) +
      `\nimages after: ${JSON.stringify(after.images)}${after.errors.length ? `\ndevice errors (first): ${after.errors.slice(0, 5).join(' | ')}` : ''}\n`,
  );

  await Promise.all(sims.map((s) => s.close({ cmd: 'close' }, 'closed')));
  await red.stop();
  await broker.stop();
  process.exit(updated === N.rollout && waved.end?.status === 'done' && wavedOnTarget === N.rollout && (!outage || outage.t100Ms !== undefined) ? 0 : 1);

  /** Stops the broker, starts it again after --outage-s, and watches the fleet come back. */
  async function brokerOutage(): Promise<{ t99Ms?: number; t100Ms?: number; lastOnline: number; peakPerSecond: number; peakAttemptsPerSecond: number; waittimeoutReboots: number; otherReboots: number; nodeRedBackMs?: number; peakRss: number }> {
    const before = totals(await simStats());
    log(`outage: stopping mosquitto for ${N.outageS} s (${before.online} devices online)`);
    const o0 = snapshot(pids);
    peakRss = 0;
    await broker.stop();
    await sleep(N.outageS * 1000);
    broker = await startBenchMosquitto(setup.dir);
    pids.mosquitto = broker.pid;
    const up = performance.now();
    const result: { t99Ms?: number; t100Ms?: number; nodeRedBackMs?: number } = {};
    let lastOnline = 0;
    let peakPerSecond = 0;
    let peakAttemptsPerSecond = 0;
    const window: { at: number; online: number; attempts: number }[] = [];
    const limit = up + GOAL_BACK_MS + 60_000;
    for (let last = 0; performance.now() < limit; await sleep(250)) {
      const now = performance.now();
      const now_ = totals(await simStats());
      lastOnline = now_.online;
      if (result.nodeRedBackMs === undefined && client.state === 'connected') result.nodeRedBackMs = now - up;
      // Reconnects per second: the rise of the online count over the last second.
      window.push({ at: now, online: lastOnline, attempts: now_.attempts });
      while (window.length > 1 && now - window[0]!.at > 1000) window.shift();
      const span = Math.max(250, now - window[0]!.at);
      peakPerSecond = Math.max(peakPerSecond, Math.round(((lastOnline - window[0]!.online) * 1000) / span));
      peakAttemptsPerSecond = Math.max(peakAttemptsPerSecond, Math.round(((now_.attempts - window[0]!.attempts) * 1000) / span));
      if (result.t99Ms === undefined && lastOnline >= 0.99 * N.devices) result.t99Ms = now - up;
      if (lastOnline >= N.devices) {
        result.t100Ms = now - up;
        break;
      }
      if (now - last > 10_000) {
        log(`  back: ${lastOnline} of ${N.devices} online ${round((now - up) / 1000)} s after the restart`);
        last = now;
      }
    }
    const afterStats = totals(await simStats());
    rows.push(phase(`outage ${N.outageS} s + back`, o0, snapshot(pids)));
    log(`outage: ${lastOnline} of ${N.devices} back, 100 % after ${result.t100Ms === undefined ? 'never' : `${round(result.t100Ms / 1000, 1)} s`}`);
    return { ...result, lastOnline, peakPerSecond, peakAttemptsPerSecond, otherReboots: Object.entries(afterStats.reboots).filter(([k]) => k !== 'waittimeout').reduce((n, [k, v]) => n + v - (before.reboots[k] ?? 0), 0), waittimeoutReboots: (afterStats.reboots.waittimeout ?? 0) - (before.reboots.waittimeout ?? 0), peakRss };
  }
}

main().catch((err: Error) => {
  console.error(err.stack ?? err.message);
  process.exit(1);
});
