/** Gives a slot back; a second call is a no-op, so a holder cannot free someone else's slot. */
export type Release = () => void;

export interface SemaphoreOptions {
  /**
   * Callers that may wait for a slot at once (default: no bound). `acquire()` beyond it
   * rejects with SemaphoreFullError instead of queueing; 0 means "never wait" (`tryAcquire`).
   */
  maxWaiting?: number;
}

export class SemaphoreFullError extends Error {
  constructor(readonly size: number, readonly waiting: number) {
    super(`all ${size} slots are taken and ${waiting} callers wait already`);
    this.name = 'SemaphoreFullError';
  }
}

/** Thrown into every waiting `acquire()` by `cancelWaiting()`. */
export class SemaphoreCancelledError extends Error {
  constructor(reason: string) {
    super(reason);
    this.name = 'SemaphoreCancelledError';
  }
}

interface Waiter {
  grant(release: Release): void;
  cancel(err: Error): void;
}

/**
 * A counting semaphore: at most `size` holders at once, the others wait first come first
 * served. A freed slot goes straight to the longest waiter, so a newcomer never overtakes the
 * queue (`tryAcquire` only succeeds when nobody waits).
 */
export class Semaphore {
  readonly size: number;
  private readonly maxWaiting: number;
  private taken = 0;
  private readonly queue: Waiter[] = [];

  /** `size` is rounded down (0: every acquire waits; Infinity: no cap). */
  constructor(size: number, options: SemaphoreOptions = {}) {
    if (!(size >= 0)) throw new RangeError(`a semaphore needs a size of 0 or more, got ${String(size)}`);
    this.size = Math.floor(size);
    this.maxWaiting = options.maxWaiting ?? Number.POSITIVE_INFINITY;
  }

  /** Slots held now. */
  get inUse(): number {
    return this.taken;
  }

  /** Callers waiting for a slot now. */
  get waiting(): number {
    return this.queue.length;
  }

  /** A slot now, or undefined when all are taken (never waits). */
  tryAcquire(): Release | undefined {
    if (this.taken >= this.size || this.queue.length > 0) return undefined;
    this.taken++;
    return this.releaser();
  }

  /** A slot, as soon as one is free and every earlier caller has had theirs. */
  acquire(): Promise<Release> {
    const now = this.tryAcquire();
    if (now) return Promise.resolve(now);
    if (this.queue.length >= this.maxWaiting) return Promise.reject(new SemaphoreFullError(this.size, this.queue.length));
    return new Promise<Release>((grant, cancel) => this.queue.push({ grant, cancel }));
  }

  /** Runs `job` in a slot; the slot is given back however the job ends. */
  async run<T>(job: () => T | Promise<T>): Promise<T> {
    const release = await this.acquire();
    try {
      return await job();
    } finally {
      release();
    }
  }

  /** Every waiting `acquire()` rejects (e.g. on close); holders keep their slots. */
  cancelWaiting(reason = 'cancelled'): void {
    for (const w of this.queue.splice(0)) w.cancel(new SemaphoreCancelledError(reason));
  }

  private releaser(): Release {
    let held = true;
    return () => {
      if (!held) return;
      held = false;
      const next = this.queue.shift();
      // The slot passes to the next waiter as it is: `taken` stays, nobody can slip in between.
      if (next) next.grant(this.releaser());
      else this.taken--;
    };
  }
}
