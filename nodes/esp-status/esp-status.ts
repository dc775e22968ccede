import type { NodeAPI, Node, NodeDef, NodeMessage } from 'node-red';
import type { EspFleetNode } from '../esp-fleet/types';
import { connectionBadge } from '../esp-fleet/types';
import type { FleetClient } from '../../lib/fleet/fleet-client';
import type { DeviceEntry, PresenceChange, StatusUpdate } from '../../lib/fleet/registry';
import { normalizeDeviceId } from '../../lib/device-id';
import { errorText } from '../shared/settings';
import { lifecycle } from '../shared/lifecycle';
import { RateGate } from '../../lib/net/rate-gate';
import { fleetTable } from '../../lib/dashboard/fleet-table';

interface EspStatusDef extends NodeDef {
  fleet: string;
  devices: string;
  imagePrefix: string;
  /** Adds output 4: the whole (filtered) fleet as ready-made dashboard table rows. */
  table?: boolean;
}

/** Bad-message warnings are counted; only this many per second reach the log. */
const WARNINGS_PER_SECOND = 5;
/** The badge counts the registry at most this often. */
const BADGE_EVERY_MS = 500;
/** The fleet table is redrawn at most this often, however many devices report. */
const TABLE_EVERY_MS = 300;

export = function register(RED: NodeAPI): void {
  function EspStatus(this: Node, config: EspStatusDef): void {
    RED.nodes.createNode(this, config);
    const node = this;
    const fleetNode = RED.nodes.getNode(config.fleet) as EspFleetNode | null;
    if (!fleetNode) {
      node.status({ fill: 'red', shape: 'ring', text: 'no fleet configured' });
      return;
    }
    let onlyIds: Set<string> | undefined;
    try {
      const listed = (config.devices ?? '').split(/[\s,;]+/).filter(Boolean);
      if (listed.length) onlyIds = new Set(listed.map(normalizeDeviceId));
    } catch (err) {
      node.error(`device filter: ${errorText(err)}`);
      node.status({ fill: 'red', shape: 'ring', text: 'bad device filter' });
      return;
    }
    const prefix = config.imagePrefix?.trim() ?? '';
    const wanted = (id: string, entry?: DeviceEntry): boolean =>
      (!onlyIds || onlyIds.has(id)) && (!prefix || (entry?.image ?? '').startsWith(prefix));

    // Output 4 (when enabled): one table of every device this node reports, after changes settle.
    const withTable = config.table === true;
    const send = (msgs: (NodeMessage | null)[]): void => node.send(withTable ? [...msgs, null] : msgs);
    // Bad messages are what a misbehaving client makes at will: a few warnings a second reach the log.
    const warnings = new RateGate(WARNINGS_PER_SECOND, 1_000);

    lifecycle(node, async (own) => {
      const c = await fleetNode.fleet();
      const showCounts = (): void => {
        if (c.state !== 'connected') return;
        let online = 0;
        let offline = 0;
        for (const e of c.registry.list()) if (wanted(e.id, e)) e.online ? online++ : offline++;
        node.status({ fill: online ? 'green' : 'grey', shape: 'dot', text: `${online} online / ${offline} offline` });
      };
      // Counting the whole registry on every report would cost O(devices) per msg: at most twice a second.
      const badgeSoon = own.soon(showCounts, BADGE_EVERY_MS);
      const tableSoon = own.soon(() => {
        const t = fleetTable(c.registry.list().filter((e) => wanted(e.id, e)));
        node.send([null, null, null, { topic: 'fleet', payload: t.rows, summary: t.summary, text: t.text } as NodeMessage]);
      }, TABLE_EVERY_MS);
      const redraw = (): void => {
        if (withTable) tableSoon();
      };

      own.listen(c, 'status', (id: string, update: StatusUpdate) => {
        // Under an image filter a new image can move a device in or out of the counts and the table.
        if (prefix) badgeSoon();
        redraw();
        if (!wanted(id, update.entry)) return;
        const msg: NodeMessage & { device: DeviceEntry } = { topic: id, payload: update.entry.lastStatus, device: update.entry };
        send([msg, null, null]);
      });
      own.listen(c, 'presence', (change: PresenceChange) => {
        const entry = c.registry.get(change.id);
        badgeSoon();
        redraw();
        if (!wanted(change.id, entry)) return;
        send([null, { topic: change.id, payload: { ...change, status: change.online ? 'online' : 'offline' }, device: entry } as NodeMessage, null]);
      });
      own.listen(c, 'device-error', (id: string, message: string) => {
        const entry = c.registry.get(id);
        if (wanted(id, entry)) send([null, null, { topic: id, payload: { errormessage: message }, device: entry } as NodeMessage]);
      });
      own.listen(c, 'log', (id: string, text: string) => {
        const entry = c.registry.get(id);
        if (wanted(id, entry)) send([null, null, { topic: id, payload: { log: text }, device: entry } as NodeMessage]);
      });
      own.listen(c, 'rejected', (r: { topic: string; reason: string; count: number }) => {
        if (warnings.pass('bad-message')) node.warn(`ignored message #${r.count} on ${r.topic}: ${r.reason}`);
      });
      const onState = (state: FleetClient['state'], detail?: string): void => {
        if (state !== 'connected') return node.status(connectionBadge(state, detail));
        showCounts();
        redraw();
      };
      own.listen(c, 'state', onState);
      onState(c.state);
      return c;
    });
  }

  RED.nodes.registerType('esp-status', EspStatus);
};
