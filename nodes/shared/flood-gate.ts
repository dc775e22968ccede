import { RateGate } from '../../lib/net/rate-gate';

/**
 * A node's output for events an attacker can cause at will (refused connections): at most
 * `perSecond` go out one by one, the rest are counted by key and go out as one summary msg a
 * second, so a flood cannot flood the flow or the debug sidebar.
 */
export class FloodGate<K extends string = string> {
  private readonly gate: RateGate<K>;
  private timer: NodeJS.Timeout | undefined;
  private closed = false;

  constructor(
    perSecond: number,
    private readonly sendSummary: (held: { count: number; byCause: Partial<Record<K, number>> }) => void,
  ) {
    this.gate = new RateGate<K>(perSecond, 1_000);
  }

  /** True when this event may go out now; false when it was counted for the next summary. */
  pass(key: K): boolean {
    if (this.gate.pass(key)) return true;
    this.timer ??= setTimeout(() => {
      this.timer = undefined;
      const held = this.gate.takeHeld();
      if (held && !this.closed) this.sendSummary({ count: held.total, byCause: held.byKey });
    }, 1_000);
    return false;
  }

  close(): void {
    this.closed = true;
    clearTimeout(this.timer);
  }
}
