/**
 * The timers of one simulated device's boot: a reset or a stop clears them all at once, as a
 * real reset ends whatever the firmware had scheduled.
 */
export class DeviceTimers {
  private readonly all = new Set<NodeJS.Timeout>();

  /** Runs `fn` after `ms`, unless cleared first. */
  later(ms: number, fn: () => void): void {
    const t = setTimeout(() => {
      this.all.delete(t);
      fn();
    }, ms);
    this.all.add(t);
  }

  /** Waits `ms` (the device is working); rejects when `signal` aborts (the boot ended). */
  pause(ms: number, signal: AbortSignal): Promise<void> {
    if (signal.aborted) return Promise.reject(new Error('aborted'));
    if (ms <= 0) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const t = setTimeout(() => {
        this.all.delete(t);
        signal.removeEventListener('abort', onAbort);
        resolve();
      }, ms);
      this.all.add(t);
      const onAbort = (): void => {
        clearTimeout(t);
        this.all.delete(t);
        reject(new Error('aborted'));
      };
      signal.addEventListener('abort', onAbort, { once: true });
    });
  }

  clear(): void {
    for (const t of this.all) clearTimeout(t);
    this.all.clear();
  }
}
