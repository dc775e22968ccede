/**
 * bench/broker-connect: how fast devices get onto the embedded MQTT broker
 * (lib/broker/embedded-broker.ts), side by side with Mosquitto running the config our CA
 * generates, with the same certificates; and how much slower that gets while an attacker holds
 * TLS handshakes open (issue 17, finding 1).
 *
 * Each device connects as an ESP8266 does: fresh TCP, a full TLS 1.2 handshake with its own
 * client certificate (ECDHE-RSA-AES128-GCM-SHA256 / X25519, no resumption), MQTT CONNECT, and
 * counts at CONNACK 0. The devices run in a forked process; ours runs in a forked process too.
 * Per phase: D devices connect (C at a time) and stay connected; the time from the first
 * connect to the last CONNACK is the figure. "held": before the phase, H sockets from another
 * loopback address (127.0.0.3) open TCP connections and never finish a ClientHello (half send
 * nothing, half part of a real one); whenever the broker closes one, it is opened again after
 * --reopen-ms, so H stay held throughout.
 *
 *   npm run bench:broker-connect                 # build + full run (about 1.5 min on 2 cores)
 *   node dist/bench/broker-connect.js --quick    # smoke run, figures not meaningful
 *
 * Sizes: --devices D (BENCH_DEVICES, 1000), --held H (BENCH_HELD, 500), --concurrency C
 * (BENCH_CONCURRENCY, 16), --rounds R (BENCH_ROUNDS, 3), --reopen-ms MS (BENCH_REOPEN_MS, 100),
 * --warmups W (BENCH_WARMUPS, 3 untimed phases per broker), --quiet-wait-ms MS (BENCH_QUIET_WAIT_MS),
 * --redo-disturbed K (BENCH_REDO_DISTURBED, 3), --no-default-caps (skip ours with its default caps),
 * --cache DIR (BENCH_CACHE_DIR: where the CA and the D device certificates are kept between
 * runs), --fresh (issue them again). Exit code 0 when it measured, even when a goal is missed;
 * 1 when something is broken (a device that never connects, a broker that does not start).
 */
import { promises as fs, existsSync, readFileSync, rmSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { performance } from 'node:perf_hooks';
import { webcrypto } from 'node:crypto';
import { x509, toPem } from '../lib/pki/x509';
import { CaStore } from '../lib/pki/ca-store';
import { writeMosquittoConfig } from '../lib/mosquitto/folders';
import { BROKER_LIMIT_DEFAULTS } from '../lib/broker/embedded-broker';
import { deviceIds } from '../lib/sim/fleet-simulator';
import { freePort } from '../test/support/mosquitto';
import { intOption, machineInfo, parseArgs, round, runPool, table } from './lib/common';
import { startBenchMosquitto, BenchMosquitto } from './lib/bench-mosquitto';
import { cpuBetween, snapshot, waitForQuiet } from './lib/proc-cpu';
import { IpcChild } from './lib/ipc-child';
import type { ConnectCommand, ConnectReply, ConnectResult } from './lib/connect-clients';
import type { BrokerCommand, BrokerLimitOptions, BrokerReply, BrokerStats } from './lib/broker-connect-server';
import { captureClientHello, HeldHandshakes, HeldStats } from './lib/held-handshakes';

const GOAL_HELD_RATIO = 1.1;
const CIPHER = 'ECDHE-RSA-AES128-GCM-SHA256';
const ECDH_CURVE = 'X25519';
const KEY_POOL = 8;
const ATTACKER = '127.0.0.3';
/** Other processes' CPU, in cores, that marks a phase as disturbed; below QUIET counts as a quiet machine. */
const DISTURBED = 0.2;
const QUIET = 0.1;

const args = parseArgs(process.argv.slice(2));
if (args.has('help')) {
  process.stdout.write(
    'usage: node dist/bench/broker-connect.js [--quick] [--devices D] [--held H] [--concurrency C] [--rounds R] [--reopen-ms MS]\n' +
      '         [--warmups W] [--quiet-wait-ms MS] [--redo-disturbed K] [--no-default-caps] [--cache DIR] [--fresh]\n',
  );
  process.exit(0);
}
const quick = args.has('quick');
const N = {
  devices: intOption(args, 'devices', 'BENCH_DEVICES', quick ? 200 : 1_000),
  held: intOption(args, 'held', 'BENCH_HELD', quick ? 100 : 500),
  concurrency: intOption(args, 'concurrency', 'BENCH_CONCURRENCY', 16),
  rounds: intOption(args, 'rounds', 'BENCH_ROUNDS', quick ? 1 : 3),
  reopenMs: intOption(args, 'reopen-ms', 'BENCH_REOPEN_MS', 100),
  quietWaitMs: intOption(args, 'quiet-wait-ms', 'BENCH_QUIET_WAIT_MS', quick ? 0 : 120_000),
  redoDisturbed: intOption(args, 'redo-disturbed', 'BENCH_REDO_DISTURBED', quick ? 0 : 3),
  warmups: intOption(args, 'warmups', 'BENCH_WARMUPS', quick ? 1 : 3),
};
const cacheDir = String(args.get('cache') ?? process.env.BENCH_CACHE_DIR ?? path.join(os.tmpdir(), 'esp-fleet-bench-broker-connect'));

const log = (line: string): void => void process.stderr.write(`${line}\n`);
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length ? (s.length % 2 ? s[(s.length - 1) / 2]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2) : NaN;
};

