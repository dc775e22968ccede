/**
 * bench/issue-certs: how fast the CA store signs device CSRs and issues device certificates
 * (fresh RSA-2048 key + signature), side by side with the openssl CLI recipe of the openssl CA recipe
 * (`genrsa`, `req`, `x509 -req`, one process each), both driven from this one run on this machine;
 * and the same for fresh EC P-256 device keys (`issueDevice(id, { keyType: 'ec' })` against
 * `ecparam -genkey`, `req -new`, `x509 -req`).
 *
 *   npm run bench:issue-certs                 # full run (~1 min)
 *   node dist/bench/issue-certs.js --quick    # smoke run, a few seconds
 *
 * Sizes: --csr N (BENCH_CSR_N), --csr-rounds R (BENCH_CSR_ROUNDS), --cli-full N (BENCH_CLI_FULL_N),
 * --issue N (BENCH_ISSUE_N), --issue-ec N (BENCH_ISSUE_EC_N), --cli-ec N (BENCH_CLI_EC_N), --keygen N (BENCH_KEYGEN_N, 0 skips), --concurrency C
 * (BENCH_CONCURRENCY), --keep (leave the temp folder). Exit code 0 even when a goal is
 * missed (it is a measurement); 1 when something we issued does not verify.
 */
import { promises as fs, mkdirSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { spawnSync } from 'node:child_process';
import { X509Certificate, createPrivateKey } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import { CaStore, IssuedCertificate } from '../lib/pki/ca-store';
import { generateRsaKey } from '../lib/pki/keys';
import { isSignedBy } from '../lib/pki/x509';
import {
  LoopDelay,
  OtherLoad,
  intOption,
  machineInfo,
  openssl,
  opensslAsync,
  parseArgs,
  round,
  runPool,
  table,
  timed,
  watchOtherLoad,
  withLoopMonitor,
} from './lib/common';

const KEY_BITS = '2048';
const GOAL_CSR_RATIO = 20;
const GOAL_DEVICE_RATIO = 2.5;
const GOAL_EC_DEVICE_RATIO = 100;
/** Distinct CSRs share keys from a small pool: signing cost does not depend on the CSR's key. */
const CSR_KEY_POOL = 8;
const WARMUP = 3;
/** signCsr calls timed one at a time, each for a device of its own. */
const SINGLE = 13;

const args = parseArgs(process.argv.slice(2));
if (args.has('help')) {
  process.stdout.write(
    'usage: node dist/bench/issue-certs.js [--quick] [--csr N] [--csr-rounds R] [--cli-full N] [--issue N] [--issue-ec N] [--cli-ec N] [--keygen N] [--concurrency C] [--keep]\n' +
      '  env: BENCH_CSR_N BENCH_CSR_ROUNDS BENCH_CLI_FULL_N BENCH_ISSUE_N BENCH_ISSUE_EC_N BENCH_CLI_EC_N BENCH_KEYGEN_N BENCH_CONCURRENCY (flags win)\n',
  );
  process.exit(0);
}
const quick = args.has('quick');
const N = {
  csr: intOption(args, 'csr', 'BENCH_CSR_N', quick ? 20 : 100),
  csrRounds: Math.max(1, intOption(args, 'csr-rounds', 'BENCH_CSR_ROUNDS', quick ? 1 : 5)),
  cliFull: intOption(args, 'cli-full', 'BENCH_CLI_FULL_N', quick ? 4 : 60),
  issue: intOption(args, 'issue', 'BENCH_ISSUE_N', quick ? 10 : 150),
  issueEc: intOption(args, 'issue-ec', 'BENCH_ISSUE_EC_N', quick ? 50 : 1000),
  cliEc: intOption(args, 'cli-ec', 'BENCH_CLI_EC_N', quick ? 4 : 40),
  keygen: intOption(args, 'keygen', 'BENCH_KEYGEN_N', quick ? 0 : 60),
  concurrency: Math.max(1, intOption(args, 'concurrency', 'BENCH_CONCURRENCY', 32)),
};
const keep = args.has('keep');

/** 84f3eb + 6 hex digits; `block` keeps the id ranges of the phases apart. */
function deviceId(block: number, i: number): string {
  return `84f3eb${(block * 0x100000 + i + 1).toString(16).padStart(6, '0')}`;
}

function log(msg: string): void {
  process.stderr.write(`${msg}\n`);
}

function fail(msg: string): never {
  throw new Error(`VERIFY FAILED: ${msg}`);
}

interface Csr {
  id: string;
  file: string;
  pem: string;
}

/** CA for the CLI side (the openssl CA recipe makes its CA with `req -new -x509`; no prompts here). */
async function prepareCliCa(dir: string): Promise<{ caCrt: string; caKey: string }> {
  const caCrt = path.join(dir, 'ca.crt');
  const caKey = path.join(dir, 'ca.key');
  openssl(['req', '-x509', '-newkey', `rsa:${KEY_BITS}`, '-nodes', '-keyout', caKey, '-out', caCrt, '-subj', '/CN=Bench CLI CA', '-days', '3650']);
  return { caCrt, caKey };
}

/** N distinct device CSRs (CN = device id), made with openssl up front, not timed. */
async function prepareCsrs(dir: string, count: number): Promise<Csr[]> {
  await fs.mkdir(path.join(dir, 'csr'), { recursive: true });
  const keys = Array.from({ length: Math.min(CSR_KEY_POOL, count) }, (_, k) => path.join(dir, 'csr', `pool${k}.key`));
  await runPool(keys, os.cpus().length, (key) => opensslAsync(['genrsa', '-out', key, KEY_BITS]));
  const ids = Array.from({ length: count }, (_, i) => deviceId(0, i));
  return runPool(ids, os.cpus().length, async (id, i) => {
    const file = path.join(dir, 'csr', `${id}.csr`);
    await opensslAsync(['req', '-new', '-key', keys[i % keys.length]!, '-subj', `/CN=${id}`, '-out', file]);
    return { id, file, pem: await fs.readFile(file, 'utf8') };
  });
}

/** (a) `openssl x509 -req` per CSR, one process each, sequentially (the openssl CA recipe, step 3). */
function cliSignLoop(dir: string, ca: { caCrt: string; caKey: string }, csrs: Csr[]): number {
  const out = path.join(dir, 'cli-signed');
  mkdirSync(out, { recursive: true });
  const t0 = performance.now();
  for (const csr of csrs) {
    openssl(['x509', '-req', '-in', csr.file, '-CA', ca.caCrt, '-CAkey', ca.caKey, '-CAcreateserial', '-out', path.join(out, `${csr.id}.crt`), '-days', '365']);
  }
  return performance.now() - t0;
}

/** (c) the openssl CA recipe's full recipe per device: genrsa, req -new, x509 -req; one process each. */
function cliFullLoop(dir: string, ca: { caCrt: string; caKey: string }, count: number): { ms: number; steps: { genrsa: number; req: number; x509: number } } {
  const out = path.join(dir, 'cli-full');
  mkdirSync(out, { recursive: true });
  const steps = { genrsa: 0, req: 0, x509: 0 };
  const t0 = performance.now();
  for (let i = 0; i < count; i++) {
    const id = deviceId(2, i);
    const key = path.join(out, `${id}.key`);
    const csr = path.join(out, `${id}.csr`);
    let t = performance.now();
    openssl(['genrsa', '-out', key, KEY_BITS]);
    steps.genrsa += performance.now() - t;
    t = performance.now();
    openssl(['req', '-new', '-key', key, '-subj', `/CN=${id}`, '-out', csr]);
    steps.req += performance.now() - t;
    t = performance.now();
    openssl(['x509', '-req', '-in', csr, '-CA', ca.caCrt, '-CAkey', ca.caKey, '-CAcreateserial', '-out', path.join(out, `${id}.crt`), '-days', '365']);
    steps.x509 += performance.now() - t;
  }
  return { ms: performance.now() - t0, steps };
}

/** (e) the same recipe with an EC P-256 key: ecparam -genkey, req -new, x509 -req; one process each. */
function cliEcLoop(dir: string, ca: { caCrt: string; caKey: string }, count: number): { ms: number; steps: { ecparam: number; req: number; x509: number } } {
  const out = path.join(dir, 'cli-ec');
  mkdirSync(out, { recursive: true });
  const steps = { ecparam: 0, req: 0, x509: 0 };
  const t0 = performance.now();
  for (let i = 0; i < count; i++) {
    const id = deviceId(4, i);
    const key = path.join(out, `${id}.key`);
    const csr = path.join(out, `${id}.csr`);
    let t = performance.now();
    openssl(['ecparam', '-name', 'prime256v1', '-genkey', '-noout', '-out', key]);
    steps.ecparam += performance.now() - t;
    t = performance.now();
    openssl(['req', '-new', '-key', key, '-subj', `/CN=${id}`, '-out', csr]);
    steps.req += performance.now() - t;
    t = performance.now();
    openssl(['x509', '-req', '-in', csr, '-CA', ca.caCrt, '-CAkey', ca.caKey, '-CAcreateserial', '-out', path.join(out, `${id}.crt`), '-days', '365']);
    steps.x509 += performance.now() - t;
  }
  return { ms: performance.now() - t0, steps };
}

function opensslVerify(caFile: string, certFile: string): void {
  const r = spawnSync('openssl', ['verify', '-CAfile', caFile, certFile], { encoding: 'utf8' });
  if (r.status !== 0 || !r.stdout.includes(': OK')) fail(`openssl verify -CAfile ${caFile} ${certFile}: ${(r.stdout + r.stderr).trim()}`);
}

function checkIssued(store: CaStore, issued: IssuedCertificate[], ids: string[], withKey: boolean): void {
  const caPem = store.caCertificatePem;
  issued.forEach((c, i) => {
    if (c.record.commonName !== ids[i]) fail(`certificate ${i} has CN ${c.record.commonName}, expected ${ids[i]}`);
    if (!isSignedBy(c.certificatePem, caPem)) fail(`certificate for ${ids[i]} is not signed by the store's CA`);
    if (withKey && !new X509Certificate(c.certificatePem).checkPrivateKey(createPrivateKey(c.privateKeyPem!))) {
      fail(`the key issued for ${ids[i]} does not match its certificate`);
    }
  });
  const serials = new Set(issued.map((c) => c.record.serial));
  if (serials.size !== issued.length) fail('duplicate serial numbers');
}

function rate(count: number, ms: number): number {
  return ms > 0 ? (count * 1000) / ms : 0;
}

async function main(): Promise<void> {
  const machine = machineInfo();
  const root = await fs.mkdtemp(path.join(os.tmpdir(), 'esp-fleet-bench-'));
  const cliDir = path.join(root, 'cli');
  const storeDir = path.join(root, 'store');
  await fs.mkdir(cliDir);
  log(`bench/issue-certs${quick ? ' (quick)' : ''}: ${JSON.stringify(N)} in ${root}`);
  try {
    // ---- preparation (not timed) ----------------------------------------------------------
    log('preparing the CLI CA and CSRs with openssl ...');
    const ca = await prepareCliCa(cliDir);
    // One device per CSR for every round: a device holds one valid certificate, so signing the
    // same id again would also revoke the old one and re-sign the CRL: that is not signing.
    const all = await prepareCsrs(cliDir, WARMUP + SINGLE + N.csr * N.csrRounds);
    const warm = all.slice(0, WARMUP);
    const single = all.slice(WARMUP, WARMUP + SINGLE);
    const jobs = all.slice(WARMUP + SINGLE);
    const csrs = jobs.slice(0, N.csr);
    const store = await CaStore.open({ dir: storeDir });

    // ---- (a) CLI: x509 -req, one process per CSR ------------------------------------------
    log(`(a) openssl x509 -req x ${N.csr}, sequential ...`);
    cliSignLoop(cliDir, ca, warm);
    const other: Record<string, OtherLoad | undefined> = {};
    let stop = watchOtherLoad();
    const cliCsrMs = cliSignLoop(cliDir, ca, csrs);
    other.a = stop();

    // ---- (b) ours: signCsr on the same CSRs -----------------------------------------------
    log(`(b) store.signCsr x ${N.csr * N.csrRounds} (${N.csr} CSRs x ${N.csrRounds} rounds), concurrency ${N.concurrency} ...`);
    for (const c of warm) await store.signCsr(c.pem, { deviceId: c.id });
    await store.idle();
    stop = watchOtherLoad();
    const csrRun = await withLoopMonitor(() =>
      timed(async () => {
        const issued = await runPool(jobs, N.concurrency, (c) => store.signCsr(c.pem, { deviceId: c.id }));
        await store.idle();
        return issued;
      }),
    );
    other.b = stop();
    const oursCsrMs = csrRun.result.ms;
    checkIssued(store, csrRun.result.result, jobs.map((c) => c.id), false);
    // Then one signCsr at a time (warm): the latency of a single request.
    const singleMs: number[] = [];
    for (const c of single) {
      const t = performance.now();
      await store.signCsr(c.pem, { deviceId: c.id });
      singleMs.push(performance.now() - t);
    }
    await store.idle();

    // ---- (c) CLI: genrsa + req + x509 -req, one process each -------------------------------
    log(`(c) openssl genrsa + req + x509 -req x ${N.cliFull}, sequential ...`);
    stop = watchOtherLoad();
    const cliFull = cliFullLoop(cliDir, ca, N.cliFull);
    other.c = stop();

    // ---- reference: bare native key generation at the same concurrency --------------------
    let keygen: { ms: number; count: number } | undefined;
    if (N.keygen > 0) {
      log(`(ref) crypto.generateKeyPair rsa 2048 x ${N.keygen}, concurrency ${N.concurrency} ...`);
      stop = watchOtherLoad();
      const t = await timed(() => runPool(Array.from({ length: N.keygen }), N.concurrency, () => generateRsaKey(2048)));
      other.ref = stop();
      keygen = { ms: t.ms, count: N.keygen };
    }

    // ---- (d) ours: issueDevice (fresh key + sign) -----------------------------------------
    log(`(d) store.issueDevice x ${N.issue}, concurrency ${N.concurrency} ...`);
    for (let i = 0; i < 2; i++) await store.issueDevice(deviceId(3, i));
    await store.idle();
    const issueIds = Array.from({ length: N.issue }, (_, i) => deviceId(1, i));
    stop = watchOtherLoad();
    const issueRun = await withLoopMonitor(() =>
      timed(async () => {
        const issued = await runPool(issueIds, N.concurrency, (id) => store.issueDevice(id));
        await store.idle();
        return issued;
      }),
    );
    other.d = stop();
    const oursIssueMs = issueRun.result.ms;
    checkIssued(store, issueRun.result.result, issueIds, true);

    // ---- (e) CLI: ecparam -genkey + req + x509 -req, one process each ------------------------
    log(`(e) openssl ecparam -genkey + req + x509 -req x ${N.cliEc}, sequential ...`);
    stop = watchOtherLoad();
    const cliEc = cliEcLoop(cliDir, ca, N.cliEc);
    other.e = stop();

    // ---- (f) ours: issueDevice keyType ec (fresh P-256 key + sign) ------------------------
    log(`(f) store.issueDevice keyType ec x ${N.issueEc}, concurrency ${N.concurrency} ...`);
    for (let i = 2; i < 4; i++) await store.issueDevice(deviceId(3, i), { keyType: 'ec' });
    await store.idle();
    const ecIds = Array.from({ length: N.issueEc }, (_, i) => deviceId(5, i));
    stop = watchOtherLoad();
    const ecRun = await withLoopMonitor(() =>
      timed(async () => {
        const issued = await runPool(ecIds, N.concurrency, (id) => store.issueDevice(id, { keyType: 'ec' }));
        await store.idle();
        return issued;
      }),
    );
    other.f = stop();
    const oursEcMs = ecRun.result.ms;
    checkIssued(store, ecRun.result.result, ecIds, true);
    for (const c of ecRun.result.result) {
      if (new X509Certificate(c.certificatePem).publicKey.asymmetricKeyDetails?.namedCurve !== 'prime256v1') fail(`the certificate for ${c.record.commonName} has no P-256 key`);
    }

    // ---- correctness with openssl itself ----------------------------------------------------
    const caFile = path.join(storeDir, 'ca.crt');
    if (ecIds.length) opensslVerify(caFile, path.join(storeDir, 'devices', `${ecIds[ecIds.length - 1]}.crt`));
    if (N.cliEc) opensslVerify(ca.caCrt, path.join(cliDir, 'cli-ec', `${deviceId(4, N.cliEc - 1)}.crt`));
    if (csrs.length) opensslVerify(caFile, path.join(storeDir, 'devices', `${csrs[csrs.length - 1]!.id}.crt`));
    if (issueIds.length) opensslVerify(caFile, path.join(storeDir, 'devices', `${issueIds[issueIds.length - 1]}.crt`));
    if (N.cliFull) opensslVerify(ca.caCrt, path.join(cliDir, 'cli-full', `${deviceId(2, N.cliFull - 1)}.crt`));
    const expectedCount = 2 * WARMUP + Math.min(10, csrs.length) + jobs.length + 2 + N.issue + 2 + N.issueEc;
    if (store.issuedCount !== expectedCount) fail(`the store lists ${store.issuedCount} certificates, expected ${expectedCount}`);

    // ---- report -----------------------------------------------------------------------------
    const csr = {
      ours: rate(jobs.length, oursCsrMs),
      cli: rate(csrs.length, cliCsrMs),
    };
    const device = {
      ours: rate(N.issue, oursIssueMs),
      cli: rate(N.cliFull, cliFull.ms),
    };
    const ec = {
      ours: rate(N.issueEc, oursEcMs),
      cli: rate(N.cliEc, cliEc.ms),
    };
    const ecRatio = ec.cli ? ec.ours / ec.cli : 0;
    const ecPass = ecRatio >= GOAL_EC_DEVICE_RATIO;
    const csrRatio = csr.cli ? csr.ours / csr.cli : 0;
    const deviceRatio = device.cli ? device.ours / device.cli : 0;
    const csrPass = csrRatio >= GOAL_CSR_RATIO;
    const devicePass = deviceRatio >= GOAL_DEVICE_RATIO;
    const verdict = (pass: boolean): string => (pass ? 'PASS' : '** FAIL **');
    const sortedSingle = [...singleMs].sort((a, b) => a - b);
    const median = sortedSingle[Math.floor(sortedSingle.length / 2)] ?? 0;
    const loopText = (l: LoopDelay): string => `max ${l.maxMs} ms, p99 ${l.p99Ms} ms (${l.samples} samples)`;

    const out: string[] = [];
    out.push('');
    out.push(`bench/issue-certs${quick ? ' --quick (smoke run: small N, figures are not meaningful)' : ''}`);
    out.push(`machine: ${machine.cpus} x ${machine.cpuModel}, ${machine.platform}, load ${machine.loadavg.join(' ')}`);
    out.push(`node ${machine.node} (OpenSSL ${machine.nodeOpenssl}), UV_THREADPOOL_SIZE ${machine.uvThreadpoolSize}; CLI: ${machine.openssl}`);
    out.push(`RSA ${KEY_BITS} CA and (a)-(d) keys, P-256 device keys in (e)/(f); ours with concurrency ${N.concurrency}; CLI one process per step, sequential`);
    out.push('');
    out.push(
      table(
        ['measure', 'ours /s', 'CLI /s', 'ratio', 'goal', 'result'],
        [
          [`CSR signs (signCsr x${jobs.length} | x509 -req x${csrs.length})`, round(csr.ours).toFixed(1), round(csr.cli).toFixed(1), `${round(csrRatio, 2)}x`, `>= ${GOAL_CSR_RATIO}x`, verdict(csrPass)],
          [`device certs, fresh key (issueDevice x${N.issue} | genrsa+req+x509 x${N.cliFull})`, round(device.ours, 2).toFixed(2), round(device.cli, 2).toFixed(2), `${round(deviceRatio, 2)}x`, `>= ${GOAL_DEVICE_RATIO}x`, verdict(devicePass)],
          [`EC P-256 device certs, fresh key (issueDevice ec x${N.issueEc} | ecparam+req+x509 x${N.cliEc})`, round(ec.ours, 1).toFixed(1), round(ec.cli, 2).toFixed(2), `${round(ecRatio, 1)}x`, `>= ${GOAL_EC_DEVICE_RATIO}x`, verdict(ecPass)],
        ],
      ),
    );
    out.push('');
    out.push('details:');
    out.push(`  CLI x509 -req:            ${round(cliCsrMs / Math.max(1, csrs.length), 1)} ms per process`);
    out.push(
      `  CLI full recipe:          ${round(cliFull.ms / Math.max(1, N.cliFull), 1)} ms per device = genrsa ${round(cliFull.steps.genrsa / Math.max(1, N.cliFull), 1)} + req ${round(cliFull.steps.req / Math.max(1, N.cliFull), 1)} + x509 ${round(cliFull.steps.x509 / Math.max(1, N.cliFull), 1)} ms`,
    );
    out.push(
      `  CLI EC recipe:            ${round(cliEc.ms / Math.max(1, N.cliEc), 1)} ms per device = ecparam ${round(cliEc.steps.ecparam / Math.max(1, N.cliEc), 1)} + req ${round(cliEc.steps.req / Math.max(1, N.cliEc), 1)} + x509 ${round(cliEc.steps.x509 / Math.max(1, N.cliEc), 1)} ms`,
    );
    out.push(`  signCsr one at a time:    median ${round(median, 2)} ms (${singleMs.length} calls)`);
    if (keygen) out.push(`  generateKeyPair only:     ${round(rate(keygen.count, keygen.ms), 2)} keys/s (x${keygen.count}, concurrency ${N.concurrency}): the floor for issueDevice`);
    out.push(`  event loop during (b):    ${loopText(csrRun.loop)}`);
    out.push(`  event loop during (d):    ${loopText(issueRun.loop)}`);
    out.push(`  event loop during (f):    ${loopText(ecRun.loop)}`);
    const phases = Object.entries(other).filter((e): e is [string, OtherLoad] => e[1] !== undefined);
    if (phases.length) {
      out.push(`  other processes' CPU:     ${phases.map(([k, v]) => `(${k}) ${v.otherCores.toFixed(2)}`).join('  ')} cores (of ${machine.cpus}; incl. steal)`);
    }
    const disturbed = phases.filter(([, v]) => v.otherCores >= 0.2).map(([k]) => k);
    out.push(`  verified: every issued cert against the CA (node), openssl verify on samples, unique serials, keys match`);
    if (disturbed.length) out.push(`\n!! other processes used >= 0.2 cores during (${disturbed.join(', ')}): figures are disturbed, re-run on a quiet machine !!`);
    out.push(`EC P-256 fresh-key goal (>= ${GOAL_EC_DEVICE_RATIO}x the CLI recipe): ${ecPass ? 'met' : 'NOT met'} (${round(ecRatio, 1)}x)`);
    if (!csrPass || !devicePass || !ecPass) out.push(`\n** GOAL MISSED: ${[!csrPass && 'CSR signs', !devicePass && 'device certs', !ecPass && 'EC device certs'].filter(Boolean).join(', ')} **`);
    process.stdout.write(`${out.join('\n')}\n\n`);

    const json = {
      bench: 'issue-certs',
      quick,
      params: { ...N, keyBits: Number(KEY_BITS), warmup: WARMUP },
      machine,
      otherLoadCores: Object.fromEntries(phases.map(([k, v]) => [k, v.otherCores])),
      csr: { oursPerSec: round(csr.ours, 2), cliPerSec: round(csr.cli, 2), ratio: round(csrRatio, 2), goal: GOAL_CSR_RATIO, pass: csrPass, signCsrMedianMs: round(median, 3), eventLoop: csrRun.loop },
      device: {
        oursPerSec: round(device.ours, 3),
        cliPerSec: round(device.cli, 3),
        ratio: round(deviceRatio, 2),
        goal: GOAL_DEVICE_RATIO,
        pass: devicePass,
        cliStepsMs: {
          genrsa: round(cliFull.steps.genrsa / Math.max(1, N.cliFull), 1),
          req: round(cliFull.steps.req / Math.max(1, N.cliFull), 1),
          x509: round(cliFull.steps.x509 / Math.max(1, N.cliFull), 1),
        },
        keygenOnlyPerSec: keygen ? round(rate(keygen.count, keygen.ms), 3) : null,
        eventLoop: issueRun.loop,
      },
      ecDevice: {
        oursPerSec: round(ec.ours, 2),
        cliPerSec: round(ec.cli, 3),
        ratio: round(ecRatio, 2),
        goal: GOAL_EC_DEVICE_RATIO,
        pass: ecPass,
        cliStepsMs: {
          ecparam: round(cliEc.steps.ecparam / Math.max(1, N.cliEc), 1),
          req: round(cliEc.steps.req / Math.max(1, N.cliEc), 1),
          x509: round(cliEc.steps.x509 / Math.max(1, N.cliEc), 1),
        },
        eventLoop: ecRun.loop,
      },
    };
    process.stdout.write(`${JSON.stringify(json)}\n`);
  } finally {
    if (keep) log(`kept ${root}`);
    else await fs.rm(root, { recursive: true, force: true });
  }
}

main().catch((err) => {
  process.stderr.write(`${err instanceof Error ? err.stack ?? err.message : String(err)}\n`);
  process.exit(1);
});
