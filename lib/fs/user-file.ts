import * as path from 'node:path';

/**
 * A file a msg names: relative to the Node-RED user directory and not leaving it, or absolute
 * (a backup disk, a certificate folder); either way with one of `extensions`, so a msg can
 * never make us overwrite flows.json, settings.js or a key. Errors are made by `fail`, so each
 * caller keeps its own error type and words.
 */
export function fileInUserDir(
  userDir: string,
  file: unknown,
  rule: { extensions: readonly string[]; what: string; example: string; fail: (message: string) => Error },
): string {
  if (typeof file !== 'string' || file.trim() === '' || file.includes('\0')) throw rule.fail(`file must be the name of a ${rule.what}, e.g. "${rule.example}"`);
  const name = file.trim();
  if (!rule.extensions.some((ext) => name.toLowerCase().endsWith(ext))) {
    throw rule.fail(`a ${rule.what} name ends in ${rule.extensions.join(' or ')}, got ${JSON.stringify(name.slice(-40))}`);
  }
  if (path.isAbsolute(name)) return path.normalize(name);
  const home = path.resolve(userDir);
  const resolved = path.resolve(home, name);
  const rel = path.relative(home, resolved);
  if (rel.startsWith('..') || path.isAbsolute(rel)) throw rule.fail(`${JSON.stringify(name.slice(0, 80))} leaves the Node-RED user directory; give an absolute path to write elsewhere`);
  return resolved;
}
