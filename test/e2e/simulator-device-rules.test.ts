import { strict as assert } from 'node:assert';
import * as path from 'node:path';
import * as tls from 'node:tls';
import type { AddressInfo } from 'node:net';
import { readFileSync } from 'node:fs';
import { CaStore } from '../../lib/pki/ca-store';
import { writeMosquittoConfig } from '../../lib/mosquitto/folders';
import { FirmwareService } from '../../lib/firmware/firmware-service';
import { startUpdateServer, RunningUpdateServer } from '../../lib/firmware/update-server';
import { buildCommand } from '../../lib/fleet/commands';
import { SimulatedDevice, RebootReason } from '../../lib/sim/simulated-device';
import { deviceIds, FleetSimulator, identityFromFolder } from '../../lib/sim/fleet-simulator';
import { WATCHDOG_STEPS } from '../../lib/device/progress-watchdog';
import { freePort, startMosquitto, RunningMosquitto } from '../support/mosquitto';
import { localServerOptions } from '../support/update-server';
import { tempDir } from '../support/temp-dir';
import { Backend } from '../support/fleet-backend';

const IMAGE = 'ESP8266_SIM_RULES-00.00.01';
const RETRY_MS = 500;
const WAIT_MS = 4_000;

async function until(what: string, ms: number, ok: () => boolean): Promise<void> {
  const end = Date.now() + ms;
  while (!ok()) {
    if (Date.now() > end) throw new Error(`not within ${ms} ms: ${what}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

/**
 * The device rules of lib/device as the simulator lives them on real sockets: the reconnect and
 * waittimeout rule across a Mosquitto restart, the progress watchdog on a download that stalls,
 * and the wifi command (docs/wire-contract.md, Device timing and MQTT topics: wifi).
 */
describe('simulated devices keep the device rules: reconnect, waittimeout, watchdog, wifi', function () {
  this.timeout(90_000);
  const tmp = tempDir('sim-rules');
  const outageIds = deviceIds('a4cf20', 6);
  const [stalling, trickling, roaming, stubborn] = deviceIds('a4cf21', 4);
  let store: CaStore;
  let broker: RunningMosquitto;
  let mosquittoDir: string;
  let brokerPort: number;
  let server: RunningUpdateServer;
  let backend: Backend;
  let k1Pem: string;
  const running: (SimulatedDevice | FleetSimulator)[] = [];

  before(async () => {
    store = await CaStore.open({ dir: path.join(tmp.path, 'ca') });
    await store.issueServer({ commonName: 'localhost' });
    for (const id of [...outageIds, stalling, trickling, roaming, stubborn]) await store.issueDevice(id);
    brokerPort = await freePort();
    ({ dir: mosquittoDir } = await writeMosquittoConfig(store, { dir: path.join(tmp.path, 'mosquitto'), serverName: 'localhost', backendName: 'node-red', port: brokerPort }));
    broker = await startMosquitto(mosquittoDir);
    const service = await FirmwareService.open(path.join(tmp.path, 'firmware'));
    k1Pem = service.keyring.exportPublic((await service.keyring.current('esp8266-rsa')).id).pem;
    // Short retry and waittimeout (config.json) so an outage longer than waittimeout fits a test.
    const defaults = { mqttserver: 'localhost', mqttport: brokerPort, mqtttls: true, statusinterval: 1000, retrytimeout: RETRY_MS, waittimeout: WAIT_MS };
    server = await startUpdateServer({ ...(await localServerOptions(store)), deviceConfig: (id) => service.deviceConfig(defaults, id), images: service.imageSource() });
    backend = await Backend.connect(store, brokerPort, { maxInFlight: 10, outcomeTimeoutMs: 20_000 });
  });
  after(async () => {
    await Promise.all(running.map((d) => d.stop()));
    await backend?.close();
    await server?.close();
    await broker?.stop();
    await store?.idle();
    tmp.remove();
  });

  const device = async (id: string, extra: Partial<ConstructorParameters<typeof SimulatedDevice>[0]> = {}): Promise<SimulatedDevice> => {
    const d = new SimulatedDevice({
      id,
      bootstrap: { host: 'localhost', port: server.port, path: '/fw' },
      files: await identityFromFolder(store.deviceFilesDir)(id),
      image: IMAGE,
      trusts: [k1Pem],
      timing: 'fast',
      ...extra,
    });
    running.push(d);
    d.start();
    return d;
  };

  it('a broker outage shorter than waittimeout reboots no device; one longer than waittimeout + its jitter reboots each, not in step', async () => {
    const fleet = new FleetSimulator({ ids: outageIds, identity: identityFromFolder(store.deviceFilesDir), bootstrap: { host: 'localhost', port: server.port, path: '/fw' }, image: IMAGE, trusts: [k1Pem], timing: 'fast', bootsPerSecond: 100 });
    running.push(fleet);
    const reboots: { id: string; reason: RebootReason; at: number }[] = [];
    fleet.on('reboot', (id, reason, at) => reboots.push({ id, reason, at }));
    await fleet.start();
    await until('all online', 20_000, () => fleet.counts().online === outageIds.length);

    // Short: half of waittimeout. Every device notices, retries with backoff, and comes back.
    fleet.resetCounters();
    const shortAt = Date.now();
    await broker.stop();
    await until('all offline', 10_000, () => fleet.counts().online === 0);
    await new Promise((r) => setTimeout(r, WAIT_MS / 2 - (Date.now() - shortAt)));
    broker = await startMosquitto(mosquittoDir);
    await until('all back after the short outage', 20_000, () => fleet.counts().online === outageIds.length);
    assert.deepEqual(fleet.rebootCounts(), { waittimeout: 0, command: 0, watchdog: 0, update: 0 });
    assert.ok(fleet.connectAttempts() > outageIds.length * 2, 'devices retried while the broker was away');
    const back = fleet.backOnline(shortAt, [0.5, 1]);
    assert.ok(back['1'] !== null && back['1'] >= WAIT_MS / 2 - 100, `all back ${back['1']} ms after the outage began`);
    assert.ok(fleet.transitions().filter((t) => !t.online).length === outageIds.length, 'each went offline once');

    // Long: waittimeout + its largest jitter (w/2) + the longest backoff (8·retry) + margin.
    fleet.resetCounters();
    reboots.length = 0;
    const longAt = Date.now();
    await broker.stop();
    await new Promise((r) => setTimeout(r, WAIT_MS * 1.5 + 8 * RETRY_MS + 1_000));
    // A device that rebooted may reboot again if the broker is still away: count the first of each.
    assert.deepEqual(new Set(reboots.map((r) => r.reason)), new Set(['waittimeout']), JSON.stringify(reboots));
    const first = outageIds.map((id) => reboots.find((r) => r.id === id));
    assert.ok(first.every(Boolean), `not every device rebooted: ${JSON.stringify(reboots)}`);
    assert.equal(fleet.rebootCounts().waittimeout, reboots.length);
    for (const r of first) assert.ok(r!.at - longAt >= WAIT_MS, `${r!.id} rebooted ${r!.at - longAt} ms into the outage, before waittimeout`);
    const spread = Math.max(...first.map((r) => r!.at)) - Math.min(...first.map((r) => r!.at));
    assert.ok(spread > 200, `reboots spread over ${spread} ms: not in step`);
    broker = await startMosquitto(mosquittoDir);
    await until('all back after the long outage', 30_000, () => fleet.counts().online === outageIds.length);
    const c = fleet.rebootCounts();
    assert.deepEqual([c.command, c.watchdog, c.update], [0, 0, 0]);
  });

  /**
   * An update server stand-in over mutual TLS: config.json as the real one serves it, and a
   * firmware.bin that `body` writes as it likes (stall, or trickle).
   */
  async function standIn(body: (socket: tls.TLSSocket) => void): Promise<{ port: number; close(): Promise<void> }> {
    const files = store.identityFiles('server', 'localhost');
    const sockets = new Set<tls.TLSSocket>();
    const srv = tls.createServer({ key: readFileSync(files.privateKey), cert: readFileSync(files.certificate), ca: store.caCertificatePem, requestCert: true, rejectUnauthorized: true }, (socket) => {
      sockets.add(socket);
      socket.on('close', () => sockets.delete(socket));
      socket.on('error', () => undefined);
      socket.once('data', (req: Buffer) => {
        const line = req.toString('latin1').split('\r\n')[0];
        if (line.includes('/config.json')) {
          const config = JSON.stringify({ mqttserver: 'localhost', mqttport: brokerPort, mqtttls: true, statusinterval: 1000, retrytimeout: RETRY_MS, waittimeout: 20_000 });
          socket.end(`HTTP/1.0 200 OK\r\nContent-Length: ${Buffer.byteLength(config)}\r\n\r\n${config}`);
        } else body(socket);
      });
    });
    await new Promise<void>((r) => srv.listen(0, '127.0.0.1', () => r()));
    return {
      port: (srv.address() as AddressInfo).port,
      close: async () => {
        for (const s of sockets) s.destroy();
        await new Promise((r) => srv.close(r));
      },
    };
  }

  it('watchdog: a download that stalls resets the device; a slow one that keeps moving does not', async () => {
    const image = Buffer.alloc(64 * 1024, 0xe9);
    const timers = new Set<NodeJS.Timeout>();
    // Stall: 8 KB, then nothing (the socket stays open).
    const stall = await standIn((s) => s.write(Buffer.concat([Buffer.from(`HTTP/1.0 200 OK\r\nContent-Length: ${image.length}\r\n\r\n`), image.subarray(0, 8192)])));
    // Trickle: all of a 16 KB body, 512 bytes every 400 ms (about 13 s, twice the 6 s budget in all).
    const small = image.subarray(0, 16 * 1024);
    const trickle = await standIn((s) => {
      s.write(`HTTP/1.0 200 OK\r\nContent-Length: ${small.length}\r\n\r\n`);
      let at = 0;
      const t = setInterval(() => {
        if (s.destroyed) return clearInterval(t);
        s.write(small.subarray(at, at + 512));
        at += 512;
        if (at >= small.length) {
          clearInterval(t);
          s.end();
        }
      }, 400);
      timers.add(t);
    });
    try {
      const a = await device(stalling, { bootstrap: { host: 'localhost', port: stall.port, path: '/fw' }, rebootDelayMs: 100 });
      const b = await device(trickling, { bootstrap: { host: 'localhost', port: trickle.port, path: '/fw' } });
      await backend.waitOnline([stalling, trickling]);
      const aReboots: RebootReason[] = [];
      const bReboots: RebootReason[] = [];
      a.on('reboot', (r) => aReboots.push(r));
      b.on('reboot', (r) => bReboots.push(r));
      const bFailed = new Promise<string>((resolve) => b.once('failed', resolve));
      const sentAt = Date.now();
      void backend.command([stalling, trickling], 'firmware');
      await until('the stalled device resets', 15_000, () => aReboots.length > 0);
      const resetAfter = Date.now() - sentAt;
      assert.deepEqual(aReboots, ['watchdog']);
      assert.ok(resetAfter >= WATCHDOG_STEPS.download, `reset ${resetAfter} ms after the command, before the 6 s budget`);
      assert.ok(resetAfter < WATCHDOG_STEPS.download + 4_000, `reset only ${resetAfter} ms after the command`);
      // The slow download ran to its end and was judged on its content, with no reset.
      const why = await bFailed;
      const took = Date.now() - sentAt;
      assert.match(why, /^firmware: signature check failed/);
      assert.ok(took > WATCHDOG_STEPS.download + 2_000, `the trickle took only ${took} ms`);
      assert.deepEqual(bReboots, []);
      // The reset device boots again and comes back.
      await until('the reset device is back', 15_000, () => a.online);
    } finally {
      for (const t of timers) clearInterval(t);
      await stall.close();
      await trickle.close();
    }
  });

  it('wifi: a known network with its password is joined; a wrong password falls back after 30 s (scaled) with the contract text', async () => {
    const networks = [{ ssid: 'office', password: 'correct horse' }];
    const logged: string[] = [];
    const log = (line: string): number => logged.push(line);
    const a = await device(roaming, { network: { ssid: 'home', password: 'home-pass' }, networks, log });
    const b = await device(stubborn, { network: { ssid: 'home', password: 'home-pass' }, networks, log });
    await backend.waitOnline([roaming, stubborn]);
    const [joined] = await backend.dispatcher.dispatch([roaming], buildCommand('esp8266', 'wifi', { ssid: 'office', password: 'correct horse' }));
    assert.equal(joined.outcome, 'success', JSON.stringify(joined));
    assert.deepEqual(a.network, { ssid: 'office', password: 'correct horse' });
    const startedAt = Date.now();
    const [refused] = await backend.dispatcher.dispatch([stubborn], buildCommand('esp8266', 'wifi', { ssid: 'office', password: 'not the password' }));
    assert.deepEqual([refused.outcome, refused.error], ['failed', 'wifi: cannot join office within 30 s; back on home']);
    assert.ok(Date.now() - startedAt >= 300, 'it tried for 30 s × the fast scale');
    assert.equal(b.network.ssid, 'home');
    const [unknown] = await backend.dispatcher.dispatch([stubborn], buildCommand('esp8266', 'wifi', { ssid: 'elsewhere', password: '' }));
    assert.deepEqual([unknown.outcome, unknown.error], ['failed', 'wifi: cannot join elsewhere within 30 s; back on home']);
    assert.ok(logged.some((l) => l.includes('wifi: trying "office"')), logged.join('\n'));
    assert.ok(!logged.some((l) => l.includes('correct horse') || l.includes('not the password')), 'a log line shows a password');
    assert.deepEqual(backend.registry.get(stubborn)?.lastStatus?.errormessage, 'wifi: cannot join elsewhere within 30 s; back on home');
  });
});
