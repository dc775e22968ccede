import { normalizeDeviceId } from '../device-id';
import type { Assignment, CatalogueEntry, ImageKind } from './types';
import { ParsedImageName, compareVersions, parseImageName } from './version';

/**
 * docs/wire-contract.md, "The next installable image": for a device running image N, the newest image of
 * the same product with a higher version whose signature the device can verify, i.e. signed
 * with a key that N trusts; never a lower version unless an operator assigned a rollback.
 *
 * Which keys N trusts is known only from N's catalogue entry, so a device whose current image
 * is not in the catalogue is offered nothing (never a guess). A key rotation therefore goes
 * v1 (trusts k1) → v2, the bridge (signed with k1, trusts k2) → v3 (signed with k2): a device
 * on v1 cannot verify v3 and gets v2; on v2 it gets v3.
 *
 * Assignments (the most specific one applies, as a whole: device id, then the device's groups
 * in the order given, then `product:<its product>`):
 * - `channel: c` — entries of channel c are offered besides the stable ones (entries without a
 *   channel); entries of any channel are offered only to devices assigned that channel.
 *   `channel: stable` = stable only (e.g. a device taken out of its group's beta).
 * - `pin: P` — exactly P when it is higher than N; nothing when equal or lower.
 * - `rollback: R` — exactly R, also when lower than N (nothing once the device runs R).
 * Pins and rollbacks are still subject to the trust rule and the free space; they concern
 * only requests for their image's kind (`app` or `spiffs`), other kinds follow the default rule.
 *
 * Only images of the running image's platform are ever offered.
 *
 * Every "nothing" comes with its reason, for the server's log and the body a device gets.
 */

export interface NextImageRequest {
  /** The image the device runs (`curimage`, `x-ESP8266-version`, status `espimage`). */
  currentImage: string;
  /** The device asking (from its client certificate's CN). */
  deviceId?: string;
  /** The device's groups, most important first: the first one with an assignment applies. */
  groups?: string[];
  /** What is asked for (`x-ESP8266-mode`); default `app`. */
  kind?: ImageKind;
  /** Bytes the device can take (`x-ESP8266-free-space`), when it says. */
  freeSpace?: number;
}

/**
 * Why there is nothing: `bad-request` (malformed current image, device id or kind),
 * `unknown-image` (current image not in the catalogue), `too-large` (does not fit the free
 * space), `up-to-date` (nothing newer, or the device already runs its pinned/rollback image),
 * `unverifiable` (newer images exist but the device could not verify them: a missing bridge),
 * `bad-assignment` (the assigned image is gone or of another product). What a device is told
 * for each is the transport's (lib/firmware/http/status-codes.ts).
 */
export type NoImageCode = 'bad-request' | 'unknown-image' | 'too-large' | 'up-to-date' | 'unverifiable' | 'bad-assignment';

export type NextImageResult =
  | { entry: CatalogueEntry; reason: string; assignment?: Assignment }
  | { none: string; code: NoImageCode; assignment?: Assignment };

