// Helpers shared by the benchmarks in bench/: arguments, machine info, a concurrency pool,
// running openssl, the event loop monitor and the result table.
import * as os from 'node:os';
import { readFileSync } from 'node:fs';
import { spawnSync, execFile } from 'node:child_process';
import { monitorEventLoopDelay, performance } from 'node:perf_hooks';

// ---- arguments ---------------------------------------------------------------------------

/** `--name=value` / `--name value` / `--flag` from argv. */
export function parseArgs(argv: string[]): Map<string, string | true> {
  const out = new Map<string, string | true>();
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    if (!arg.startsWith('--')) throw new Error(`unexpected argument ${JSON.stringify(arg)}`);
    const eq = arg.indexOf('=');
    if (eq > 0) {
      out.set(arg.slice(2, eq), arg.slice(eq + 1));
    } else if (i + 1 < argv.length && !argv[i + 1]!.startsWith('--')) {
      out.set(arg.slice(2), argv[++i]!);
    } else {
      out.set(arg.slice(2), true);
    }
  }
  return out;
}

/** A non-negative integer from `--flag`, else the environment variable, else the default. */
export function intOption(args: Map<string, string | true>, flag: string, envName: string, fallback: number): number {
  const raw = args.get(flag) ?? process.env[envName];
  if (raw === undefined || raw === '') return fallback;
  const n = Number(raw);
  if (raw === true || !Number.isInteger(n) || n < 0) throw new Error(`--${flag} / ${envName} must be a non-negative integer, got ${JSON.stringify(raw)}`);
  return n;
}

// ---- machine -------------------------------------------------------------------------------

export interface MachineInfo {
  cpus: number;
  cpuModel: string;
  node: string;
  openssl: string;
  nodeOpenssl: string;
  uvThreadpoolSize: number;
  platform: string;
  loadavg: number[];
}

export function machineInfo(): MachineInfo {
  const cpus = os.cpus();
  const v = spawnSync('openssl', ['version'], { encoding: 'utf8' });
  return {
    cpus: typeof os.availableParallelism === 'function' ? os.availableParallelism() : cpus.length,
    cpuModel: cpus[0]?.model.trim() ?? 'unknown',
    node: process.version,
    openssl: v.status === 0 ? v.stdout.trim() : 'openssl not found',
    nodeOpenssl: process.versions.openssl ?? 'unknown',
    uvThreadpoolSize: Number(process.env.UV_THREADPOOL_SIZE) || 4,
    platform: `${os.type()} ${os.release()} ${os.arch()}`,
    loadavg: os.loadavg().map((x) => Math.round(x * 100) / 100),
  };
}

// ---- running things ----------------------------------------------------------------------

/** Runs `openssl` synchronously (one process, as a shell loop would) and throws on failure. */
export function openssl(args: string[], cwd?: string): void {
  const r = spawnSync('openssl', args, { cwd, stdio: ['ignore', 'ignore', 'pipe'], encoding: 'utf8' });
  if (r.error) throw r.error;
  if (r.status !== 0) throw new Error(`openssl ${args.join(' ')} failed (${r.status}): ${r.stderr.trim()}`);
}

/** Same, asynchronously, for untimed preparation that may run in parallel. */
export function opensslAsync(args: string[], cwd?: string): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile('openssl', args, { cwd, encoding: 'utf8' }, (err, stdout, stderr) => {
      if (err) reject(new Error(`openssl ${args.join(' ')} failed: ${stderr.trim() || err.message}`));
      else resolve(stdout);
    });
  });
}

/** Maps `items` through `fn` with at most `concurrency` in flight; results keep their order. */
export async function runPool<T, R>(items: readonly T[], concurrency: number, fn: (item: T, index: number) => Promise<R>): Promise<R[]> {
  const results = new Array<R>(items.length);
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < items.length) {
      const i = next++;
      results[i] = await fn(items[i]!, i);
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, Math.min(concurrency, items.length)) }, worker));
  return results;
}

export interface Timed<R> {
  result: R;
  ms: number;
}

export async function timed<R>(fn: () => Promise<R> | R): Promise<Timed<R>> {
  const t0 = performance.now();
  const result = await fn();
  return { result, ms: performance.now() - t0 };
}

// ---- event loop ----------------------------------------------------------------------------

export interface LoopDelay {
  /** Longest time the loop was blocked beyond the timer's own interval, ms. */
  maxMs: number;
  p99Ms: number;
  meanMs: number;
  samples: number;
}

/**
 * Watches the event loop while `fn` runs. The histogram records the whole interval between
 * timer ticks, so the timer's own resolution is subtracted to get the time the loop was late.
 */
export async function withLoopMonitor<R>(fn: () => Promise<R>, resolutionMs = 5): Promise<{ result: R; loop: LoopDelay }> {
  const h = monitorEventLoopDelay({ resolution: resolutionMs });
  h.enable();
  try {
    const result = await fn();
    h.disable();
    const late = (ns: number): number => round(Math.max(0, ns / 1e6 - resolutionMs), 1);
    return { result, loop: { maxMs: late(h.max), p99Ms: late(h.percentile(99)), meanMs: late(h.mean), samples: h.count } };
  } finally {
    h.disable();
  }
}

// ---- other load on the machine ------------------------------------------------------------

interface CpuSample {
  at: number;
  busy: number;
  steal: number;
  self: number;
}

function cpuSample(): CpuSample | undefined {
  try {
    // /proc/stat: cpu user nice system idle iowait irq softirq steal ... (USER_HZ ticks)
    const f = readFileSync('/proc/stat', 'utf8').split('\n')[0]!.trim().split(/\s+/).slice(1).map(Number);
    const [user, nice, system, , , irq, softirq, steal] = f as [number, number, number, number, number, number, number, number];
    // /proc/self/stat fields 14-17: utime stime cutime cstime (all threads, plus waited-for children)
    const stat = readFileSync('/proc/self/stat', 'utf8');
    const g = stat.slice(stat.lastIndexOf(')') + 2).split(' ').map(Number);
    const self = g[11]! + g[12]! + g[13]! + g[14]!;
    return { at: performance.now(), busy: user + nice + system + irq + softirq + steal, steal, self };
  } catch {
    return undefined; // not Linux
  }
}

export interface OtherLoad {
  /** CPU used by other processes while the phase ran, in cores (0 = the machine was ours). */
  otherCores: number;
  /** Time the hypervisor gave our vCPUs to someone else, in cores. */
  stealCores: number;
}

/** Starts watching how busy the rest of the machine is; call the result to stop. */
export function watchOtherLoad(): () => OtherLoad | undefined {
  const a = cpuSample();
  return () => {
    const b = cpuSample();
    if (!a || !b || b.at <= a.at) return undefined;
    const ticks = ((b.at - a.at) / 1000) * 100;
    return {
      otherCores: round(Math.max(0, (b.busy - a.busy - (b.self - a.self)) / ticks), 2),
      stealCores: round((b.steal - a.steal) / ticks, 2),
    };
  };
}

// ---- output --------------------------------------------------------------------------------

export function round(x: number, digits = 1): number {
  const f = 10 ** digits;
  return Math.round(x * f) / f;
}

export function table(header: string[], rows: string[][]): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: string[]): string => cells.map((c, i) => (i === 0 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join('  ');
  return [line(header), widths.map((w) => '-'.repeat(w)).join('  '), ...rows.map(line)].join('\n');
}
