// A forked Node.js child spoken to by request and reply over the IPC channel (used by
// bench/firmware-server for its load generators and its Node.js servers).
import { fork, ChildProcess } from 'node:child_process';

export class IpcError extends Error {}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

export class IpcChild<Cmd, Reply extends { type: string }> {
  readonly errors: string[] = [];
  private waiters: { type: string; resolve: (r: Reply) => void; reject: (e: Error) => void }[] = [];
  private listeners: ((r: Reply) => void)[] = [];

  constructor(
    readonly child: ChildProcess,
    readonly name: string,
  ) {
    child.on('message', (r: Reply) => {
      for (const l of this.listeners) l(r);
      if (r.type === 'error') {
        const message = String((r as unknown as { message?: unknown }).message);
        this.errors.push(message);
        for (const w of this.waiters.splice(0)) w.reject(new IpcError(`${name}: ${message}`));
        return;
      }
      const i = this.waiters.findIndex((w) => w.type === r.type);
      if (i >= 0) this.waiters.splice(i, 1)[0]!.resolve(r);
    });
    child.on('exit', (code, signal) => {
      for (const w of this.waiters.splice(0)) w.reject(new IpcError(`${name} exited (${code ?? signal})`));
    });
  }

  /** Forks `script`; `execArgv` defaults to this process's, less any profiling flags. */
  static fork<C, R extends { type: string }>(script: string, name: string, execArgv?: string[]): IpcChild<C, R> {
    const argv = execArgv ?? process.execArgv.filter((a) => !a.startsWith('--cpu-prof') && !a.startsWith('--prof') && !a.startsWith('--heap-prof'));
    const child = fork(script, [], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'], execArgv: argv });
    // Never leave a child behind, whatever ends this process.
    process.on('exit', () => {
      if (child.exitCode === null) child.kill('SIGKILL');
    });
    return new IpcChild<C, R>(child, name);
  }

  get pid(): number {
    return this.child.pid!;
  }

  /** Calls `listener` with every reply (progress messages). */
  on(listener: (r: Reply) => void): () => void {
    this.listeners.push(listener);
    return () => {
      this.listeners = this.listeners.filter((l) => l !== listener);
    };
  }

  request<T extends Reply['type']>(cmd: Cmd, type: T): Promise<Extract<Reply, { type: T }>> {
    return new Promise((resolve, reject) => {
      if (!this.child.connected) return reject(new IpcError(`${this.name} is gone`));
      this.waiters.push({ type, resolve: resolve as (r: Reply) => void, reject });
      this.child.send(cmd as object);
    });
  }

  async close(cmd: Cmd, closedType: Reply['type']): Promise<void> {
    if (this.child.exitCode !== null || !this.child.connected) return;
    const exited = new Promise((r) => this.child.once('exit', r));
    await Promise.race([this.request(cmd, closedType).catch(() => undefined), sleep(5_000)]);
    if (this.child.connected) this.child.disconnect();
    await Promise.race([exited, sleep(5_000)]);
    if (this.child.exitCode === null && this.child.signalCode === null) this.child.kill('SIGKILL');
  }
}
