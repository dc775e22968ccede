import * as path from 'node:path';
import { mosquittoFilesIn, renderMosquittoConf, MosquittoListener, MOSQUITTO_FILE_NAMES } from '../mosquitto/mosquitto-config';
import type { FolderFile } from './read-folder';

/**
 * The CA journal records each Mosquitto folder it keeps current by absolute path, and
 * mosquitto.conf names its files by absolute path. A CA restored into another folder (a new
 * machine, another user directory) would go on writing CRL and ACL into the old place, and its
 * Mosquitto config would point there. So Mosquitto folders that lay inside the CA folder (the
 * default, `<CA folder>/mosquitto`) move with it: their journal entries and mosquitto.conf are
 * rewritten for the new place. Folders elsewhere are left as recorded and reported.
 */
export function relocateCaFiles(files: FolderFile[], from: string, to: string): { files: FolderFile[]; moved: string[]; outside: string[] } {
  const moved: string[] = [];
  const outside: string[] = [];
  const journal = files.find((f) => f.path === 'journal.jsonl');
  if (!journal) return { files, moved, outside };
  const confs = new Map<string, { dir: string; listener: MosquittoListener }>();
  const lines = journal.data.toString('utf8').split('\n');
  let changed = false;
  const rewritten = lines.map((line) => {
    if (!line.startsWith('{"t":"mosquitto"')) return line;
    let entry: { t: string; m: { dir: string; listener: MosquittoListener } };
    try {
      entry = JSON.parse(line);
    } catch {
      return line;
    }
    const dir = entry.m?.dir;
    if (typeof dir !== 'string') return line;
    const rel = path.relative(from, dir);
    if (rel.startsWith('..') || path.isAbsolute(rel)) {
      if (!outside.includes(dir)) outside.push(dir);
      return line;
    }
    const next = path.join(to, rel);
    if (from === to) return line;
    changed = true;
    if (!moved.includes(next)) moved.push(next);
    confs.set(rel.split(path.sep).join('/'), { dir: next, listener: entry.m.listener });
    return JSON.stringify({ ...entry, m: { ...entry.m, dir: next } });
  });
  if (!changed) return { files, moved, outside };
  const out = files.map((f) => {
    if (f === journal) return { ...f, data: Buffer.from(rewritten.join('\n'), 'utf8') };
    for (const [rel, c] of confs) {
      const conf = rel ? `${rel}/${MOSQUITTO_FILE_NAMES.conf}` : MOSQUITTO_FILE_NAMES.conf;
      if (f.path === conf) return { ...f, data: Buffer.from(renderMosquittoConf(mosquittoFilesIn(c.dir), c.listener), 'utf8') };
    }
    return f;
  });
  return { files: out, moved, outside };
}
