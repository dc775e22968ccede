import * as path from 'node:path';
import { BackupError } from './archive-crypto';
import type { ManifestPart } from './payload';
import type { Role } from './parts';

/** A place restored state can go: the folder or file a deployed node uses now. */
export interface RestorePlace {
  role: Role;
  /** The node's key (its id); none for the CA. */
  key?: string;
  path: string;
}

export interface PlannedPart {
  part: ManifestPart;
  path: string;
}

/**
 * Where each part of an archive goes:
 * 1. the CA part into the CA place;
 * 2. a firmware or registry part into the place of the node with the same key (Node-RED keeps
 *    node ids when flows are imported);
 * 3. else, when one part and one place of that role are left over, into that place;
 * 4. else where it was relative to the Node-RED user directory, when it lay inside it
 *    (`home` is the user directory now).
 * A part with no place is an error naming it; two parts never share a place.
 */
export function planRestore(parts: ManifestPart[], places: RestorePlace[], home?: string): PlannedPart[] {
  const plan: PlannedPart[] = [];
  const used = new Set<RestorePlace>();
  const left: ManifestPart[] = [];
  for (const part of parts) {
    const key = part.role === 'ca' ? undefined : part.id.slice(part.role.length + 1);
    const place = places.find((p) => p.role === part.role && (part.role === 'ca' || p.key === key) && !used.has(p));
    if (place) {
      used.add(place);
      plan.push({ part, path: place.path });
    } else left.push(part);
  }
  const unplaced: ManifestPart[] = [];
  for (const part of left) {
    const sameRoleParts = left.filter((p) => p.role === part.role);
    const freePlaces = places.filter((p) => p.role === part.role && !used.has(p));
    if (sameRoleParts.length === 1 && freePlaces.length === 1) {
      used.add(freePlaces[0]);
      plan.push({ part, path: freePlaces[0].path });
    } else if (home && part.inHome) {
      plan.push({ part, path: path.join(home, part.inHome) });
    } else unplaced.push(part);
  }
  if (unplaced.length) {
    throw new BackupError(
      `no place to restore ${unplaced.map((p) => `${p.id} (from ${p.source})`).join(', ')}: deploy the nodes that use them first (import the flows), then restore again; nothing was written`,
    );
  }
  for (const a of plan) {
    for (const b of plan) {
      if (a === b) continue;
      const rel = path.relative(a.path, b.path);
      if (rel === '' || (!rel.startsWith('..') && !path.isAbsolute(rel))) {
        throw new BackupError(`${a.part.id} and ${b.part.id} would both be restored into ${a.path}; nothing was written`);
      }
    }
  }
  return plan;
}
