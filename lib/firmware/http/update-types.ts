import type { ImageSource } from '../image-source';
import type { ServingLimits } from '../connection-guard';
import type { Revocation } from './revocation';
import type * as https from 'node:https';

// The update server's vocabulary (docs/wire-contract.md, Update server): its options, its audit
// events and the handle of a running server. The domain's questions and answers are in
// lib/firmware/image-source.ts.

export type UpdateEventType = 'check' | 'not-modified' | 'download-start' | 'download-progress' | 'download-complete' | 'download-aborted' | 'rejected' | 'file';

export interface UpdateEvent {
  type: UpdateEventType;
  at: string;
  deviceId?: string;
  /** Serial of the client certificate, when one was presented. */
  certificateSerial?: string;
  /** True when deviceId comes from a verified certificate; false when only from a header. */
  authenticated?: boolean;
  path: string;
  status: number;
  image?: string;
  sha256?: string;
  /**
   * Download events: the bytes of this response's body (the whole image, or a Range's slice);
   * download-progress: how much of it the socket has taken; download-complete/-aborted: sent.
   */
  bytes?: number;
  /** Download events: the image's size. */
  total?: number;
  /** Download events: the image's first byte in this response (0 unless a Range asked for a slice, status 206). */
  offset?: number;
  /**
   * download-progress: `offset + bytes` of `total`, a whole number, of the whole image also for
   * a slice (100 only once the image's last byte was flushed).
   */
  percent?: number;
  ms?: number;
  reason?: string;
  remoteAddress?: string;
  /** With `workers` > 1: which process answered (0 = the one that started the server, 1.. = forked workers). */
  worker?: number;
}

export interface WorkerInfo {
  worker: number;
  pid?: number;
  event: 'started' | 'exited';
  code?: number | null;
  signal?: string | null;
  /** After an exit the node did not ask for: when the worker is started again. */
  restartInMs?: number;
}

export interface UpdateServerOptions extends Partial<ServingLimits> {
  tls: { key: string; cert: string; ca: string; crl?: string };
  /** `required`: only devices with a certificate of the CA; `optional`: others get the public endpoints. */
  clientCertificates: 'required' | 'optional';
  /** URL prefix of the downloads, e.g. `/fw` (docs/wire-contract.md: https://host:port/<downloadpath>). */
  downloadPath: string;
  /** Where `ca.crt`, `<id>.crt` and `<id>.key` are (the CA store's devices/ folder). */
  deviceFilesDir: string;
  /** config.json for a device: defaults merged with its overrides. */
  deviceConfig(deviceId: string | undefined): Record<string, unknown> | Promise<Record<string, unknown>>;
  images: ImageSource;
  maxConcurrentDownloads?: number;
  retryAfterSeconds?: number;
  /** Memory for images shared by downloads (default 64 MiB). */
  imageCacheBytes?: number;
  onEvent?(event: UpdateEvent): void;
  /**
   * Processes that accept connections (default 1: this one only). N > 1 forks N - 1 workers
   * (dist/lib/firmware/http/update-worker.js) that share the listening socket; this process keeps
   * answering too, owns `images`, `deviceConfig`, the download cap and `onEvent`, and the
   * workers ask it over IPC. A worker that dies is started again.
   */
  workers?: number;
  /** Workers started, exited (and restarted): for logs. */
  onWorker?(info: WorkerInfo): void;
  /**
   * Whether a certificate serial (upper-case hex, as Node formats `serialNumber`) is revoked
   * now, asked on every request of a verified client: closes the gap between a revocation and
   * the CRL that lists it reaching `setCrl`. This process only (a function does not cross to
   * the workers; they go by the CRL). The CRL's own serials are refused without it.
   */
  isRevoked?(serial: string): boolean;
}

export type SlotAnswer = { id?: number; release(): void } | { inUse: number };

/** What a forked worker's app gets instead of the in-process defaults (lib/firmware/http/update-worker.ts). */
export interface AppInternals {
  /** Shared cap: a slot (with its release), or how many are under way when none is free. */
  acquireSlot(): SlotAnswer | Promise<SlotAnswer>;
  worker?: number;
  /** Instead of options.onEvent; `slot` names the download slot a download event belongs to. */
  onEvent?(event: UpdateEvent, slot?: number): void;
  /** The serials refused on every request (shared with the HTTPS server, which loads each CRL into it). */
  revocation?: Revocation;
}

export interface RunningUpdateServer {
  port: number;
  server: https.Server;
  /**
   * Loads a new CRL (call it whenever the CA re-signs its CRL): new handshakes are checked
   * against it, every request from then on too, and every open connection whose certificate
   * it lists is closed. This process does so at once; the promise resolves when every worker
   * process has done the same.
   */
  setCrl(crlPem: string): Promise<void>;
  /** Process ids of the forked workers now running (empty with one process). */
  workerPids(): number[];
  close(): Promise<void>;
}
