/**
 * Slots held per key and in total, for caps such as "handshakes in flight per source address
 * and overall" or "sessions per certificate identity". A slot is taken when a connection
 * enters the phase and given back exactly once when it leaves (or closes), so the counts
 * never drift whatever order the socket events come in. Knows nothing of sockets or MQTT.
 */
export type LimitHit = 'total' | 'per-key';

export interface Slot {
  readonly key: string;
  /** Gives the slot back; later calls do nothing. */
  release(): void;
}

export interface KeyedLimits {
  /** Slots held at once in all; Infinity for no cap. */
  total: number;
  /** Slots one key may hold at once; Infinity for no cap. */
  perKey: number;
}

export class KeyedCounter {
  private readonly byKey = new Map<string, number>();
  private held = 0;

  constructor(readonly limits: KeyedLimits) {
    for (const [name, value] of Object.entries(limits)) {
      if (!(value >= 1)) throw new RangeError(`${name} must be at least 1, got ${value}`);
    }
  }

  /** Slots held now, in all or by one key. */
  count(key?: string): number {
    return key === undefined ? this.held : (this.byKey.get(key) ?? 0);
  }

  /** Keys holding at least one slot. */
  get keys(): number {
    return this.byKey.size;
  }

  /**
   * Takes a slot for `key`, or says which cap is full. `perKey` overrides the default cap for
   * this key (e.g. a backend identity may hold more sessions than a device).
   */
  take(key: string, perKey = this.limits.perKey): Slot | LimitHit {
    const mine = this.byKey.get(key) ?? 0;
    if (this.held >= this.limits.total) return 'total';
    if (mine >= perKey) return 'per-key';
    this.byKey.set(key, mine + 1);
    this.held++;
    let held = true;
    return {
      key,
      release: () => {
        if (!held) return;
        held = false;
        this.held--;
        const left = (this.byKey.get(key) ?? 1) - 1;
        if (left > 0) this.byKey.set(key, left);
        else this.byKey.delete(key);
      },
    };
  }
}

/** Refusals by cause, for a status badge. */
export class RefusalTally<Cause extends string> {
  private readonly counts = new Map<Cause, number>();
  private sum = 0;

  add(cause: Cause): void {
    this.counts.set(cause, (this.counts.get(cause) ?? 0) + 1);
    this.sum++;
  }

  get total(): number {
    return this.sum;
  }

  byCause(): Partial<Record<Cause, number>> {
    return Object.fromEntries(this.counts) as Partial<Record<Cause, number>>;
  }
}
