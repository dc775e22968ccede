import { promises as fs } from 'node:fs';
import * as path from 'node:path';
import { createHash, createPrivateKey, X509Certificate } from 'node:crypto';
import { x509 } from '../pki/x509';
import { BackupError } from './archive-crypto';
import { FolderFile, readFolder, realPathOf } from './read-folder';
import { REGISTRY_ENTRY, Role } from './parts';

/** Something whose state lives in a folder (or one file), with a way to let its pending writes land. */
export interface PartSource {
  role: Role;
  /** The node it belongs to (firmware, registry). */
  key?: string;
  /** The folder (ca, firmware) or the file (registry). */
  path: string;
  /** Settles once every write begun so far is on disk (CaStore.idle, keyring and catalogue idle, RegistryFile.flush). */
  settle(): Promise<void>;
}

export interface CapturedPart {
  source: PartSource;
  /** Where it was really read (symlinks resolved). */
  realPath: string;
  files: FolderFile[];
  warnings: string[];
}

const ATTEMPTS = 6;

/**
 * Reads a part so that what is captured is one state the owner was in, not a mix of two.
 *
 * The stores write their index before the files it names (the CA journal before certificates,
 * the catalogue's images before the index, the keyring's keys before keyring.json). So: let
 * pending writes land, read everything, let them land again and re-read the index files; if
 * an index changed meanwhile, or pairs that are written one after the other disagree (a
 * certificate and its key, the CRL and the journal's revocations, an index and its images),
 * read again. A disagreement that stays the same over two reads is the state on disk, not a
 * write in flight: it is kept as it is and reported as a warning.
 */
export async function capturePart(source: PartSource): Promise<CapturedPart | undefined> {
  const realPath = await realPathOf(source.path);
  if (realPath === undefined) {
    if (source.role === 'ca') throw new BackupError(`there is no CA store at ${source.path}`);
    return undefined; // a firmware server or registry that never wrote anything has nothing to keep
  }
  let previous: string | undefined;
  for (let attempt = 1; attempt <= ATTEMPTS; attempt++) {
    await source.settle();
    const files = await readPart(source.role, realPath);
    await source.settle();
    const changed = await indexChanged(source.role, realPath, files);
    if (changed) {
      previous = undefined;
    } else {
      const problems = checkPart(source.role, realPath, files);
      const signature = problems.join('\n');
      if (problems.length === 0 || signature === previous) return { source, realPath, files, warnings: problems };
      previous = signature;
    }
    await new Promise((resolve) => setTimeout(resolve, 25 * attempt));
  }
  throw new BackupError(`${source.path} kept changing while it was read; try the backup again`);
}

async function readPart(role: Role, dir: string): Promise<FolderFile[]> {
  if (role === 'registry') {
    const stat = await fs.lstat(dir);
    if (!stat.isFile()) throw new BackupError(`${dir} is not a regular file`);
    return [{ path: REGISTRY_ENTRY, mode: stat.mode & 0o777, data: await fs.readFile(dir) }];
  }
  const files = await readFolder(dir);
  if (role === 'ca' && !(files.some((f) => f.path === 'ca.crt') && files.some((f) => f.path === 'ca.key'))) {
    throw new BackupError(`${dir} holds no CA (ca.crt and ca.key)`);
  }
  return files;
}

/** The index files of each role: written last, so a change there means the read may be torn. */
const INDEX_FILES: Record<Role, string[]> = {
  ca: ['journal.jsonl', 'crl.pem'],
  firmware: ['catalogue/catalogue.json', 'keys/keyring.json', 'device-config.json', 'device-groups.json', 'bare-products.json'],
  registry: [],
};

async function indexChanged(role: Role, dir: string, files: FolderFile[]): Promise<boolean> {
  for (const rel of INDEX_FILES[role]) {
    const now = await fs.readFile(path.join(dir, rel)).catch((err: NodeJS.ErrnoException) => {
      if (err.code === 'ENOENT') return undefined;
      throw err;
    });
    const captured = files.find((f) => f.path === rel)?.data;
    if ((now === undefined) !== (captured === undefined) || (now && captured && !now.equals(captured))) return true;
  }
  return false;
}

