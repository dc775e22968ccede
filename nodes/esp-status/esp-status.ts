import type { NodeAPI, Node, NodeDef, NodeMessage } from 'node-red';
import type { EspFleetNode } from '../esp-fleet/types';
import { connectionBadge } from '../esp-fleet/types';
import type { FleetClient } from '../../lib/fleet/fleet-client';
import type { DeviceEntry, PresenceChange, StatusUpdate } from '../../lib/fleet/registry';
import { normalizeDeviceId } from '../../lib/device-id';
import { errorText, shortText } from '../shared/settings';
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

    let client: FleetClient | undefined;
    let badgeTimer: NodeJS.Timeout | undefined;
    const showCounts = (): void => {
      if (!client || client.state !== 'connected') return;
      let online = 0;
      let offline = 0;
      for (const e of client.registry.list()) if (wanted(e.id, e)) e.online ? online++ : offline++;
      node.status({ fill: online ? 'green' : 'grey', shape: 'dot', text: `${online} online / ${offline} offline` });
    };
    // Counting the whole registry on every report would cost O(devices) per msg: at most twice a second.
    const scheduleBadge = (): void => {
      badgeTimer ??= setTimeout(() => {
        badgeTimer = undefined;
        showCounts();
      }, 500);
    };

    // Output 4 (when enabled): one table of every device this node reports, after changes settle.
    const withTable = config.table === true;
    let tableTimer: NodeJS.Timeout | undefined;
    const scheduleTable = (): void => {
      if (!withTable) return;
      tableTimer ??= setTimeout(() => {
        tableTimer = undefined;
        if (!client) return;
        const t = fleetTable(client.registry.list().filter((e) => wanted(e.id, e)));
        node.send([null, null, null, { topic: 'fleet', payload: t.rows, summary: t.summary, text: t.text } as NodeMessage]);
      }, TABLE_EVERY_MS);
    };
    const send = (msgs: (NodeMessage | null)[]): void => node.send(withTable ? [...msgs, null] : msgs);

    let warnedThisSecond = 0;
    let warnWindow = 0;
    const listeners = {
      status: (id: string, update: StatusUpdate): void => {
        // Under an image filter a new image can move a device in or out of the counts.
        if (prefix) scheduleBadge();
        // Under an image filter a device can also leave the table: redraw on every report.
        scheduleTable();
        if (!wanted(id, update.entry)) return;
        const msg: NodeMessage & { device: DeviceEntry } = { topic: id, payload: update.entry.lastStatus, device: update.entry };
        send([msg, null, null]);
      },
      presence: (change: PresenceChange): void => {
        const entry = client?.registry.get(change.id);
        scheduleBadge();
        scheduleTable();
        if (!wanted(change.id, entry)) return;
        send([null, { topic: change.id, payload: { ...change, status: change.online ? 'online' : 'offline' }, device: entry } as NodeMessage, null]);
      },
      deviceError: (id: string, message: string): void => {
        const entry = client?.registry.get(id);
        if (wanted(id, entry)) send([null, null, { topic: id, payload: { errormessage: message }, device: entry } as NodeMessage]);
      },
      log: (id: string, text: string): void => {
        const entry = client?.registry.get(id);
        if (wanted(id, entry)) send([null, null, { topic: id, payload: { log: text }, device: entry } as NodeMessage]);
      },
      rejected: (r: { topic: string; reason: string; count: number }): void => {
        const second = Math.floor(Date.now() / 1000);
        if (second !== warnWindow) {
          warnWindow = second;
          warnedThisSecond = 0;
        }
        if (warnedThisSecond++ < WARNINGS_PER_SECOND) node.warn(`ignored message #${r.count} on ${r.topic}: ${r.reason}`);
      },
      state: (state: FleetClient['state'], detail?: string): void => {
        if (state === 'connected') {
          showCounts();
          scheduleTable();
        }
        else node.status(connectionBadge(state, detail));
      },
    };

    /** Attaches or detaches every listener at once, so the two lists cannot drift apart. */
    const wire = (c: FleetClient, method: 'on' | 'off'): void => {
      c[method]('status', listeners.status);
      c[method]('presence', listeners.presence);
      c[method]('device-error', listeners.deviceError);
      c[method]('log', listeners.log);
      c[method]('rejected', listeners.rejected);
      c[method]('state', listeners.state);
    };

    node.status({ fill: 'yellow', shape: 'ring', text: 'starting…' });
    fleetNode.fleet().then(
      (c) => {
        client = c;
        wire(c, 'on');
        listeners.state(c.state);
      },
      (err) => node.status({ fill: 'red', shape: 'ring', text: shortText(errorText(err)) }),
    );

    node.on('close', () => {
      if (badgeTimer) clearTimeout(badgeTimer);
      if (tableTimer) clearTimeout(tableTimer);
      if (client) wire(client, 'off');
    });
  }

  RED.nodes.registerType('esp-status', EspStatus);
};
