import type { IssuedRecord } from './records';

/** A change to the CA, announced once it is on disk (journal, identity files, crl.pem). */
export type CaChange =
  | { type: 'issued'; record: IssuedRecord }
  | { type: 'revoked'; record: IssuedRecord }
  | { type: 'crl'; pem: string; der: Buffer; nextUpdate: Date };

/**
 * A subscriber. It may return a promise: the operation that made the change (issue, revoke,
 * CRL refresh) settles only after it, and `CaStore.idle()` waits for it, so when `issueDevice`
 * resolves, everything kept from the CA (a Mosquitto folder's ACL) is current. A subscriber
 * that throws or rejects makes that operation reject; the change itself stands.
 */
export type CaListener = (change: CaChange) => void | Promise<unknown>;

/** The CA's change stream: listeners run in the order they subscribed, each change in the order it was made. */
export class ChangeStream {
  private readonly listeners = new Set<CaListener>();
  private readonly pending = new Set<Promise<unknown>>();

  /** Returns the function that unsubscribes. */
  subscribe(listener: CaListener): () => void {
    // A wrapper per subscription: the same function subscribed twice is called twice.
    const own: CaListener = (c) => listener(c);
    this.listeners.add(own);
    return () => {
      this.listeners.delete(own);
    };
  }

  emit(change: CaChange): Promise<void> {
    const results: Promise<unknown>[] = [];
    for (const listener of [...this.listeners]) {
      try {
        const r = listener(change);
        if (r && typeof (r as Promise<unknown>).then === 'function') results.push(r as Promise<unknown>);
      } catch (err) {
        results.push(Promise.reject(err));
      }
    }
    if (results.length === 0) return Promise.resolve();
    const all = Promise.all(results).then(() => undefined);
    const tracked = all.catch(() => undefined).finally(() => this.pending.delete(tracked));
    this.pending.add(tracked);
    return all;
  }

  /** Settles once every subscriber's work for the changes so far has settled. */
  async idle(): Promise<void> {
    while (this.pending.size) await Promise.all([...this.pending]);
  }
}
