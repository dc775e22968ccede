/**
 * The newest rows of an event stream, newest first, bounded: what a dashboard table of "the last
 * N outcomes" shows. Dashboard 2.0's `ui-table` in append mode keeps every row it was ever sent,
 * so a long-running dashboard needs the window kept here.
 */
export class RecentRows<T> {
  private readonly rows: T[] = [];

  constructor(readonly size: number) {
    if (!Number.isInteger(size) || size < 1) throw new Error(`a recent-rows window needs a size of 1 or more, got ${size}`);
  }

  /** Adds a row and returns a copy of the window, so a msg that carries it cannot change it. */
  add(row: T): T[] {
    this.rows.unshift(row);
    if (this.rows.length > this.size) this.rows.length = this.size;
    return [...this.rows];
  }

  list(): T[] {
    return [...this.rows];
  }
}
