import { promises as fs } from 'node:fs';
import * as path from 'node:path';
import { createHash, X509Certificate } from 'node:crypto';
import { writeFileAtomic, PRIVATE_FILE_MODE } from '../fs/atomic-file';
import { BackupError, KdfParams, checkPassphrase, openArchive, sealArchive } from './archive-crypto';
import { ArchiveFile, Manifest, ManifestPart, decodePayload, encodePayload } from './payload';
import { REGISTRY_ENTRY, Role, partId } from './parts';
import { PartSource, capturePart } from './snapshot';
import { realPathOf, FolderFile } from './read-folder';
import { RestorePlace, planRestore } from './restore-plan';
import { certRecords, unknownLocalState } from './restore-guard';
import { relocateCaFiles } from './relocate';
import { Staged, discardStaged, restoreStamp, stageFile, stageFolder, swapIn } from './swap-in';

/**
 * Backup and restore of a fleet's state in one encrypted, authenticated file: the CA store,
 * the firmware folders (signing keyring, catalogue with its images, device config) and the
 * device registries. See archive-crypto.ts for the container, payload.ts for what is inside.
 */

export interface Counts {
  certificates: number;
  images: number;
  devices: number;
}

export interface BackupSummary {
  file: string;
  size: number;
  sha256: string;
  createdAt: string;
  caFingerprint: string;
  counts: Counts;
  parts: { id: string; role: Role; source: string; files: number }[];
  warnings: string[];
}

export interface BackupOptions {
  /** The Node-RED user directory: parts inside it are recorded relative to it too. */
  home?: string;
  /** scrypt cost (stored in the file); the default suits a backup of a CA key. */
  kdf?: KdfParams;
}

/** Reads each source consistently (snapshot.ts) and writes the archive to `file`, mode 0600, atomically. */
export async function createBackup(sources: PartSource[], passphraseInput: unknown, file: string, options: BackupOptions = {}): Promise<BackupSummary> {
  const passphrase = checkPassphrase(passphraseInput);
  if (sources.filter((s) => s.role === 'ca').length !== 1) throw new BackupError('a backup takes exactly one CA store');
  const home = options.home ? ((await realPathOf(options.home)) ?? path.resolve(options.home)) : undefined;
  const parts: ManifestPart[] = [];
  const files: ArchiveFile[] = [];
  const warnings: string[] = [];
  const counts: Counts = { certificates: 0, images: 0, devices: 0 };
  let caFingerprint = '';
  const taken = new Set<string>();
  const target = path.join((await realPathOf(path.dirname(file))) ?? path.resolve(path.dirname(file)), path.basename(file));
  for (const source of sources) {
    const real = (await realPathOf(source.path)) ?? path.resolve(source.path);
    // A backup inside a folder it backs up would be taken into the next one, and restored over itself.
    if (source.role !== 'registry' && isInside(target, real)) throw new BackupError(`the backup file ${file} lies inside ${real}, which it backs up: write it elsewhere`);
  }
  for (const source of sources) {
    const captured = await capturePart(source);
    // Two nodes sharing a folder: one copy of it.
    if (!captured || taken.has(captured.realPath)) continue;
    for (const other of taken) {
      if (isInside(captured.realPath, other) || isInside(other, captured.realPath)) throw new BackupError(`${captured.realPath} and ${other} overlap: each part of a backup needs its own folder`);
    }
    taken.add(captured.realPath);
    const id = partId(source.role, source.key);
    const rel = home ? path.relative(home, captured.realPath) : '';
    const inHome = home && rel && !rel.startsWith('..') && !path.isAbsolute(rel) ? rel.split(path.sep).join('/') : undefined;
    parts.push({ id, role: source.role, source: captured.realPath, ...(inHome ? { inHome } : {}), files: captured.files.length });
    for (const f of captured.files) files.push({ part: id, ...f });
    warnings.push(...captured.warnings.map((w) => `${captured.realPath}: ${w}`));
    const byPath = (p: string): Buffer | undefined => captured.files.find((f) => f.path === p)?.data;
    if (source.role === 'ca') {
      caFingerprint = new X509Certificate(byPath('ca.crt')!).fingerprint256;
      counts.certificates += certRecords(byPath('journal.jsonl')).length;
    } else if (source.role === 'firmware') {
      counts.images += countOf(byPath('catalogue/catalogue.json'), 'images');
    } else {
      counts.devices += countOf(byPath(REGISTRY_ENTRY), 'devices');
    }
  }
  const createdAt = new Date().toISOString();
  const manifest: Manifest = { format: 1, createdAt, parts, counts, caFingerprint };
  const sealed = await sealArchive(encodePayload({ manifest, files }), passphrase, options.kdf);
  await writeFileAtomic(file, sealed, PRIVATE_FILE_MODE);
  return {
    file,
    size: sealed.length,
    sha256: createHash('sha256').update(sealed).digest('hex'),
    createdAt,
    caFingerprint,
    counts,
    parts: parts.map(({ id, role, source, files: n }) => ({ id, role, source, files: n })),
    warnings,
  };
}