// ---- preparation: the CA, D device certificates (kept between runs), the Mosquitto folder ----

interface Prepared {
  store: CaStore;
  ids: string[];
  keys: string[];
  issued: number;
}

/** Device certificates from CSRs over a small pool of keys (as bench/fleet): key generation is not what is measured. */
async function prepare(count: number): Promise<Prepared> {
  if (args.has('fresh')) rmSync(cacheDir, { recursive: true, force: true });
  await fs.mkdir(cacheDir, { recursive: true, mode: 0o700 });
  const store = await CaStore.open({ dir: path.join(cacheDir, 'ca') });
  const keysFile = path.join(cacheDir, 'keys.json');
  const alg = { name: 'RSASSA-PKCS1-v1_5', hash: 'SHA-256', publicExponent: new Uint8Array([1, 0, 1]), modulusLength: 2048 };
  let keys: string[];
  let pairs: CryptoKeyPair[] | undefined;
  if (existsSync(keysFile)) {
    keys = JSON.parse(readFileSync(keysFile, 'utf8')) as string[];
  } else {
    pairs = await Promise.all(Array.from({ length: KEY_POOL }, () => webcrypto.subtle.generateKey(alg, true, ['sign', 'verify']) as Promise<CryptoKeyPair>));
    keys = await Promise.all(pairs.map(async (k) => toPem('PRIVATE KEY', await webcrypto.subtle.exportKey('pkcs8', k.privateKey))));
    await fs.writeFile(keysFile, JSON.stringify(keys), { mode: 0o600 });
  }
  const ids = deviceIds('b0cc00', count);
  const missing = ids.filter((id) => !store.currentIdentity('device', id));
  if (missing.length) {
    pairs ??= await Promise.all(
      keys.map(async (pem) => {
        const der = Buffer.from(pem.replace(/-----[^-]+-----|\s/g, ''), 'base64');
        const privateKey = await webcrypto.subtle.importKey('pkcs8', der, alg, true, ['sign']);
        const jwk = await webcrypto.subtle.exportKey('jwk', privateKey);
        const publicKey = await webcrypto.subtle.importKey('jwk', { kty: jwk.kty, n: jwk.n, e: jwk.e, alg: jwk.alg, ext: true }, alg, true, ['verify']);
        return { privateKey, publicKey };
      }),
    );
    await runPool(missing, 16, async (id) => {
      const csr = await x509.Pkcs10CertificateRequestGenerator.create({ name: `CN=${id}`, keys: pairs![keyIndex(id)]!, signingAlgorithm: alg });
      await store.signCsr(csr.toString('pem'), { deviceId: id });
    });
  }
  return { store, ids, keys, issued: missing.length };
}

