import type { PartSource } from './snapshot';

/**
 * The parts of a backup from the objects that own them. Structural types: the backup needs
 * only a folder and a way to let pending writes land, not the classes themselves.
 */

/** A CaStore: `idle()` settles journal, CRL and Mosquitto-folder writes. */
export function caSource(store: { dir: string; idle(): Promise<void> }): PartSource {
  return { role: 'ca', path: store.dir, settle: () => store.idle() };
}

/** A FirmwareService folder: its keyring and catalogue settle their queued changes. */
export function firmwareSource(
  key: string,
  service: { dir: string; keyring: { idle(): Promise<void> }; catalogue: { idle(): Promise<void> } },
): PartSource {
  return {
    role: 'firmware',
    key,
    path: service.dir,
    settle: async () => {
      await service.keyring.idle();
      await service.catalogue.idle();
    },
  };
}

/** A RegistryFile: `flush()` writes what changed since its last write. */
export function registrySource(key: string, registry: { file: string; flush(): Promise<void> }): PartSource {
  return { role: 'registry', key, path: registry.file, settle: () => registry.flush() };
}
