import { normalizeDeviceId } from '../device-id';

/**
 * Which devices a rollout is for (docs/rollout.md): `*`, device ids, `group:<name>` (the update
 * server's device groups) and `image:<prefix>` (devices whose reported image starts with it),
 * separated by commas or spaces; a device is selected when any term names it.
 */
export interface Selection {
  all: boolean;
  ids: string[];
  groups: string[];
  imagePrefixes: string[];
}

/** What the selection is matched against: a device the fleet knows. */
export interface Candidate {
  id: string;
  image?: string;
  groups: readonly string[];
}

const GROUP = /^[a-z0-9][a-z0-9_-]{0,31}$/;
const IMAGE_PREFIX = /^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$/;
const MAX_TERMS = 10_000;

/** Reads `msg.devices` or the node's field: a string of terms or a list of them; an empty one is an error. */
export function parseSelection(input: unknown): Selection {
  const terms = Array.isArray(input) ? input : typeof input === 'string' ? input.split(/[\s,;]+/).filter(Boolean) : input === undefined || input === null ? [] : [input];
  if (terms.length === 0) throw new Error('devices must be *, device ids, group:<name> or image:<prefix> (separated by commas)');
  if (terms.length > MAX_TERMS) throw new Error(`devices lists at most ${MAX_TERMS} terms`);
  const out: Selection = { all: false, ids: [], groups: [], imagePrefixes: [] };
  const bad: string[] = [];
  for (const term of terms) {
    const t = typeof term === 'string' ? term.trim() : term;
    if (t === '*') out.all = true;
    else if (typeof t === 'string' && t.startsWith('group:')) {
      const g = t.slice(6);
      if (GROUP.test(g)) out.groups.push(g);
      else bad.push(t);
    } else if (typeof t === 'string' && t.startsWith('image:')) {
      const p = t.slice(6);
      if (IMAGE_PREFIX.test(p)) out.imagePrefixes.push(p);
      else bad.push(t);
    } else {
      try {
        out.ids.push(normalizeDeviceId(t));
      } catch {
        bad.push(String(t));
      }
    }
  }
  if (bad.length) {
    const shown = bad.slice(0, 5).map((b) => JSON.stringify(b.slice(0, 40))).join(', ');
    throw new Error(`devices: ${shown} ${bad.length > 1 ? 'are' : 'is'} not a device id (such as 84f3eb012345), group:<name> or image:<prefix>`);
  }
  out.ids = [...new Set(out.ids)];
  out.groups = [...new Set(out.groups)];
  out.imagePrefixes = [...new Set(out.imagePrefixes)];
  return out;
}

/** True when the selection names groups, which only the update server knows. */
export function needsGroups(selection: Selection): boolean {
  return selection.groups.length > 0;
}

/**
 * The selected devices in a stable order: those named by id first (in the order given, even
 * when the fleet has not seen them yet), then the fleet's devices that a `*`, group or image
 * term selects, in the order of `candidates`.
 */
export function selectDevices(selection: Selection, candidates: readonly Candidate[]): string[] {
  const picked = new Set(selection.ids);
  for (const c of candidates) {
    if (picked.has(c.id)) continue;
    const byGroup = c.groups.some((g) => selection.groups.includes(g));
    const byImage = c.image !== undefined && selection.imagePrefixes.some((p) => c.image!.startsWith(p));
    if (selection.all || byGroup || byImage) picked.add(c.id);
  }
  return [...picked];
}
