import { promises as fs, constants } from 'node:fs';
import * as path from 'node:path';
import { randomBytes } from 'node:crypto';
import type { FolderFile } from './read-folder';

/**
 * Puts restored state in place so that each folder (or file) is either the old one or the
 * new one, never half of each:
 *
 * 1. `stage`: everything is written into `<target>.restore-<stamp>.partial` beside the target
 *    (same file system, so a rename moves it), each file fsynced, then renamed to
 *    `<target>.restore-<stamp>`: a folder by that name is always complete.
 * 2. `swapIn`: the current target is renamed to `<target>.before-restore-<stamp>` (kept, never
 *    deleted) and the staged copy renamed to the target; then the parent folder is fsynced so
 *    both renames survive a power cut (rename(2) is atomic, its durability needs the fsync).
 *
 * Node has no atomic exchange of two names (Linux renameat2 RENAME_EXCHANGE), so for the moment
 * between the two renames of step 2 the target name is free; a crash exactly then leaves the
 * complete old copy (`.before-restore-`) and the complete new one (`.restore-`), to be renamed
 * by hand.
 */

export interface Staged {
  target: string;
  staged: string;
  kind: 'folder' | 'file';
}

export function restoreStamp(now = new Date()): string {
  return now.toISOString().replace(/[:.]/g, '-');
}

/** Writes a folder's files beside `target`; the target itself is not touched. */
export async function stageFolder(target: string, files: FolderFile[], stamp: string): Promise<Staged> {
  const partial = `${target}.restore-${stamp}.partial`;
  // mkdir without `recursive` fails on an existing name: the folder is ours alone.
  await fs.mkdir(path.dirname(target), { recursive: true, mode: 0o700 });
  await fs.mkdir(partial, { mode: 0o700 });
  try {
    const dirs = new Set<string>([partial]);
    for (const f of files) {
      const file = path.join(partial, ...f.path.split('/'));
      const dir = path.dirname(file);
      if (!dirs.has(dir)) {
        await fs.mkdir(dir, { recursive: true, mode: 0o700 });
        dirs.add(dir);
      }
      await writeNew(file, f.data, f.mode);
    }
    for (const dir of [...dirs].sort((a, b) => b.length - a.length)) await syncDir(dir);
    const staged = `${target}.restore-${stamp}`;
    await fs.rename(partial, staged);
    return { target, staged, kind: 'folder' };
  } catch (err) {
    await fs.rm(partial, { recursive: true, force: true });
    throw err;
  }
}

/** Writes one file beside `target`. */
export async function stageFile(target: string, file: FolderFile, stamp: string): Promise<Staged> {
  await fs.mkdir(path.dirname(target), { recursive: true, mode: 0o700 });
  const partial = `${target}.restore-${stamp}.${randomBytes(4).toString('hex')}.partial`;
  try {
    await writeNew(partial, file.data, file.mode);
    const staged = `${target}.restore-${stamp}`;
    await fs.rename(partial, staged);
    return { target, staged, kind: 'file' };
  } catch (err) {
    await fs.rm(partial, { force: true });
    throw err;
  }
}

/** Removes staged copies that will not be swapped in (a later part failed to stage). */
export async function discardStaged(staged: Staged[]): Promise<void> {
  for (const s of staged) await fs.rm(s.staged, { recursive: true, force: true });
}

/** Renames the current target aside (if there is one) and the staged copy into its place. */
export async function swapIn(s: Staged, stamp: string): Promise<{ target: string; keptAside?: string }> {
  let keptAside: string | undefined = `${s.target}.before-restore-${stamp}`;
  try {
    await fs.rename(s.target, keptAside);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
    keptAside = undefined;
  }
  await fs.rename(s.staged, s.target);
  await syncDir(path.dirname(s.target));
  return { target: s.target, keptAside };
}

/** `wx`: never follows or reuses anything already at that name. */
async function writeNew(file: string, data: Buffer, mode: number): Promise<void> {
  const handle = await fs.open(file, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL, mode);
  try {
    await handle.writeFile(data);
    // The umask may have narrowed the mode at open: set it exactly.
    await handle.chmod(mode);
    await handle.sync();
  } finally {
    await handle.close();
  }
}

async function syncDir(dir: string): Promise<void> {
  const handle = await fs.open(dir, 'r');
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}
