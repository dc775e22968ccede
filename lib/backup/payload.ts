import { BackupError } from './archive-crypto';
import { Role, checkEntryPath, checkMode, parsePartId } from './parts';

/**
 * The plaintext of a backup: a JSON manifest, then one frame per file.
 *
 *   u32 BE manifest length, manifest (UTF-8 JSON)
 *   per file: u16 BE part length, part id (UTF-8)
 *             u16 BE path length, relative path (UTF-8, `/`-separated)
 *             u32 BE mode (permission bits)
 *             u64 BE size, the file's bytes
 *
 * Hand-written rather than tar: it is a few dozen lines, carries only regular files (no links,
 * devices, owners or absolute names for a reader to get wrong), and the mode and path of every
 * file are exactly what we wrote, checked by our own rules on the way back.
 */

export interface ArchiveFile {
  part: string;
  path: string;
  mode: number;
  data: Buffer;
}

export interface ManifestPart {
  id: string;
  role: Role;
  /** The absolute folder or file it was read from (shown on restore, and used to re-point paths inside it). */
  source: string;
  /** The source relative to the Node-RED user directory, when it lay inside it: where a restore with no matching node puts it. */
  inHome?: string;
  files: number;
}

export interface Manifest {
  format: 1;
  createdAt: string;
  parts: ManifestPart[];
  counts: { certificates: number; images: number; devices: number };
  /** SHA-256 fingerprint of the CA certificate, as openssl prints it. */
  caFingerprint: string;
}

export interface Payload {
  manifest: Manifest;
  files: ArchiveFile[];
}

const MAX_MANIFEST = 1024 * 1024;

/** Frames the payload as given; it checks nothing (the reader checks everything). */
export function encodePayload({ manifest, files }: Payload): Buffer {
  const chunks: Buffer[] = [];
  const json = Buffer.from(JSON.stringify(manifest), 'utf8');
  chunks.push(u32(json.length), json);
  for (const f of files) {
    const part = Buffer.from(f.part, 'utf8');
    const name = Buffer.from(f.path, 'utf8');
    const head = Buffer.alloc(2 + part.length + 2 + name.length + 4 + 8);
    let at = head.writeUInt16BE(part.length, 0);
    at += part.copy(head, at);
    at = head.writeUInt16BE(name.length, at);
    at += name.copy(head, at);
    at = head.writeUInt32BE(f.mode, at);
    head.writeBigUInt64BE(BigInt(f.data.length), at);
    chunks.push(head, f.data);
  }
  return Buffer.concat(chunks);
}

/**
 * Reads and checks a decrypted payload: frame bounds, known parts only (each in the manifest),
 * safe relative paths, permission bits only, no file twice, no file where another needs a
 * folder, file counts as the manifest says.
 */
export function decodePayload(buf: Buffer): Payload {
  const damaged = (why: string): BackupError => new BackupError(`damaged archive payload (${why}); nothing was written`);
  let at = 0;
  const need = (n: number): void => {
    if (at + n > buf.length) throw damaged('a frame runs past the end');
  };
  need(4);
  const manifestLength = buf.readUInt32BE(at);
  at += 4;
  if (manifestLength > MAX_MANIFEST) throw damaged('manifest too large');
  need(manifestLength);
  const manifest = readManifest(buf.subarray(at, at + manifestLength), damaged);
  at += manifestLength;

  const roleOf = new Map(manifest.parts.map((p) => [p.id, p.role]));
  const files: ArchiveFile[] = [];
  const seen = new Set<string>();
  while (at < buf.length) {
    need(2);
    const partLength = buf.readUInt16BE(at);
    at += 2;
    need(partLength);
    const part = buf.toString('utf8', at, at + partLength);
    at += partLength;
    const role = roleOf.get(part);
    if (!role) {
      parsePartId(part); // an unknown kind of part gets that error
      throw damaged(`file of part ${JSON.stringify(part)}, which the manifest does not list`);
    }
    need(2);
    const pathLength = buf.readUInt16BE(at);
    at += 2;
    need(pathLength);
    const relative = checkEntryPath(role, buf.toString('utf8', at, at + pathLength));
    at += pathLength;
    need(12);
    const mode = checkMode(buf.readUInt32BE(at));
    const size = buf.readBigUInt64BE(at + 4);
    at += 12;
    if (size > BigInt(buf.length - at)) throw damaged(`${relative} runs past the end`);
    const data = buf.subarray(at, at + Number(size));
    at += Number(size);
    const key = `${part}\0${relative}`;
    if (seen.has(key)) throw damaged(`${part} ${relative} appears twice`);
    seen.add(key);
    files.push({ part, path: relative, mode, data });
  }
  for (const f of files) {
    // A file at a/b needs a folder a: a file named a in the same part would clash on disk.
    const segments = f.path.split('/');
    for (let i = 1; i < segments.length; i++) {
      if (seen.has(`${f.part}\0${segments.slice(0, i).join('/')}`)) throw damaged(`${f.part} ${segments.slice(0, i).join('/')} is both a file and a folder`);
    }
  }
  for (const p of manifest.parts) {
    const count = files.filter((f) => f.part === p.id).length;
    if (count !== p.files) throw damaged(`part ${p.id} has ${count} files, the manifest says ${p.files}`);
    if (p.role === 'registry' && count !== 1) throw damaged(`registry part ${p.id} must hold exactly one file`);
  }
  return { manifest, files };
}

function readManifest(bytes: Buffer, damaged: (why: string) => BackupError): Manifest {
  let raw: unknown;
  try {
    raw = JSON.parse(bytes.toString('utf8'));
  } catch {
    throw damaged('the manifest is not JSON');
  }
  const m = raw as Partial<Manifest>;
  if (!m || typeof m !== 'object' || m.format !== 1 || !Array.isArray(m.parts) || typeof m.caFingerprint !== 'string' || !m.counts || typeof m.counts !== 'object') {
    throw damaged('the manifest lacks format, parts, counts or caFingerprint');
  }
  const parts: ManifestPart[] = [];
  for (const p of m.parts as unknown[]) {
    const part = p as Partial<ManifestPart>;
    if (!part || typeof part !== 'object' || typeof part.source !== 'string' || !Number.isSafeInteger(part.files) || (part.files as number) < 0) {
      throw damaged('a manifest part lacks id, source or files');
    }
    const { role } = parsePartId(part.id);
    if (part.role !== role) throw damaged(`part ${String(part.id)} is listed with role ${JSON.stringify(part.role)}`);
    if (parts.some((q) => q.id === part.id)) throw damaged(`part ${String(part.id)} is listed twice`);
    let inHome: string | undefined;
    if (part.inHome !== undefined) {
      try {
        inHome = checkEntryPath('ca', part.inHome);
      } catch {
        throw damaged(`part ${String(part.id)} has an unsafe inHome path`);
      }
    }
    parts.push({ id: part.id as string, role, source: part.source, ...(inHome ? { inHome } : {}), files: part.files as number });
  }
  if (parts.filter((p) => p.role === 'ca').length !== 1) throw damaged('an archive holds exactly one CA part');
  const count = (v: unknown): number => (Number.isSafeInteger(v) && (v as number) >= 0 ? (v as number) : 0);
  return {
    format: 1,
    createdAt: typeof m.createdAt === 'string' ? m.createdAt : '',
    parts,
    counts: { certificates: count(m.counts.certificates), images: count(m.counts.images), devices: count(m.counts.devices) },
    caFingerprint: m.caFingerprint,
  };
}

function u32(n: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(n);
  return b;
}
