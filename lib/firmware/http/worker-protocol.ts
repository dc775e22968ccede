import type { ImageRequest } from '../image-source';
import type { ServingLimits } from '../connection-guard';
import type { UpdateEvent, UpdateServerOptions } from './update-types';

// The messages between the update server's first process and its forked workers
// (update-workers.ts, update-worker.ts), over Node's IPC channel with JSON serialisation.

/**
 * What a worker needs to serve: the serialisable part of UpdateServerOptions, with the caps and
 * deadlines of each worker (each process counts its own connections).
 */
export interface WorkerSettings extends ServingLimits {
  worker: number;
  tls: UpdateServerOptions['tls'];
  clientCertificates: UpdateServerOptions['clientCertificates'];
  downloadPath: string;
  deviceFilesDir: string;
  maxConcurrentDownloads: number;
  retryAfterSeconds?: number;
  imageCacheBytes?: number;
}

export type WorkerQuestion = { k: 'next'; request: ImageRequest } | { k: 'config'; deviceId?: string } | { k: 'slot' };
export type SlotReply = { slot: number } | { inUse: number };

/**
 * An item of a worker's outbox: a question, an event (with the slot of its download), a
 * download's progress (its slot, bytes and percent: the rest is in its download-start, which the
 * first process keeps, so the up to 20 of a download stay small on the channel), or a slot
 * given back.
 */
export type WorkerOutItem =
  | { ask: number; q: WorkerQuestion }
  | { event: UpdateEvent; slot?: number }
  | { progress: number; at: string; bytes: number; percent: number }
  | { release: number };
export type WorkerAnswer = { id: number; value: unknown } | { id: number; error: string };

export type ToWorker =
  | { t: 'init'; settings: WorkerSettings }
  | { t: 'answers'; items: WorkerAnswer[] }
  | { t: 'crl'; crl: string; seq: number }
  | { t: 'close' };
export type FromWorker = { t: 'ready' } | { t: 'out'; items: WorkerOutItem[] } | { t: 'crl-applied'; seq: number } | { t: 'closed' };
