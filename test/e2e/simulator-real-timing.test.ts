import { strict as assert } from 'node:assert';
import * as path from 'node:path';
import { CaStore } from '../../lib/pki/ca-store';
import { writeMosquittoConfig } from '../../lib/mosquitto/folders';
import { FirmwareService } from '../../lib/firmware/firmware-service';
import { startUpdateServer, RunningUpdateServer, UpdateEvent } from '../../lib/firmware/update-server';
import { publishSimImage } from '../../lib/sim/publish';
import { deviceIds, FleetSimulator, identityFromFolder } from '../../lib/sim/fleet-simulator';
import { ESP8266_TIMING } from '../../lib/sim/device-timing';
import { freePort, startMosquitto, RunningMosquitto } from '../support/mosquitto';
import { localServerOptions } from '../support/update-server';
import { tempDir } from '../support/temp-dir';
import { helper, Collector } from '../support/node-red';
import espCa = require('../../nodes/esp-ca/esp-ca');
import espFleet = require('../../nodes/esp-fleet/esp-fleet');
import espCommand = require('../../nodes/esp-command/esp-command');
import type { EspFleetNode } from '../../nodes/esp-fleet/types';

type Msg = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any

const P = 'ESP8266_SIM_REALTIME';
const V1 = `${P}-00.00.01`;
const V2 = `${P}-00.00.02`;
const IMAGE_BYTES = 64 * 1024;
const DEVICES = 50;
const CAP = 25;

/**
 * A 50-device update through esp-command with a real ESP8266's timing (lib/sim/device-timing.ts
 * defaults: 20 KB/s, flash sectors, TLS handshakes, boot, Wi-Fi and NTP after the reboot), on
 * Mosquitto and the real update server: every device succeeds, the cap holds, and the outcome
 * msgs a dashboard shows are right.
 */