function checkPart(role: Role, dir: string, files: FolderFile[]): string[] {
  const byPath = new Map(files.map((f) => [f.path, f.data]));
  if (role === 'ca') return [...checkKeyPairs(byPath), ...checkCrl(dir, byPath)];
  if (role === 'firmware') return checkFirmware(byPath);
  return [];
}

/** Each identity's certificate and key are two writes: a read between them sees a pair that does not match. */
function checkKeyPairs(byPath: Map<string, Buffer>): string[] {
  const problems: string[] = [];
  for (const [rel, crt] of byPath) {
    const m = /^(devices|servers|backends)\/(.+)\.crt$/.exec(rel);
    if (!m || m[2] === 'ca') continue;
    const key = byPath.get(`${m[1]}/${m[2]}.key`);
    if (!key) continue; // a CSR identity: the holder keeps its key
    try {
      if (!new X509Certificate(crt).checkPrivateKey(createPrivateKey(key))) problems.push(`${rel} and its key do not match`);
    } catch {
      problems.push(`${rel} or its key cannot be read`);
    }
  }
  return problems;
}

/** A revocation is journalled before the CRL is signed: the CRL read must list every serial the journal revoked. */
function checkCrl(dir: string, byPath: Map<string, Buffer>): string[] {
  const revoked = new Set<string>();
  for (const line of (byPath.get('journal.jsonl') ?? Buffer.alloc(0)).toString('utf8').split('\n')) {
    if (!line.includes('"t":"revoke"')) continue;
    try {
      const e = JSON.parse(line) as { t?: string; serial?: string };
      if (e.t === 'revoke' && typeof e.serial === 'string') revoked.add(e.serial);
    } catch {
      // a torn last line: CaStore.open drops it too
    }
  }
  if (revoked.size === 0) return [];
  const pem = byPath.get('crl.pem');
  if (!pem) return [`${path.join(dir, 'crl.pem')} is missing while certificates are revoked`];
  let listed: Set<string>;
  try {
    const crl = new x509.X509Crl(pem.toString('utf8').replace(/X509 CRL/g, 'CRL'));
    listed = new Set(crl.entries.map((e) => e.serialNumber.toUpperCase().replace(/^0+(?=.)/, '')));
  } catch {
    return [`${path.join(dir, 'crl.pem')} cannot be read`];
  }
  const missing = [...revoked].filter((s) => !listed.has(s.replace(/^0+(?=.)/, '')));
  return missing.length ? [`crl.pem does not yet list revoked serial(s) ${missing.slice(0, 5).join(', ')}`] : [];
}

/** Every image the catalogue names and every key the keyring names must be there, with the content named. */
function checkFirmware(byPath: Map<string, Buffer>): string[] {
  const problems: string[] = [];
  const catalogue = parseJson(byPath.get('catalogue/catalogue.json')) as { images?: { name?: string; file?: string; sha256?: string }[] } | undefined;
  for (const e of catalogue?.images ?? []) {
    const data = typeof e.file === 'string' ? byPath.get(`catalogue/images/${e.file}`) : undefined;
    if (!data) problems.push(`image ${String(e.name)} has no file`);
    else if (createHash('sha256').update(data).digest('hex') !== e.sha256) problems.push(`image ${String(e.name)} does not match its sha256`);
  }
  const keyring = parseJson(byPath.get('keys/keyring.json')) as { keys?: { id?: string }[] } | undefined;
  for (const k of keyring?.keys ?? []) {
    if (!byPath.has(`keys/${String(k.id)}.key`)) problems.push(`signing key ${String(k.id)} has no private key file`);
  }
  return problems;
}

function parseJson(data: Buffer | undefined): unknown {
  if (!data) return undefined;
  try {
    return JSON.parse(data.toString('utf8'));
  } catch {
    return undefined;
  }
}
