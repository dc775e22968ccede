/**
 * bench/status-ingest: device status messages per second from many publishers through one real
 * Mosquitto (the config our CA generates: mutual TLS, CRL, ACL) into `esp-status` (with
 * `esp-fleet` + `esp-ca`), side by side with Node-RED's own `mqtt in` + `json` nodes on the same
 * load, on the real Node-RED runtime in this process. The sides run one after the other with
 * identical load, alternating (ours, core, ours, core, …), and the median of each is compared.
 *
 *   npm run bench:status-ingest                  # build + full run (about 1 min on 2 cores)
 *   node dist/bench/status-ingest.js --quick     # smoke run, well under a second of load per side
 *
 * Sizes: --publishers P (BENCH_PUBLISHERS), --messages N (BENCH_MESSAGES), --warmup W
 * (BENCH_WARMUP), --rounds R (BENCH_ROUNDS, per side), --rate R (BENCH_RATE, msg/s, 0 = as fast
 * as the sockets take it), --broker-queue Q (BENCH_BROKER_QUEUE, mosquitto max_queued_messages),
 * --idle-ms (BENCH_IDLE_MS), --quiet-wait-ms (BENCH_QUIET_WAIT_MS), --redo-disturbed K
 * (BENCH_REDO_DISTURBED), --only ours|core, --log-level L, --keep. Exit code 0 even when a goal
 * is missed (it is a measurement); 1 when something is broken (a side receives nothing, wrong
 * payloads, duplicates, a generator error).
 */
