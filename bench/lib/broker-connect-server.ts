// The embedded broker (lib/broker/embedded-broker.ts) of bench/broker-connect in a forked
// process of its own, as Mosquitto runs in its own: its CPU is read from /proc by pid, and the
// devices and the held sockets never share its event loop.
//
// Protocol (process IPC): the parent sends BrokerCommand, the child answers BrokerReply.
import { CaStore } from '../../lib/pki/ca-store';
import { EmbeddedBroker, EmbeddedBrokerOptions, RefusalCause } from '../../lib/broker/embedded-broker';

export type BrokerLimitOptions = Pick<EmbeddedBrokerOptions, 'maxClients' | 'handshakeTimeoutMs' | 'connectTimeoutMs' | 'maxHandshakes' | 'maxHandshakesPerAddress' | 'maxSessionsPerDevice' | 'maxSessionsPerBackend'>;

export interface BrokerStats {
  handshaking: number;
  connected: number;
  refused: number;
  byCause: Partial<Record<RefusalCause, number>>;
}

export type BrokerCommand = { cmd: 'start'; storeDir: string; port: number; limits: BrokerLimitOptions } | { cmd: 'stats' } | { cmd: 'close' };

export type BrokerReply =
  | { type: 'started'; port: number; limits: Record<string, number> }
  | { type: 'stats'; stats: BrokerStats }
  | { type: 'closed' }
  | { type: 'error'; message: string };

let broker: EmbeddedBroker | undefined;

function reply(r: BrokerReply): void {
  process.send!(r);
}

process.on('message', (cmd: BrokerCommand) => {
  void (async () => {
    try {
      if (cmd.cmd === 'start') {
        // The parent prepared the store (server certificate included) and writes nothing while this runs.
        const store = await CaStore.open({ dir: cmd.storeDir });
        broker = await EmbeddedBroker.start({ store, port: cmd.port, host: '127.0.0.1', serverNames: ['localhost'], ...cmd.limits });
        reply({ type: 'started', port: broker.port, limits: { ...broker.connectionLimits, maxClients: cmd.limits.maxClients ?? 0 } });
      } else if (cmd.cmd === 'stats') {
        const b = broker!;
        reply({ type: 'stats', stats: { handshaking: b.handshakingCount, connected: b.connectedCount, refused: b.refusedCount, byCause: b.refusedByCause() } });
      } else if (cmd.cmd === 'close') {
        await broker?.close();
        reply({ type: 'closed' });
        process.disconnect();
      }
    } catch (err) {
      reply({ type: 'error', message: (err as Error).message });
    }
  })();
});
