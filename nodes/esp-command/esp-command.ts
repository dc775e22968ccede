import type { NodeAPI, Node, NodeDef, NodeMessageInFlow, NodeMessage } from 'node-red';
import type { EspFleetNode } from '../esp-fleet/types';
import { connectionBadge } from '../esp-fleet/types';
import type { FleetClient } from '../../lib/fleet/fleet-client';
import { CommandDispatcher, CommandOutcome, planCommand, resolveTargets } from '../../lib/fleet/commands';
import { positive } from '../shared/settings';
import { lifecycle } from '../shared/lifecycle';
import { RecentRows } from '../../lib/dashboard/recent-rows';
import { OutcomeRow, outcomeRow } from '../../lib/dashboard/event-rows';
import { commandSummaryText } from '../../lib/fleet/command-summary';
import { takeWifiPassword } from '../../lib/fleet/wifi-credentials';

interface EspCommandDef extends NodeDef {
  fleet: string;
  command: string;
  devices: string;
  onlineOnly: boolean;
  maxInFlight: string;
  outcomeTimeout: string;
}

type CommandMsg = NodeMessageInFlow & { device?: unknown; argument?: unknown; command?: unknown; maxInFlight?: unknown };

/** How many outcomes `msg.recent` carries. */
const RECENT_OUTCOMES = 30;
const recentByFleet = new Map<string, RecentRows<OutcomeRow>>();
function recentOutcomesOf(fleetId: string): RecentRows<OutcomeRow> {
  let rows = recentByFleet.get(fleetId);
  if (!rows) recentByFleet.set(fleetId, (rows = new RecentRows<OutcomeRow>(RECENT_OUTCOMES)));
  return rows;
}

export = function register(RED: NodeAPI): void {
  function EspCommand(this: Node, config: EspCommandDef): void {
    RED.nodes.createNode(this, config);
    const node = this;
    const fleetNode = RED.nodes.getNode(config.fleet) as EspFleetNode | null;
    let done = 0;
    // The fleet's last outcomes, newest first, ride on every outcome msg for a dashboard table.
    // One window per fleet, so the row buttons' and a rollout's outcomes share one table.
    const recent = recentOutcomesOf(config.fleet);

    const life = lifecycle(node, async (own) => {
      if (!fleetNode) throw new Error('no esp-fleet node is configured');
      const c = await fleetNode.fleet();
      const dispatcher = new CommandDispatcher((id, built) => c.publishCommand(id, built), c.registry, c, {
        maxInFlight: positive(config.maxInFlight, 'devices at once') ?? 5,
        outcomeTimeoutMs: (positive(config.outcomeTimeout, 'outcome timeout') ?? 300) * 1000,
      });
      // The dispatcher subscribes to the fleet's reports: it goes when the node does.
      own.onClose(() => dispatcher.close());
      const showProgress = (): void => {
        if (c.state !== 'connected') return;
        const inFlight = dispatcher.inFlight;
        node.status({ fill: inFlight ? 'blue' : 'green', shape: 'dot', text: `${inFlight} in flight · ${done} done` });
      };
      const onState = (state: FleetClient['state'], detail?: string): void => {
        if (state === 'connected') showProgress();
        else node.status(connectionBadge(state, detail));
      };
      own.listen(c, 'state', onState);
      onState(c.state);
      return { client: c, dispatcher, showProgress };
    });

    life.input(async (msg: CommandMsg, send, { client: c, dispatcher: d, showProgress }, wifi) => {
      // A string payload is the command; anything else (an inject's timestamp) uses the node's.
      const command = msg.command ?? (typeof msg.payload === 'string' && msg.payload ? msg.payload : config.command);
      // Built once per command set of the fleet; each device gets its own set's (a mixed fleet has two).
      const plan = planCommand(c.topics.commandSets, command, wifi.password === undefined ? msg.argument : wifi.argument);
      const targets = resolveTargets(msg.device ?? config.devices ?? '*', c.registry, { onlineOnly: config.onlineOnly });
      if (c.state !== 'connected') throw new Error(`not connected to the broker (${c.state}); nothing was sent`);
      // A rollout panel may bring its own cap for this msg; otherwise the node's setting holds.
      const cap = msg.maxInFlight === undefined ? undefined : positive(msg.maxInFlight, 'msg.maxInFlight');
      const startedAt = Date.now();
      const planFor = (id: string): ReturnType<typeof plan> => plan(c.commandSetOf(id));
      const outcomes = await d.dispatch(targets, planFor, {
        onSent: (id) => {
          showProgress();
          send([{ ...msg, topic: id, payload: { device: id, command: planFor(id).command, sentAt: new Date().toISOString() }, device: c.registry.get(id) } as NodeMessage, null, null]);
        },
        onOutcome: (o: CommandOutcome) => {
          done++;
          showProgress();
          send([null, { ...msg, topic: o.device, payload: o, device: c.registry.get(o.device), recent: recent.add(outcomeRow(o)) } as NodeMessage, null]);
        },
      }, { maxInFlight: cap });
      const count = (k: CommandOutcome['outcome']): number => outcomes.filter((o) => o.outcome === k).length;
      const name = String(command);
      const summary = { command: name, devices: targets.length, success: count('success'), failed: count('failed'), timeout: count('timeout'), sent: count('sent'), refused: count('refused'), elapsedMs: Date.now() - startedAt, outcomes };
      send([null, null, { ...msg, topic: name, payload: summary, text: commandSummaryText(summary) } as NodeMessage]);
    }, {
      // A `wifi` password leaves the msg the moment it arrives: no output, Catch msg, badge or
      // log sees it; only the MQTT payload carries it (docs/wire-contract.md, MQTT topics: wifi).
      takeSecrets: (msg: CommandMsg) => {
        const taken = takeWifiPassword(msg.argument);
        if (taken.password !== undefined) msg.argument = taken.kept;
        return taken;
      },
    });
  }

  RED.nodes.registerType('esp-command', EspCommand);
};
