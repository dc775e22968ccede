// The reference servers of bench/firmware-server, started by the bench on loopback with the
// same certificates as ours:
//
// - nginx (the Debian package `nginx`), with a generated config in a temp folder: TLS 1.2,
//   the CA's server certificate, `ssl_verify_client on` against the CA and its CRL, the 1 MB
//   image at /fw/firmware.bin, and 304 for `?curimage=<newest>` (a `map` on the query argument
//   and `return 304`, after the full handshake with the client certificate).
// - `openssl s_server -WWW` (the ESP32 framework's update server), with client certificates required
//   (`-Verify 1 -CAfile`, CRL checked): it serves files below its working folder and takes the
//   request path, query included, as the file name, so the folder holds
//   `fw/firmware.bin?curimage=<old>` (the image) and `fw/firmware.bin?curimage=<newest>` (empty).
//   It cannot answer 304: its "check" is 200 with an empty body. It handles one connection at
//   a time and sends no Content-Length.
import { spawn, spawnSync, ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync, linkSync, copyFileSync } from 'node:fs';
import * as net from 'node:net';
import * as path from 'node:path';

export interface RunningReference {
  /** The main process (nginx master, s_server). */
  pid: number;
  /** Every process serving (nginx master and workers). */
  pids(): number[];
  port: number;
  version: string;
  /** What the bench configured, for the report. */
  settings: string[];
  log(): string;
  stop(): Promise<void>;
}

export interface ReferenceFiles {
  /** PEM files of the CA store. */
  certificate: string;
  privateKey: string;
  ca: string;
  crl: string;
  image: string;
  imageMd5: string;
  oldImage: string;
  newImage: string;
}

const NGINX_CANDIDATES = ['nginx', '/usr/sbin/nginx'];

/** The nginx binary, or a clear error: the bench does not install anything itself. */
export function findNginx(): { bin: string; version: string } {
  for (const bin of NGINX_CANDIDATES) {
    const r = spawnSync(bin, ['-v'], { encoding: 'utf8' });
    if (!r.error && r.status === 0) return { bin, version: ((r.stderr || r.stdout).match(/nginx\/(\S+)/) ?? [])[1] ?? 'unknown' };
  }
  throw new Error('nginx is not installed (looked for `nginx` on PATH and /usr/sbin/nginx): run `apt-get install -y nginx` (the Debian package), then run the bench again');
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

function canConnect(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.connect({ host: '127.0.0.1', port });
    s.once('connect', () => {
      s.destroy();
      resolve(true);
    });
    s.once('error', () => resolve(false));
  });
}

function collector(child: ChildProcess): () => string {
  let output = '';
  const collect = (chunk: Buffer): void => {
    output += chunk.toString();
    if (output.length > 200_000) output = output.slice(-100_000);
  };
  child.stdout?.on('data', collect);
  child.stderr?.on('data', collect);
  return () => output;
}

async function waitListening(child: ChildProcess, port: number, what: string, log: () => string): Promise<void> {
  const until = Date.now() + 10_000;
  while (!(await canConnect(port))) {
    if (child.exitCode !== null || Date.now() > until) {
      child.kill('SIGKILL');
      throw new Error(`${what} did not start listening on 127.0.0.1:${port}: ${log().trim().slice(-2000)}`);
    }
    await sleep(50);
  }
}

function stopper(child: ChildProcess, signal: NodeJS.Signals, onExit: () => void): () => Promise<void> {
  return async () => {
    process.off('exit', onExit);
    if (child.exitCode !== null || child.signalCode !== null) return;
    const exited = new Promise((r) => child.once('exit', r));
    child.kill(signal);
    await Promise.race([exited, sleep(5_000)]);
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  };
}

/** Child processes of `pid` (scanning /proc: the nginx workers of the master). */
export function childPids(pid: number): number[] {
  const out: number[] = [];
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    try {
      const stat = readFileSync(`/proc/${name}/stat`, 'utf8');
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
      if (ppid === pid) out.push(Number(name));
    } catch {
      // gone
    }
  }
  return out;
}

/**
 * nginx on 127.0.0.1:`port` with a generated config in `dir`:
 * `nginx -p <dir> -c <dir>/nginx.conf -g 'daemon off; pid <dir>/nginx.pid;'`.
 */
