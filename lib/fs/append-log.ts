import { promises as fs } from 'node:fs';
import * as path from 'node:path';
import { CoalescingTask } from '../coalescing-task';
import { writeFileAtomic } from './atomic-file';

/**
 * A JSON-lines journal with group commit: every `append` resolves once its line is on disk
 * (written and fdatasync'ed), and appends that arrive together share one write and one sync.
 * The cost of an append does not grow with the journal, unlike rewriting a whole index.
 * A crash can only tear the last line; `open` drops such a line (its caller was never answered).
 */
export class AppendLog<T> {
  private queued: string[] = [];
  private readonly flusher = new CoalescingTask(() => this.flush());

  private constructor(
    readonly file: string,
    private readonly mode: number,
  ) {}

  static async open<T>(file: string, mode = 0o600): Promise<{ log: AppendLog<T>; entries: T[]; tornLines: number }> {
    await fs.mkdir(path.dirname(file), { recursive: true });
    const text = await fs.readFile(file, 'utf8').catch((err: NodeJS.ErrnoException) => {
      if (err.code === 'ENOENT') return '';
      throw err;
    });
    const entries: T[] = [];
    let tornLines = 0;
    const lines = text.split('\n');
    lines.forEach((line, i) => {
      if (!line) return;
      try {
        entries.push(JSON.parse(line) as T);
      } catch {
        // Only the last line can be torn by a crash; anything else is damage we must not hide.
        const unterminatedLast = i === lines.length - 1 && !text.endsWith('\n');
        if (!unterminatedLast) throw new Error(`${file} line ${i + 1} is not JSON: restore it from a backup`);
        tornLines++;
      }
    });
    if (tornLines) await writeFileAtomic(file, entries.map((e) => `${JSON.stringify(e)}\n`).join(''), mode);
    return { log: new AppendLog<T>(file, mode), entries, tornLines };
  }

  append(entry: T): Promise<void> {
    this.queued.push(`${JSON.stringify(entry)}\n`);
    return this.flusher.request();
  }

  /** Replaces the journal with `entries` (compaction), atomically. */
  async rewrite(entries: T[]): Promise<void> {
    await this.flusher.idle();
    await writeFileAtomic(this.file, entries.map((e) => `${JSON.stringify(e)}\n`).join(''), this.mode);
  }

  async idle(): Promise<void> {
    await this.flusher.idle();
  }

  /**
   * Opened per batch rather than held: with group commit that is one open per batch, and a
   * journal whose owner is dropped without closing leaks no file descriptor.
   */
  private async flush(): Promise<void> {
    if (this.queued.length === 0) return;
    const batch = this.queued.join('');
    this.queued = [];
    const handle = await fs.open(this.file, 'a', this.mode);
    try {
      await handle.write(batch);
      await handle.datasync();
    } finally {
      await handle.close();
    }
  }
}
