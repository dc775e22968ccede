import { promises as fs } from 'node:fs';
import { readFileIfExists, writeFileAtomic } from '../fs/atomic-file';
import { CoalescingTask } from '../coalescing-task';
import { Rollout, RolloutState } from './rollout';

/**
 * Where a rollout's state lives between restarts: one JSON file written atomically after each
 * change (changes made together share one write), read back when the node starts again.
 */
export class RolloutFile {
  private current: Rollout | undefined;
  private readonly writer = new CoalescingTask(async () => {
    const r = this.current;
    if (r) await writeFileAtomic(this.file, `${JSON.stringify(r.view)}\n`);
    else await fs.rm(this.file, { force: true });
  });

  constructor(readonly file: string) {}

  /** The rollout saved here, or undefined; a damaged file is an error that says what to do. */
  async load(): Promise<Rollout | undefined> {
    const text = await readFileIfExists(this.file);
    if (text === undefined) return undefined;
    let state: RolloutState;
    try {
      state = JSON.parse(text) as RolloutState;
    } catch {
      throw new Error(`${this.file} is not valid JSON: remove it to forget the rollout`);
    }
    this.current = Rollout.resume(state);
    return this.current;
  }

  /** Remembers `rollout` (or forgets, with undefined) and settles once it is on disk. */
  save(rollout: Rollout | undefined): Promise<void> {
    this.current = rollout;
    return this.writer.request();
  }

  idle(): Promise<void> {
    return this.writer.idle();
  }
}
