import { fork, ChildProcess } from 'node:child_process';
import type { Server } from 'node:net';
import * as path from 'node:path';
import type { DownloadSlotPool } from '../download-slots';
import type { ImageAnswer } from '../image-source';
import { servingLimits } from '../connection-guard';
import type { UpdateEvent, UpdateServerOptions, WorkerInfo } from './update-types';
import type { FromWorker, SlotReply, ToWorker, WorkerAnswer, WorkerOutItem, WorkerQuestion, WorkerSettings } from './worker-protocol';

export type { WorkerInfo };

// The update server on more than one core. The process that calls startUpdateServer (in
// Node-RED: the node) listens and serves as before, and forks workers that accept on the same
// listening socket (the kernel hands each new connection to one of them). Everything with
// state stays in that first process: the catalogue (`images`), `deviceConfig`, the download
// cap and `onEvent`. A worker asks it over the IPC channel for the answer of each check and for
// a download slot, and sends its events back; both ways, what one event-loop turn produced goes
// as one IPC message (under load, many questions and events share a message).


export interface WorkerPool {
  pids(): number[];
  /** Resolves when every running worker uses the new CRL (or has exited). */
  setCrl(crl: string): Promise<void>;
  close(): Promise<void>;
}

/** The worker entry point, compiled beside this file. */
export const WORKER_SCRIPT = path.join(__dirname, 'update-worker.js');
/**
 * A worker's own V8 flags (none of the host's: `--inspect` would collide on its port). A small
 * young generation: a worker's objects live for one request, and 1,000 slow downloads should
 * not cost a 16 MB semi-space per process.
 */
export const WORKER_EXEC_ARGV = ['--max-semi-space-size=2'];
const READY_TIMEOUT_MS = 15_000;

