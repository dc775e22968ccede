import { FleetClient } from '../../lib/fleet/fleet-client';
import { DeviceRegistry } from '../../lib/fleet/registry';
import { TopicScheme } from '../../lib/fleet/topic-scheme';
import { CommandDispatcher, CommandOutcome, buildCommand } from '../../lib/fleet/commands';
import { backendIdentity } from '../../lib/fleet/backend-identity';
import type { CaStore } from '../../lib/pki/ca-store';

/** Node-RED's side without Node-RED: the fleet connection, its registry and a command dispatcher. */
export class Backend {
  private constructor(
    readonly registry: DeviceRegistry,
    readonly client: FleetClient,
    readonly dispatcher: CommandDispatcher,
  ) {}

  static async connect(store: CaStore, port: number, options: { maxInFlight: number; outcomeTimeoutMs?: number }): Promise<Backend> {
    const registry = new DeviceRegistry();
    const client = new FleetClient({ url: `mqtts://localhost:${port}`, tls: await backendIdentity(store, 'node-red'), scheme: TopicScheme.named('secure-esp8266'), registry });
    const connected = new Promise<void>((resolve) => client.on('state', (s) => s === 'connected' && resolve()));
    client.start();
    await connected;
    const dispatcher = new CommandDispatcher((id, built) => client.publishCommand(id, built), registry, client, {
      maxInFlight: options.maxInFlight,
      outcomeTimeoutMs: options.outcomeTimeoutMs ?? 30_000,
    });
    return new Backend(registry, client, dispatcher);
  }

  command(ids: string[], command: string): Promise<CommandOutcome[]> {
    return this.dispatcher.dispatch(ids, buildCommand('esp8266', command));
  }

  /** Resolves once every id is online with a status; fails with who is missing. */
  async waitOnline(ids: string[], ms = 20_000): Promise<void> {
    const until = Date.now() + ms;
    for (;;) {
      const missing = ids.filter((id) => !this.registry.get(id)?.online || !this.registry.get(id)?.lastStatus);
      if (!missing.length) return;
      if (Date.now() > until) throw new Error(`not online after ${ms} ms: ${missing.slice(0, 5).join(', ')}${missing.length > 5 ? ` and ${missing.length - 5} more` : ''}`);
      await new Promise((r) => setTimeout(r, 50));
    }
  }

  async close(): Promise<void> {
    this.dispatcher.close();
    await this.client.close();
  }
}
