/**
 * One token bucket per key (a source address): `capacity` requests at once, refilled at one
 * token every `refillMs`. A full map forgets its fullest buckets first (they would refill to
 * capacity anyway), so a flood of spoofed-looking keys cannot grow memory without bound.
 */
export class TokenBuckets {
  private readonly buckets = new Map<string, { tokens: number; at: number }>();

  constructor(
    readonly capacity: number,
    readonly refillMs: number,
    private readonly maxKeys = 10_000,
    private readonly now: () => number = () => Date.now(),
  ) {
    if (!(capacity >= 1) || !(refillMs > 0)) throw new RangeError('a bucket needs capacity ≥ 1 and a refill time > 0');
  }

  /** Takes one token for `key`; when none is left, the milliseconds until the next one instead. */
  take(key: string): { ok: true } | { ok: false; retryAfterMs: number } {
    const t = this.now();
    const b = this.refilled(key, t);
    if (b.tokens >= 1) {
      b.tokens -= 1;
      return { ok: true };
    }
    return { ok: false, retryAfterMs: Math.max(1, Math.ceil((1 - b.tokens) * this.refillMs)) };
  }

  /** True while `key` has a token left, without taking it. */
  has(key: string): boolean {
    return this.refilled(key, this.now()).tokens >= 1;
  }

  private refilled(key: string, t: number): { tokens: number; at: number } {
    let b = this.buckets.get(key);
    if (!b) {
      if (this.buckets.size >= this.maxKeys) this.forgetFull(t);
      b = { tokens: this.capacity, at: t };
      this.buckets.set(key, b);
      return b;
    }
    b.tokens = Math.min(this.capacity, b.tokens + (t - b.at) / this.refillMs);
    b.at = t;
    return b;
  }

  private forgetFull(t: number): void {
    for (const [k, b] of this.buckets) {
      if (b.tokens + (t - b.at) / this.refillMs >= this.capacity) this.buckets.delete(k);
    }
    // Everyone is mid-flood: drop the oldest tenth rather than refuse to track a new key.
    if (this.buckets.size >= this.maxKeys) {
      let n = Math.ceil(this.maxKeys / 10);
      for (const k of this.buckets.keys()) {
        if (n-- <= 0) break;
        this.buckets.delete(k);
      }
    }
  }
}
