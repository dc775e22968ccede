import type { DeviceEntry } from '../fleet/registry';

/**
 * One device as a dashboard table shows it: flat values only, so Dashboard 2.0's `ui-table`
 * can key every column straight off the row.
 */
export interface FleetTableRow {
  id: string;
  name: string;
  /** `esp8266` or `esp32` (the scheme its topics came in on); empty before it was heard. */
  platform: string;
  online: boolean;
  image: string;
  rssi: number | null;
  freeHeap: number | null;
  /** Time since boot as people read it: `3h 07m`, `4m 09s`; empty before the first report. */
  uptime: string;
  lastSeen: string;
  lastError: string;
}

export interface FleetTable {
  /** Sorted by device id, so a redraw never reorders the rows. */
  rows: FleetTableRow[];
  summary: { online: number; offline: number; known: number };
  /** The summary in one line: `7 online · 3 offline · 10 known`. */
  text: string;
}

export function formatUptime(ms: number | undefined): string {
  if (typeof ms !== 'number' || !Number.isFinite(ms) || ms < 0) return '';
  const s = Math.floor(ms / 1000);
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  const pad = (n: number): string => String(n).padStart(2, '0');
  return h ? `${h}h ${pad(m)}m` : `${m}m ${pad(s % 60)}s`;
}

export function fleetTableRow(e: DeviceEntry): FleetTableRow {
  return {
    id: e.id,
    name: e.name ?? '',
    platform: e.platform ?? '',
    online: e.online,
    image: e.image ?? '',
    rssi: typeof e.rssi === 'number' ? e.rssi : null,
    freeHeap: typeof e.freeHeap === 'number' ? e.freeHeap : null,
    uptime: formatUptime(e.uptimeMs),
    lastSeen: e.lastSeen,
    lastError: e.lastError ?? '',
  };
}

export function fleetTable(entries: Iterable<DeviceEntry>): FleetTable {
  const rows = [...entries].map(fleetTableRow).sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
  const online = rows.filter((r) => r.online).length;
  const summary = { online, offline: rows.length - online, known: rows.length };
  return { rows, summary, text: `${summary.online} online · ${summary.offline} offline · ${summary.known} known` };
}
