/**
 * The cap on concurrent downloads, shared by every process that serves them: the in-process
 * server and its forked workers (owner 0 is the in-process server, 1..N-1 the workers). A
 * worker that exits loses its slots here, so a crash never leaks the cap.
 */
export class DownloadSlotPool {
  private readonly held = new Map<number, Set<number>>();
  private nextId = 1;
  private count = 0;

  constructor(readonly limit: number) {}

  get inUse(): number {
    return this.count;
  }

  /** A slot id, or undefined when `limit` downloads are under way. */
  acquire(owner: number): number | undefined {
    if (this.count >= this.limit) return undefined;
    const id = this.nextId++;
    let set = this.held.get(owner);
    if (!set) this.held.set(owner, (set = new Set()));
    set.add(id);
    this.count++;
    return id;
  }

  /** True when the slot was held (a second release of the same slot is a no-op). */
  release(owner: number, id: number): boolean {
    if (!this.held.get(owner)?.delete(id)) return false;
    this.count--;
    return true;
  }

  /** Frees every slot of an owner (a worker that exited); returns their ids. */
  releaseAll(owner: number): number[] {
    const ids = [...(this.held.get(owner) ?? [])];
    this.held.delete(owner);
    this.count -= ids.length;
    return ids;
  }
}
