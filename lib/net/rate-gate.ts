/**
 * Lets at most `limit` events through per window of `windowMs` and counts the rest by key, so
 * that a flood (thousands of refused connections a second) becomes a few messages and one
 * summary per window instead of one message each for whoever listens.
 */
export class RateGate<K extends string = string> {
  private windowStart = -Infinity;
  private passed = 0;
  private readonly held = new Map<K, number>();
  private heldTotal = 0;

  constructor(
    readonly limit: number,
    readonly windowMs: number,
    private readonly now: () => number = () => Date.now(),
  ) {}

  /** True when this event may go out on its own; otherwise it is counted under `key`. */
  pass(key: K): boolean {
    const t = this.now();
    if (t - this.windowStart >= this.windowMs) {
      this.windowStart = t;
      this.passed = 0;
    }
    if (this.passed < this.limit) {
      this.passed++;
      return true;
    }
    this.held.set(key, (this.held.get(key) ?? 0) + 1);
    this.heldTotal++;
    return false;
  }

  /** The events held back since the last call, in all and by key (undefined when none), and starts counting afresh. */
  takeHeld(): { total: number; byKey: Partial<Record<K, number>> } | undefined {
    if (!this.heldTotal) return undefined;
    const out = { total: this.heldTotal, byKey: Object.fromEntries(this.held) as Partial<Record<K, number>> };
    this.held.clear();
    this.heldTotal = 0;
    return out;
  }
}
