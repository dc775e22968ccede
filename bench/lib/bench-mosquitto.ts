// The real mosquitto for benchmarks: the folder our CA generated is included verbatim, like
// test/support/mosquitto.ts does, but without `-v` (log_type all writes two log lines per
// PUBLISH, which would cost the broker and the process that reads its log more than the
// messages themselves) and with the benchmark's own global settings in the wrapper.
import { spawn, spawnSync, ChildProcess } from 'node:child_process';
import { mkdtempSync, writeFileSync, rmSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

export interface BenchMosquitto {
  pid: number;
  version: string;
  /** The wrapper's own lines (what the benchmark adds to the generated config). */
  wrapperLines: string[];
  /** Everything mosquitto logged (notices and above). */
  log(): string;
  stop(): Promise<void>;
}

export function mosquittoVersion(): string {
  const r = spawnSync('mosquitto', ['-h'], { encoding: 'utf8' });
  if (r.error) throw new Error('mosquitto is not installed: run `apt-get install -y mosquitto`');
  return (r.stdout + r.stderr).match(/mosquitto version (\S+)/)?.[1] ?? 'unknown';
}

/**
 * `extra` goes into the wrapper before `include_dir`, e.g. `max_queued_messages 0`. With the
 * generated `per_listener_settings false` these are global and apply to every client alike.
 */
export async function startBenchMosquitto(configDir: string, extra: string[] = []): Promise<BenchMosquitto> {
  const version = mosquittoVersion();
  const wrapperDir = mkdtempSync(path.join(os.tmpdir(), 'esp-fleet-bench-mosq-'));
  const wrapper = path.join(wrapperDir, 'wrapper.conf');
  const wrapperLines = [
    ...(process.getuid?.() === 0 ? ['user root'] : []),
    'log_dest stderr',
    'log_type error',
    'log_type warning',
    'log_type notice',
    'log_type information',
    ...extra,
  ];
  writeFileSync(wrapper, `${wrapperLines.join('\n')}\ninclude_dir ${configDir}\n`);
  const child: ChildProcess = spawn('mosquitto', ['-c', wrapper], { stdio: ['ignore', 'pipe', 'pipe'] });
  // Never leave a broker behind, even when the bench dies (an uncaught error, a closed stdout pipe, process.exit).
  const onExit = (): void => {
    if (child.exitCode === null) child.kill('SIGKILL');
    rmSync(wrapperDir, { recursive: true, force: true });
  };
  process.on('exit', onExit);
  let output = '';
  const collect = (chunk: Buffer): void => {
    output += chunk.toString();
    if (output.length > 4_000_000) output = output.slice(-2_000_000);
  };
  child.stdout!.on('data', collect);
  child.stderr!.on('data', collect);
  const until = Date.now() + 10_000;
  while (!/running/.test(output)) {
    if (child.exitCode !== null || Date.now() > until) {
      onExit();
      process.off('exit', onExit);
      throw new Error(`mosquitto did not start:\n${output}`);
    }
    await new Promise((r) => setTimeout(r, 25));
  }
  return {
    pid: child.pid!,
    version,
    wrapperLines,
    log: () => output,
    async stop() {
      if (child.exitCode === null) {
        const exited = new Promise((r) => child.once('exit', r));
        child.kill('SIGTERM');
        await exited;
      }
      onExit();
      process.off('exit', onExit);
    },
  };
}