function keyIndex(id: string): number {
  return parseInt(id.slice(-4), 16) % KEY_POOL;
}

// ---- the brokers under test ------------------------------------------------------------

type TargetName = 'ours' | 'ours, default caps' | 'mosquitto';

interface Target {
  name: TargetName;
  port: number;
  pid: number;
  /** Handshakes the broker will let the attacker hold (for the wait before a held phase). */
  heldExpected: number;
  stats?: () => Promise<BrokerStats>;
  close(): Promise<void>;
}

async function startOurs(name: TargetName, storeDir: string, limits: BrokerLimitOptions): Promise<Target> {
  const child = IpcChild.fork<BrokerCommand, BrokerReply>(path.join(__dirname, 'lib', 'broker-connect-server.js'), name);
  const started = await child.request({ cmd: 'start', storeDir, port: 0, limits }, 'started');
  log(`${name}: port ${started.port}, limits ${JSON.stringify(started.limits)}`);
  const perAddress = started.limits.maxHandshakesPerAddress!;
  return {
    name,
    port: started.port,
    pid: child.pid,
    heldExpected: Math.min(N.held, perAddress, started.limits.maxHandshakes!),
    stats: async () => (await child.request({ cmd: 'stats' }, 'stats')).stats,
    close: () => child.close({ cmd: 'close' }, 'closed'),
  };
}

// ---- one phase ---------------------------------------------------------------------------

interface Phase {
  round: number;
  target: TargetName;
  held: boolean;
  result: ConnectResult;
  rate: number;
  brokerCores: number;
  clientCores: number;
  benchCores: number;
  otherCores: number;
  /** The broker's CPU per device connected, ms. */
  brokerMsPerConnect: number;
  heldStats?: HeldStats & { heldAtStart: number; closedDuring: number };
  refusedDuring?: Partial<Record<string, number>>;
}