/** Forks `count` workers (numbered 1..count) on `server`'s listening socket; resolves when all listen. */
export async function startWorkers(p: {
  count: number;
  server: Server;
  options: UpdateServerOptions;
  slots: DownloadSlotPool;
  crl(): string | undefined;
}): Promise<WorkerPool> {
  const { options, slots } = p;
  const limits = servingLimits(options);
  const children = new Map<number, ChildProcess>();
  /** download-start events by worker and slot: what to report when a worker dies mid-download. */
  const open = new Map<string, UpdateEvent>();
  const failures = new Map<number, number[]>();
  let closing = false;
  let crlSeq = 0;
  /** Workers that have not yet confirmed a CRL, by sequence number. */
  const crlWaits = new Map<number, { waiting: Set<number>; done(): void }>();
  const crlApplied = (worker: number, upTo: number): void => {
    for (const [seq, w] of crlWaits) {
      if (seq > upTo) continue;
      w.waiting.delete(worker);
      if (w.waiting.size === 0) {
        crlWaits.delete(seq);
        w.done();
      }
    }
  };
  const timers = new Set<NodeJS.Timeout>();

  const answer = async (q: WorkerQuestion, worker: number): Promise<unknown> => {
    switch (q.k) {
      case 'next':
        return (await options.images.next(q.request)) satisfies ImageAnswer;
      case 'config':
        return options.deviceConfig(q.deviceId);
      case 'slot': {
        const slot = slots.acquire(worker);
        return (slot === undefined ? { inUse: slots.inUse } : { slot }) satisfies SlotReply;
      }
    }
  };

  const take = (worker: number, items: WorkerOutItem[], reply: (a: WorkerAnswer) => void): void => {
    for (const item of items) {
      if ('ask' in item) {
        const id = item.ask;
        answer(item.q, worker).then(
          (value) => reply({ id, value }),
          (err: unknown) => reply({ id, error: err instanceof Error ? err.message : String(err) }),
        );
        continue;
      }
      if ('release' in item) {
        slots.release(worker, item.release);
        open.delete(`${worker}:${item.release}`);
        continue;
      }
      if ('progress' in item) {
        // Rebuilt from its download-start; late progress of a download already reported aborted
        // here (its worker exited) finds none and is dropped.
        const start = open.get(`${worker}:${item.progress}`);
        // (`offset` and `total` too: they place a Range's slice in the image.)
        if (start) options.onEvent?.({ ...start, type: 'download-progress', at: item.at, bytes: item.bytes, percent: item.percent });
        continue;
      }
      if (item.slot !== undefined && item.event.type === 'download-start') open.set(`${worker}:${item.slot}`, item.event);
      options.onEvent?.(item.event);
    }
  };

  const orphaned = (worker: number): void => {
    for (const slot of slots.releaseAll(worker)) {
      const start = open.get(`${worker}:${slot}`);
      open.delete(`${worker}:${slot}`);
      if (!start) continue;
      const { at: _at, bytes: _bytes, ...rest } = start;
      void _at, void _bytes;
      options.onEvent?.({ ...rest, type: 'download-aborted', at: new Date().toISOString(), reason: `worker ${worker} (the process serving it) exited` });
    }
  };

  const spawn = (worker: number): Promise<void> =>
    new Promise((resolve, reject) => {
      const child = fork(WORKER_SCRIPT, [], { execArgv: WORKER_EXEC_ARGV, stdio: ['ignore', 'inherit', 'inherit', 'ipc'], serialization: 'json' });
      children.set(worker, child);
      let ready = false;
      const timer = setTimeout(() => {
        child.kill('SIGKILL');
        reject(new Error(`update server worker ${worker} did not start within ${READY_TIMEOUT_MS / 1000} s`));
      }, READY_TIMEOUT_MS);
      let answers: WorkerAnswer[] = [];
      const reply = (a: WorkerAnswer): void => {
        if (answers.length === 0) {
          setImmediate(() => {
            const items = answers;
            answers = [];
            if (child.connected) child.send({ t: 'answers', items } satisfies ToWorker, undefined, undefined, () => undefined);
          });
        }
        answers.push(a);
      };
      child.on('message', (m: FromWorker) => {
        switch (m.t) {
          case 'ready':
            ready = true;
            clearTimeout(timer);
            options.onWorker?.({ worker, pid: child.pid, event: 'started' });
            resolve();
            return;
          case 'out':
            take(worker, m.items, reply);
            return;
          case 'crl-applied':
            crlApplied(worker, m.seq);
            return;
          case 'closed':
            return;
        }
      });
      child.on('error', () => undefined);
      child.on('exit', (code, signal) => {
        clearTimeout(timer);
        if (children.get(worker) === child) children.delete(worker);
        orphaned(worker);
        // A worker started again gets the CRL of the moment with its settings.
        crlApplied(worker, Number.MAX_SAFE_INTEGER);
        if (!ready) reject(new Error(`update server worker ${worker} exited while starting (${code ?? signal})`));
        if (closing || !ready) return;
        // Started again; sooner the first time, later when it keeps dying.
        const now = Date.now();
        const recent = (failures.get(worker) ?? []).filter((t) => now - t < 60_000).concat(now);
        failures.set(worker, recent);
        const restartInMs = Math.min(30_000, 250 * 2 ** (recent.length - 1));
        options.onWorker?.({ worker, pid: child.pid, event: 'exited', code, signal, restartInMs });
        const t = setTimeout(() => {
          timers.delete(t);
          if (!closing) spawn(worker).catch(() => undefined);
        }, restartInMs);
        timers.add(t);
      });
      const settings: WorkerSettings = {
        worker,
        tls: { ...options.tls, crl: p.crl() },
        clientCertificates: options.clientCertificates,
        downloadPath: options.downloadPath,
        deviceFilesDir: options.deviceFilesDir,
        maxConcurrentDownloads: slots.limit,
        retryAfterSeconds: options.retryAfterSeconds,
        imageCacheBytes: options.imageCacheBytes,
        ...limits,
      };
      child.send({ t: 'init', settings } satisfies ToWorker, p.server);
    });

  const stopAll = async (): Promise<void> => {
    closing = true;
    for (const t of timers) clearTimeout(t);
    timers.clear();
    await Promise.all(
      [...children.values()].map(
        (child) =>
          new Promise<void>((resolve) => {
            if (child.exitCode !== null || child.signalCode !== null) return resolve();
            const kill = setTimeout(() => child.kill('SIGKILL'), 5_000);
            child.once('exit', () => {
              clearTimeout(kill);
              resolve();
            });
            if (child.connected) child.send({ t: 'close' } satisfies ToWorker, undefined, undefined, () => undefined);
            else child.kill('SIGTERM');
          }),
      ),
    );
  };

  try {
    await Promise.all(Array.from({ length: p.count }, (_, i) => spawn(i + 1)));
  } catch (err) {
    await stopAll();
    throw err;
  }
  return {
    pids: () => [...children.values()].map((c) => c.pid).filter((pid): pid is number => pid !== undefined),
    setCrl: (crl) =>
      new Promise<void>((resolve) => {
        const seq = ++crlSeq;
        const waiting = new Set<number>();
        for (const [worker, child] of children) {
          if (!child.connected) continue;
          waiting.add(worker);
          child.send({ t: 'crl', crl, seq } satisfies ToWorker, undefined, undefined, () => undefined);
        }
        if (waiting.size === 0) return resolve();
        crlWaits.set(seq, { waiting, done: resolve });
      }),
    close: stopAll,
  };
}