export interface RestoreOptions {
  /** Restore even over certificates, keys or images the archive does not hold (restore-guard.ts). */
  force?: boolean;
  /** The Node-RED user directory now: parts with no deployed node go back to their place inside it. */
  home?: string;
}

export interface RestoreSummary {
  file: string;
  createdAt: string;
  caFingerprint: string;
  counts: Counts;
  restored: { id: string; role: Role; path: string; files: number; keptAside?: string }[];
  warnings: string[];
}

/** Reads, decrypts and checks the whole archive; throws BackupError when anything is wrong. Writes nothing. */
export async function readBackup(file: string, passphrase: unknown): Promise<{ manifest: Manifest; files: ArchiveFile[] }> {
  const passphraseText = checkPassphrase(passphrase);
  let data: Buffer;
  try {
    data = await fs.readFile(file);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    throw new BackupError(code === 'ENOENT' ? `no backup file at ${file}` : `cannot read ${file} (${code ?? 'error'})`);
  }
  const payload = decodePayload(await openArchive(data, passphraseText));
  const ca = payload.manifest.parts.find((p) => p.role === 'ca')!;
  const caCert = payload.files.find((f) => f.part === ca.id && f.path === 'ca.crt');
  if (!caCert || !payload.files.some((f) => f.part === ca.id && f.path === 'ca.key')) throw new BackupError('the archive holds no CA certificate and key; nothing was written');
  let fingerprint: string;
  try {
    fingerprint = new X509Certificate(caCert.data).fingerprint256;
  } catch {
    throw new BackupError('the archive\'s ca.crt cannot be read; nothing was written');
  }
  if (fingerprint !== payload.manifest.caFingerprint) throw new BackupError('the archive\'s ca.crt is not the CA its manifest names; nothing was written');
  return payload;
}

/**
 * Restores an archive into `places` (restore-plan.ts). Everything is read, decrypted and
 * checked first, then checked against what the places hold now (restore-guard.ts); only then
 * is anything written, into staging copies that are swapped in by rename (swap-in.ts). The
 * folders replaced are kept as `<dir>.before-restore-<time>`.
 */
export async function restoreBackup(file: string, passphrase: unknown, places: RestorePlace[], options: RestoreOptions = {}): Promise<RestoreSummary> {
  const { manifest, files } = await readBackup(file, passphrase);
  const plan = planRestore(manifest.parts, places, options.home);
  const warnings: string[] = [];
  const prepared: { id: string; role: Role; target: string; files: FolderFile[] }[] = [];
  for (const { part, path: place } of plan) {
    const target = (await realPathOf(place)) ?? path.resolve(place);
    let partFiles: FolderFile[] = files.filter((f) => f.part === part.id).map(({ path: p, mode, data }) => ({ path: p, mode, data }));
    if (part.role === 'ca') {
      const relocated = relocateCaFiles(partFiles, part.source, target);
      partFiles = relocated.files;
      for (const dir of relocated.outside) warnings.push(`the CA keeps the Mosquitto folder ${dir} current, outside the CA folder: it is not in the archive; run the mosquitto action again if it is gone`);
    }
    prepared.push({ id: part.id, role: part.role, target, files: partFiles });
  }
  if (!options.force) {
    const reasons: string[] = [];
    for (const p of prepared) reasons.push(...(await unknownLocalState(p.role, p.target, p.files)));
    if (reasons.length) {
      throw new BackupError(`restore refused: ${reasons.join('; ')}. Send force: true to restore anyway (the current folders are kept aside); nothing was written`);
    }
  }
  const stamp = restoreStamp();
  const staged: Staged[] = [];
  try {
    for (const p of prepared) {
      staged.push(p.role === 'registry' ? await stageFile(p.target, p.files[0], stamp) : await stageFolder(p.target, p.files, stamp));
    }
  } catch (err) {
    await discardStaged(staged);
    throw err;
  }
  const restored: RestoreSummary['restored'] = [];
  for (let i = 0; i < prepared.length; i++) {
    const { keptAside } = await swapIn(staged[i], stamp);
    const p = prepared[i];
    restored.push({ id: p.id, role: p.role, path: p.target, files: p.files.length, ...(keptAside ? { keptAside } : {}) });
  }
  return { file, createdAt: manifest.createdAt, caFingerprint: manifest.caFingerprint, counts: manifest.counts, restored, warnings };
}

/** `inner` is `outer` or lies below it. */
function isInside(inner: string, outer: string): boolean {
  const rel = path.relative(outer, inner);
  return rel === '' || (!rel.startsWith('..') && !path.isAbsolute(rel));
}

function countOf(data: Buffer | undefined, field: 'images' | 'devices'): number {
  if (!data) return 0;
  try {
    const list = (JSON.parse(data.toString('utf8')) as Record<string, unknown>)[field];
    return Array.isArray(list) ? list.length : 0;
  } catch {
    return 0;
  }
}