export async function startNginx(dir: string, port: number, files: ReferenceFiles, opts: { workers: string }): Promise<RunningReference> {
  const { bin, version } = findNginx();
  mkdirSync(path.join(dir, 'temp'), { recursive: true });
  const www = path.join(dir, 'www');
  mkdirSync(www, { recursive: true });
  const image = path.join(www, 'image.bin');
  copyFileSync(files.image, image);
  const settings = [
    `worker_processes ${opts.workers}`,
    'events { worker_connections 4096 }',
    'access_log off',
    'listen 127.0.0.1 ssl (default backlog 511)',
    'ssl_protocols TLSv1.2',
    'ssl_verify_client on; ssl_client_certificate = the CA; ssl_crl = the CA CRL',
    'ssl_session_tickets off (the clients offer none anyway)',
    'location = /fw/firmware.bin: map $arg_curimage -> return 304 for the newest, else alias the image + add_header x-MD5',
  ];
  const conf = [
    // The workers must read the image in the bench's 0700 temp folder; under root they would run as nobody.
    ...(process.getuid?.() === 0 ? ['user root root;'] : []),
    `worker_processes ${opts.workers};`,
    `error_log ${path.join(dir, 'error.log')} warn;`,
    'events { worker_connections 4096; }',
    'http {',
    '  access_log off;',
    '  default_type application/octet-stream;',
    '  sendfile on;',
    `  client_body_temp_path ${path.join(dir, 'temp', 'body')};`,
    `  proxy_temp_path ${path.join(dir, 'temp', 'proxy')};`,
    `  fastcgi_temp_path ${path.join(dir, 'temp', 'fastcgi')};`,
    `  uwsgi_temp_path ${path.join(dir, 'temp', 'uwsgi')};`,
    `  scgi_temp_path ${path.join(dir, 'temp', 'scgi')};`,
    `  map $arg_curimage $fw_latest { "${files.newImage}" 1; default 0; }`,
    '  server {',
    `    listen 127.0.0.1:${port} ssl;`,
    '    server_name localhost;',
    `    ssl_certificate ${files.certificate};`,
    `    ssl_certificate_key ${files.privateKey};`,
    '    ssl_protocols TLSv1.2;',
    `    ssl_client_certificate ${files.ca};`,
    `    ssl_crl ${files.crl};`,
    '    ssl_verify_client on;',
    '    ssl_session_tickets off;',
    '    location = /fw/firmware.bin {',
    '      if ($fw_latest) { return 304; }',
    `      alias ${image};`,
    `      add_header x-MD5 ${files.imageMd5};`,
    '    }',
    '    location / { return 404; }',
    '  }',
    '}',
    '',
  ].join('\n');
  const confFile = path.join(dir, 'nginx.conf');
  writeFileSync(confFile, conf);
  const test = spawnSync(bin, ['-t', '-p', dir, '-c', confFile, '-g', `pid ${path.join(dir, 'nginx.pid')};`], { encoding: 'utf8' });
  if (test.status !== 0) throw new Error(`nginx -t refused the generated config ${confFile}: ${(test.stderr + test.stdout).trim()}`);
  const child = spawn(bin, ['-p', dir, '-c', confFile, '-g', `daemon off; pid ${path.join(dir, 'nginx.pid')};`], { stdio: ['ignore', 'pipe', 'pipe'] });
  const onExit = (): void => {
    if (child.exitCode === null) child.kill('SIGKILL');
  };
  process.on('exit', onExit);
  const out = collector(child);
  const log = (): string => {
    const file = path.join(dir, 'error.log');
    return out() + (existsSync(file) ? readFileSync(file, 'utf8').slice(-20_000) : '');
  };
  await waitListening(child, port, 'nginx', log);
  const pid = child.pid!;
  // SIGTERM: nginx's fast shutdown (SIGQUIT would wait for open connections).
  return { pid, pids: () => [pid, ...childPids(pid)], port, version, settings, log, stop: stopper(child, 'SIGTERM', onExit) };
}

export function opensslVersion(): string {
  const r = spawnSync('openssl', ['version'], { encoding: 'utf8' });
  if (r.error || r.status !== 0) throw new Error('openssl is not installed: run `apt-get install -y openssl`');
  return r.stdout.trim();
}

/** `openssl s_server -WWW` on 127.0.0.1:`port`, serving `dir`, client certificates required. */
export async function startSServer(dir: string, port: number, files: ReferenceFiles): Promise<RunningReference> {
  const version = opensslVersion();
  const fw = path.join(dir, 'fw');
  mkdirSync(fw, { recursive: true });
  // The request path, query included, is the file name (s_server -WWW).
  const download = path.join(fw, `firmware.bin?curimage=${files.oldImage}`);
  try {
    linkSync(files.image, download);
  } catch {
    copyFileSync(files.image, download);
  }
  writeFileSync(path.join(fw, `firmware.bin?curimage=${files.newImage}`), '');
  const args = [
    's_server',
    '-WWW',
    '-quiet',
    '-accept',
    `127.0.0.1:${port}`,
    '-cert',
    files.certificate,
    '-key',
    files.privateKey,
    '-tls1_2',
    '-Verify',
    '1',
    '-CAfile',
    files.ca,
    '-CRL',
    files.crl,
    '-crl_check_all',
  ];
  const child = spawn('openssl', args, { cwd: dir, stdio: ['ignore', 'pipe', 'pipe'] });
  const onExit = (): void => {
    if (child.exitCode === null) child.kill('SIGKILL');
  };
  process.on('exit', onExit);
  const log = collector(child);
  await waitListening(child, port, 'openssl s_server', log);
  const pid = child.pid!;
  const settings = [`openssl ${args.map((a) => (a.includes(' ') ? JSON.stringify(a) : a)).join(' ').replace(dir, '<dir>')}`, 'one connection at a time; listen backlog 4096 (SOMAXCONN)'];
  return { pid, pids: () => [pid], port, version, settings, log, stop: stopper(child, 'SIGTERM', onExit) };
}
