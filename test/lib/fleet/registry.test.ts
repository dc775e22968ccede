import { strict as assert } from 'node:assert';
import { readFileSync, writeFileSync } from 'node:fs';
import * as path from 'node:path';
import { DeviceRegistry } from '../../../lib/fleet/registry';
import { RegistryFile } from '../../../lib/fleet/registry-file';
import { tempDir } from '../../support/temp-dir';
import { SEED_STATUS } from './telemetry.test';

const ID = '84f3eb012345';
const T0 = Date.parse('2026-11-21T00:00:00Z');

describe('device registry', () => {
  it('a first status brings a device online with the fields the dashboard shows', () => {
    const r = new DeviceRegistry({ defaultStatusIntervalMs: 60_000 });
    const u = r.recordStatus(ID, SEED_STATUS, T0);
    assert.deepEqual(u.presence, { id: ID, online: true, reason: 'status', lastSeen: new Date(T0).toISOString(), at: new Date(T0).toISOString() });
    assert.equal(u.entry.image, SEED_STATUS.espimage);
    assert.equal(u.entry.rssi, -65);
    assert.equal(u.entry.freeHeap, 13512);
    assert.equal(u.entry.ip, '192.168.1.182');
    assert.equal(u.newError, SEED_STATUS.errormessage);
    assert.deepEqual(r.counts(), { online: 1, offline: 0 });
  });

  it('hands out copies: changing a msg payload never changes the registry', () => {
    const r = new DeviceRegistry();
    const u = r.recordStatus(ID, { ...SEED_STATUS }, T0);
    u.entry.lastStatus!.espimage = 'changed by a flow';
    u.entry.image = 'changed by a flow';
    r.get(ID)!.lastStatus!.rssi = 0;
    assert.equal(r.get(ID)!.lastStatus!.espimage, SEED_STATUS.espimage);
    assert.equal(r.get(ID)!.image, SEED_STATUS.espimage);
    assert.equal(r.list()[0].lastStatus!.rssi, SEED_STATUS.rssi);
  });

  it('reports an error message once, when it is new', () => {
    const r = new DeviceRegistry();
    assert.equal(r.recordStatus(ID, { ...SEED_STATUS, errormessage: '' }, T0).newError, undefined);
    assert.equal(r.recordStatus(ID, { ...SEED_STATUS, errormessage: 'flash failed' }, T0 + 1).newError, 'flash failed');
    assert.equal(r.recordStatus(ID, { ...SEED_STATUS, errormessage: 'flash failed' }, T0 + 2).newError, undefined);
    assert.equal(r.get(ID)!.lastError, 'flash failed');
  });

  it('goes offline on the LWT, back online on a birth message', () => {
    const r = new DeviceRegistry();
    r.recordStatus(ID, SEED_STATUS, T0);
    assert.deepEqual(r.recordWill(ID, false, T0 + 5)?.reason, 'lwt');
    assert.equal(r.get(ID)!.online, false);
    assert.equal(r.recordWill(ID, false, T0 + 6), undefined, 'no change, no event');
    assert.deepEqual(r.recordWill(ID, true, T0 + 7)?.reason, 'birth');
    assert.equal(r.get(ID)!.online, true);
  });

  it('goes offline after 2.5 × its learned status interval of silence', () => {
    const r = new DeviceRegistry({ defaultStatusIntervalMs: 60_000 });
    for (let i = 0; i < 4; i++) r.recordStatus(ID, SEED_STATUS, T0 + i * 10_000);
    assert.equal(r.get(ID)!.statusIntervalMs, 10_000);
    const last = T0 + 30_000;
    assert.deepEqual(r.sweep(last + 25_000), []);
    const [change] = r.sweep(last + 25_001);
    assert.equal(change.reason, 'timeout');
    assert.equal(change.online, false);
    assert.equal(change.lastSeen, new Date(last).toISOString());
  });

  it('judges silence only from when it began listening: a device is not offline for the time Node-RED was away', () => {
    const r = new DeviceRegistry({ defaultStatusIntervalMs: 60_000 });
    for (let i = 0; i < 4; i++) r.recordStatus(ID, SEED_STATUS, T0 + i * 10_000);
    const last = T0 + 30_000;
    // Read back from its file after ten minutes away: the device has 2.5 intervals from the new subscription.
    const back = new DeviceRegistry({ defaultStatusIntervalMs: 60_000 }, r.list());
    const listening = last + 600_000;
    assert.deepEqual(back.sweep(listening + 1_000, listening), []);
    assert.deepEqual(back.sweep(listening + 25_000, listening), []);
    assert.equal(back.get(ID)!.online, true);
    const [change] = back.sweep(listening + 25_001, listening);
    assert.equal(change.reason, 'timeout');
    assert.equal(change.lastSeen, new Date(last).toISOString(), 'the last time it was really heard');
  });

  it('learns the interval from the median gap, so one quick reboot report does not shorten it', () => {
    const r = new DeviceRegistry({ defaultStatusIntervalMs: 60_000 });
    const times = [0, 60_000, 61_000, 121_000, 181_000];
    for (const t of times) r.recordStatus(ID, SEED_STATUS, T0 + t);
    assert.equal(r.get(ID)!.statusIntervalMs, 60_000);
  });

  it('survives a restart through its file, written atomically and throttled', async () => {
    const tmp = tempDir('registry');
    try {
      const file = path.join(tmp.path, 'registry.json');
      const a = await RegistryFile.open(file, { intervalMs: 50 });
      a.registry.recordStatus(ID, SEED_STATUS, T0);
      a.changed();
      a.changed();
      await new Promise((r) => setTimeout(r, 120));
      const b = await RegistryFile.open(file);
      assert.equal(b.registry.get(ID)!.image, SEED_STATUS.espimage);
      assert.equal(b.registry.get(ID)!.online, true);
      // A corrupt file (a crash mid-write cannot produce one, a hand edit can) starts empty.
      writeFileSync(file, '{"version":1,"devi');
      const c = await RegistryFile.open(file);
      assert.deepEqual(c.registry.list(), []);
      c.registry.recordStatus(ID, SEED_STATUS, T0);
      await c.flush();
      assert.equal((JSON.parse(readFileSync(file, 'utf8')) as { devices: unknown[] }).devices.length, 1);
    } finally {
      tmp.remove();
    }
  });

  it('writes nothing more once retired (its file was restored under it), neither throttled nor on flush', async () => {
    const tmp = tempDir('registry');
    try {
      const file = path.join(tmp.path, 'registry.json');
      const a = await RegistryFile.open(file, { intervalMs: 20 });
      a.registry.recordStatus(ID, SEED_STATUS, T0);
      a.changed();
      a.retire();
      writeFileSync(file, '{"version":1,"devices":[]}');
      a.registry.recordStatus(ID, SEED_STATUS, T0 + 1000);
      a.changed();
      await new Promise((r) => setTimeout(r, 60));
      await a.flush();
      assert.equal(readFileSync(file, 'utf8'), '{"version":1,"devices":[]}');
    } finally {
      tmp.remove();
    }
  });
});
