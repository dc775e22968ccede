import type { AddressInfo } from 'node:net';
import { DownloadSlotPool } from '../download-slots';
import { createUpdateRequestListener } from './fast-path';
import { localSlots } from './handlers';
import { Revocation } from './revocation';
import { createUpdateHttpsServer } from './tls-listener';
import { startWorkers, WorkerPool } from './update-workers';
import type { RunningUpdateServer, UpdateEvent, UpdateServerOptions } from './update-types';

/**
 * Starts the app on HTTPS with client certificates checked against the CA (and its CRL);
 * with `workers` > 1 also the workers that share its socket (update-workers.ts).
 */
export async function startUpdateServer(options: UpdateServerOptions & { port: number; host?: string }): Promise<RunningUpdateServer> {
  const count = Math.max(1, Math.floor(options.workers ?? 1));
  const slots = new DownloadSlotPool(options.maxConcurrentDownloads ?? 20);
  const worker = count > 1 ? 0 : undefined;
  const onEvent = (event: UpdateEvent): void => options.onEvent?.(event);
  const revocation = new Revocation(options.tls.crl, options.isRevoked);
  const serving = createUpdateHttpsServer(options, createUpdateRequestListener(options, { acquireSlot: localSlots(slots), worker, revocation }), onEvent, worker, revocation);
  const { server } = serving;
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port, options.host ?? '0.0.0.0', () => resolve());
  });
  let crl = options.tls.crl;
  let workers: WorkerPool | undefined;
  if (count > 1) {
    try {
      workers = await startWorkers({ count: count - 1, server, options, slots, crl: () => crl });
    } catch (err) {
      await serving.close();
      throw err;
    }
  }
  return {
    port: (server.address() as AddressInfo).port,
    server,
    workerPids: () => workers?.pids() ?? [],
    setCrl: async (pem) => {
      serving.setCrl(pem);
      crl = pem;
      await workers?.setCrl(pem);
    },
    close: async () => {
      await workers?.close();
      await serving.close();
    },
  };
}
