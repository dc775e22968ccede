import { Jitter } from './jitter';

/** Attempts wait at most this many times `retrytimeout`. */
export const MAX_BACKOFF_FACTOR = 8;

/**
 * When a device tries the backend (MQTT) again, and when it gives up and reboots, as the firmware
 * core decides it (docs/wire-contract.md, Device timing). Times are milliseconds of a clock that
 * may wrap (the firmware's `millis()`), so only differences are compared.
 *
 * - Full jitter (AWS Architecture Blog, "Exponential Backoff And Jitter", 2015): the n-th retry
 *   after a drop waits a random time from 0 to min(retry·2ⁿ, 8·retry), so a fleet that lost its
 *   broker at one moment does not come back at one moment. The first attempt after boot waits
 *   0 to `retry`: a power cut boots every device at once.
 * - Reboot: only after an attempt that failed once the device had been without the broker for
 *   `waittimeout` plus a per-outage random 0 to `waittimeout`/2. An attempt that reached the
 *   broker (its TCP connect was accepted) but failed later, in the TLS handshake or at CONNECT,
 *   proves the device's own network works: it starts that clock over. A reboot cannot help a
 *   broker that is up but busy (10,000 devices coming back at once), so those never reboot; an
 *   outage shorter than `waittimeout` never reboots a device, and a long one does not reboot the
 *   fleet in step.
 */
export class ReconnectPolicy {
  private up = false;
  private since = 0;
  private lastTry = 0;
  private delay = 0;
  private attempts = 0;
  private giveUpAfter = 0;
  private failedPastGiveUp = false;

  constructor(
    readonly retryMs: number,
    readonly giveUpMs: number,
    private readonly jitter: Jitter,
  ) {}

  /** At boot: not connected; the first attempt after 0 to `retry` ms. */
  start(now: number): void {
    this.up = false;
    this.since = now;
    this.lastTry = now;
    this.attempts = 0;
    this.failedPastGiveUp = false;
    this.delay = this.jitter.upTo(this.retryMs);
    this.giveUpAfter = this.giveUpMs + this.jitter.upTo(this.giveUpMs / 2);
  }

  connected(now: number): void {
    this.up = true;
    this.since = now;
    this.attempts = 0;
    this.failedPastGiveUp = false;
  }

  /**
   * An attempt failed, or the connection dropped. `reachedBroker`: the attempt got as far as a
   * TCP connection to the broker (it failed in TLS or MQTT), so the network path works.
   */
  failed(now: number, reachedBroker = false): void {
    if (this.up) {
      this.up = false;
      this.since = now;
      this.attempts = 0;
      this.giveUpAfter = this.giveUpMs + this.jitter.upTo(this.giveUpMs / 2);
    } else {
      this.attempts = Math.min(this.attempts + 1, 30);
      if (reachedBroker) this.since = now;
      else if (diff(now, this.since) >= this.giveUpAfter) this.failedPastGiveUp = true;
    }
    this.lastTry = now;
    const ceiling = Math.min(this.retryMs * 2 ** this.attempts, this.retryMs * MAX_BACKOFF_FACTOR);
    this.delay = this.jitter.upTo(ceiling);
  }

  attemptDue(now: number): boolean {
    return !this.up && diff(now, this.lastTry) >= this.delay;
  }

  rebootDue(): boolean {
    return !this.up && this.failedPastGiveUp;
  }

  get isConnected(): boolean {
    return this.up;
  }

  /** The wait before the next attempt, as drawn at the last failure (for logs and tests). */
  get currentDelayMs(): number {
    return this.delay;
  }
}

/** `a - b` on a 32-bit millisecond clock that wraps. */
function diff(a: number, b: number): number {
  return (a - b) >>> 0;
}
