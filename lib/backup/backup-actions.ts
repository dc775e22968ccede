import type { Role } from './parts';
import { BackupError } from './archive-crypto';
import { BackupSummary, RestoreSummary, createBackup, restoreBackup } from './backup';
import { backupFilePath, defaultBackupName } from './backup-file';
import { caSource } from './sources';
import { realPathOf } from './read-folder';
import type { PartSource } from './snapshot';

/**
 * The `backup` and `restore` actions of esp-cert-issuer (lib/issuer/issuer-actions.ts runs them).
 * The CA store is the issuer's; the firmware folders and registry files come from the nodes
 * that use the same CA, as the caller finds them.
 */

/** A firmware folder or registry file of a deployed node, with the way to let its writes land. */
export interface StatePart {
  role: Exclude<Role, 'ca'>;
  /** The node's id. */
  key: string;
  path: string;
  settle(): Promise<void>;
  /** Called once its place was restored: the owner's copy in memory is stale and must write nothing more. */
  retire?(): void;
}

export interface BackupContext {
  /** The Node-RED user directory: backup files are named relative to it. */
  userDir: string;
  /** The firmware folders and registry files of the nodes that use this CA. */
  parts(): StatePart[];
}

export type BackupActionResult = ({ action: 'backup' } & BackupSummary) | ({ action: 'restore'; restartRequired: true; hint: string } & RestoreSummary);

type Args = Record<string, unknown>;

interface StoreLike {
  dir: string;
  idle(): Promise<void>;
}

/**
 * Takes the passphrase out of a msg payload: the rest may be logged, passed on or shown to a
 * Catch node, the passphrase never is.
 */
export function takePassphrase(payload: unknown): { passphrase: unknown; rest: unknown } {
  if (!payload || typeof payload !== 'object' || Array.isArray(payload) || Buffer.isBuffer(payload)) return { passphrase: undefined, rest: payload };
  const { passphrase, ...rest } = payload as Args;
  return { passphrase, rest };
}

function argsOf(payload: unknown): Args {
  if (payload === undefined || payload === null || payload === '') return {};
  if (typeof payload === 'object' && !Array.isArray(payload) && !Buffer.isBuffer(payload)) return payload as Args;
  throw new BackupError('msg.payload must be an object: {"passphrase": "...", "file": "..."}');
}

export async function runBackupAction(store: StoreLike, action: 'backup' | 'restore', payload: unknown, passphrase: unknown, context: BackupContext | undefined): Promise<BackupActionResult> {
  if (!context) throw new BackupError(`${action} needs the Node-RED user directory (run it from an esp-cert-issuer node)`);
  const a = argsOf(payload);
  const parts = context.parts();
  if (action === 'backup') {
    const file = backupFilePath(context.userDir, a.file ?? defaultBackupName());
    const sources: PartSource[] = [caSource(store), ...parts.map((p) => ({ role: p.role, key: p.key, path: p.path, settle: p.settle }))];
    const summary = await createBackup(sources, passphrase, file, { home: context.userDir });
    return { action, ...summary };
  }
  if (a.file === undefined) throw new BackupError('restore needs the backup file: {"passphrase": "...", "file": "esp-fleet-backup-….efb"}');
  const file = backupFilePath(context.userDir, a.file);
  if (a.force !== undefined && typeof a.force !== 'boolean') throw new BackupError('force must be true or false');
  // Whatever the running nodes still had to write lands before their folders are moved aside.
  await store.idle();
  for (const p of parts) await p.settle();
  const places = [{ role: 'ca' as const, path: store.dir }, ...parts.map((p) => ({ role: p.role, key: p.key, path: p.path }))];
  const summary = await restoreBackup(file, passphrase, places, { force: a.force === true, home: context.userDir });
  const replaced = new Set(summary.restored.map((r) => r.path));
  for (const p of parts) if (replaced.has(p.path) || replaced.has(await realPathOf(p.path) ?? '')) p.retire?.();
  return {
    action,
    ...summary,
    restartRequired: true,
    hint: 'restored on disk; the running nodes still hold the state from before: restart flows now (Deploy ▸ Restart Flows) to load it',
  };
}
