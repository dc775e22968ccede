/**
 * Runs an async job (typically "write the current state to disk") so that runs never overlap
 * and requests made while one is waiting share that next run. Each caller's promise settles
 * after a run that started after its request, so it sees the state the caller had changed.
 */
export class CoalescingTask {
  private running: Promise<void> | undefined;
  private queued: Promise<void> | undefined;

  constructor(private readonly job: () => Promise<void>) {}

  request(): Promise<void> {
    if (this.queued) return this.queued;
    const previous = this.running ?? Promise.resolve();
    const next: Promise<void> = previous
      .catch(() => undefined)
      .then(() => {
        this.queued = undefined;
        this.running = next;
        return this.job();
      })
      .finally(() => {
        if (this.running === next) this.running = undefined;
      });
    this.queued = next;
    return next;
  }

  /** Settles when nothing is queued or running. */
  async idle(): Promise<void> {
    while (this.queued || this.running) await (this.queued ?? this.running)!.catch(() => undefined);
  }
}
