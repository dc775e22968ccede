import type { DeviceNow, Excluded } from './rollout';
import { needsGroups, parseSelection, selectDevices } from './selection';

/** The spec's target that means "whatever the update server offers each device" (image names always carry a `-`). */
export const NEWEST = 'newest';

/** The update server's answer for one device: the image it would offer, or why none (lib/firmware's `offerFor`). */
export type Offer = { next: string } | { none: string; code: string };

/**
 * Keeps the devices the update server would actually offer the target to (docs/rollout.md), so
 * a rollout never commands a device that would only get 304: another product, a pin, an image
 * it cannot verify, nothing newer. With `newest`, each device's target is its own offer.
 * Without a server (`offerFor` undefined) the target must be an image, and every device stays.
 * A named target that no selected device would be offered is an error: nothing starts.
 */
export function offeredDevices(target: string, devices: readonly DeviceNow[], offerFor?: (id: string, image: string) => Offer): { devices: DeviceNow[]; excluded: Excluded[]; upToDate: number } {
  if (!offerFor) {
    if (target === NEWEST) throw new Error('target "newest" needs the update server: choose it in the node');
    return { devices: [...devices], excluded: [], upToDate: devices.filter((d) => d.image === target).length };
  }
  const kept: DeviceNow[] = [];
  const excluded: Excluded[] = [];
  let upToDate = 0;
  for (const d of devices) {
    if (d.image === undefined || d.image === '') {
      excluded.push({ device: d.id, reason: 'has not reported its image yet' });
      continue;
    }
    if (d.image === target) {
      upToDate++;
      continue;
    }
    const offer = offerFor(d.id, d.image);
    if ('none' in offer) {
      if (offer.code === 'up-to-date' && target === NEWEST) upToDate++;
      else excluded.push({ device: d.id, reason: `offered nothing: ${offer.none}` });
    } else if (target === NEWEST) kept.push({ ...d, target: offer.next });
    else if (offer.next === target) kept.push(d);
    else excluded.push({ device: d.id, reason: `offered ${offer.next}, not ${target}` });
  }
  if (target !== NEWEST && kept.length === 0 && excluded.length > 0) {
    throw new Error(`no selected device would be offered ${target}: ${summarize(excluded)}`);
  }
  return { devices: kept, excluded, upToDate };
}

/** The most common reasons, counted: "3 offered, not; 1 has not reported its image yet". */
export function summarize(excluded: readonly Excluded[], most = 3): string {
  const counts = new Map<string, number>();
  for (const e of excluded) counts.set(e.reason, (counts.get(e.reason) ?? 0) + 1);
  const top = [...counts].sort((a, b) => b[1] - a[1]).slice(0, most);
  const rest = counts.size - top.length;
  return top.map(([reason, n]) => `${n} ${reason.slice(0, 160)}`).join('; ') + (rest > 0 ? `; and ${rest} other reasons` : '');
}

/** A device as the fleet knows it, with the update server's groups for it (none without a server). */
export interface FleetDevice extends DeviceNow {
  groups: readonly string[];
}

/** The update server as a rollout asks it: whether it holds an image, and what it would offer a device. */
export interface OfferingServer {
  hasImage(name: string): boolean;
  offerFor(id: string, image: string): Offer;
}

/**
 * The devices a rollout of `target` takes (docs/rollout.md): the selection's terms matched
 * against the fleet, then only those the server would offer the target to. Every refusal
 * (a bad term, groups without a server, an image the catalogue does not hold, a target nobody
 * would be offered) is an error, and nothing starts.
 */
export function chooseDevices(target: string, devicesInput: unknown, fleet: readonly FleetDevice[], server?: OfferingServer): { devices: DeviceNow[]; excluded: Excluded[]; upToDate: number } {
  const selection = parseSelection(devicesInput);
  if (needsGroups(selection) && !server) throw new Error('group: selections need the update server (its device groups): choose it in the node');
  if (server && target !== NEWEST && !server.hasImage(target)) throw new Error(`unknown image ${target}: the update server's catalogue does not hold it (publish it first, or use "newest")`);
  const byId = new Map(fleet.map((d) => [d.id, d]));
  const chosen = selectDevices(selection, fleet).map((id): DeviceNow => {
    const d = byId.get(id);
    return d ? { id, online: d.online, image: d.image, error: d.error } : { id, online: false, error: '' };
  });
  return offeredDevices(target, chosen, server && ((id, image) => server.offerFor(id, image)));
}