export function nextImage(entries: readonly CatalogueEntry[], assignments: readonly Assignment[], request: NextImageRequest): NextImageResult {
  let current: ParsedImageName;
  try {
    current = parseImageName(request?.currentImage);
  } catch (err) {
    return { none: `the current image cannot be understood: ${(err as Error).message}`, code: 'bad-request' };
  }
  const kind: ImageKind = request.kind ?? 'app';
  if (kind !== 'app' && kind !== 'spiffs') return { none: `unknown image kind ${JSON.stringify(kind)}: app or spiffs`, code: 'bad-request' };
  let deviceId: string | undefined;
  if (request.deviceId !== undefined) {
    try {
      deviceId = normalizeDeviceId(request.deviceId);
    } catch (err) {
      return { none: (err as Error).message, code: 'bad-request' };
    }
  }
  const name = request.currentImage;
  const running = entries.find((e) => e.name === name);
  if (!running) {
    return {
      none: `current image ${name} is not in the catalogue, so the keys it trusts are unknown and no update can be offered; add ${name} with its trusted keys`,
      code: 'unknown-image',
    };
  }

  const assignment = pickAssignment(assignments, deviceId, request.groups ?? [], current.product);
  const by = assignment ? ` (assignment for ${assignment.target})` : '';
  const none = (code: NoImageCode, reason: string): NextImageResult => (assignment ? { none: reason + by, code, assignment } : { none: reason, code });
  const offer = (entry: CatalogueEntry, reason: string): NextImageResult => {
    const free = request.freeSpace;
    if (typeof free === 'number' && Number.isFinite(free) && free >= 0 && entry.size > free) {
      return none('too-large', `image of ${entry.size} bytes does not fit the reported free space ${free} (next would be ${entry.name})`);
    }
    return assignment ? { entry: { ...entry, trusts: [...entry.trusts] }, reason: reason + by, assignment } : { entry: { ...entry, trusts: [...entry.trusts] }, reason };
  };
  const untrusted = (e: CatalogueEntry): string =>
    `${e.name} is signed with key ${e.signedWith}, which ${name} does not trust (it trusts ${running.trusts.join(', ') || 'no key'}): the device could not verify it`;

  const fixedName = assignment?.pin ?? assignment?.rollback;
  if (assignment && fixedName !== undefined) {
    const verb = assignment.pin !== undefined ? 'pinned to' : 'rolled back to';
    const fixed = entries.find((e) => e.name === fixedName);
    if (!fixed) return none('bad-assignment', `${verb} ${fixedName}, which is not in the catalogue`);
    if (fixed.kind === kind) {
      if (fixed.product !== current.product) return none('bad-assignment', `${verb} ${fixedName}, of product ${fixed.product}, but the device runs product ${current.product}`);
      if (fixed.platform !== running.platform) return none('bad-assignment', `${verb} ${fixedName}, an ${fixed.platform} image, but the device runs an ${running.platform} image`);
      const order = compareVersions(fixed.version, current);
      if (order === 0) return none('up-to-date', `the device already runs ${fixedName}, which it is ${verb}`);
      if (order < 0 && assignment.pin !== undefined) {
        return none('up-to-date', `pinned to ${fixedName}, lower than the running ${name}: a pin never downgrades, assign a rollback to go back`);
      }
      if (!running.trusts.includes(fixed.signedWith)) return none('unverifiable', untrusted(fixed));
      return offer(fixed, `${verb} ${fixedName}`);
    }
  }

  const channel = assignment?.channel !== undefined && assignment.channel !== 'stable' ? assignment.channel : undefined;
  const newer = entries.filter(
    (e) =>
      e.product === current.product &&
      e.platform === running.platform &&
      e.kind === kind &&
      (e.channel === undefined || e.channel === channel) &&
      compareVersions(e.version, current) > 0,
  );
  const where = `${kind === 'app' ? '' : `${kind} `}image of ${current.product} newer than ${current.version}${channel ? ` in the stable or ${channel} channel` : ' in the stable channel'}`;
  if (newer.length === 0) return none('up-to-date', `no ${where}`);
  const verifiable = newer.filter((e) => running.trusts.includes(e.signedWith));
  if (verifiable.length === 0) {
    const names = newer.map((e) => `${e.name} (key ${e.signedWith})`).join(', ');
    return none(
      'unverifiable',
      `no ${where} that ${name} can verify: it trusts ${running.trusts.join(', ') || 'no key'}, but ${names} ` +
        `${newer.length === 1 ? 'is' : 'are'} signed otherwise; a bridge image signed with a trusted key and carrying the new one is missing`,
    );
  }
  const best = verifiable.reduce((a, b) => (compareVersions(b.version, a.version) > 0 ? b : a));
  return offer(best, `newest ${where} that ${name} can verify`);
}

/** The assignment that applies: the device's own, else its first group's that has one, else its product's. */
export function pickAssignment(assignments: readonly Assignment[], deviceId: string | undefined, groups: readonly string[], product: string): Assignment | undefined {
  const find = (target: string): Assignment | undefined => assignments.find((a) => a.target === target);
  if (deviceId !== undefined) {
    const own = find(deviceId);
    if (own) return own;
  }
  for (const g of groups) {
    const a = find(`group:${g}`);
    if (a) return a;
  }
  return find(`product:${product}`);
}
