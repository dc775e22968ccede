import type { Node, NodeAPI } from 'node-red';
import type { StatePart } from '../../lib/backup/backup-actions';

/**
 * How esp-cert-issuer finds the rest of a fleet's state for `backup` and `restore`: each
 * esp-firmware-server and esp-fleet node exposes its folder or file, the esp-ca it uses and a
 * way to let its pending writes land; the issuer collects those of its own esp-ca.
 */
const PROPERTY = 'espFleetBackupState';

export interface BackupState {
  role: StatePart['role'];
  /** The esp-ca node whose fleet this state belongs to. */
  ca: string | undefined;
  path: string;
  settle(): Promise<void>;
  /** After a restore: this node's copy in memory is stale and must not be written back. */
  retire?(): void;
}

export function exposeBackupState(node: Node, state: BackupState): void {
  (node as unknown as Record<string, unknown>)[PROPERTY] = state;
}

/** A firmware folder: the service's keyring and catalogue settle once the server has started (or failed to). */
export function firmwareState(ca: string, folder: string, starting: Promise<{ keyring: { idle(): Promise<void> }; catalogue: { idle(): Promise<void> } }>): BackupState {
  return {
    role: 'firmware',
    ca,
    path: folder,
    settle: () => starting.then(async (s) => {
      await s.keyring.idle();
      await s.catalogue.idle();
    }, () => undefined),
  };
}

/** A registry file: part of the fleet of the esp-ca its esp-fleet node takes its TLS identity from. */
export function registryState(config: { tlsSource?: string; ca?: string }, file: string, current: () => { flush(): Promise<void>; retire(): void } | undefined): BackupState {
  return {
    role: 'registry',
    ca: (config.tlsSource || 'esp-ca') === 'esp-ca' ? config.ca : undefined,
    path: file,
    settle: async () => current()?.flush(),
    // Its close-time flush would otherwise put the registry from before back over the restored one.
    retire: () => current()?.retire(),
  };
}

/** The firmware folders and registry files of the deployed nodes that use esp-ca `caId`. */
export function backupStatesOf(RED: NodeAPI, caId: string): StatePart[] {
  const out: StatePart[] = [];
  RED.nodes.eachNode((def) => {
    const live = RED.nodes.getNode(def.id) as unknown as Record<string, unknown> | null;
    const state = live?.[PROPERTY] as BackupState | undefined;
    if (state && state.ca === caId) out.push({ role: state.role, key: def.id, path: state.path, settle: state.settle, retire: state.retire });
  });
  return out;
}
