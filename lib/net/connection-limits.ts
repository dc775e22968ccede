/**
 * Counts open connections in total and per key (a source address) and says when one more
 * would exceed either cap. O(1) per acquire and release: one Map entry per key with
 * connections, dropped when its count returns to 0, so the map never holds more entries than
 * there are open connections.
 */
export interface ConnectionLimitsOptions {
  /** Connections open at once in all (≥ 1). */
  total: number;
  /** Connections open at once with the same key (≥ 1). */
  perKey: number;
}

/** Why a connection was not admitted: the cap it would have exceeded. */
export type ConnectionRefusal = 'total' | 'per-key';

export class ConnectionLimits {
  readonly total: number;
  readonly perKey: number;
  private readonly byKey = new Map<string, number>();
  private open = 0;

  constructor(options: ConnectionLimitsOptions) {
    this.total = whole(options.total, 'total');
    this.perKey = whole(options.perKey, 'perKey');
  }

  /** Counts one more connection for `key`, or says which cap refuses it (then nothing is counted). */
  acquire(key: string): ConnectionRefusal | undefined {
    if (this.open >= this.total) return 'total';
    const n = this.byKey.get(key) ?? 0;
    if (n >= this.perKey) return 'per-key';
    this.byKey.set(key, n + 1);
    this.open++;
    return undefined;
  }

  /** Gives back one connection of `key` that acquire admitted; call it exactly once per admission. */
  release(key: string): void {
    const n = this.byKey.get(key);
    if (n === undefined) return;
    if (n <= 1) this.byKey.delete(key);
    else this.byKey.set(key, n - 1);
    this.open--;
  }

  /** Connections open now, in all or for one key. */
  count(key?: string): number {
    return key === undefined ? this.open : (this.byKey.get(key) ?? 0);
  }

  /** How many keys have connections open now. */
  get keys(): number {
    return this.byKey.size;
  }
}

function whole(n: number, what: string): number {
  if (!Number.isInteger(n) || n < 1) throw new RangeError(`connection limit ${what} must be a whole number ≥ 1, got ${n}`);
  return n;
}

/**
 * The key of a source address for per-address caps: IPv4 in its dotted form also when it
 * arrives IPv4-mapped on a dual-stack socket (`::ffff:192.0.2.1`, RFC 4291 section 2.5.5.2), so
 * one host counts once whichever way it connects. Other IPv6 addresses stay whole: devices
 * of one LAN share their /64, so a prefix would put a whole fleet under one cap.
 */
export function addressKey(remoteAddress: string | undefined): string {
  if (remoteAddress === undefined) return '';
  return remoteAddress.startsWith('::ffff:') && remoteAddress.includes('.') ? remoteAddress.slice(7) : remoteAddress;
}
