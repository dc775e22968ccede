import { strict as assert } from 'node:assert';
import { writeFileSync } from 'node:fs';
import * as path from 'node:path';
import mqtt from 'mqtt';
import { FleetClient, RejectedMessage } from '../../lib/fleet/fleet-client';
import { DeviceRegistry } from '../../lib/fleet/registry';
import { TopicScheme } from '../../lib/fleet/topic-scheme';
import { FleetTopics } from '../../lib/fleet/fleet-topics';
import { buildCommand } from '../../lib/fleet/commands';
import { tempDir } from '../support/temp-dir';
import { freePort, startMosquitto, RunningMosquitto } from '../support/mosquitto';
import { BASE_STATUS } from '../support/fake-device';

/**
 * Messages our ACL would never let through (topics without a device id), on a plain local
 * broker that allows anything: the client must still refuse them without touching the registry.
 */
describe('FleetClient on a permissive plain-MQTT broker', function () {
  this.timeout(30_000);
  const tmp = tempDir('plain');
  let broker: RunningMosquitto;
  let port: number;

  before(async () => {
    port = await freePort();
    writeFileSync(path.join(tmp.path, 'plain.conf'), `listener ${port} 127.0.0.1\nallow_anonymous true\n`);
    broker = await startMosquitto(tmp.path);
  });
  after(async () => {
    await broker.stop();
    tmp.remove();
  });

  it('refuses topics that carry no device id, with the reason, and leaves the registry untouched', async () => {
    const registry = new DeviceRegistry();
    const client = new FleetClient({ url: `mqtt://127.0.0.1:${port}`, scheme: TopicScheme.named('secure-esp8266'), registry });
    const rejected: RejectedMessage[] = [];
    client.on('rejected', (r) => rejected.push(r));
    const connected = new Promise<void>((resolve) => client.on('state', (s) => s === 'connected' && resolve()));
    client.start();
    await connected;
    const publisher = await mqtt.connectAsync(`mqtt://127.0.0.1:${port}`);
    const status = JSON.stringify(BASE_STATUS);
    await publisher.publishAsync('/status/not-a-device', status);
    await publisher.publishAsync('/status/84F3EB012345', status);
    await publisher.publishAsync('/will/zzzzzzzzzzzz/will', 'offline');
    await publisher.publishAsync('/status/84f3eb012345', status);
    const deadline = Date.now() + 5_000;
    while (!registry.has('84f3eb012345')) {
      if (Date.now() > deadline) throw new Error('the valid status never arrived');
      await new Promise((r) => setTimeout(r, 20));
    }
    await publisher.endAsync();
    await client.close();
    assert.deepEqual(rejected.map((r) => r.topic), ['/status/not-a-device', '/status/84F3EB012345', '/will/zzzzzzzzzzzz/will']);
    assert.ok(rejected.every((r) => /does not carry a device id/.test(r.reason)));
    assert.deepEqual(rejected.map((r) => r.count), [1, 2, 3]);
    assert.deepEqual(registry.ids(), ['84f3eb012345']);
    assert.equal(client.secure, false);
  });

  it('after a restart, a device read back from the registry file gets 2.5 intervals from the new subscription before it counts as silent', async () => {
    const id = '84f3eb0000d1';
    const tenMinutesAgo = new Date(Date.now() - 600_000).toISOString();
    const saved = new DeviceRegistry({}, [{ id, online: true, presenceReason: 'status', presenceChangedAt: tenMinutesAgo, firstSeen: tenMinutesAgo, lastSeen: tenMinutesAgo, statusIntervalMs: 400 }]);
    const client = new FleetClient({ url: `mqtt://127.0.0.1:${port}`, scheme: TopicScheme.named('secure-esp8266'), registry: saved, sweepIntervalMs: 50 });
    const offline: number[] = [];
    let connectedAt = 0;
    client.on('presence', (p) => p.id === id && !p.online && offline.push(Date.now()));
    const connected = new Promise<void>((resolve) => client.on('state', (st) => st === 'connected' && ((connectedAt = Date.now()), resolve())));
    client.start();
    try {
      await connected;
      await new Promise((r) => setTimeout(r, 600));
      assert.deepEqual(offline, [], 'not offline for the ten minutes nobody listened');
      for (const end = Date.now() + 3_000; offline.length === 0 && Date.now() < end; ) await new Promise((r) => setTimeout(r, 20));
      assert.equal(offline.length, 1, 'offline once it stayed silent while we listened');
      assert.ok(offline[0]! - connectedAt >= 1_000, `judged ${offline[0]! - connectedAt} ms after the subscription, not before 2.5 × 400 ms`);
      assert.equal(saved.get(id)!.presenceReason, 'timeout');
    } finally {
      await client.close();
    }
  });

  it('close() right after a command still delivers it: a redeploy does not drop a QoS 1 publish in flight', async () => {
    const id = '84f3eb0000e1';
    const watcher = await mqtt.connectAsync(`mqtt://127.0.0.1:${port}`);
    try {
      const seen: string[] = [];
      watcher.on('message', (topic) => seen.push(topic));
      await watcher.subscribeAsync('/command/#', { qos: 1 });
      for (let round = 0; round < 5; round++) {
        const client = new FleetClient({ url: `mqtt://127.0.0.1:${port}`, scheme: TopicScheme.named('secure-esp8266'), registry: new DeviceRegistry() });
        const connected = new Promise<void>((resolve) => client.on('state', (st) => st === 'connected' && resolve()));
        client.start();
        await connected;
        let acknowledged = false;
        client.publishCommand(id, buildCommand('esp8266', 'firmware')).then(() => (acknowledged = true), () => undefined);
        await client.close(); // in the same tick as the publish, as a node's close after its last msg
        assert.ok(acknowledged, 'close() returned only after the broker acknowledged the command');
      }
      for (const end = Date.now() + 3_000; seen.length < 5 && Date.now() < end; ) await new Promise((r) => setTimeout(r, 20));
      assert.equal(seen.length, 5, `${seen.length} of 5 commands reached the broker`);
    } finally {
      await watcher.endAsync();
    }
  });

  it('mixed: both schemes at once, each device’s platform from its topics, commands on its own scheme, none of another set', async () => {
    const registry = new DeviceRegistry();
    const client = new FleetClient({ url: `mqtt://127.0.0.1:${port}`, scheme: FleetTopics.named('mixed'), registry });
    const connected = new Promise<void>((resolve) => client.on('state', (s) => s === 'connected' && resolve()));
    client.start();
    const watcher = await mqtt.connectAsync(`mqtt://127.0.0.1:${port}`);
    try {
      await connected;
      const seen: string[] = [];
      watcher.on('message', (topic) => seen.push(topic));
      await watcher.subscribeAsync(['/command/#', '/esp/+/update/#', '/esp/+/restart']);
      const logs: string[] = [];
      client.on('log', (id, text) => logs.push(`${id} ${text}`));
      const [e8266, e32, silent] = ['84f3eb0000c1', '24a1600000c2', '84f3eb0000c3'];
      await watcher.publishAsync(`/status/${e8266}`, JSON.stringify(BASE_STATUS));
      await watcher.publishAsync(`/esp/${e32}/status`, JSON.stringify(BASE_STATUS));
      await watcher.publishAsync(`/esp/${e32}/log`, 'booted');
      for (const end = Date.now() + 5_000; !(registry.has(e8266) && registry.has(e32) && logs.length); ) {
        if (Date.now() > end) throw new Error('the reports never arrived');
        await new Promise((r) => setTimeout(r, 20));
      }
      assert.equal(registry.get(e8266)!.platform, 'esp8266');
      assert.equal(registry.get(e32)!.platform, 'esp32');
      assert.deepEqual(logs, [`${e32} booted`]);
      assert.deepEqual([client.commandSetOf(e8266), client.commandSetOf(e32), client.commandSetOf(silent)], ['esp8266', 'esp32', 'esp8266']);
      await client.publishCommand(e8266, buildCommand(client.commandSetOf(e8266), 'update'));
      await client.publishCommand(e32, buildCommand(client.commandSetOf(e32), 'update'));
      await client.publishCommand(e32, buildCommand(client.commandSetOf(e32), 'restart'));
      // Not heard from yet: the first scheme's topics.
      await client.publishCommand(silent, buildCommand(client.commandSetOf(silent), 'restart'));
      await assert.rejects(client.publishCommand(e8266, buildCommand('esp32', 'restart')), /restart is an esp32 command; 84f3eb0000c1 is addressed as esp8266/);
      const want = [`/command/${e8266}/firmware`, `/esp/${e32}/update/run`, `/esp/${e32}/restart`, `/command/${silent}/reboot`];
      for (const end = Date.now() + 5_000; seen.length < want.length && Date.now() < end; ) await new Promise((r) => setTimeout(r, 20));
      await new Promise((r) => setTimeout(r, 200));
      assert.deepEqual(seen, want);
    } finally {
      await watcher.endAsync();
      await client.close();
    }
  });
});
