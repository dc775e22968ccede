import { promises as fs } from 'node:fs';
import * as path from 'node:path';
import { X509Certificate } from 'node:crypto';
import type { FolderFile } from './read-folder';
import type { Role } from './parts';

/**
 * When a restore would throw away something that exists only here. Without `force`, a restore
 * is refused when the folder it replaces holds
 *
 * - a DEVICE certificate the archive does not hold (by fingerprint): devices out there carry
 *   it, and the restored CA would not know its serial;
 * - a firmware signing key the archive does not hold: devices that trust it could never be
 *   updated again;
 * - a catalogue image (by SHA-256) the archive does not hold.
 *
 * So a fresh Node-RED, whose CA has just issued its own server and backend identities and
 * whose update server has not published anything, is restored over without `force`. Registry
 * files are never a reason: they are a cache the fleet refills. With `force`, the replaced
 * folders are still kept aside, never deleted.
 */
export async function unknownLocalState(role: Role, target: string, archived: FolderFile[]): Promise<string[]> {
  if (role === 'ca') return unknownDevices(target, archived);
  if (role === 'firmware') return unknownFirmware(target, archived);
  return [];
}

async function unknownDevices(dir: string, archived: FolderFile[]): Promise<string[]> {
  const known = new Set(certRecords(archived.find((f) => f.path === 'journal.jsonl')?.data).map((r) => r.sha256));
  for (const f of archived) {
    const fp = certFingerprint(f);
    if (fp) known.add(fp);
  }
  const local = certRecords(await readIfThere(path.join(dir, 'journal.jsonl'))).filter((r) => r.kind === 'device');
  // A journal lost here would hide them: the device folder shows them too.
  const names = await fs.readdir(path.join(dir, 'devices')).catch(() => [] as string[]);
  for (const name of names.filter((n) => n.endsWith('.crt') && n !== 'ca.crt')) {
    const fp = certFingerprint({ path: `devices/${name}`, mode: 0, data: (await readIfThere(path.join(dir, 'devices', name))) ?? Buffer.alloc(0) });
    if (fp) local.push({ kind: 'device', serial: '?', commonName: name.slice(0, -4), sha256: fp });
  }
  const unknown = [...new Set(local.filter((r) => !known.has(r.sha256)).map((r) => r.commonName))];
  return unknown.length
    ? [`the CA in ${dir} has issued device certificates the archive does not hold (${unknown.slice(0, 5).join(', ')}${unknown.length > 5 ? ', …' : ''})`]
    : [];
}

async function unknownFirmware(dir: string, archived: FolderFile[]): Promise<string[]> {
  const problems: string[] = [];
  const archivedKeys = new Set(keyIds(archived.find((f) => f.path === 'keys/keyring.json')?.data));
  const localKeys = keyIds(await readIfThere(path.join(dir, 'keys', 'keyring.json'))).filter((id) => !archivedKeys.has(id));
  if (localKeys.length) problems.push(`the firmware folder ${dir} holds signing keys the archive does not hold (${localKeys.join(', ')})`);
  const archivedImages = new Set(images(archived.find((f) => f.path === 'catalogue/catalogue.json')?.data).map((i) => i.sha256));
  const localImages = images(await readIfThere(path.join(dir, 'catalogue', 'catalogue.json'))).filter((i) => !archivedImages.has(i.sha256));
  if (localImages.length) problems.push(`the catalogue in ${dir} holds images the archive does not hold (${localImages.slice(0, 5).map((i) => i.name).join(', ')})`);
  return problems;
}

interface CertRecord {
  kind: string;
  serial: string;
  commonName: string;
  sha256: string;
}

/** The `cert` lines of a CA journal (lib/pki/journal.ts, JournalEntry). */
export function certRecords(journal: Buffer | undefined): CertRecord[] {
  const out: CertRecord[] = [];
  for (const line of (journal ?? Buffer.alloc(0)).toString('utf8').split('\n')) {
    if (!line.startsWith('{"t":"cert"')) continue;
    try {
      const e = JSON.parse(line) as { t?: string; r?: Partial<CertRecord> };
      const r = e.r;
      if (e.t === 'cert' && r && typeof r.serial === 'string' && typeof r.sha256 === 'string') {
        out.push({ kind: String(r.kind), serial: r.serial, commonName: String(r.commonName), sha256: r.sha256 });
      }
    } catch {
      // a torn last line
    }
  }
  return out;
}

function certFingerprint(f: FolderFile): string | undefined {
  if (!/^(devices|servers|backends)\/.+\.crt$/.test(f.path)) return undefined;
  try {
    return new X509Certificate(f.data).fingerprint256;
  } catch {
    return undefined;
  }
}

function keyIds(data: Buffer | undefined): string[] {
  const k = parse(data) as { keys?: { id?: unknown }[] } | undefined;
  return (Array.isArray(k?.keys) ? k.keys : []).map((x) => String(x?.id));
}

function images(data: Buffer | undefined): { name: string; sha256: string }[] {
  const c = parse(data) as { images?: { name?: unknown; sha256?: unknown }[] } | undefined;
  return (Array.isArray(c?.images) ? c.images : []).map((i) => ({ name: String(i?.name), sha256: String(i?.sha256) }));
}

function parse(data: Buffer | undefined): unknown {
  if (!data) return undefined;
  try {
    return JSON.parse(data.toString('utf8'));
  } catch {
    return undefined;
  }
}

async function readIfThere(file: string): Promise<Buffer | undefined> {
  try {
    return await fs.readFile(file);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw err;
  }
}
