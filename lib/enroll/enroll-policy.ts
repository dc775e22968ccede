import { normalizeDeviceId } from '../device-id';

/** Who is approved without a person (docs/enrollment.md, Who may enroll). */
export const ENROLL_MODES = ['manual', 'allowlist', 'open'] as const;
export type EnrollMode = (typeof ENROLL_MODES)[number];

export interface EnrollPolicy {
  mode: EnrollMode;
  /** Device ids (12 hex digits) and id prefixes (1 to 11 hex digits followed by `*`), for `allowlist`. */
  allow: string[];
}

/** An id prefix of the allowlist: 1 to 11 hex digits and `*`. */
export const ENROLL_PREFIX = /^[0-9a-f]{1,11}\*$/i;

/** Reads the policy as the esp-ca node's fields give it; a bad entry is an error that names it. */
export function parseEnrollPolicy(mode: unknown, allow: unknown): EnrollPolicy {
  const m = mode === undefined || mode === '' ? 'manual' : mode;
  if (!(ENROLL_MODES as readonly unknown[]).includes(m)) throw new Error(`enrollment policy must be one of ${ENROLL_MODES.join(', ')}, got ${JSON.stringify(String(mode).slice(0, 20))}`);
  const entries = Array.isArray(allow) ? allow.map(String) : typeof allow === 'string' ? allow.split(/[\s,]+/).filter(Boolean) : [];
  const list = entries.map((e) => {
    const lower = e.trim().toLowerCase();
    if (ENROLL_PREFIX.test(lower)) return lower;
    try {
      return normalizeDeviceId(lower);
    } catch {
      throw new Error(`allowlist entry ${JSON.stringify(e.slice(0, 40))} is neither a device id (84f3eb012345) nor an id prefix (84f3eb*)`);
    }
  });
  return { mode: m as EnrollMode, allow: [...new Set(list)] };
}

/** True when the policy approves `id` at once; otherwise it waits for a person. */
export function approvedAtOnce(policy: EnrollPolicy, id: string): boolean {
  if (policy.mode === 'open') return true;
  if (policy.mode === 'manual') return false;
  return policy.allow.some((e) => (e.endsWith('*') ? id.startsWith(e.slice(0, -1)) : id === e));
}
