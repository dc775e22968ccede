// A forked worker of the update server (lib/firmware/http/update-workers.ts): the same express app
// and TLS settings as the process that forked it, on the listening socket it was handed. It
// keeps no state of its own beyond the image cache: the answer to each check, config.json and
// the download slots come from the parent over IPC, and its events go back there.
import type { Server } from 'node:net';
import type { ImageAnswer, ImageRequest } from '../image-source';
import { createUpdateRequestListener } from './fast-path';
import { createUpdateHttpsServer } from './tls-listener';
import { Revocation } from './revocation';
import type { SlotAnswer, UpdateEvent } from './update-types';
import type { FromWorker, ToWorker, WorkerOutItem, WorkerQuestion, WorkerSettings, SlotReply } from './worker-protocol';

const pending = new Map<number, { resolve(v: unknown): void; reject(e: Error): void }>();
let nextId = 1;
let outbox: WorkerOutItem[] = [];
let setCrl: ((crl: string) => number) | undefined;
let close: (() => Promise<void>) | undefined;

function send(m: FromWorker): void {
  if (process.connected) process.send?.(m, undefined, undefined, () => undefined);
}

function ask(q: WorkerQuestion): Promise<unknown> {
  return new Promise((resolve, reject) => {
    if (!process.connected) return reject(new Error('the update server process is gone'));
    const id = nextId++;
    pending.set(id, { resolve, reject });
    queue({ ask: id, q });
  });
}

/** Questions, events and released slots go out together, once per event-loop turn, in order. */
function queue(item: WorkerOutItem): void {
  if (outbox.length === 0) setImmediate(flush);
  outbox.push(item);
}
function flush(): void {
  const items = outbox;
  outbox = [];
  if (items.length) send({ t: 'out', items });
}

function start(settings: WorkerSettings, handle: Server): void {
  const worker = settings.worker;
  const options = {
    ...settings,
    deviceConfig: (deviceId: string | undefined) => ask({ k: 'config', deviceId }) as Promise<Record<string, unknown>>,
    images: { next: (request: ImageRequest) => ask({ k: 'next', request }) as Promise<ImageAnswer> },
  };
  // The CRL's serials only: the parent's isRevoked does not cross processes.
  const revocation = new Revocation(settings.tls.crl);
  const listener = createUpdateRequestListener(options, {
    worker,
    revocation,
    onEvent: (event: UpdateEvent, slot?: number) => {
      if (event.type === 'download-progress' && slot !== undefined) return queue({ progress: slot, at: event.at, bytes: event.bytes!, percent: event.percent! });
      queue(slot === undefined ? { event } : { event, slot });
    },
    acquireSlot: async (): Promise<SlotAnswer> => {
      const r = (await ask({ k: 'slot' })) as SlotReply;
      if (!('slot' in r)) return r;
      let released = false;
      return {
        id: r.slot,
        release: () => {
          if (released) return;
          released = true;
          queue({ release: r.slot });
        },
      };
    },
  });
  const https = createUpdateHttpsServer(settings, listener, (event) => queue({ event }), worker, revocation);
  setCrl = https.setCrl;
  close = https.close;
  https.server.once('error', (err) => {
    console.error(`update server worker ${worker}: ${err.message}`);
    process.exit(1);
  });
  // The parent's listening socket: this process accepts on it too.
  https.server.listen(handle, () => send({ t: 'ready' }));
}

process.on('message', (m: ToWorker, handle?: Server) => {
  switch (m.t) {
    case 'init':
      if (!handle) throw new Error('update server worker: no listening socket came with init');
      start(m.settings, handle);
      return;
    case 'answers':
      for (const a of m.items) {
        const p = pending.get(a.id);
        pending.delete(a.id);
        if ('error' in a) p?.reject(new Error(a.error));
        else p?.resolve(a.value);
      }
      return;
    case 'crl':
      // Handshakes, requests and open connections alike (the connections it revokes are closed here).
      try {
        setCrl?.(m.crl);
      } catch (err) {
        console.error(`update server worker: the new CRL was not loaded: ${(err as Error).message}`);
      }
      send({ t: 'crl-applied', seq: m.seq });
      return;
    case 'close':
      flush();
      (close?.() ?? Promise.resolve()).finally(() => {
        flush();
        send({ t: 'closed' });
        process.disconnect();
      });
      return;
  }
});

// The parent is gone (closed, crashed, or Node-RED stopped): so is this worker.
process.on('disconnect', () => {
  for (const p of pending.values()) p.reject(new Error('the update server process is gone'));
  pending.clear();
  void (close?.() ?? Promise.resolve()).finally(() => process.exit(0));
  setTimeout(() => process.exit(0), 2_000).unref();
});
