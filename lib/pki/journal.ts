import { promises as fs } from 'node:fs';
import * as path from 'node:path';
import { X509Certificate as NodeX509 } from 'node:crypto';
import { AppendLog } from '../fs/append-log';
import { CaStoreError } from './ca-error';
import { normalizeSerial } from './names';
import { CertificateKind, IssuedRecord, RecordIndex, RevocationReason } from './records';
import { FILES, KIND_FOLDERS } from './store-layout';

/**
 * A folder that a keeper outside the CA writes from its records (lib/mosquitto). The CA only
 * remembers where it is, so that the keeper finds it again after a restart and a restore can
 * move it (lib/backup/relocate.ts rewrites these lines).
 */
export interface MosquittoFolderEntry {
  dir: string;
  listener: { port: number; bindAddress?: string };
  serverName?: string;
  scheme?: string;
}

/** One line of `journal.jsonl`: every change to the store, appended and synced before it counts. */
export type JournalEntry =
  | { t: 'cert'; r: IssuedRecord; der: string }
  | { t: 'revoke'; serial: string; at: string; reason: RevocationReason }
  | { t: 'mosquitto'; m: MosquittoFolderEntry }
  | { t: 'crl'; n: number };

export type Journal = AppendLog<JournalEntry>;

/** What replaying the journal gives: the records and the folders kept from them. */
export interface ReplayedState {
  index: RecordIndex;
  folders: MosquittoFolderEntry[];
}

/** Opens the journal of the store in `dir`; rebuilds it from the identity folders when it was lost. */
export async function openJournal(dir: string): Promise<{ journal: Journal } & ReplayedState> {
  const opened = await AppendLog.open<JournalEntry>(path.join(dir, FILES.journal));
  let entries = opened.entries;
  if (entries.length === 0) {
    // A journal lost after certificates were issued: rebuild what the identity folders show.
    entries = await rebuildJournal(dir);
    if (entries.length) await opened.log.rewrite(entries);
  }
  return { journal: opened.log, ...replay(entries) };
}

export function replay(entries: readonly JournalEntry[]): ReplayedState {
  const index = new RecordIndex();
  let folders: MosquittoFolderEntry[] = [];
  for (const e of entries) {
    switch (e.t) {
      case 'cert':
        index.add(e.r);
        break;
      case 'revoke': {
        const r = index.get(e.serial);
        if (r) Object.assign(r, { revokedAt: e.at, revocationReason: e.reason });
        break;
      }
      case 'mosquitto':
        folders = withFolder(folders, e.m);
        break;
      case 'crl':
        index.crlNumber = Math.max(index.crlNumber, e.n);
        break;
    }
  }
  return { index, folders };
}

/** The folder list with `entry` replacing an earlier entry for the same folder. */
export function withFolder(folders: readonly MosquittoFolderEntry[], entry: MosquittoFolderEntry): MosquittoFolderEntry[] {
  return folders.filter((m) => m.dir !== entry.dir).concat(entry);
}

/**
 * The journal is gone but certificates were issued: recover the latest certificate of each
 * identity from the folders devices download from, so their serials are never issued again.
 */
export async function rebuildJournal(dir: string): Promise<JournalEntry[]> {
  const entries: JournalEntry[] = [];
  for (const [kind, folder] of Object.entries(KIND_FOLDERS) as [CertificateKind, string][]) {
    const names = await fs.readdir(path.join(dir, folder)).catch(() => [] as string[]);
    for (const name of names.filter((n) => n.endsWith('.crt') && n !== 'ca.crt')) {
      const der = new NodeX509(await fs.readFile(path.join(dir, folder, name))).raw;
      const cert = new NodeX509(der);
      const cn = /CN=([^\n,]+)/.exec(cert.subject)?.[1] ?? '';
      entries.push({
        t: 'cert',
        der: der.toString('base64'),
        r: {
          serial: normalizeSerial(cert.serialNumber),
          commonName: cn,
          kind,
          notBefore: new Date(cert.validFrom).toISOString(),
          notAfter: new Date(cert.validTo).toISOString(),
          sha256: cert.fingerprint256,
          keySource: 'generated',
        },
      });
    }
  }
  return entries;
}

/** A certificate issued earlier, from the journal (only renewal needs one, so it is not kept in memory). */
export async function certificateDerFromJournal(journal: Journal, serial: string): Promise<Buffer> {
  await journal.idle();
  const text = await fs.readFile(journal.file, 'utf8');
  for (const line of text.split('\n')) {
    if (!line.includes(`"serial":"${serial}"`)) continue;
    const entry = JSON.parse(line) as JournalEntry;
    if (entry.t === 'cert' && entry.r.serial === serial) return Buffer.from(entry.der, 'base64');
  }
  throw new CaStoreError(`certificate ${serial} is not in the journal`);
}
