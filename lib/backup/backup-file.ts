import { fileInUserDir } from '../fs/user-file';
import { BackupError } from './archive-crypto';

/** Backup files end so: a msg can never make a backup overwrite flows.json, settings.js or a key. */
export const BACKUP_EXTENSION = '.efb';

/** `esp-fleet-backup-2025-01-31-120533.efb`: one a second, sorted by time. */
export function defaultBackupName(now = new Date()): string {
  const t = now.toISOString();
  return `esp-fleet-backup-${t.slice(0, 10)}-${t.slice(11, 19).replace(/:/g, '')}${BACKUP_EXTENSION}`;
}

/** The backup file a msg names: in the user directory or absolute, ending in `.efb` (lib/fs/user-file.ts). */
export function backupFilePath(userDir: string, file: unknown): string {
  return fileInUserDir(userDir, file, { extensions: [BACKUP_EXTENSION], what: 'backup file', example: 'backups/fleet.efb', fail: (m) => new BackupError(m) });
}