async function main(): Promise<void> {
  const info = machineInfo();
  if (N.concurrency > BROKER_LIMIT_DEFAULTS.maxHandshakesPerAddress) log(`note: ${N.concurrency} devices at once from one address is over ours' default per-address cap (${BROKER_LIMIT_DEFAULTS.maxHandshakesPerAddress}); the default-caps target will refuse some (they retry)`);
  log(`bench/broker-connect on ${info.cpus} × ${info.cpuModel}, Node ${process.version}: ${N.devices} devices (${N.concurrency} at a time), ${N.held} held handshakes, ${N.rounds} round(s)`);

  const t0 = performance.now();
  const prep = await prepare(N.devices);
  const mqttPort = await freePort();
  const setup = await writeMosquittoConfig(prep.store, { dir: path.join(cacheDir, 'mosquitto'), serverName: 'localhost', backendName: 'node-red', port: mqttPort, bindAddress: '127.0.0.1' });
  await prep.store.idle(); // the broker child opens the same store: nothing is written from here on
  log(`prepared in ${round((performance.now() - t0) / 1000)} s (${prep.issued} device certificates issued, ${N.devices - prep.issued} from the cache in ${cacheDir})`);
  const clientHello = await captureClientHello();

  const mosquitto: BenchMosquitto = await startBenchMosquitto(setup.dir);
  const targets: Target[] = [];
  // Caps that fit the bench: every held socket and every device handshake gets a slot, so the
  // figure is the cost of held handshakes, not of refusing them (the default-caps target shows that).
  targets.push(
    await startOurs('ours', prep.store.dir, {
      maxClients: N.devices + 100,
      maxHandshakes: N.held + N.concurrency + 16,
      maxHandshakesPerAddress: Math.max(N.held, N.concurrency),
    }),
  );
  if (!args.has('no-default-caps')) targets.push(await startOurs('ours, default caps', prep.store.dir, { maxClients: N.devices + 100 }));
  targets.push({ name: 'mosquitto', port: mqttPort, pid: mosquitto.pid, heldExpected: N.held, close: () => mosquitto.stop() });

  const clients = IpcChild.fork<ConnectCommand, ConnectReply>(path.join(__dirname, 'lib', 'connect-clients.js'), 'devices');
  const ca = prep.store.caCertificatePem;
  const devices = prep.ids.map((id) => ({ id, cert: readFileSync(path.join(prep.store.deviceFilesDir, `${id}.crt`), 'utf8'), key: keyIndex(id) }));
  const ready = await clients.request({ cmd: 'setup', setup: { ca, devices, keys: prep.keys, cipher: CIPHER, ecdhCurve: ECDH_CURVE } }, 'ready');
  log(`devices ready (${round(ready.ms)} ms for ${devices.length} TLS contexts)`);

  const phases: Phase[] = [];
  let broken = '';
  let waitedMs = 0;
  const settle = async (t: Target): Promise<void> => {
    if (!t.stats) return sleep(500);
    for (const end = Date.now() + 10_000; Date.now() < end; await sleep(50)) {
      const s = await t.stats();
      if (s.connected === 0 && s.handshaking === 0) return;
    }
    log(`  ${t.name}: connections still open after 10 s`);
  };

  let discarded = 0;
  /** Runs a phase again (at most --redo-disturbed times) while other processes disturbed it. */
  const runPhase = async (r: number, t: Target, held: boolean): Promise<void> => {
    for (let redo = 0; ; redo++) {
      const p = await measurePhase(r, t, held);
      if (p.otherCores < DISTURBED || redo >= N.redoDisturbed) return void phases.push(p);
      discarded++;
      log(`  (other processes used ${round(p.otherCores, 2)} cores: measuring it again)`);
    }
  };
  const measurePhase = async (r: number, t: Target, held: boolean): Promise<Phase> => {
    const pids = { broker: t.pid, devices: clients.pid, bench: 'self' as const };
    waitedMs += await waitForQuiet(pids, { maxWaitMs: N.quietWaitMs, quietCores: QUIET, log });
    let holder: HeldHandshakes | undefined;
    let heldAtStart = 0;
    let closedBefore = 0;
    if (held) {
      holder = await HeldHandshakes.start(t.port, N.held, { localAddress: ATTACKER, clientHello, reopenMs: N.reopenMs });
      // Wait until the broker has them all (ours says so; Mosquitto cannot: give it a moment).
      if (t.stats) {
        for (const end = Date.now() + 5_000; Date.now() < end && (await t.stats()).handshaking < t.heldExpected; ) await sleep(50);
      } else await sleep(500);
      closedBefore = holder.stats().closedByServer;
    }
    const before = t.stats ? await t.stats() : undefined;
    // Held: what ours counts in its handshake phase (the devices have not started); Mosquitto cannot say, so the attacker's open sockets.
    if (holder) heldAtStart = before?.handshaking ?? holder.stats().held;
    const a = snapshot(pids);
    const { result } = await clients.request({ cmd: 'connect', port: t.port, concurrency: N.concurrency, attempts: 20, timeoutMs: 15_000 }, 'connected');
    const b = snapshot(pids);
    const after = t.stats ? await t.stats() : undefined;
    const hs = holder?.stats();
    await clients.request({ cmd: 'drop' }, 'dropped');
    await holder?.stop();
    await settle(t);
    const use = cpuBetween(a, b);
    const brokerCores = use?.cores.broker ?? NaN;
    const phase: Phase = {
      round: r,
      target: t.name,
      held,
      result,
      rate: result.connected / (result.ms / 1000),
      brokerCores,
      clientCores: use?.cores.devices ?? NaN,
      benchCores: use?.cores.bench ?? NaN,
      otherCores: use?.otherCores ?? NaN,
      brokerMsPerConnect: (brokerCores * result.ms) / Math.max(1, result.connected),
      heldStats: hs && { ...hs, heldAtStart, closedDuring: hs.closedByServer - closedBefore },
      refusedDuring: before && after ? diffCauses(before.byCause, after.byCause) : undefined,
    };
    log(
      `  round ${r + 1} ${t.name}${held ? ` + ${N.held} held` : ''}: ${result.connected}/${N.devices} in ${round(result.ms)} ms = ${round(phase.rate)}/s` +
        `${result.retries ? `, ${result.retries} retries` : ''}${phase.heldStats ? `, held ${phase.heldStats.heldAtStart} at start (${phase.heldStats.closedDuring} closed by the broker during the phase)` : ''}`,
    );
    if (result.connected < N.devices) broken ||= `${t.name}: only ${result.connected} of ${N.devices} devices connected (${result.failures.slice(0, 3).join('; ')})`;
    return phase;
  };

  try {
    // Untimed warm-up of every broker, then rounds; the order of brokers and of plain/held rotates.
    // A broker's CPU per connect falls by ~15 % over its first few thousand connects (JIT, heap): warm each up.
    for (const t of targets) for (let w = 0; w < N.warmups; w++) await runPhaseUntimed(t);
    for (let r = 0; r < N.rounds; r++) {
      const order = targets.map((_, i) => targets[(i + r) % targets.length]!);
      for (const t of order) {
        const heldFirst = r % 2 === 1;
        await runPhase(r, t, heldFirst);
        await runPhase(r, t, !heldFirst);
      }
    }
  } finally {
    await clients.close({ cmd: 'close' }, 'closed');
    for (const t of targets) await t.close();
  }

  async function runPhaseUntimed(t: Target): Promise<void> {
    const { result } = await clients.request({ cmd: 'connect', port: t.port, concurrency: N.concurrency, attempts: 20, timeoutMs: 15_000 }, 'connected');
    await clients.request({ cmd: 'drop' }, 'dropped');
    await settle(t);
    log(`  warm-up ${t.name}: ${result.connected} devices in ${round(result.ms)} ms (${JSON.stringify(result.protocols)})`);
    if (result.connected < N.devices) broken ||= `${t.name} (warm-up): only ${result.connected} of ${N.devices} devices connected (${result.failures.slice(0, 3).join('; ')})`;
  }

  report(info, phases, waitedMs, discarded, mosquitto.version);
  if (broken) {
    process.stderr.write(`broken: ${broken}\n`);
    process.exit(1);
  }
  process.exit(0);
}

