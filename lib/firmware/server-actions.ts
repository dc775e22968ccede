import { FirmwareService, PublishInput } from './firmware-service';
import { assertScheme } from './keyring';
import type { CatalogueEntry } from './types';
import { normalizeDeviceId } from '../device-id';

/** What `esp-firmware-server` does for each `msg.topic`; the node only moves msgs. */
export const FIRMWARE_ACTIONS = ['publish', 'list', 'remove', 'assign', 'unassign', 'assignments', 'keys', 'rotate', 'public-key', 'config', 'groups', 'bare-product', 'outdated'] as const;
export type FirmwareAction = (typeof FIRMWARE_ACTIONS)[number];

export function parseFirmwareAction(value: unknown): FirmwareAction {
  if (typeof value === 'string' && (FIRMWARE_ACTIONS as readonly string[]).includes(value)) return value as FirmwareAction;
  throw new Error(`unknown action ${JSON.stringify(value)}: set msg.topic to one of ${FIRMWARE_ACTIONS.join(', ')}`);
}

type Msg = { payload?: unknown; [key: string]: unknown };

/** A msg may carry the image as a Buffer payload with its details beside it, or one object. */
function publishInput(msg: Msg): PublishInput {
  const p = msg.payload;
  const details = (Buffer.isBuffer(p) ? msg : p) as Record<string, unknown> | undefined;
  if (!details || typeof details !== 'object') throw new Error('publish needs msg.payload = the image (Buffer) with msg.platform, msg.product, msg.version, or an object with file/data and those');
  const str = (k: string): string | undefined => (typeof details[k] === 'string' ? (details[k] as string) : undefined);
  const list = details.trusts;
  return {
    data: Buffer.isBuffer(p) ? p : Buffer.isBuffer(details.data) ? (details.data as Buffer) : undefined,
    file: str('file'),
    platform: details.platform as PublishInput['platform'],
    kind: details.kind as PublishInput['kind'],
    name: str('name'),
    product: str('product'),
    version: str('version'),
    channel: str('channel'),
    scheme: details.scheme === undefined ? undefined : assertScheme(details.scheme),
    signWith: str('signWith'),
    trusts: Array.isArray(list) ? (list as string[]) : typeof list === 'string' ? list.split(/[\s,]+/).filter(Boolean) : undefined,
  };
}

/**
 * `outdated` takes the devices as an array or as an object of them: each with `id` (or `device`)
 * and the `image` it runs. A row that says it is offline (`online: false`, as esp-status's fleet
 * table rows do) is skipped, and so is an online row with no image yet (no status report so far):
 * neither could take a command now. A device with neither `online` nor an image is an error.
 */
function deviceImages(payload: unknown): { devices: { id: string; image: string }[]; skipped: number } {
  const list = Array.isArray(payload) ? payload : typeof payload === 'object' && payload !== null && !Buffer.isBuffer(payload) ? Object.values(payload) : undefined;
  if (!list) throw new Error('outdated needs msg.payload = a list of devices, each {id, image} (or an object of them)');
  const devices: { id: string; image: string }[] = [];
  let skipped = 0;
  for (const d of list as unknown[]) {
    const o = (typeof d === 'object' && d !== null ? d : {}) as Record<string, unknown>;
    const id = normalizeDeviceId(o.id ?? o.device);
    const hasImage = typeof o.image === 'string' && o.image !== '';
    if (o.online === false || (typeof o.online === 'boolean' && !hasImage)) {
      skipped++;
      continue;
    }
    if (!hasImage) throw new Error(`device ${JSON.stringify(o.id ?? o.device ?? d)} has no image: each needs {id, image}`);
    devices.push({ id, image: o.image as string });
  }
  return { devices, skipped };
}

const summary = (e: CatalogueEntry): Omit<CatalogueEntry, 'file'> => {
  const { file: _file, ...rest } = e;
  void _file;
  return rest;
};

export async function runFirmwareAction(service: FirmwareService, action: FirmwareAction, msg: Msg, baseDir?: string): Promise<unknown> {
  const p = msg.payload;
  const obj = (typeof p === 'object' && p !== null && !Buffer.isBuffer(p) ? p : {}) as Record<string, unknown>;
  switch (action) {
    case 'publish': {
      const { entry, signature } = await service.publish(publishInput(msg), baseDir);
      return { action, signature, image: summary(entry) };
    }
    case 'list': {
      const product = typeof p === 'string' && p ? p : typeof obj.product === 'string' ? obj.product : undefined;
      const images = service.catalogue.list({ product }).map(summary);
      return { action, images, count: images.length };
    }
    case 'remove':
      return { action, removed: summary(await service.catalogue.remove(String(typeof p === 'string' ? p : obj.name))) };
    case 'assign':
      return { action, assignment: await service.catalogue.assign(obj as never) };
    case 'unassign':
      return { action, removed: await service.catalogue.unassign(typeof p === 'string' ? p : String(obj.target ?? '')) };
    case 'assignments':
      return { action, assignments: service.catalogue.assignments() };
    case 'keys':
      return { action, keys: service.keyring.list().map((k) => ({ ...k, current: service.keyring.isCurrent(k.id) })) };
    case 'rotate': {
      const key = await service.keyring.rotate(assertScheme(typeof p === 'string' ? p : obj.scheme));
      return { action, key, hint: 'publish the bridge image signed with the old key and trusting this one before any image signed with it' };
    }
    case 'public-key': {
      const id = typeof p === 'string' && p ? p : typeof obj.id === 'string' ? obj.id : (await service.keyring.current(assertScheme(obj.scheme ?? 'esp8266-rsa'))).id;
      const exported = service.keyring.exportPublic(id);
      return { action, ...exported, hint: 'ESP8266: save pem as public.key beside the .ino; ESP32 v1: raw64 is the X||Y key' };
    }
    case 'groups':
      // Explicit, so a typo (`group:` for `groups:`) cannot silently take a device out of its groups.
      if (!('groups' in obj)) throw new Error('groups needs {device, groups: [...]} (an empty list takes the device out of all groups)');
      return { action, device: obj.device, groups: await service.setGroups(obj.device, obj.groups) };
    case 'bare-product':
      // The product of the group's bare versions (x-ESP8266-version without a product); product null clears it.
      if (!('product' in obj)) throw new Error('bare-product needs {group, product} (product null: the server\'s "Product for bare versions" again)');
      return { action, group: obj.group, product: (await service.setBareProduct(obj.group, obj.product)) ?? null };
    case 'outdated': {
      const { devices, skipped } = deviceImages(p);
      const outdated = service.outdated(devices);
      return { action, outdated, devices: outdated.map((o) => o.device), upToDate: devices.length - outdated.length, skipped };
    }
    case 'config': {
      const overrides = await service.setDeviceConfig(obj.device, obj.overrides ?? null);
      return { action, device: obj.device, overrides };
    }
  }
}
