import type { Node, NodeAPI, NodeDef, NodeMessage } from 'node-red';
import type { EspCaNode } from '../esp-ca/types';
import { EmbeddedBroker, BrokerEvent, EmbeddedBrokerOptions } from '../../lib/broker/embedded-broker';
import { FloodGate } from '../shared/flood-gate';
import { positive } from '../shared/settings';
import { parsePort } from '../../lib/net/port';
import { lifecycle } from '../shared/lifecycle';
import { schemeFromSettings, SchemeSettings } from '../shared/scheme';

interface EspBrokerDef extends NodeDef, SchemeSettings {
  ca: string;
  port: string;
  bindAddress: string;
  serverNames: string;
  maxClients: string;
  /** Seconds for the TLS handshake, and again for the MQTT CONNECT after it. */
  handshakeTimeout?: string;
  maxHandshakes?: string;
  maxHandshakesPerAddress?: string;
  sessionsPerDevice?: string;
  sessionsPerBackend?: string;
}

/** Badge updates at most this often: a flood of refusals must not flood the editor with status messages. */
const BADGE_INTERVAL_MS = 500;
/** Refusals sent one by one per second at most; the rest go out as one `refused-summary` msg per second. */
const REFUSED_MSGS_PER_SECOND = 20;

/**
 * The embedded MQTT broker as a flow node: starts on deploy, stops on redeploy, shows how many
 * devices are connected and how many connections it refused, and sends one msg per connect,
 * disconnect, refusal (in a flood: a summary per second) and ACL denial.
 */
export = function register(RED: NodeAPI): void {
  function EspBroker(this: Node, config: EspBrokerDef): void {
    RED.nodes.createNode(this, config);
    const node = this;
    const refusedGate = new FloodGate<string>(REFUSED_MSGS_PER_SECOND, (held) => node.send({ topic: 'refused-summary', payload: held } as NodeMessage));

    lifecycle(
      node,
      async (own) => {
        own.onClose(() => refusedGate.close());
        const caNode = RED.nodes.getNode(config.ca) as EspCaNode | null;
        if (!caNode) throw new Error('choose the esp-ca node whose CA the broker and its clients use');
        const store = await caNode.store();
        let broker: EmbeddedBroker | undefined;
        const showCounts = (): void => {
          if (!broker) return;
          const { devices, backends } = broker.counts();
          const refused = broker.refusedCount;
          const parts = [`${devices} device${devices === 1 ? '' : 's'} connected`, backends ? `${backends} backend${backends === 1 ? '' : 's'}` : '', refused ? `${refused} refused` : ''];
          node.status({ fill: 'green', shape: 'dot', text: parts.filter(Boolean).join(' · ') });
        };
        const showCountsSoon = own.soon(showCounts, BADGE_INTERVAL_MS);
        broker = await EmbeddedBroker.start({
          store,
          port: parsePort(config.port) ?? 8883,
          host: config.bindAddress?.trim() || undefined,
          serverNames: (config.serverNames ?? '').split(/[\s,]+/).filter(Boolean),
          scheme: schemeFromSettings(config),
          maxClients: positive(config.maxClients, 'max clients') ?? 250,
          ...connectionLimits(config),
          onEvent: (event: BrokerEvent) => {
            if (own.closing) return;
            showCountsSoon();
            if (event.type === 'refused' && !refusedGate.pass(event.cause)) return;
            node.send({ topic: event.type, payload: event } as NodeMessage);
          },
        });
        const running = broker;
        own.onClose(() => running.close());
        node.log(`MQTT broker on mqtts://${running.serverNames[0]}:${running.port} (certificate for ${running.serverNames.join(', ')})`);
        showCounts();
        return running;
      },
      { logStartError: 'esp-broker cannot start' },
    );
  }

  RED.nodes.registerType('esp-broker', EspBroker);
};

/** The editor's limits; blank fields leave the broker's defaults (BROKER_LIMIT_DEFAULTS). */
function connectionLimits(config: EspBrokerDef): Partial<EmbeddedBrokerOptions> {
  const seconds = positive(config.handshakeTimeout, 'handshake deadline');
  return {
    handshakeTimeoutMs: seconds && seconds * 1000,
    connectTimeoutMs: seconds && seconds * 1000,
    maxHandshakes: positive(config.maxHandshakes, 'max handshakes'),
    maxHandshakesPerAddress: positive(config.maxHandshakesPerAddress, 'handshakes per address'),
    maxSessionsPerDevice: positive(config.sessionsPerDevice, 'sessions per device'),
    maxSessionsPerBackend: positive(config.sessionsPerBackend, 'sessions per backend'),
  };
}
