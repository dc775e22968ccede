import * as path from 'node:path';
import { BackupError } from './archive-crypto';

/** Backup files end so: a msg can never make a backup overwrite flows.json, settings.js or a key. */
export const BACKUP_EXTENSION = '.efb';

/** `esp-fleet-backup-2025-01-31-120533.efb`: one a second, sorted by time. */
export function defaultBackupName(now = new Date()): string {
  const t = now.toISOString();
  return `esp-fleet-backup-${t.slice(0, 10)}-${t.slice(11, 19).replace(/:/g, '')}${BACKUP_EXTENSION}`;
}

/**
 * The backup file a msg names: relative to the Node-RED user directory and not leaving it,
 * or absolute (a backup disk); either way ending in `.efb`.
 */
export function backupFilePath(userDir: string, file: unknown): string {
  if (typeof file !== 'string' || file.trim() === '' || file.includes('\0')) throw new BackupError('file must be the name of a backup file, e.g. "backups/fleet.efb"');
  const name = file.trim();
  if (!name.endsWith(BACKUP_EXTENSION)) throw new BackupError(`a backup file name ends in ${BACKUP_EXTENSION}, got ${JSON.stringify(name.slice(-40))}`);
  if (path.isAbsolute(name)) return path.normalize(name);
  const home = path.resolve(userDir);
  const resolved = path.resolve(home, name);
  const rel = path.relative(home, resolved);
  if (rel.startsWith('..') || path.isAbsolute(rel)) throw new BackupError(`${JSON.stringify(name.slice(0, 80))} leaves the Node-RED user directory; give an absolute path to write elsewhere`);
  return resolved;
}
