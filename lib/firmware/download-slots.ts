import { Release, Semaphore } from '../concurrency/semaphore';

/**
 * The cap on concurrent downloads, shared by every process that serves them: the in-process
 * server and its forked workers (owner 0 is the in-process server, 1..N-1 the workers). The
 * counting is a Semaphore that never queues (a download over the cap gets a 503 at once); this
 * adds slot ids that cross the IPC channel and who holds which, so a worker that exits loses
 * its slots here and a crash never leaks the cap.
 */
export class DownloadSlotPool {
  private readonly slots: Semaphore;
  private readonly held = new Map<number, Map<number, Release>>();
  private nextId = 1;

  constructor(readonly limit: number) {
    this.slots = new Semaphore(limit, { maxWaiting: 0 });
  }

  get inUse(): number {
    return this.slots.inUse;
  }

  /** A slot id, or undefined when `limit` downloads are under way. */
  acquire(owner: number): number | undefined {
    const release = this.slots.tryAcquire();
    if (!release) return undefined;
    const id = this.nextId++;
    let mine = this.held.get(owner);
    if (!mine) this.held.set(owner, (mine = new Map()));
    mine.set(id, release);
    return id;
  }

  /** True when the slot was held (a second release of the same slot is a no-op). */
  release(owner: number, id: number): boolean {
    const mine = this.held.get(owner);
    const release = mine?.get(id);
    if (!release) return false;
    mine!.delete(id);
    release();
    return true;
  }

  /** Frees every slot of an owner (a worker that exited); returns their ids. */
  releaseAll(owner: number): number[] {
    const mine = this.held.get(owner);
    this.held.delete(owner);
    if (!mine) return [];
    for (const release of mine.values()) release();
    return [...mine.keys()];
  }
}
