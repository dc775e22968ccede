import { createHash, randomBytes } from 'node:crypto';
import { promises as fs, existsSync } from 'node:fs';
import * as path from 'node:path';
import { CaStore } from '../../lib/pki/ca-store';
import { writeMosquittoConfig } from '../../lib/mosquitto/folders';
import { FirmwareService } from '../../lib/firmware/firmware-service';
import { RegistryFile } from '../../lib/fleet/registry-file';
import { PartSource } from '../../lib/backup/snapshot';
import { caSource, firmwareSource, registrySource } from '../../lib/backup/sources';
import type { KdfParams } from '../../lib/backup/archive-crypto';

/** Cheap scrypt for tests (the floor the reader accepts); the default is 8 times dearer. */
export const TEST_KDF: KdfParams = { N: 2 ** 14, r: 8, p: 1 };
export const PASSPHRASE = 'correct horse battery staple';

export const DEVICES = ['84f3eb0000a1', '84f3eb0000a2', '84f3eb0000a3'];
export const PRODUCT = 'ESP8266_WEMOS_D1MINIPRO';

export interface FleetState {
  root: string;
  store: CaStore;
  service: FirmwareService;
  registry: RegistryFile;
  sources: PartSource[];
  revokedSerial: string;
}

/**
 * A fleet's state as the nodes leave it, in `root`: a CA with devices (one revoked), a server
 * and backend identity and its Mosquitto folder; a firmware folder with a signed image and one
 * signed with a rotated key; a registry file with the devices in it.
 */
export async function makeFleetState(root: string, options: { mosquittoPort?: number } = {}): Promise<FleetState> {
  const store = await CaStore.open({ dir: path.join(root, 'esp-fleet-ca') });
  for (const id of DEVICES) await store.issueDevice(id);
  // The Mosquitto folder inside the CA folder (the default), on 127.0.0.1 only.
  await writeMosquittoConfig(store, { port: options.mosquittoPort ?? 18883, bindAddress: '127.0.0.1' });
  const revokedSerial = (await store.issueDevice('84f3eb0000ff')).record.serial;
  await store.revoke(revokedSerial, 'keyCompromise');
  const service = await FirmwareService.open(path.join(root, 'esp-fleet-firmware'));
  await service.publish({ data: unsignedBuild(), platform: 'esp8266', product: PRODUCT, version: '00.00.01.a' });
  await service.keyring.rotate('esp8266-rsa');
  await service.publish({ data: unsignedBuild(), platform: 'esp8266', product: PRODUCT, version: '00.00.02.a' });
  await service.setGroups(DEVICES[0], ['garage']);
  const registry = await RegistryFile.open(path.join(root, 'esp-fleet-registry-fleet1.json'), { intervalMs: 60_000 });
  for (const id of DEVICES) registry.registry.recordWill(id, true);
  await registry.flush();
  const sources = [caSource(store), firmwareSource('fw1', service), registrySource('fleet1', registry)];
  return { root, store, service, registry, sources, revokedSerial };
}

export function unsignedBuild(size = 20_000): Buffer {
  return Buffer.concat([Buffer.from([0xe9]), randomBytes(size - 1)]);
}

/** Every file and folder below `dir` (names, modes, SHA-256 of contents): to compare "nothing changed". */
export async function treeSnapshot(dir: string): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  if (!existsSync(dir)) return out;
  async function walk(rel: string): Promise<void> {
    for (const e of await fs.readdir(path.join(dir, rel), { withFileTypes: true })) {
      const r = rel ? `${rel}/${e.name}` : e.name;
      const full = path.join(dir, r);
      const stat = await fs.lstat(full);
      if (e.isDirectory()) {
        out[`${r}/`] = (stat.mode & 0o777).toString(8);
        await walk(r);
      } else {
        out[r] = `${(stat.mode & 0o777).toString(8)} ${createHash('sha256').update(await fs.readFile(full)).digest('hex')}`;
      }
    }
  }
  await walk('');
  return out;
}
