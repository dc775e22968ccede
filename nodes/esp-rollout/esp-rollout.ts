import * as path from 'node:path';
import type { NodeAPI, Node, NodeDef, NodeMessage, NodeMessageInFlow } from 'node-red';
import type { EspFleetNode } from '../esp-fleet/types';
import { connectionBadge } from '../esp-fleet/types';
import type { FleetClient } from '../../lib/fleet/fleet-client';
import type { FirmwareService } from '../../lib/firmware/firmware-service';
import { buildCommand } from '../../lib/fleet/commands';
import type { EspFirmwareServerNode } from '../esp-firmware-server/types';
import { chooseDevices, NEWEST, summarize } from '../../lib/rollout/offers';
import { Rollout, RolloutAction } from '../../lib/rollout/rollout';
import { parseRolloutSpec } from '../../lib/rollout/rollout-spec';
import { RolloutFile } from '../../lib/rollout/rollout-file';
import { parseRolloutInput } from '../../lib/rollout/rollout-actions';
import { folderInUserDir, errorText } from '../shared/settings';
import { lifecycle, Send } from '../shared/lifecycle';
import { rolloutRows } from '../../lib/dashboard/rollout-rows';
import { linkHomeAssistant } from './home-assistant';

interface EspRolloutDef extends NodeDef {
  fleet: string;
  /** An esp-firmware-server node: the rollout keeps the devices it would offer the target to, and hears its events. */
  server?: string;
  target: string;
  devices: string;
  canary: string;
  waveSize: string;
  cap: string;
  soakS: string;
  updateTimeoutS: string;
  haltAt: string;
  folder: string;
  /** Publish a Home Assistant MQTT-discovery update entity per device (docs/home-assistant.md). */
  homeAssistant?: boolean;
}

/** The clock of the rollout besides its own due times (a soak's end, a timeout): a slow backstop. */
const TICK_MS = 5_000;

