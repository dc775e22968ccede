// Runs bench/lib/hold-clients.py (python3): N slow ESP8266-like downloads held in flight at
// once (see that file for why it is Python: TCP_MAXSEG and SO_RCVBUF before connect).
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, writeFileSync } from 'node:fs';
import * as path from 'node:path';

export interface HoldResult {
  /** Downloads whose response had started and not ended, at most at one time (the devices' view). */
  maxInFlight: number;
  /** When all responses had started with none finished, ms after the start. */
  allInFlightAtMs: number | null;
  /** How long all were in flight at once, ms. */
  allInFlightForMs: number;
  completed: number;
  md5Checked: number;
  ms: number;
  errors: number;
  firstErrors: string[];
}

export interface HoldConfig {
  port: number;
  request: string;
  count: number;
  connectConcurrency: number;
  readBytesPerSec: number;
  holdMs: number;
  md5Every: number;
  imageSize: number;
  md5: string;
  ca: string;
  devices: { certFile: string; keyFile: string }[];
  cipher: string;
  /** TCP MSS the devices announce, and their receive buffer (the kernel doubles it). */
  mss: number;
  rcvbuf: number;
}

/** The script, in the source tree (the build compiles TypeScript only). */
export function holdScript(): string {
  // dist/bench/lib -> bench/lib
  const candidates = [path.resolve(__dirname, '..', '..', '..', 'bench', 'lib', 'hold-clients.py'), path.join(__dirname, 'hold-clients.py')];
  const found = candidates.find((c) => existsSync(c));
  if (!found) throw new Error(`hold-clients.py not found (looked in ${candidates.join(', ')})`);
  return found;
}

export function pythonVersion(): string {
  const r = spawnSync('python3', ['--version'], { encoding: 'utf8' });
  if (r.error || r.status !== 0) throw new Error('python3 is not installed (the slow devices of the in-flight phase): run `apt-get install -y python3`, or pass --no-hold');
  return (r.stdout || r.stderr).trim();
}

export interface RunningHold {
  pid: number;
  /** Resolves when all responses have started (the ms after the start), or never. */
  allInFlight: Promise<number>;
  done: Promise<HoldResult>;
}

export function startHold(configFile: string, config: HoldConfig): RunningHold {
  writeFileSync(configFile, JSON.stringify(config));
  const child = spawn('python3', [holdScript(), configFile], { stdio: ['ignore', 'pipe', 'pipe'] });
  const onExit = (): void => {
    if (child.exitCode === null) child.kill('SIGKILL');
  };
  process.on('exit', onExit);
  let stderr = '';
  child.stderr.on('data', (c: Buffer) => (stderr = (stderr + c.toString()).slice(-8_000)));
  let buffered = '';
  let result: HoldResult | undefined;
  let onAll: (ms: number) => void = () => undefined;
  const allInFlight = new Promise<number>((resolve) => (onAll = resolve));
  child.stdout.on('data', (c: Buffer) => {
    buffered += c.toString();
    let nl: number;
    while ((nl = buffered.indexOf('\n')) >= 0) {
      const line = buffered.slice(0, nl);
      buffered = buffered.slice(nl + 1);
      if (!line.trim()) continue;
      const msg = JSON.parse(line) as { type: string; atMs?: number; result?: HoldResult };
      if (msg.type === 'all-in-flight') onAll(msg.atMs!);
      else if (msg.type === 'done') result = msg.result;
    }
  });
  const done = new Promise<HoldResult>((resolve, reject) => {
    child.on('error', reject);
    child.on('close', (code) => {
      process.off('exit', onExit);
      if (code === 0 && result) resolve(result);
      else reject(new Error(`hold-clients.py exited with ${code}: ${stderr.trim().slice(-2_000)}`));
    });
  });
  return { pid: child.pid!, allInFlight, done };
}