import { fork, ChildProcess } from 'node:child_process';
import { nodeRedChoice, resolveFromNodeRed } from '../scripts/node-red-choice';
import { promises as fs, existsSync, rmSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { performance } from 'node:perf_hooks';
import { CaStore } from '../lib/pki/ca-store';
import { writeMosquittoConfig } from '../lib/mosquitto/folders';
import { freePort } from '../test/support/mosquitto';
import { LoopDelay, intOption, machineInfo, parseArgs, round, runPool, table, withLoopMonitor } from './lib/common';
import { counter, resetCounter, SINK_TYPE } from './lib/count-sink';
import { startBenchMosquitto, BenchMosquitto } from './lib/bench-mosquitto';
import { startNodeRed, RunningNodeRed, PACKAGE_ROOT } from './lib/node-red-runtime';
import { CpuSnapshot, CpuUse, cpuBetween, processRss, snapshot, waitForQuiet } from './lib/proc-cpu';
import type { GeneratorCommand, GeneratorReply } from './lib/status-publishers';

const GOAL_RATIO = 1.0;
const GOAL_RATE = 20_000;
const BACKEND = 'node-red';

type Side = 'ours' | 'core';
const SIDE_LABEL: Record<Side, string> = { ours: 'esp-fleet + esp-status', core: 'mqtt in (string) + json' };

const args = parseArgs(process.argv.slice(2));
if (args.has('help')) {
  process.stdout.write(
    'usage: node dist/bench/status-ingest.js [--quick] [--publishers P] [--messages N] [--warmup W] [--rounds R] [--rate MSG_PER_S] [--broker-queue Q]\n' +
      '         [--idle-ms MS] [--quiet-wait-ms MS] [--redo-disturbed K] [--only ours|core] [--log-level warn] [--keep]\n' +
      '  env: BENCH_PUBLISHERS BENCH_MESSAGES BENCH_WARMUP BENCH_ROUNDS BENCH_RATE BENCH_BROKER_QUEUE BENCH_IDLE_MS BENCH_QUIET_WAIT_MS BENCH_REDO_DISTURBED (flags win)\n',
  );
  process.exit(0);
}
const quick = args.has('quick');
const N = {
  publishers: Math.max(1, intOption(args, 'publishers', 'BENCH_PUBLISHERS', quick ? 20 : 100)),
  messages: Math.max(1, intOption(args, 'messages', 'BENCH_MESSAGES', quick ? 20_000 : 200_000)),
  warmup: intOption(args, 'warmup', 'BENCH_WARMUP', quick ? 2_000 : 20_000),
  rounds: Math.max(1, intOption(args, 'rounds', 'BENCH_ROUNDS', quick ? 1 : 5)),
  rate: intOption(args, 'rate', 'BENCH_RATE', 0),
  brokerQueue: intOption(args, 'broker-queue', 'BENCH_BROKER_QUEUE', 0),
  idleMs: Math.max(200, intOption(args, 'idle-ms', 'BENCH_IDLE_MS', 3_000)),
  /** Before each round, wait up to this long for other processes to leave the cores alone. */
  quietWaitMs: intOption(args, 'quiet-wait-ms', 'BENCH_QUIET_WAIT_MS', quick ? 0 : 120_000),
  /** A round during which other processes used >= DISTURBED cores is run again, at most this often per round. */
  redo: intOption(args, 'redo-disturbed', 'BENCH_REDO_DISTURBED', quick ? 0 : 2),
};
/** Other processes' CPU, in cores, that marks a round as disturbed; below QUIET counts as a quiet machine. */
const DISTURBED = 0.2;
const QUIET = 0.1;
const only = args.get('only');
if (only !== undefined && only !== 'ours' && only !== 'core') throw new Error('--only takes ours or core');
const sides: Side[] = only ? [only] : ['ours', 'core'];
const logLevel = typeof args.get('log-level') === 'string' ? (args.get('log-level') as string) : 'warn';
const keep = args.has('keep');

function log(msg: string): void {
  process.stderr.write(`${msg}\n`);
}

class Broken extends Error {}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/** 84f3eb + 6 hex digits. */
function deviceId(i: number): string {
  return `84f3eb${(0xa00000 + i).toString(16)}`;
}

// ---- the load generator process ------------------------------------------------------------

class Generator {
  readonly errors: string[] = [];
  private waiters: { type: GeneratorReply['type']; resolve: (r: GeneratorReply) => void; reject: (e: Error) => void }[] = [];

  constructor(readonly child: ChildProcess) {
    child.on('message', (r: GeneratorReply) => {
      if (r.type === 'error') {
        this.errors.push(r.message);
        for (const w of this.waiters.splice(0)) w.reject(new Broken(`load generator: ${r.message}`));
        return;
      }
      const i = this.waiters.findIndex((w) => w.type === r.type);
      if (i >= 0) this.waiters.splice(i, 1)[0]!.resolve(r);
    });
    child.on('exit', (code) => {
      for (const w of this.waiters.splice(0)) w.reject(new Broken(`load generator exited (${code})`));
    });
  }

  static start(): Generator {
    // Not profiled when this process is (node --cpu-prof profiles Node-RED, not the load).
    const execArgv = process.execArgv.filter((a) => !a.startsWith('--cpu-prof') && !a.startsWith('--prof'));
    const child = fork(path.join(__dirname, 'lib', 'status-publishers.js'), [], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'], execArgv });
    return new Generator(child);
  }

  get pid(): number {
    return this.child.pid!;
  }

  request<T extends GeneratorReply['type']>(cmd: GeneratorCommand, type: T): Promise<Extract<GeneratorReply, { type: T }>> {
    return new Promise((resolve, reject) => {
      this.waiters.push({ type, resolve: resolve as (r: GeneratorReply) => void, reject });
      this.child.send(cmd);
    });
  }

  async close(): Promise<void> {
    if (this.child.exitCode !== null || !this.child.connected) return;
    const exited = new Promise((r) => this.child.once('exit', r));
    await Promise.race([this.request({ cmd: 'close' }, 'closed').catch(() => undefined), sleep(3_000)]);
    if (this.child.connected) this.child.disconnect();
    await Promise.race([exited, sleep(3_000)]);
    if (this.child.exitCode === null) this.child.kill('SIGKILL');
  }
}

// ---- the two flows ---------------------------------------------------------------------------

let deploys = 0;

/** Flow nodes carry x/y: without them Node-RED treats a node as a config node. */
function flows(side: Side, roundNo: number, ctx: { storeDir: string; port: number; backendCert: string; backendKey: string; caFile: string }): Record<string, unknown>[] {
  if (side === 'ours') {
    return [
      { id: 'ours-tab', type: 'tab', label: 'ours' },
      { id: 'ours-ca', type: 'esp-ca', folder: ctx.storeDir },
      {
        id: 'ours-fleet',
        type: 'esp-fleet',
        broker: `mqtts://localhost:${ctx.port}`,
        tlsSource: 'esp-ca',
        ca: 'ours-ca',
        backendName: BACKEND,
        scheme: 'secure-esp8266',
        statusInterval: '60000',
        // A fresh registry per deploy, so every round starts from the same state.
        registryFile: `bench-registry-${roundNo}-${++deploys}.json`,
      },
      { id: 'ours-status', z: 'ours-tab', x: 140, y: 80, type: 'esp-status', fleet: 'ours-fleet', devices: '', imagePrefix: '', wires: [['ours-sink'], [], []] },
      { id: 'ours-sink', z: 'ours-tab', x: 360, y: 80, type: SINK_TYPE, name: '', wires: [] },
    ];
  }
  return [
    { id: 'core-tab', type: 'tab', label: 'core' },
    {
      id: 'core-tls',
      type: 'tls-config',
      name: '',
      cert: ctx.backendCert,
      key: ctx.backendKey,
      ca: ctx.caFile,
      certname: '',
      keyname: '',
      caname: '',
      servername: '',
      verifyservercert: true,
      alpnprotocol: '',
    },
    {
      id: 'core-broker',
      type: 'mqtt-broker',
      name: '',
      broker: 'localhost',
      port: String(ctx.port),
      tls: 'core-tls',
      clientid: '',
      autoConnect: true,
      usetls: true,
      protocolVersion: '4',
      keepalive: '60',
      cleansession: true,
      autoUnsubscribe: true,
      birthTopic: '',
      closeTopic: '',
      willTopic: '',
      userProps: '',
      sessionExpiry: '',
    },
    // "a String" output, then the json node parses it: the core pipeline the issue names.
    { id: 'core-in', z: 'core-tab', x: 140, y: 80, type: 'mqtt in', name: '', topic: '/status/+', qos: '0', datatype: 'utf8', broker: 'core-broker', nl: false, rap: true, rh: 0, inputs: 0, wires: [['core-json']] },
    { id: 'core-json', z: 'core-tab', x: 300, y: 80, type: 'json', name: '', property: 'payload', action: '', pretty: false, wires: [['core-sink']] },
    { id: 'core-sink', z: 'core-tab', x: 460, y: 80, type: SINK_TYPE, name: '', wires: [] },
  ];
}

// ---- one round -------------------------------------------------------------------------------

interface RoundResult {
  side: Side;
  round: number;
  sent: number;
  received: number;
  lost: number;
  /** Received msgs per second, first to last received. */
  rate: number;
  /** Received msgs per second from the burst command to the last received. */
  rateFromStart: number;
  /** How fast the generator handed the msgs to its sockets. */
  sendRate: number;
  sendMs: number;
  firstLatencyMs: number;
  windowMs: number;
  cpu?: CpuUse;
  nodeRedMaxRss: number;
  mosquittoRss?: number;
  loop: LoopDelay;
  sumOk: boolean;
}

interface Env {
  nodeRed: RunningNodeRed;
  broker: BenchMosquitto;
  gen: Generator;
  ctx: Parameters<typeof flows>[2];
}

async function waitForProbe(env: Env, side: Side): Promise<void> {
  const until = performance.now() + 30_000;
  while (counter.count === 0) {
    if (performance.now() > until) throw new Broken(`${side}: no probe status arrived within 30 s of the deploy (is the flow connected and subscribed? run with --log-level info)`);
    await env.gen.request({ cmd: 'probe' }, 'probed');
    await sleep(100);
  }
  // Let any probe still in flight arrive before the counter is reset.
  await sleep(500);
}

/** Sends `total` msgs and waits until all arrived or nothing arrived for idleMs after the generator finished. */
async function burst(env: Env, total: number): Promise<{ sent: number; sum: number; sendMs: number; t0: number; lastActive: CpuSnapshot; start: CpuSnapshot; maxRss: number }> {
  const pids = { nodeRed: 'self' as const, mosquitto: env.broker.pid, generator: env.gen.pid };
  resetCounter();
  const start = snapshot(pids);
  let lastActive = start;
  let maxRss = process.memoryUsage.rss();
  const t0 = performance.now();
  let done: Extract<GeneratorReply, { type: 'burst-done' }> | undefined;
  let failed: unknown;
  env.gen.request({ cmd: 'burst', total, rate: N.rate }, 'burst-done').then(
    (r) => (done = r),
    (err) => (failed = err),
  );
  let seen = 0;
  let activeAt = performance.now();
  for (;;) {
    await sleep(50);
    if (failed) throw failed;
    maxRss = Math.max(maxRss, process.memoryUsage.rss());
    const now = performance.now();
    if (counter.count !== seen) {
      seen = counter.count;
      lastActive = snapshot(pids);
      activeAt = now;
    }
    if (done && counter.count >= done.sent) break;
    if (done && now - Math.max(activeAt, t0 + done.ms) > N.idleMs) break;
    if (!done && now - activeAt > 120_000) throw new Broken('the load generator did not finish within 2 minutes of the last msg');
  }
  return { sent: done!.sent, sum: done!.sum, sendMs: done!.ms, t0, start, lastActive, maxRss };
}

/** Deploys a side and sends it `count` untimed msgs. */
async function warmUp(env: Env, side: Side, count: number): Promise<void> {
  if (count <= 0) return;
  const w = await burst(env, count);
  if (counter.bad) throw new Broken(`${side}: ${counter.bad} msgs without a parsed status payload, e.g. ${counter.sample}`);
  if (counter.count < w.sent * 0.5) log(`  ${side}: only ${counter.count} of ${w.sent} warm-up msgs arrived`);
  await sleep(200);
}

/** Before the first timed round, every side runs once untimed, so the first timed round is not colder than the rest. */
async function warmSide(env: Env, side: Side): Promise<void> {
  resetCounter();
  await env.nodeRed.deploy(flows(side, -1, env.ctx));
  try {
    await waitForProbe(env, side);
    await warmUp(env, side, Math.max(N.warmup, 1_000));
  } finally {
    await env.nodeRed.deploy([]);
  }
}

async function runRound(env: Env, side: Side, roundNo: number): Promise<RoundResult> {
  resetCounter();
  await env.nodeRed.deploy(flows(side, roundNo, env.ctx));
  try {
    await waitForProbe(env, side);
    await warmUp(env, side, N.warmup);
    const { result: b, loop } = await withLoopMonitor(() => burst(env, N.messages));
    const received = counter.count;
    if (received === 0) throw new Broken(`${side}: none of the ${b.sent} msgs arrived`);
    if (counter.bad) throw new Broken(`${side}: ${counter.bad} msgs without a parsed status payload, e.g. ${counter.sample}`);
    if (received > b.sent) throw new Broken(`${side}: received ${received} msgs but only ${b.sent} were sent (duplicates?)`);
    const sumOk = received === b.sent ? counter.sum === b.sum : counter.sum < b.sum;
    if (!sumOk) throw new Broken(`${side}: the msgs received are not the msgs sent (sum of sequence numbers ${counter.sum}, sent ${b.sum})`);
    const windowMs = counter.last - counter.first;
    return {
      side,
      round: roundNo,
      sent: b.sent,
      received,
      lost: b.sent - received,
      rate: windowMs > 0 ? (received * 1000) / windowMs : 0,
      rateFromStart: (received * 1000) / (counter.last - b.t0),
      sendRate: (b.sent * 1000) / b.sendMs,
      sendMs: b.sendMs,
      firstLatencyMs: counter.first - b.t0,
      windowMs,
      cpu: cpuBetween(b.start, b.lastActive),
      nodeRedMaxRss: b.maxRss,
      mosquittoRss: processRss(env.broker.pid),
      loop,
      sumOk,
    };
  } finally {
    await env.nodeRed.deploy([]);
  }
}

/** Waits (at most quietWaitMs) until other processes use < QUIET cores over a second; returns the time waited. */
async function waitQuiet(env: Env): Promise<number> {
  return waitForQuiet({ nodeRed: 'self', mosquitto: env.broker.pid, generator: env.gen.pid }, { maxWaitMs: N.quietWaitMs, quietCores: QUIET, log });
}

// ---- report ------------------------------------------------------------------------------------

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  if (s.length === 0) return 0;
  const m = Math.floor(s.length / 2);
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

function mb(bytes: number | undefined): string {
  return bytes === undefined ? '?' : `${Math.round(bytes / 1048576)} MB`;
}

function cores(x: number | undefined): string {
  return x === undefined ? '?' : x.toFixed(2);
}

async function main(): Promise<void> {
  const machine = machineInfo();
  const root = await fs.mkdtemp(path.join(os.tmpdir(), 'esp-fleet-bench-ingest-'));
  // On an abrupt end (Ctrl-C, a closed stdout pipe) the broker and temp folders go too (their 'exit' hooks).
  if (!keep) process.on('exit', () => rmSync(root, { recursive: true, force: true }));
  for (const signal of ['SIGINT', 'SIGTERM'] as const) process.once(signal, () => process.exit(signal === 'SIGINT' ? 130 : 143));
  process.stdout.on('error', () => process.exit(1));
  log(`bench/status-ingest${quick ? ' (quick)' : ''}: ${JSON.stringify(N)}${only ? ` only ${only}` : ''} in ${root}`);
  let broker: BenchMosquitto | undefined;
  let nodeRed: RunningNodeRed | undefined;
  let gen: Generator | undefined;
  try {
    // ---- preparation (not timed) ----------------------------------------------------------
    log(`issuing ${N.publishers} device identities and the broker config with the CA store ...`);
    const store = await CaStore.open({ dir: path.join(root, 'ca') });
    const ids = Array.from({ length: N.publishers }, (_, i) => deviceId(i));
    await runPool(ids, 4, (id) => store.issueDevice(id));
    const port = await freePort();
    const setup = await writeMosquittoConfig(store, { dir: path.join(root, 'mosquitto'), serverName: 'localhost', backendName: BACKEND, port });
    await store.idle();
    const backendFiles = store.identityFiles('backend', BACKEND);
    const ctx = { storeDir: store.dir, port, backendCert: backendFiles.certificate, backendKey: backendFiles.privateKey, caFile: path.join(setup.dir, 'ca.crt') };

    broker = await startBenchMosquitto(setup.dir, [`max_queued_messages ${N.brokerQueue}`]);
    log(`mosquitto ${broker.version} on port ${port} (pid ${broker.pid}); starting Node-RED ...`);
    nodeRed = await startNodeRed({ logLevel, requiredTypes: ['esp-ca', 'esp-fleet', 'esp-status', 'tls-config', 'mqtt-broker', 'mqtt in', 'json', SINK_TYPE] });
    gen = Generator.start();
    const connected = await gen.request({ cmd: 'connect', port, deviceDir: store.deviceFilesDir, ids }, 'connected');
    log(`Node-RED ${nodeRedChoice().version}; ${connected.clients} publishers connected in ${Math.round(connected.ms)} ms (pid ${gen.pid}), status payload ${connected.payloadBytes} bytes`);
    const env: Env = { nodeRed, broker, gen, ctx };

    // ---- rounds: ours, core, ours, core, ... ------------------------------------------------
    const results: RoundResult[] = [];
    const discarded: RoundResult[] = [];
    let waitedMs = 0;
    for (const side of sides) {
      log(`untimed warm-up of ${side} (${SIDE_LABEL[side]}) ...`);
      await warmSide(env, side);
    }
    for (let r = 0; r < N.rounds; r++) {
      for (const side of sides) {
        for (let attempt = 0; ; attempt++) {
          waitedMs += await waitQuiet(env);
          log(`round ${r + 1}/${N.rounds}: ${side} (${SIDE_LABEL[side]}), ${N.warmup} warm-up + ${N.messages} msgs${attempt ? ` (again, attempt ${attempt + 1})` : ''} ...`);
          const res = await runRound(env, side, r);
          log(
            `  ${res.received}/${res.sent} received, ${Math.round(res.rate)} msg/s (generator sent at ${Math.round(res.sendRate)} msg/s), ` +
              `Node-RED ${cores(res.cpu?.cores.nodeRed)} cores, mosquitto ${cores(res.cpu?.cores.mosquitto)}, generator ${cores(res.cpu?.cores.generator)}, other ${cores(res.cpu?.otherCores)}`,
          );
          if ((res.cpu?.otherCores ?? 0) >= DISTURBED && attempt < N.redo) {
            log(`  other processes used ${cores(res.cpu?.otherCores)} cores: this round is discarded and run again`);
            discarded.push(res);
            continue;
          }
          results.push(res);
          break;
        }
      }
    }
    if (gen.errors.length) throw new Broken(`load generator: ${gen.errors.join('; ')}`);
    const droppedByBroker = /Outgoing messages are being dropped/.test(broker.log());

    // ---- report -----------------------------------------------------------------------------
    const per = (side: Side): RoundResult[] => results.filter((x) => x.side === side);
    const summary = Object.fromEntries(
      sides.map((side) => {
        const rs = per(side);
        const pick = (f: (x: RoundResult) => number | undefined): number => median(rs.map(f).filter((v): v is number => v !== undefined));
        return [
          side,
          {
            medianRate: pick((x) => x.rate),
            bestRate: Math.max(...rs.map((x) => x.rate)),
            medianRateFromStart: pick((x) => x.rateFromStart),
            medianSendRate: pick((x) => x.sendRate),
            lost: rs.reduce((a, x) => a + x.lost, 0),
            sent: rs.reduce((a, x) => a + x.sent, 0),
            nodeRedCores: pick((x) => x.cpu?.cores.nodeRed),
            mosquittoCores: pick((x) => x.cpu?.cores.mosquitto),
            generatorCores: pick((x) => x.cpu?.cores.generator),
            otherCores: Math.max(...rs.map((x) => x.cpu?.otherCores ?? 0)),
            nodeRedMaxRss: Math.max(...rs.map((x) => x.nodeRedMaxRss)),
            cpuUsPerMsg: pick((x) => (x.cpu ? (x.cpu.cores.nodeRed! * x.cpu.seconds * 1e6) / x.received : undefined)),
          },
        ];
      }),
    ) as Record<Side, { medianRate: number; bestRate: number; medianRateFromStart: number; medianSendRate: number; lost: number; sent: number; nodeRedCores: number; mosquittoCores: number; generatorCores: number; otherCores: number; nodeRedMaxRss: number; cpuUsPerMsg: number }>;
    const ours = summary.ours;
    const core = summary.core;
    const ratio = ours && core && core.medianRate > 0 ? ours.medianRate / core.medianRate : undefined;
    // A paced load caps both rates at the offered rate: then the goals cannot be judged.
    const paced = N.rate > 0;
    const ratioPass = ratio !== undefined && !paced ? ratio >= GOAL_RATIO : undefined;
    const ratePass = ours && !paced ? ours.medianRate >= GOAL_RATE : undefined;
    const verdict = (pass: boolean | undefined): string => (pass === undefined ? (paced ? 'n/a (paced)' : 'n/a') : pass ? 'PASS' : '** FAIL **');

    const out: string[] = [];
    out.push('');
    out.push(`bench/status-ingest${quick ? ' --quick (smoke run: small N, figures are not meaningful)' : ''}`);
    out.push(`machine: ${machine.cpus} x ${machine.cpuModel}, ${machine.platform}, load ${machine.loadavg.join(' ')}`);
    out.push(`node ${machine.node}, Node-RED ${nodeRedChoice().version} (real runtime, this process), mosquitto ${broker.version}, mqtt.js ${pkgVersion('mqtt')} (ours) / ${pkgVersion('mqtt', resolveFromNodeRed(nodeRedChoice(), '@node-red/nodes/core/network/10-mqtt.js'))} (core)`);
    out.push(
      `load: ${N.publishers} publishers (one mqtt.js client + device certificate each, mutual TLS, in a separate process), ` +
        `${N.messages} status msgs per round after ${N.warmup} warm-up, QoS 0, ${connected.payloadBytes}-byte ten-field JSON, ${N.rate ? `${N.rate} msg/s` : 'as fast as the sockets take it'}`,
    );
    out.push(`broker: the CA's generated config (TLS, CRL, ACL) + ${broker.wrapperLines.filter((l) => !l.startsWith('log_') && l !== 'user root').join(', ')}; all ${machine.cpus} cores shared by broker, generator and Node-RED`);
    out.push(`sides: ours = ${SIDE_LABEL.ours}; core = ${SIDE_LABEL.core}; each -> a counting node; one untimed round each, then ${results.map((x) => x.side).join(', ')}`);
    out.push('');
    out.push(
      table(
        ['round', 'side', 'received/sent', 'msg/s', 'from start', 'gen msg/s', 'NR cores', 'mosq', 'gen', 'other', 'NR max RSS', 'loop p99'],
        results.map((x) => [
          String(x.round + 1),
          x.side,
          `${x.received}/${x.sent}`,
          String(Math.round(x.rate)),
          String(Math.round(x.rateFromStart)),
          String(Math.round(x.sendRate)),
          cores(x.cpu?.cores.nodeRed),
          cores(x.cpu?.cores.mosquitto),
          cores(x.cpu?.cores.generator),
          cores(x.cpu?.otherCores),
          mb(x.nodeRedMaxRss),
          `${x.loop.p99Ms} ms`,
        ]),
      ),
    );
    out.push('');
    const rows: string[][] = [];
    rows.push([
      `status msgs/s into a flow (median of ${N.rounds})`,
      ours ? String(Math.round(ours.medianRate)) : '-',
      core ? String(Math.round(core.medianRate)) : '-',
      ratio !== undefined ? `${ratio.toFixed(2)}x` : '-',
      `>= ${GOAL_RATIO.toFixed(1)}x`,
      verdict(ratioPass),
    ]);
    rows.push([`esp-status absolute rate (median)`, ours ? String(Math.round(ours.medianRate)) : '-', '', '', `>= ${GOAL_RATE}/s`, verdict(ratePass)]);
    out.push(table(['measure', 'ours msg/s', 'core msg/s', 'ratio', 'goal', 'result'], rows));
    out.push('');
    out.push('details (medians over rounds):');
    for (const side of sides) {
      const s = summary[side];
      out.push(
        `  ${side.padEnd(4)}: best ${Math.round(s.bestRate)} msg/s; from the burst start ${Math.round(s.medianRateFromStart)} msg/s; generator sent at ${Math.round(s.medianSendRate)} msg/s; ` +
          `lost ${s.lost} of ${s.sent}; Node-RED ${s.nodeRedCores.toFixed(2)} cores = ${round(s.cpuUsPerMsg, 1)} us CPU per msg, max RSS ${mb(s.nodeRedMaxRss)}; mosquitto ${s.mosquittoCores.toFixed(2)}, generator ${s.generatorCores.toFixed(2)} cores`,
      );
    }
    if (ours && core) {
      const pairs = Array.from({ length: N.rounds }, (_, r) => {
        const o = results.find((x) => x.side === 'ours' && x.round === r);
        const c = results.find((x) => x.side === 'core' && x.round === r);
        return o && c && c.rate > 0 ? o.rate / c.rate : undefined;
      }).filter((v): v is number => v !== undefined);
      out.push(`  ratio per round (ours / core of the same round): ${pairs.map((v) => `${v.toFixed(2)}x`).join(', ')}; median ${median(pairs).toFixed(2)}x`);
    }
    if (discarded.length) out.push(`  discarded and re-run (other processes >= ${DISTURBED} cores): ${discarded.map((x) => `round ${x.round + 1} ${x.side} (${Math.round(x.rate)} msg/s, other ${cores(x.cpu?.otherCores)})`).join(', ')}`);
    if (waitedMs > 0) out.push(`  waited ${Math.round(waitedMs / 1000)} s in all for other processes to go quiet before rounds`);
    out.push(`  msg/s = msgs received / (last - first received); "from start" counts from the burst command; rounds end when all arrived or after ${N.idleMs} ms without msgs`);
    if (paced) out.push(`  paced load (--rate ${N.rate}): both sides can only reach the offered rate; compare CPU per msg, and drop --rate to judge the goals`);
    const kept = results.filter((x) => x.rate > 0 && x.sendRate > 0 && x.rate >= 0.9 * x.sendRate);
    if (kept.length && !paced) out.push(`  note: in ${kept.map((x) => `round ${x.round + 1} ${x.side}`).join(', ')} the flow kept up with the generator: that rate is a lower bound (raise the load)`);
    const losses = results.filter((x) => x.lost > 0);
    if (losses.length || droppedByBroker) {
      out.push(`\n!! msgs lost: ${losses.map((x) => `round ${x.round + 1} ${x.side}: ${x.lost}`).join(', ') || 'none counted'}${droppedByBroker ? '; mosquitto logged "Outgoing messages are being dropped"' : ''} !!`);
    }
    const disturbed = results.filter((x) => (x.cpu?.otherCores ?? 0) >= DISTURBED);
    if (disturbed.length) out.push(`\n!! other processes used >= ${DISTURBED} cores during ${disturbed.map((x) => `round ${x.round + 1} ${x.side}`).join(', ')}: figures are disturbed, re-run on a quiet machine !!`);
    if (ratioPass === false || ratePass === false) out.push(`\n** GOAL MISSED: ${[ratioPass === false && 'ratio to the core nodes', ratePass === false && 'absolute rate'].filter(Boolean).join(', ')} **`);
    process.stdout.write(`${out.join('\n')}\n\n`);

    const json = {
      bench: 'status-ingest',
      quick,
      params: { ...N, only: only ?? null, payloadBytes: connected.payloadBytes },
      machine,
      versions: { nodeRed: nodeRedChoice().version, mosquitto: broker.version, mqttOurs: pkgVersion('mqtt'), mqttCore: pkgVersion('mqtt', resolveFromNodeRed(nodeRedChoice(), '@node-red/nodes/core/network/10-mqtt.js')) },
      discardedRounds: discarded.map((x) => ({ side: x.side, round: x.round + 1, msgPerSec: round(x.rate), otherCores: x.cpu ? round(x.cpu.otherCores, 2) : null })),
      waitedForQuietMs: Math.round(waitedMs),
      brokerSettings: broker.wrapperLines.filter((l) => !l.startsWith('log_')),
      rounds: results.map((x) => ({
        side: x.side,
        round: x.round + 1,
        sent: x.sent,
        received: x.received,
        lost: x.lost,
        msgPerSec: round(x.rate),
        msgPerSecFromStart: round(x.rateFromStart),
        generatorMsgPerSec: round(x.sendRate),
        firstLatencyMs: round(x.firstLatencyMs),
        cores: x.cpu ? Object.fromEntries(Object.entries(x.cpu.cores).map(([k, v]) => [k, round(v, 2)])) : null,
        otherCores: x.cpu ? round(x.cpu.otherCores, 2) : null,
        nodeRedMaxRssMB: Math.round(x.nodeRedMaxRss / 1048576),
        mosquittoRssMB: x.mosquittoRss === undefined ? null : Math.round(x.mosquittoRss / 1048576),
        eventLoop: x.loop,
      })),
      ours: ours ? { medianMsgPerSec: round(ours.medianRate), bestMsgPerSec: round(ours.bestRate), lost: ours.lost, nodeRedCores: round(ours.nodeRedCores, 2), cpuUsPerMsg: round(ours.cpuUsPerMsg, 2) } : null,
      core: core ? { medianMsgPerSec: round(core.medianRate), bestMsgPerSec: round(core.bestRate), lost: core.lost, nodeRedCores: round(core.nodeRedCores, 2), cpuUsPerMsg: round(core.cpuUsPerMsg, 2) } : null,
      ratio: ratio === undefined ? null : round(ratio, 3),
      goals: { ratio: GOAL_RATIO, ratioPass: ratioPass ?? null, rate: GOAL_RATE, ratePass: ratePass ?? null },
      brokerDropped: droppedByBroker,
    };
    process.stdout.write(`${JSON.stringify(json)}\n`);
  } finally {
    await gen?.close().catch(() => undefined);
    await nodeRed?.stop().catch((err) => log(`stopping Node-RED: ${String(err)}`));
    await broker?.stop().catch(() => undefined);
    if (keep) log(`kept ${root}`);
    else await fs.rm(root, { recursive: true, force: true });
  }
}

/** The version of the package `name` as resolved from the folder of `from`. */
function pkgVersion(name: string, from = path.join(PACKAGE_ROOT, 'package.json')): string {
  try {
    let dir = path.dirname(require.resolve(name, { paths: [path.dirname(from)] }));
    while (dir !== path.dirname(dir)) {
      const file = path.join(dir, 'package.json');
      // eslint-disable-next-line @typescript-eslint/no-require-imports
      if (existsSync(file) && (require(file) as { name?: string }).name === name) return (require(file) as { version: string }).version;
      dir = path.dirname(dir);
    }
  } catch {
    // not resolvable
  }
  return '?';
}

main().then(
  () => process.exit(0),
  (err) => {
    process.stderr.write(`${err instanceof Broken ? 'BROKEN: ' : ''}${err instanceof Error ? err.stack ?? err.message : String(err)}\n`);
    process.exit(1);
  },
);
