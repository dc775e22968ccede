import { strict as assert } from 'node:assert';
import { fleetTable, formatUptime } from '../../../lib/dashboard/fleet-table';
import { RecentRows } from '../../../lib/dashboard/recent-rows';
import { outcomeRow, serverEventRow } from '../../../lib/dashboard/event-rows';
import { commandSummaryText } from '../../../lib/fleet/command-summary';
import type { DeviceEntry } from '../../../lib/fleet/registry';

const entry = (id: string, more: Partial<DeviceEntry> = {}): DeviceEntry => ({
  id,
  online: true,
  presenceReason: 'status',
  presenceChangedAt: '2026-12-01T10:00:00.000Z',
  firstSeen: '2026-12-01T10:00:00.000Z',
  lastSeen: '2026-12-01T10:05:00.000Z',
  statusIntervalMs: 60_000,
  ...more,
});

describe('dashboard rows', () => {
  it('uptime reads as hours and minutes, or minutes and seconds; nothing for no or bad values', () => {
    assert.equal(formatUptime(0), '0m 00s');
    assert.equal(formatUptime(249_999), '4m 09s');
    assert.equal(formatUptime(3_600_000), '1h 00m');
    assert.equal(formatUptime(11_220_000), '3h 07m');
    assert.equal(formatUptime(100 * 3_600_000 + 59_999), '100h 00m');
    for (const bad of [undefined, -1, Number.NaN, Number.POSITIVE_INFINITY]) assert.equal(formatUptime(bad), '');
  });

  it('the fleet table: rows sorted by id, flat values, null telemetry before the first report, and a summary', () => {
    const t = fleetTable([
      entry('84f3eb0000b2', { online: false, name: 'measure-b', image: 'P-1.0.0', rssi: -71, freeHeap: 30_000, uptimeMs: 61_000, lastError: 'x' }),
      entry('84f3eb0000a1'),
    ]);
    assert.deepEqual(t.rows, [
      { id: '84f3eb0000a1', name: '', platform: '', online: true, image: '', rssi: null, freeHeap: null, uptime: '', lastSeen: '2026-12-01T10:05:00.000Z', lastError: '' },
      { id: '84f3eb0000b2', name: 'measure-b', platform: '', online: false, image: 'P-1.0.0', rssi: -71, freeHeap: 30_000, uptime: '1m 01s', lastSeen: '2026-12-01T10:05:00.000Z', lastError: 'x' },
    ]);
    assert.deepEqual(t.summary, { online: 1, offline: 1, known: 2 });
    assert.equal(t.text, '1 online · 1 offline · 2 known');
    assert.equal(fleetTable([]).text, '0 online · 0 offline · 0 known');
  });

  it('recent rows: newest first, never more than the window, and copies a caller cannot change', () => {
    const w = new RecentRows<number>(3);
    assert.deepEqual(w.add(1), [1]);
    w.add(2);
    w.add(3);
    const shown = w.add(4);
    assert.deepEqual(shown, [4, 3, 2]);
    shown.length = 0;
    assert.deepEqual(w.list(), [4, 3, 2]);
    assert.throws(() => new RecentRows(0), /size of 1 or more/);
    assert.throws(() => new RecentRows(1.5), /size of 1 or more/);
  });

  it('an outcome row says what failed, or where the image came from', () => {
    const at = new Date('2026-12-01T10:00:00.000Z');
    assert.deepEqual(outcomeRow({ device: 'd', command: 'firmware', outcome: 'success', elapsedMs: 9, image: 'P-2', previousImage: 'P-1' }, at), { at: at.toISOString(), device: 'd', command: 'firmware', outcome: 'success', image: 'P-2', detail: 'from P-1' });
    assert.equal(outcomeRow({ device: 'd', command: 'firmware', outcome: 'failed', elapsedMs: 9, image: 'P-1', previousImage: 'P-1', error: 'no newer image (304)' }, at).detail, 'no newer image (304)');
    assert.deepEqual(outcomeRow({ device: 'd', command: 'reboot', outcome: 'timeout', elapsedMs: 9 }, at), { at: at.toISOString(), device: 'd', command: 'reboot', outcome: 'timeout', image: '', detail: '' });
  });

  it('a server-event row says why it was refused, or how much was sent how fast', () => {
    const base = { at: '2026-12-01T10:00:00.000Z', path: '/esp/firmware.bin', status: 200 } as const;
    assert.equal(serverEventRow({ ...base, type: 'download-complete', deviceId: 'd', image: 'P-2', bytes: 4096, ms: 120 }).detail, '4096 bytes in 120 ms');
    assert.equal(serverEventRow({ ...base, type: 'download-complete', bytes: 4096 }).detail, '4096 bytes');
    assert.equal(serverEventRow({ ...base, type: 'download-progress', bytes: 2048, total: 4096, percent: 50 }).detail, '50 % (2048 of 4096 bytes)');
    // A resumed download (a Range from byte 1024): how far into the whole image.
    assert.equal(serverEventRow({ ...base, type: 'download-progress', offset: 1024, bytes: 2048, total: 4096, percent: 75 }).detail, '75 % (3072 of 4096 bytes)');
    assert.deepEqual(serverEventRow({ ...base, type: 'rejected', status: 403, reason: 'no client certificate' }), { at: base.at, type: 'rejected', device: '', path: base.path, status: 403, image: '', detail: 'no client certificate' });
  });

  it('a command summary in one line: counts, then each device that failed or timed out', () => {
    const o = (device: string, outcome: 'success' | 'failed' | 'timeout' | 'sent', error?: string) => ({ device, command: 'firmware', outcome, elapsedMs: 1, ...(error ? { error } : {}) });
    assert.equal(
      commandSummaryText({ command: 'firmware', devices: 3, success: 1, failed: 1, timeout: 1, sent: 0, elapsedMs: 12_400, outcomes: [o('a', 'success'), o('b', 'failed', 'no newer image (304)'), o('c', 'timeout')] }),
      'firmware to 3 device(s): 1 succeeded, 1 failed, 1 timed out in 12 s — b: no newer image (304); c: timeout',
    );
    assert.equal(commandSummaryText({ command: 'cert', devices: 2, success: 0, failed: 0, timeout: 0, sent: 2, elapsedMs: 300, outcomes: [o('a', 'sent'), o('b', 'sent')] }), 'cert to 2 device(s): 0 succeeded, 0 failed, 0 timed out, 2 sent (not tracked) in 0 s');
  });
});
