import { KeyedLock } from './keyed-lock';

/**
 * One job at a time, in the order asked for: a KeyedLock with a single key. A failing job does
 * not block the ones behind it.
 */
export class Mutex {
  private readonly lock = new KeyedLock();

  run<T>(job: () => Promise<T>): Promise<T> {
    return this.lock.run('', job);
  }

  /** Settles once every job asked for so far has ended. */
  idle(): Promise<void> {
    return this.lock.run('', () => Promise.resolve());
  }
}
