import { promises as fs, constants } from 'node:fs';
import * as path from 'node:path';
import { BackupError } from './archive-crypto';

export interface FolderFile {
  /** `/`-separated, relative to the folder. */
  path: string;
  mode: number;
  data: Buffer;
}

/** writeFileAtomic's temp files (lib/fs/atomic-file.ts): a write in flight, never state. */
const TEMP_FILE = /^\..+\.[0-9a-f]{12}\.tmp$/;

/**
 * Every regular file below `dir`, with its permission bits. A symbolic link or any other kind
 * of entry is refused rather than followed or skipped: following could pull in files from
 * elsewhere, skipping would lose something without a word.
 */
export async function readFolder(dir: string): Promise<FolderFile[]> {
  const out: FolderFile[] = [];
  async function walk(relative: string): Promise<void> {
    const entries = await fs.readdir(path.join(dir, relative), { withFileTypes: true });
    entries.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
    for (const e of entries) {
      const rel = relative ? `${relative}/${e.name}` : e.name;
      if (e.isDirectory()) await walk(rel);
      else if (e.isFile()) {
        if (TEMP_FILE.test(e.name)) continue;
        const file = path.join(dir, rel);
        // O_NOFOLLOW: a file swapped for a link after readdir is refused, not followed.
        const handle = await fs.open(file, constants.O_RDONLY | constants.O_NOFOLLOW);
        try {
          const stat = await handle.stat();
          out.push({ path: rel, mode: stat.mode & 0o777, data: await handle.readFile() });
        } finally {
          await handle.close();
        }
      } else {
        throw new BackupError(`${path.join(dir, rel)} is ${e.isSymbolicLink() ? 'a symbolic link' : 'not a regular file'}: a backup takes regular files only`);
      }
    }
  }
  await walk('');
  return out;
}

/** The folder or file as it really is on disk (a symlinked store folder is read and restored where it points); undefined when absent. */
export async function realPathOf(dir: string): Promise<string | undefined> {
  try {
    return await fs.realpath(dir);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw err;
  }
}
