import { promises as fs } from 'node:fs';
import type { NodeAPI, NodeDef } from 'node-red';
import type { EspFleetNode, EspFleetCredentials } from './types';
import type { EspCaNode } from '../esp-ca/types';
import { FleetClient } from '../../lib/fleet/fleet-client';
import { RegistryFile } from '../../lib/fleet/registry-file';
import { backendIdentity, TlsMaterial } from '../../lib/fleet/backend-identity';
import { folderInUserDir, errorText, positive } from '../shared/settings';
import { lifecycle } from '../shared/lifecycle';
import { schemeFromSettings, SchemeSettings } from '../shared/scheme';
import { exposeBackupState, registryState } from '../shared/backup-state';

interface EspFleetDef extends NodeDef, SchemeSettings {
  broker: string;
  tlsSource: 'esp-ca' | 'pem' | 'files' | 'none';
  ca: string;
  backendName: string;
  caFile: string;
  certFile: string;
  keyFile: string;
  statusInterval: string;
  registryFile: string;
  clientId: string;
}

/** Listeners per client event before Node.js warns of a leak: one per user node, with room to spare. */
const LISTENERS_PER_EVENT = 200;

export = function register(RED: NodeAPI): void {
  function EspFleet(this: EspFleetNode, config: EspFleetDef): void {
    RED.nodes.createNode(this, config);
    const node = this;
    const creds: EspFleetCredentials = node.credentials ?? {};
    let registryFile: RegistryFile | undefined;

    const life = lifecycle(node, async (own) => {
      const scheme = schemeFromSettings(config);
      const broker = config.broker?.trim() || 'mqtts://localhost:8883';
      const secure = broker.startsWith('mqtts:');
      if (!secure) node.warn(`${broker} is not encrypted: devices and commands travel in clear text. Use mqtts:// with the CA.`);
      const tls = secure ? await tlsMaterial(config, creds) : undefined;
      registryFile = await RegistryFile.open(folderInUserDir(RED, config.registryFile, `esp-fleet-registry-${node.id}.json`), {
        defaultStatusIntervalMs: positive(config.statusInterval, 'status interval') ?? 60_000,
      });
      const file = registryFile;
      // Flushed last (disposers run newest first), after the client has stopped changing it.
      own.onClose(() => file.flush());
      const client = new FleetClient({
        url: broker,
        tls,
        clientId: config.clientId?.trim() || undefined,
        scheme,
        registry: file.registry,
        onRegistryChange: () => file.changed(),
      });
      // Every user node and dispatcher adds its listeners, and removes them on close (nodes/shared/lifecycle.ts):
      // more than this many on one event means listeners leak, and Node.js says so.
      client.setMaxListeners(LISTENERS_PER_EVENT);
      own.onClose(() => client.close());
      own.listen(client, 'state', (state: string, detail?: string) => node.log(`broker ${broker}: ${state}${detail ? ` (${detail})` : ''}`));
      client.start();
      return client;
    }, { badges: false, logStartError: 'esp-fleet cannot start' });
    node.fleet = () => life.ready;
    exposeBackupState(node, registryState(config, folderInUserDir(RED, config.registryFile, `esp-fleet-registry-${node.id}.json`), () => registryFile));

    async function tlsMaterial(c: EspFleetDef, credentials: EspFleetCredentials): Promise<TlsMaterial> {
      switch (c.tlsSource || 'esp-ca') {
        case 'esp-ca': {
          const caNode = RED.nodes.getNode(c.ca) as EspCaNode | null;
          if (!caNode) throw new Error('choose the esp-ca node whose backend identity Node-RED uses, or give PEM/file TLS material');
          const identity = await backendIdentity(await caNode.store(), c.backendName?.trim() || 'node-red');
          if (identity.issued) node.log(`issued the backend identity "${c.backendName || 'node-red'}" from the CA`);
          return identity;
        }
        case 'pem':
          if (!credentials.caPem || !credentials.certPem || !credentials.keyPem) throw new Error('PEM TLS needs the CA certificate, the client certificate and its key');
          return { ca: credentials.caPem, cert: credentials.certPem, key: credentials.keyPem };
        case 'files': {
          // Relative paths are inside the Node-RED user directory, like every other path we take.
          const read = (label: string, f: string): Promise<string> =>
            f?.trim() ? fs.readFile(folderInUserDir(RED, f, ''), 'utf8') : Promise.reject(new Error(`the ${label} file is not set`));
          const [ca, cert, key] = await Promise.all([read('CA certificate', c.caFile), read('client certificate', c.certFile), read('client key', c.keyFile)]);
          return { ca, cert, key };
        }
        case 'none':
          throw new Error('mqtts:// needs TLS material: pick the CA, PEM text or files');
      }
    }

  }

  RED.nodes.registerType<EspFleetNode, EspFleetDef, object, EspFleetCredentials>('esp-fleet', EspFleet, {
    credentials: {
      caPem: { type: 'password' },
      certPem: { type: 'password' },
      keyPem: { type: 'password' },
    },
  });

  RED.httpAdmin.get('/esp-fleet/fleet/:id/devices', RED.auth.needsPermission('esp-fleet.read'), (req, res) => {
    const node = RED.nodes.getNode(String(req.params.id)) as EspFleetNode | null;
    if (!node || typeof node.fleet !== 'function') return res.status(404).json({ error: 'deploy the esp-fleet node first' });
    node
      .fleet()
      .then((client) => res.json({ state: client.state, counts: client.registry.counts(), devices: client.registry.list() }))
      .catch((err) => res.status(500).json({ error: errorText(err) }));
  });
};
