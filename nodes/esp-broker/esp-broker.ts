import type { Node, NodeAPI, NodeDef, NodeMessage } from 'node-red';
import type { EspCaNode } from '../esp-ca/types';
import { EmbeddedBroker, BrokerEvent } from '../../lib/broker/embedded-broker';
import { errorText, positive, shortText } from '../shared/settings';
import { schemeFromSettings, SchemeSettings } from '../shared/scheme';

interface EspBrokerDef extends NodeDef, SchemeSettings {
  ca: string;
  port: string;
  bindAddress: string;
  serverNames: string;
  maxClients: string;
}

/**
 * The embedded MQTT broker as a flow node: starts on deploy, stops on redeploy, shows how many
 * devices are connected and sends one msg per connect, disconnect, refusal and ACL denial.
 */
export = function register(RED: NodeAPI): void {
  function EspBroker(this: Node, config: EspBrokerDef): void {
    RED.nodes.createNode(this, config);
    const node = this;
    let broker: EmbeddedBroker | undefined;
    let closing = false;

    const showCounts = (): void => {
      if (!broker || closing) return;
      const { devices, backends } = broker.counts();
      node.status({ fill: 'green', shape: 'dot', text: `${devices} device${devices === 1 ? '' : 's'} connected${backends ? ` · ${backends} backend${backends === 1 ? '' : 's'}` : ''}` });
    };

    const starting = (async () => {
      const caNode = RED.nodes.getNode(config.ca) as EspCaNode | null;
      if (!caNode) throw new Error('choose the esp-ca node whose CA the broker and its clients use');
      const store = await caNode.store();
      const port = positive(config.port, 'port') ?? 8883;
      broker = await EmbeddedBroker.start({
        store,
        port,
        host: config.bindAddress?.trim() || undefined,
        serverNames: (config.serverNames ?? '').split(/[\s,]+/).filter(Boolean),
        scheme: schemeFromSettings(config),
        maxClients: positive(config.maxClients, 'max clients') ?? 250,
        onEvent: (event: BrokerEvent) => {
          if (closing) return;
          showCounts();
          node.send({ topic: event.type, payload: event } as NodeMessage);
        },
      });
      if (closing) await broker.close();
      else node.log(`MQTT broker on mqtts://${broker.serverNames[0]}:${broker.port} (certificate for ${broker.serverNames.join(', ')})`);
      showCounts();
      return broker;
    })();
    node.status({ fill: 'yellow', shape: 'ring', text: 'starting…' });
    starting.catch((err) => {
      node.error(`esp-broker cannot start: ${errorText(err)}`, { topic: 'error', payload: errorText(err) });
      node.status({ fill: 'red', shape: 'ring', text: shortText(errorText(err)) });
    });

    node.on('close', (done: () => void) => {
      closing = true;
      starting
        .catch(() => undefined)
        .then(() => broker?.close())
        .catch((err) => node.warn(`closing: ${errorText(err)}`))
        .finally(done);
    });
  }

  RED.nodes.registerType('esp-broker', EspBroker);
};