function diffCauses(a: Partial<Record<string, number>>, b: Partial<Record<string, number>>): Partial<Record<string, number>> {
  const out: Partial<Record<string, number>> = {};
  for (const [k, v] of Object.entries(b)) if ((v ?? 0) - (a[k] ?? 0) > 0) out[k] = (v ?? 0) - (a[k] ?? 0);
  return out;
}

function report(info: ReturnType<typeof machineInfo>, phases: Phase[], waitedMs: number, discarded: number, mosquittoVersion: string): void {
  const names = [...new Set(phases.map((p) => p.target))];
  const f1 = (x: number): string => (Number.isFinite(x) ? round(x, 1).toString() : '?');
  const f2 = (x: number): string => (Number.isFinite(x) ? round(x, 2).toFixed(2) : '?');
  const rows = phases.map((p) => [
    `${p.round + 1}`,
    p.target,
    p.held ? `${N.held} held` : '-',
    `${p.result.connected}`,
    `${f1(p.result.ms)} ms`,
    `${f1(p.rate)}/s`,
    `${f2(p.brokerMsPerConnect)} ms`,
    `${f2(p.brokerCores)} / ${f2(p.clientCores)} / ${f2(p.otherCores)}${p.otherCores >= DISTURBED ? ' !!' : ''}`,
    `${f1(p.result.p50Ms)} / ${f1(p.result.p99Ms)} ms`,
    `${p.result.retries}`,
    p.heldStats ? `${p.heldStats.heldAtStart} / ${p.heldStats.closedDuring}` : '',
    p.refusedDuring && Object.keys(p.refusedDuring).length ? JSON.stringify(p.refusedDuring) : '',
  ]);
  const summary: string[][] = [];
  const medians: Record<string, { plainMs: number; heldMs: number; plainRate: number; heldRate: number; cpuPlain: number; cpuHeld: number; pairRatios: number[] }> = {};
  // Medians over the quiet phases; a disturbed one counts only when no quiet one is left.
  const pick = (xs: Phase[]): Phase[] => (xs.some((p) => p.otherCores < DISTURBED) ? xs.filter((p) => p.otherCores < DISTURBED) : xs);
  for (const name of names) {
    const plain = pick(phases.filter((p) => p.target === name && !p.held));
    const held = pick(phases.filter((p) => p.target === name && p.held));
    const all = phases.filter((p) => p.target === name);
    const pairRatios = all.filter((p) => !p.held).map((p) => {
      const h = all.find((x) => x.held && x.round === p.round);
      return h ? h.result.ms / p.result.ms : NaN;
    });
    medians[name] = {
      plainMs: median(plain.map((p) => p.result.ms)),
      heldMs: median(held.map((p) => p.result.ms)),
      plainRate: median(plain.map((p) => p.rate)),
      heldRate: median(held.map((p) => p.rate)),
      cpuPlain: median(plain.map((p) => p.brokerMsPerConnect)),
      cpuHeld: median(held.map((p) => p.brokerMsPerConnect)),
      pairRatios,
    };
  }
  const mosq = medians['mosquitto'];
  for (const name of names) {
    const m = medians[name]!;
    const ratio = m.heldMs / m.plainMs;
    const goal = name === 'mosquitto' ? 'reference' : `${ratio <= GOAL_HELD_RATIO ? 'PASS' : '** FAIL **'} (≤ ${GOAL_HELD_RATIO}×)`;
    summary.push([
      name,
      `${f1(m.plainRate)}/s`,
      mosq && name !== 'mosquitto' ? `${f2(m.plainRate / mosq.plainRate)}×` : '',
      `${f2(m.cpuPlain)} ms`,
      `${f1(m.heldRate)}/s`,
      `${f2(ratio)}× ${goal}`,
      m.pairRatios.map(f2).join(' '),
      `${f2(m.cpuHeld)} ms (${f2(m.cpuHeld / m.cpuPlain)}×)`,
    ]);
  }
  process.stdout.write(
    `\n# bench/broker-connect: ${N.devices} devices, ${N.concurrency} at a time; ${N.held} held handshakes from ${ATTACKER}; mosquitto ${mosquittoVersion}; ${info.cpus} × ${info.cpuModel}; Node ${info.node}\n\n` +
      table(['round', 'broker', 'attacker', 'connected', 'time', 'connects/s', 'broker CPU per connect', 'cores broker / devices / other', 'p50 / p99', 'retries', 'held at start / closed by broker', 'refused during'], rows) +
      '\n\n' +
      table(['broker', 'connects/s (median)', 'vs mosquitto', 'CPU per connect', 'with held: connects/s', 'time with held / without', 'per round', 'CPU per connect, held (vs without)'], summary) +
      `\n\nTLS: ${JSON.stringify(phases[0]?.result.protocols ?? {})}` +
      (waitedMs > 0 ? `\nwaited ${Math.round(waitedMs / 1000)} s in all for other processes to go quiet` : '') +
      (discarded > 0 ? `\n${discarded} phase(s) measured again because other processes disturbed them` : '') +
      (phases.some((p) => p.otherCores >= DISTURBED) ? `\n!! other processes used >= ${DISTURBED} cores during some phases (marked !!; left out of the medians where a quiet one of the same kind exists) !!` : '') +
      '\n' +
      JSON.stringify({ bench: 'broker-connect', params: N, machine: info, mosquitto: mosquittoVersion, medians, phases: phases.map((p) => ({ ...p, result: { ...p.result, failures: p.result.failures.length } })) }) +
      '\n',
  );
}

main().catch((err: Error) => {
  console.error(err.stack ?? err.message);
  process.exit(1);
});