export = function register(RED: NodeAPI): void {
  function EspRollout(this: Node, config: EspRolloutDef): void {
    RED.nodes.createNode(this, config);
    const node = this;
    const fleetNode = RED.nodes.getNode(config.fleet) as EspFleetNode | null;
    // One file per node: a redeploy or a restart of Node-RED resumes where the rollout was.
    const file = new RolloutFile(path.join(folderInUserDir(RED, config.folder, 'esp-fleet-rollouts'), `${node.id}.json`));
    let rollout: Rollout | undefined;
    // One timer for the rollout's next due time, so a gate opens when the soak ends, not at the next tick.
    let dueTimer: NodeJS.Timeout | undefined;
    let tickNow: () => void = () => undefined;
    /** The Home Assistant link's "publish what changed", when the link is on. */
    let haChanged: (id: string) => void = () => undefined;
    const scheduleDue = (): void => {
      if (dueTimer) clearTimeout(dueTimer);
      dueTimer = undefined;
      const due = rollout?.nextDueAt();
      if (due === undefined) return;
      dueTimer = setTimeout(() => tickNow(), Math.max(0, due - Date.now()) + 5);
      dueTimer.unref();
    };

    const badge = (c: FleetClient): void => {
      if (c.state !== 'connected') return node.status(connectionBadge(c.state));
      if (!rollout) return node.status({ fill: 'grey', shape: 'ring', text: 'no rollout' });
      const s = rollout.view;
      const n = rollout.counts();
      const text = `${s.status} · wave ${Math.min(s.wave + 1, s.waves.length)}/${s.waves.length} · ${n.updating} updating · ${n.passed} passed · ${n.failed} failed`;
      const fill = s.status === 'halted' ? 'red' : s.status === 'paused' ? 'yellow' : s.status === 'running' ? 'blue' : s.status === 'done' ? 'green' : 'grey';
      node.status({ fill, shape: s.status === 'running' ? 'dot' : 'ring', text: s.status === 'halted' ? `halted: ${s.reason ?? ''}`.slice(0, 60) : text });
    };

    const saveState = (): void => {
      file.save(rollout).catch((err) => node.error(`rollout: its state was not saved: ${errorText(err)}`));
    };

    /** Carries out what the rollout asks: commands out, one msg per device change (output 1), waves and status (output 2). */
    const carry = (c: FleetClient, actions: RolloutAction[]): void => {
      if (!rollout || actions.length === 0) return;
      const r = rollout;
      const v = r.view;
      const summary = { target: v.spec.target, status: r.status, wave: v.wave + 1, waves: v.waves.length, counts: r.counts() };
      // Every device of the rollout as table rows, on each device msg: a ui-table takes msg.rows as its payload.
      let rows: ReturnType<typeof rolloutRows> | undefined;
      const rowsNow = (): ReturnType<typeof rolloutRows> => (rows ??= rolloutRows(v));
      for (const a of actions) {
        if (a.type === 'command') {
          const built = buildCommand(c.commandSetOf(a.id), 'update'); // the device's own platform: firmware or update/run
          // A failed publish shows as the device's timeout; say why now.
          c.publishCommand(a.id, built).catch((err) => node.warn(`rollout: the command to ${a.id} was not sent: ${errorText(err)}`));
        } else if (a.type === 'device') {
          haChanged(a.id);
          const d = v.devices[a.id];
          node.send([{ topic: a.id, payload: { device: a.id, state: a.state, wave: (d?.wave ?? 0) + 1, ...(a.reason ? { reason: a.reason } : {}), ...(a.percent !== undefined ? { percent: a.percent } : {}) }, rollout: summary, rows: rowsNow() } as NodeMessage, null]);
        } else if (a.type === 'wave') {
          node.send([null, { topic: 'wave', payload: { ...a, target: summary.target }, rollout: summary, text: `wave ${a.wave} ${a.state}: ${a.passed} passed, ${a.failed} failed, ${a.skipped} skipped` } as NodeMessage]);
        } else {
          node.send([null, { topic: a.status, payload: { ...a, target: summary.target, counts: summary.counts }, rollout: summary, text: `rollout of ${summary.target === NEWEST ? 'the newest images' : summary.target} ${a.status}${a.reason ? `: ${a.reason}` : ''}` } as NodeMessage]);
        }
      }
      saveState();
      badge(c);
      scheduleDue();
    };

    /** An update-server event, by wire (msg.topic) or from the linked server. */
    const serverEvent = (c: FleetClient, type: string, event: Record<string, unknown>): void => {
      const id = typeof event.deviceId === 'string' ? event.deviceId : undefined;
      if (!rollout || !id) return;
      // Only a device's own certificate says it asked (a claimed MAC could be anyone's).
      if (type === 'check' && event.authenticated === true && rollout.asked(id)) saveState();
      if (type === 'download-progress' && typeof event.percent === 'number') carry(c, rollout.progress(id, event.percent));
      if (type === 'not-modified') carry(c, rollout.nothingOffered(id, String(event.reason ?? 'nothing newer'), Date.now()));
    };

    /** The linked update server's rules, or undefined when none is chosen. */
    const firmwareOf = async (): Promise<FirmwareService | undefined> => {
      if (!config.server) return undefined;
      const serverNode = RED.nodes.getNode(config.server) as EspFirmwareServerNode | null;
      if (!serverNode?.firmware) throw new Error('the chosen esp-firmware-server is not deployed');
      return serverNode.firmware();
    };

    /** Starts a rollout from a start msg's payload over the node's fields; throws (nothing starts) on bad input. */
    const startRollout = async (c: FleetClient, payload: Record<string, unknown>): Promise<void> => {
      const now = Date.now();
      if (rollout && ['running', 'paused', 'halted'].includes(rollout.status)) throw new Error(`a rollout of ${rollout.state.spec.target} is ${rollout.status}: abort it first`);
      const field = (k: keyof EspRolloutDef): unknown => (payload[k] !== undefined ? payload[k] : config[k]);
      // With an update server, a blank target is "newest": each device gets what the server offers it.
      const target = field('target');
      const spec = parseRolloutSpec({ target: (target === undefined || target === '') && config.server ? NEWEST : target, canary: field('canary'), waveSize: field('waveSize'), cap: field('cap'), soakS: field('soakS'), updateTimeoutS: field('updateTimeoutS'), haltAt: field('haltAt') });
      const firmware = await firmwareOf();
      const fleet = c.registry.ids().map((id) => {
        const e = c.registry.get(id);
        return { id, online: e?.online === true, image: e?.image, error: e?.lastStatus?.errormessage ?? '', groups: firmware?.groupsOf(id) ?? [] };
      });
      const server = firmware && { hasImage: (name: string) => firmware.catalogue.get(name) !== undefined, offerFor: (id: string, image: string) => firmware.offerFor(id, image) };
      const offered = chooseDevices(spec.target, field('devices') || '*', fleet, server);
      const started = Rollout.start(spec, offered.devices, now, offered.excluded);
      rollout = started.rollout;
      const n = Object.keys(started.rollout.view.devices).length;
      const left = offered.excluded.length ? `; ${offered.excluded.length} left out (${summarize(offered.excluded)})` : '';
      const upToDate = offered.upToDate ? `, ${offered.upToDate} up to date` : '';
      // Nothing to do is one line, not a start and an end.
      if (started.rollout.status === 'done') carry(c, [{ type: 'status', status: 'done', reason: `nothing to do${upToDate}${left}` }]);
      else carry(c, [{ type: 'status', status: started.rollout.status, reason: `${n} devices in ${started.rollout.view.waves.length} waves${upToDate}${left}` }, ...started.actions]);
    };

    /** HA's install button: a one-device rollout with every rule of a rollout, or a refusal when one runs already. */
    const installFromHomeAssistant = (c: FleetClient, id: string): void => {
      if (rollout && ['running', 'paused', 'halted'].includes(rollout.status)) {
        const why = rollout.view.devices[id] ? 'it is part of the rollout under way' : `a rollout is ${rollout.status}: abort it first`;
        node.send([null, { topic: 'install-refused', payload: { device: id, reason: why }, text: `Home Assistant's install on ${id} refused: ${why}` } as NodeMessage]);
        return;
      }
      node.send([null, { topic: 'install', payload: { device: id }, text: `Home Assistant asked to install on ${id}` } as NodeMessage]);
      startRollout(c, { devices: id, canary: 1, haltAt: 1 }).catch((err) => node.error(`Home Assistant install on ${id}: ${errorText(err)}`, { topic: 'install', payload: { device: id } } as NodeMessage));
    };

    const life = lifecycle(node, async (own) => {
      if (!fleetNode) throw new Error('no esp-fleet node is configured');
      const c = await fleetNode.fleet();
      rollout = await file.load();
      own.onClose(() => file.idle());
      own.listen(c, 'status', (id: string, update: { entry: { image?: string; lastStatus?: { errormessage?: string } } }) => {
        if (rollout) carry(c, rollout.report(id, update.entry.image ?? '', update.entry.lastStatus?.errormessage ?? '', Date.now()));
      });
      own.listen(c, 'presence', (change: { id: string; online: boolean }) => {
        if (rollout) carry(c, change.online ? rollout.online(change.id, Date.now()) : rollout.offline(change.id, Date.now()));
      });
      own.listen(c, 'state', () => badge(c));
      // The linked update server's progress and 304s, with no wire; followed across its redeploys.
      let heard: EspFirmwareServerNode | undefined;
      let unhear: (() => void) | undefined;
      const hearServer = (): void => {
        const now = config.server ? (RED.nodes.getNode(config.server) as EspFirmwareServerNode | null) ?? undefined : undefined;
        if (now === heard) return;
        unhear?.();
        heard = now;
        unhear = now?.onServerEvent?.((event) => serverEvent(c, event.type, event as unknown as Record<string, unknown>));
      };
      own.onClose(() => unhear?.());
      hearServer();
      // The server's rules as they stand, for Home Assistant's latest versions (a redeployed server is picked up at the tick).
      let firmwareNow: FirmwareService | undefined;
      const followFirmware = (): void => void firmwareOf().then((f) => (firmwareNow = f), () => (firmwareNow = undefined));
      followFirmware();
      if (config.homeAssistant) {
        haChanged = linkHomeAssistant(own, c, {
          // HA's default prefix: the one both brokers' rules grant backends (lib/broker/acl.ts).
          prefix: undefined,
          latestOf: (id, image) => {
            const offer = firmwareNow?.offerFor(id, image);
            return offer === undefined ? null : 'next' in offer ? offer.next : image;
          },
          progressOf: (id) => {
            const d = rollout?.view.devices[id];
            return d?.state === 'updating' ? { inProgress: true, ...(d.percent !== undefined ? { percent: d.percent } : {}) } : { inProgress: false };
          },
          onInstall: (id) => installFromHomeAssistant(c, id),
          warn: (text) => node.warn(text),
        }).changed;
      }
      tickNow = () => {
        hearServer();
        followFirmware();
        if (rollout && !own.closing) carry(c, rollout.tick(Date.now()));
      };
      own.every(() => tickNow(), TICK_MS);
      own.onClose(() => dueTimer && clearTimeout(dueTimer));
      scheduleDue();
      badge(c);
      return c;
    });

    // Msgs are handled one after the other: a `pause` right behind a `start` finds the rollout started
    // (start waits for the update server's catalogue).
    let inOrder: Promise<unknown> = Promise.resolve();
    life.input((msg: NodeMessageInFlow, send, c) => {
      const turn = inOrder.then(() => handle(msg, send, c));
      inOrder = turn.catch(() => undefined);
      return turn;
    });

    const handle = async (msg: NodeMessageInFlow, send: Send, c: FleetClient): Promise<void> => {
      const input = parseRolloutInput(msg.topic || 'start');
      const now = Date.now();
      const payload = (typeof msg.payload === 'object' && msg.payload !== null && !Buffer.isBuffer(msg.payload) ? msg.payload : {}) as Record<string, unknown>;
      if (input.kind === 'ignored') return;
      if (input.kind === 'server-event') return serverEvent(c, input.event, payload);
      switch (input.action) {
        case 'start':
          await startRollout(c, payload);
          break;
        case 'status':
          break;
        default: {
          if (!rollout) throw new Error('no rollout: send start first');
          const r = rollout;
          carry(c, input.action === 'pause' ? r.pause(now) : input.action === 'resume' ? r.resume(now) : input.action === 'abort' ? r.abort(now) : r.retryFailed(now));
        }
      }
      const s = rollout?.state;
      send([null, { ...msg, topic: 'status', payload: s ? { target: s.spec.target, status: s.status, reason: s.reason, wave: s.wave + 1, waves: s.waves.length, counts: rollout!.counts(), devices: s.devices, excluded: s.excluded ?? [] } : { status: 'none' }, rows: s ? rolloutRows(s) : [] } as NodeMessage]);
    };
  }

  RED.nodes.registerType('esp-rollout', EspRollout);
};
