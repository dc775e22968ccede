// CPU time of named processes and of the whole machine from /proc (Linux), so a benchmark
// that spreads its work over several processes (broker, load generator, Node-RED) can say
// who used the cores, and how much was used by anything else.
import { readFileSync } from 'node:fs';
import { performance } from 'node:perf_hooks';

const HZ = 100; // USER_HZ: /proc reports CPU time in 1/100 s on Linux

/** utime + stime of one process, all threads, in ticks; undefined when it is gone or not Linux. */
export function processTicks(pid: number | 'self'): number | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return Number(f[11]) + Number(f[12]);
  } catch {
    return undefined;
  }
}

/** Busy ticks of the whole machine (user nice system irq softirq steal). */
export function machineTicks(): number | undefined {
  try {
    const f = readFileSync('/proc/stat', 'utf8').split('\n')[0]!.trim().split(/\s+/).slice(1).map(Number);
    const [user, nice, system, , , irq, softirq, steal] = f as number[];
    return user! + nice! + system! + irq! + softirq! + steal!;
  } catch {
    return undefined;
  }
}

/** A `<field>: <n> kB` line of a process's /proc file, in bytes. */
function procKb(pid: number | 'self', file: string, field: string): number | undefined {
  try {
    const m = readFileSync(`/proc/${pid}/${file}`, 'utf8').match(new RegExp(`^${field}:\\s+(\\d+) kB`, 'm'));
    return m ? Number(m[1]) * 1024 : undefined;
  } catch {
    return undefined;
  }
}

/** Resident set size of a process in bytes. */
export function processRss(pid: number | 'self'): number | undefined {
  return procKb(pid, 'status', 'VmRSS');
}

/** Resident set size now and its high-water mark (VmHWM: the peak since the process started), in bytes. */
export function processMemory(pid: number | 'self'): { rss: number; hwm: number } | undefined {
  try {
    const status = readFileSync(`/proc/${pid}/status`, 'utf8');
    const rss = status.match(/^VmRSS:\s+(\d+) kB/m);
    const hwm = status.match(/^VmHWM:\s+(\d+) kB/m);
    return rss && hwm ? { rss: Number(rss[1]) * 1024, hwm: Number(hwm[1]) * 1024 } : undefined;
  } catch {
    return undefined;
  }
}

/** Proportional set size (shared pages split among the processes that map them), in bytes. */
export function processPss(pid: number | 'self'): number | undefined {
  return procKb(pid, 'smaps_rollup', 'Pss');
}

export interface CpuSnapshot {
  at: number;
  machine?: number;
  procs: Record<string, number | undefined>;
}

export function snapshot(pids: Record<string, number | 'self'>): CpuSnapshot {
  const procs: Record<string, number | undefined> = {};
  for (const [name, pid] of Object.entries(pids)) procs[name] = processTicks(pid);
  return { at: performance.now(), machine: machineTicks(), procs };
}

export interface CpuUse {
  /** Cores used by each named process between the snapshots. */
  cores: Record<string, number>;
  /** Cores used by every other process on the machine (incl. steal). */
  otherCores: number;
  /** The whole machine. */
  machineCores: number;
  seconds: number;
}

export function cpuBetween(a: CpuSnapshot, b: CpuSnapshot): CpuUse | undefined {
  const seconds = (b.at - a.at) / 1000;
  if (!(seconds > 0) || a.machine === undefined || b.machine === undefined) return undefined;
  const cores: Record<string, number> = {};
  let named = 0;
  for (const name of Object.keys(a.procs)) {
    const x = a.procs[name];
    const y = b.procs[name];
    if (x === undefined || y === undefined) continue;
    cores[name] = (y - x) / HZ / seconds;
    named += y - x;
  }
  const machine = b.machine - a.machine;
  return { cores, otherCores: Math.max(0, (machine - named) / HZ / seconds), machineCores: machine / HZ / seconds, seconds };
}

/**
 * Waits until processes other than `pids` use fewer than `quietCores` over a second, at most
 * `maxWaitMs` (this machine is shared with other work). Returns how long it waited (0 when it
 * was quiet at once).
 */
export async function waitForQuiet(
  pids: Record<string, number | 'self'>,
  options: { maxWaitMs: number; quietCores: number; log(msg: string): void },
): Promise<number> {
  if (options.maxWaitMs <= 0) return 0;
  const fmt = (x: number): string => x.toFixed(2);
  const t0 = performance.now();
  let told = false;
  for (;;) {
    const a = snapshot(pids);
    await new Promise((r) => setTimeout(r, 1_000));
    const use = cpuBetween(a, snapshot(pids));
    const waited = performance.now() - t0;
    if (!use || use.otherCores < options.quietCores) {
      if (told) options.log(`  quiet after ${Math.round(waited / 1000)} s`);
      return told ? waited : 0;
    }
    if (waited > options.maxWaitMs) {
      options.log(`  still ${fmt(use.otherCores)} cores used by other processes after ${Math.round(waited / 1000)} s: going on`);
      return waited;
    }
    if (!told) options.log(`  other processes use ${fmt(use.otherCores)} cores: waiting up to ${Math.round(options.maxWaitMs / 1000)} s for a quiet machine ...`);
    told = true;
  }
}