describe('a 50-device update with real-world device timing, through esp-command', function () {
  this.timeout(120_000);
  const tmp = tempDir('sim-realtime');
  const ids = deviceIds('a4cf30', DEVICES);
  let store: CaStore;
  let broker: RunningMosquitto;
  let server: RunningUpdateServer;
  let fleet: FleetSimulator;
  const events: UpdateEvent[] = [];

  before(async () => {
    store = await CaStore.open({ dir: path.join(tmp.path, 'ca') });
    await store.issueServer({ commonName: 'localhost' });
    for (const id of ids) await store.issueDevice(id);
    const port = await freePort();
    const { dir } = await writeMosquittoConfig(store, { dir: path.join(tmp.path, 'mosquitto'), serverName: 'localhost', backendName: 'node-red', port });
    broker = await startMosquitto(dir);
    const service = await FirmwareService.open(path.join(tmp.path, 'firmware'));
    for (const v of ['00.00.01', '00.00.02']) await publishSimImage(service, { product: P, version: v, size: IMAGE_BYTES });
    const k1 = service.keyring.exportPublic((await service.keyring.current('esp8266-rsa')).id).pem;
    const defaults = { mqttserver: 'localhost', mqttport: port, mqtttls: true, statusinterval: 10_000, retrytimeout: 2000, waittimeout: 20_000 };
    server = await startUpdateServer({ ...(await localServerOptions(store)), deviceConfig: (id) => service.deviceConfig(defaults, id), images: service.imageSource(), maxConcurrentDownloads: DEVICES, onEvent: (e) => events.push(e) });
    await helper.startServer();
    await helper.load([espCa, espFleet, espCommand], [
      { id: 'tab', type: 'tab', label: 'rollout' },
      { id: 'ca', type: 'esp-ca', folder: store.dir },
      { id: 'fleet', type: 'esp-fleet', broker: `mqtts://localhost:${port}`, tlsSource: 'esp-ca', ca: 'ca', backendName: 'node-red', scheme: 'secure-esp8266', statusInterval: '10000', registryFile: path.join(tmp.path, 'registry.json') },
      { id: 'cmd', z: 'tab', type: 'esp-command', fleet: 'fleet', command: 'firmware', devices: '*', onlineOnly: true, maxInFlight: String(CAP), outcomeTimeout: '90', wires: [['c1'], ['c2'], ['c3']] },
      ...['c1', 'c2', 'c3'].map((id) => ({ id, z: 'tab', type: 'helper' })),
    ]);
    // Default timing: a real ESP8266 (nothing faster is asked for).
    fleet = new FleetSimulator({ ids, identity: identityFromFolder(store.deviceFilesDir), bootstrap: { host: 'localhost', port: server.port, path: '/fw' }, image: V1, trusts: [k1], bootsPerSecond: 25 });
  });
  after(async () => {
    await fleet?.stop();
    await helper.unload();
    await helper.stopServer();
    await server?.close();
    await broker?.stop();
    await store?.idle();
    tmp.remove();
  });

  it('all 50 succeed, at most the cap updating at once, each taking what an ESP8266 takes', async () => {
    const [sent, outcomes, summaries] = ['c1', 'c2', 'c3'].map((id) => new Collector<Msg>(id));
    const client = await (helper.getNode('fleet') as unknown as EspFleetNode).fleet();
    const bootAt = Date.now();
    await fleet.start();
    for (;;) {
      const online = ids.filter((id) => client.registry.get(id)?.online && client.registry.get(id)?.lastStatus).length;
      if (online === DEVICES) break;
      if (Date.now() - bootAt > 40_000) throw new Error(`${online} of ${DEVICES} online after 40 s`);
      await new Promise((r) => setTimeout(r, 100));
    }
    // Power-on: boot, Wi-Fi and NTP, then a handshake for config.json and one for MQTT.
    const fromBoot = ESP8266_TIMING.bootMs + ESP8266_TIMING.wifiJoinMs + ESP8266_TIMING.ntpMs + 2 * ESP8266_TIMING.tlsHandshakeMs;
    assert.ok(Date.now() - bootAt >= fromBoot, `online ${Date.now() - bootAt} ms after power-on, quicker than a device boots`);

    const from = events.length;
    helper.getNode('cmd').receive({ payload: 'firmware', device: '*' });
    const summary = await summaries.until(() => true, 90_000);
    assert.deepEqual([summary.payload.devices, summary.payload.success, summary.payload.failed, summary.payload.timeout], [DEVICES, DEVICES, 0, 0], summary.text);
    assert.match(summary.text, /^firmware to 50 device\(s\): 50 succeeded, 0 failed, 0 timed out in \d+ s$/);
    assert.equal(sent.msgs.length, DEVICES);
    assert.equal(outcomes.msgs.length, DEVICES);

    // Each outcome: the new image, from the old, after at least handshake + download + flash + reboot + reconnect.
    const download = (IMAGE_BYTES / ESP8266_TIMING.downloadBytesPerSecond) * 1000 + (IMAGE_BYTES / 4096) * (ESP8266_TIMING.sectorEraseMs + ESP8266_TIMING.sectorWriteMs);
    const least = 3 * ESP8266_TIMING.tlsHandshakeMs + download + ESP8266_TIMING.bootMs + ESP8266_TIMING.wifiJoinMs + ESP8266_TIMING.ntpMs;
    for (const m of outcomes.msgs) {
      assert.deepEqual([m.payload.outcome, m.payload.image, m.payload.previousImage], ['success', V2, V1], JSON.stringify(m.payload));
      assert.ok(m.payload.elapsedMs >= least * 0.95, `${m.topic} succeeded after ${m.payload.elapsedMs} ms, less than a device needs (${Math.round(least)} ms)`);
    }
    // The dashboard's table: the newest outcomes first, each a success from V1.
    const last = outcomes.msgs[outcomes.msgs.length - 1];
    assert.equal(last.recent.length, 30);
    assert.deepEqual(last.recent.map((r: Msg) => r.device), outcomes.msgs.slice(-30).map((m) => m.topic).reverse());
    assert.ok(last.recent.every((r: Msg) => r.outcome === 'success' && r.image === V2 && r.detail === `from ${V1}`));

    // Never more than the cap updating at once (from the download's start until the device boots
    // again and fetches config.json: on loopback the server's write is over long before the
    // device has read it, as the kernel buffers a 64 KB reply).
    const mine = events.slice(from);
    assert.equal(mine.filter((e) => e.type === 'download-complete').length, DEVICES);
    const busy = new Set<string>();
    let peak = 0;
    for (const e of mine) {
      if (e.type === 'download-start' && e.deviceId) busy.add(e.deviceId);
      if (e.type === 'file' && e.path === '/fw/config.json' && e.deviceId) busy.delete(e.deviceId);
      peak = Math.max(peak, busy.size);
    }
    assert.ok(peak <= CAP && peak > CAP / 2, `peak devices updating ${peak}, cap ${CAP}`);
    assert.deepEqual(fleet.rebootCounts(), { waittimeout: 0, command: 0, watchdog: 0, update: DEVICES });
    assert.deepEqual(fleet.images(), { [V2]: DEVICES });
  });
});
