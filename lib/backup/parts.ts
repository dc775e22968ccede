import { BackupError } from './archive-crypto';

/**
 * What a backup holds, part by part, and the names a part's files may have. Everything read
 * from an archive passes these checks before any byte of it is written.
 *
 * - `ca`: the CA store folder (lib/pki/ca-store.ts, lib/pki/store-layout.ts): ca.crt, ca.key, journal.jsonl, crl.pem,
 *   devices/, servers/, backends/ and the Mosquitto folder kept inside it.
 * - `firmware:<key>`: a firmware service folder (lib/firmware/firmware-service.ts): keys/,
 *   catalogue/ with its images, device-config.json, device-groups.json.
 * - `registry:<key>`: a device registry file (lib/fleet/registry-file.ts), stored as REGISTRY_ENTRY.
 *
 * `<key>` names the node a folder belongs to (its Node-RED id), so a restore can put each one
 * back where the same node looks for it.
 */
export const ROLES = ['ca', 'firmware', 'registry'] as const;
export type Role = (typeof ROLES)[number];

/** The one file name of a registry part. */
export const REGISTRY_ENTRY = 'registry.json';

const KEY = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;
/** One path segment: printable, no separators, no NUL, not `.` or `..`. */
const SEGMENT = /^[^/\\\0\u0001-\u001f\u007f]{1,255}$/;
const MAX_PATH = 1024;

export function partId(role: Role, key?: string): string {
  if (role === 'ca') return 'ca';
  if (typeof key !== 'string' || !KEY.test(key)) throw new BackupError(`a ${role} part needs a key of letters, digits, ".", "_" or "-" (at most 64), got ${JSON.stringify(String(key).slice(0, 80))}`);
  return `${role}:${key}`;
}

/** The role and key of a part id from an archive; anything else is refused. */
export function parsePartId(id: unknown): { role: Role; key?: string } {
  if (id === 'ca') return { role: 'ca' };
  if (typeof id === 'string') {
    const m = /^(firmware|registry):(.*)$/.exec(id);
    if (m && KEY.test(m[2])) return { role: m[1] as Role, key: m[2] };
  }
  throw new BackupError(`the archive names an unknown part ${JSON.stringify(String(id).slice(0, 80))}: only ca, firmware:<key> and registry:<key> are restored`);
}

/**
 * A file's path inside its part: relative, `/`-separated, no `.` or `..` segments, no empty
 * ones, no control characters or backslashes. It can only ever name a place below the folder
 * it is restored into.
 */
export function checkEntryPath(role: Role, relative: unknown): string {
  const bad = (why: string): BackupError => new BackupError(`the archive holds an unsafe path ${JSON.stringify(String(relative).slice(0, 120))} (${why}); nothing was written`);
  if (typeof relative !== 'string' || relative.length === 0) throw bad('empty');
  if (relative.length > MAX_PATH) throw bad('too long');
  if (relative.startsWith('/')) throw bad('absolute');
  const segments = relative.split('/');
  for (const s of segments) {
    if (s === '.' || s === '..') throw bad('a . or .. segment');
    if (!SEGMENT.test(s)) throw bad('an empty segment, a control character or a backslash');
  }
  if (role === 'registry' && relative !== REGISTRY_ENTRY) throw bad(`a registry part holds only ${REGISTRY_ENTRY}`);
  return relative;
}

/** Permission bits only: no set-id or sticky bits come back from an archive. */
export function checkMode(mode: unknown): number {
  if (typeof mode !== 'number' || !Number.isInteger(mode) || mode < 0 || mode > 0o777) {
    throw new BackupError(`the archive holds a file mode ${JSON.stringify(mode)} outside 0..0777; nothing was written`);
  }
  return mode;
}
