import { spawn, spawnSync } from 'node:child_process';

export interface CommandResult {
  status: number | null;
  stdout: string;
  stderr: string;
}

/** Runs the real openssl CLI; tests use it as the independent judge of what we produce. */
export function openssl(args: string[], input?: string): CommandResult {
  const r = spawnSync('openssl', args, { input, encoding: 'utf8' });
  if (r.error) throw r.error;
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

export function opensslOk(args: string[], input?: string): string {
  const r = openssl(args, input);
  if (r.status !== 0) throw new Error(`openssl ${args.join(' ')} failed: ${r.stderr}`);
  return r.stdout;
}

/**
 * An ESP8266-like handshake by `openssl s_client` (TLS 1.2, max_fragment_length 512) with a
 * device's files; with `input` it sends that and waits for the server to close (a request),
 * without it it leaves after the handshake. Resolves with everything it printed. Async,
 * because the server answering it may run in this very process.
 */
export function opensslEspHandshake(port: number, files: { cert: string; key: string; ca: string }, input?: string): Promise<string> {
  return new Promise<string>((resolve, reject) => {
    const args = ['s_client', '-connect', `127.0.0.1:${port}`, '-servername', 'localhost', '-tls1_2', '-maxfraglen', '512', '-tlsextdebug', ...(input ? ['-ign_eof'] : [])];
    const child = spawn('openssl', [...args, '-cert', files.cert, '-key', files.key, '-CAfile', files.ca]);
    let text = '';
    child.stdout.on('data', (c: Buffer) => (text += c.toString()));
    child.stderr.on('data', (c: Buffer) => (text += c.toString()));
    child.on('error', reject);
    child.on('close', () => resolve(text));
    child.stdin.end(input ?? '');
  });
}
