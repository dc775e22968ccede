import { spawn, ChildProcess, spawnSync } from 'node:child_process';
import { writeFileSync, mkdtempSync } from 'node:fs';
import { createServer } from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';

export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as { port: number };
      server.close(() => resolve(port));
    });
  });
}

export interface RunningMosquitto {
  log(): string;
  /** SIGHUP: mosquitto re-reads the ACL and the CRL. */
  reload(): Promise<void>;
  stop(): Promise<void>;
}

/**
 * Starts the real mosquitto on the generated config folder. The config is included
 * verbatim through a two-line wrapper; the wrapper only keeps a root test run (CI) from
 * dropping to the `mosquitto` user, which could not read the test's private files.
 */
export async function startMosquitto(configDir: string): Promise<RunningMosquitto> {
  const which = spawnSync('mosquitto', ['-h'], { encoding: 'utf8' });
  if (which.error) throw new Error('mosquitto is not installed: run `apt-get install -y mosquitto` (the CI script does)');
  const wrapperDir = mkdtempSync(path.join(os.tmpdir(), 'esp-fleet-mosq-'));
  const wrapper = path.join(wrapperDir, 'wrapper.conf');
  writeFileSync(wrapper, `user root\ninclude_dir ${configDir}\n`);
  const child: ChildProcess = spawn('mosquitto', ['-c', wrapper, '-v'], { stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  const collect = (chunk: Buffer): void => {
    output += chunk.toString();
  };
  child.stdout!.on('data', collect);
  child.stderr!.on('data', collect);
  await waitFor(() => /running/.test(output), () => `mosquitto did not start:\n${output}`, child);
  const mark = (): number => output.length;
  return {
    log: () => output,
    async reload() {
      const from = mark();
      child.kill('SIGHUP');
      await waitFor(() => /Reloading config/i.test(output.slice(from)), () => `mosquitto did not reload:\n${output}`, child);
      // The reload itself completes just after the log line.
      await new Promise((r) => setTimeout(r, 200));
    },
    async stop() {
      if (child.exitCode !== null) return;
      const exited = new Promise((r) => child.once('exit', r));
      child.kill('SIGTERM');
      await exited;
    },
  };
}

async function waitFor(ok: () => boolean, failure: () => string, child: ChildProcess, ms = 10_000): Promise<void> {
  const until = Date.now() + ms;
  while (!ok()) {
    if (child.exitCode !== null || Date.now() > until) throw new Error(failure());
    await new Promise((r) => setTimeout(r, 25));
  }
}
