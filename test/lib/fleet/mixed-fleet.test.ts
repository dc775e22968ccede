import { strict as assert } from 'node:assert';
import { EventEmitter } from 'node:events';
import { readFileSync, writeFileSync } from 'node:fs';
import * as path from 'node:path';
import { FleetTopics } from '../../../lib/fleet/fleet-topics';
import { TopicScheme } from '../../../lib/fleet/topic-scheme';
import { DeviceRegistry } from '../../../lib/fleet/registry';
import { RegistryFile } from '../../../lib/fleet/registry-file';
import { buildCommand, planCommand, CommandDispatcher, BuiltCommand, PlannedCommand } from '../../../lib/fleet/commands';
import { commandSummaryText } from '../../../lib/fleet/command-summary';
import { aclEntries, Permissions } from '../../../lib/broker/acl';
import { renderMosquittoAcl } from '../../../lib/mosquitto/mosquitto-config';
import { fleetTable } from '../../../lib/dashboard/fleet-table';
import { SEED_STATUS } from './telemetry.test';
import { tempDir } from '../../support/temp-dir';

const A = '84f3eb00000a'; // an ESP8266
const B = '24a16000000b'; // an ESP32

describe('mixed fleets (secure-esp8266 + secure-esp32 on one connection)', () => {
  const mixed = FleetTopics.named('mixed');

  describe('topics', () => {
    it('subscribes to the union and tells each topic’s platform by the scheme that parses it', () => {
      assert.deepEqual(mixed.subscriptions, ['/status/+', '/will/+/will', '/esp/+/status', '/esp/+/will', '/esp/+/log']);
      assert.deepEqual(mixed.parse(`/status/${A}`), { kind: 'status', id: A, commandSet: 'esp8266' });
      assert.deepEqual(mixed.parse(`/will/${A}/will`), { kind: 'will', id: A, commandSet: 'esp8266' });
      assert.deepEqual(mixed.parse(`/esp/${B}/status`), { kind: 'status', id: B, commandSet: 'esp32' });
      assert.deepEqual(mixed.parse(`/esp/${B}/log`), { kind: 'log', id: B, commandSet: 'esp32' });
      // A template matched but the id is bad: that reason, not "no template".
      assert.match((mixed.parse('/esp/NOT-A-MAC/status') as { error: string }).error, /does not carry a device id/);
      assert.match((mixed.parse(`/other/${A}`) as { error: string }).error, /matches no template of these schemes/);
      assert.equal(mixed.schemeFor('esp32').commandTopic(B, 'update/run'), `/esp/${B}/update/run`);
      assert.equal(mixed.schemeFor('esp8266').commandTopic(A, 'firmware'), `/command/${A}/firmware`);
      // Not heard from yet: the first scheme's.
      assert.equal(mixed.schemeFor(undefined).commandSet, 'esp8266');
      assert.deepEqual(mixed.commandSets, ['esp8266', 'esp32']);
    });

    it('a single scheme is exactly that scheme; the choices are named; two schemes of one set are refused', () => {
      const one = FleetTopics.of(TopicScheme.named('secure-esp32'));
      assert.deepEqual(one.subscriptions, TopicScheme.named('secure-esp32').subscriptions);
      assert.equal(one.schemeFor('esp8266').commandSet, 'esp32', 'a fleet without that set answers with its own');
      assert.equal(FleetTopics.of(mixed), mixed);
      assert.match((one.parse(`/status/${A}`) as { error: string }).error, /matches no template of this scheme/);
      assert.throws(() => FleetTopics.named('both' as never), /unknown topic scheme "both": secure-esp8266, secure-esp32, mixed/);
      assert.throws(() => new FleetTopics([TopicScheme.named('secure-esp8266'), TopicScheme.named('secure-esp8266')]), /share a command set/);
      assert.throws(() => new FleetTopics([]), /at least one/);
    });
  });

  describe('registry', () => {
    it('remembers each device’s platform, keeps it across a restart, forgets one it cannot name', async () => {
      const tmp = tempDir('mixed-registry');
      try {
        const file = path.join(tmp.path, 'registry.json');
        const a = await RegistryFile.open(file);
        a.registry.recordStatus(A, SEED_STATUS, Date.now(), 'esp8266');
        assert.equal(a.registry.recordStatus(B, SEED_STATUS, Date.now(), 'esp32').entry.platform, 'esp32');
        a.registry.recordWill('0e0000000001', true, Date.now(), 'esp32');
        a.registry.recordActivity('0e0000000002', Date.now(), 'esp32');
        a.registry.recordStatus('0e0000000003', SEED_STATUS);
        await a.flush();
        const b = await RegistryFile.open(file);
        assert.deepEqual(
          b.registry.list().map((e) => [e.id, e.platform]),
          [[A, 'esp8266'], [B, 'esp32'], ['0e0000000001', 'esp32'], ['0e0000000002', 'esp32'], ['0e0000000003', undefined]],
        );
        const content = JSON.parse(readFileSync(file, 'utf8')) as { devices: { platform?: unknown }[] };
        content.devices[0].platform = 'esp8285';
        writeFileSync(file, JSON.stringify(content));
        assert.equal((await RegistryFile.open(file)).registry.get(A)!.platform, undefined);
      } finally {
        tmp.remove();
      }
    });

    it('the fleet table shows the platform, empty before it is known', () => {
      const r = new DeviceRegistry();
      r.recordStatus(A, SEED_STATUS, Date.now(), 'esp8266');
      r.recordStatus(B, SEED_STATUS, Date.now(), 'esp32');
      r.recordStatus('0e0000000003', SEED_STATUS);
      assert.deepEqual(fleetTable(r.list()).rows.map((row) => [row.id, row.platform]), [['0e0000000003', ''], [B, 'esp32'], [A, 'esp8266']]);
    });
  });

  describe('commands', () => {
    it('update and restart mean each platform’s own command', () => {
      assert.deepEqual(buildCommand('esp8266', 'update'), { command: 'firmware', payload: '', tracking: 'image', commandSet: 'esp8266' });
      assert.deepEqual(buildCommand('esp32', 'update'), { command: 'update/run', payload: '', tracking: 'image', commandSet: 'esp32' });
      assert.equal(buildCommand('esp8266', 'restart').command, 'reboot');
      assert.equal(buildCommand('esp32', 'restart').command, 'restart');
      assert.equal(buildCommand('esp8266', 'restart').tracking, 'restart');
      // Names of Object.prototype are no commands.
      assert.throws(() => buildCommand('esp32', 'constructor'), /unknown command "constructor"/);
      assert.throws(() => buildCommand('esp8266', 'toString'), /unknown command/);
    });

    it('plans one command for both platforms: the other platform’s devices are refused, an unknown command or bad argument throws', () => {
      const plan = planCommand(['esp8266', 'esp32'], 'update/url', 'https://fw.local:8070/next');
      assert.deepEqual(plan('esp32'), { command: 'update/url', payload: 'https://fw.local:8070/next', tracking: 'none', commandSet: 'esp32' });
      const refused = plan('esp8266') as { command: string; refused: string };
      assert.equal(refused.command, 'update/url');
      assert.match(refused.refused, /^update\/url is an esp32 command, and this device is esp8266 \(its commands: firmware, flash, reboot/);
      const update = planCommand(['esp8266', 'esp32'], 'update');
      assert.equal((update('esp8266') as BuiltCommand).command, 'firmware');
      assert.equal((update('esp32') as BuiltCommand).command, 'update/run');
      assert.equal((planCommand(['esp8266', 'esp32'], 'wifi', { ssid: 'x', password: '' })('esp32') as { refused: string }).refused.startsWith('wifi is an esp8266 command'), true);
      assert.throws(() => planCommand(['esp8266', 'esp32'], 'selfdestruct'), /unknown command "selfdestruct": one of firmware, .*update\/run, restart \(or update, restart\)/);
      // A single-platform fleet: another platform's command is unknown there, as before.
      assert.throws(() => planCommand(['esp8266'], 'update/run'), /unknown command "update\/run"/);
      assert.throws(() => planCommand(['esp8266', 'esp32'], 'update/interval', 5), /300 to 9999999/);
    });

    it('the dispatcher sends each device its own, reports a refused device without sending it anything', async () => {
      const fleet = new EventEmitter();
      const registry = new DeviceRegistry();
      registry.recordStatus(A, SEED_STATUS, Date.now(), 'esp8266');
      registry.recordStatus(B, SEED_STATUS, Date.now(), 'esp32');
      const published: string[] = [];
      const d = new CommandDispatcher(async (id, c) => void published.push(`${id} ${c.command}`), registry, fleet as never, { maxInFlight: 5, outcomeTimeoutMs: 2_000 });
      try {
        const platformOf = (id: string): 'esp8266' | 'esp32' => registry.get(id)!.platform!;
        const plan = planCommand(['esp8266', 'esp32'], 'update/use_url', 1);
        const outcomes = await d.dispatch([A, B], (id): PlannedCommand => plan(platformOf(id)));
        assert.deepEqual(published, [`${B} update/use_url`]);
        assert.deepEqual(outcomes.map((o) => [o.device, o.command, o.outcome]), [[A, 'update/use_url', 'refused'], [B, 'update/use_url', 'sent']]);
        assert.match(outcomes[0].error!, /is an esp32 command, and this device is esp8266/);
        const text = commandSummaryText({ command: 'update/use_url', devices: 2, success: 0, failed: 0, timeout: 0, sent: 1, refused: 1, elapsedMs: 10, outcomes });
        assert.match(text, /^update\/use_url to 2 device\(s\): 0 succeeded, 0 failed, 0 timed out, 1 sent \(not tracked\), 1 refused in 0 s — 84f3eb00000a: update\/use_url is an esp32 command/);
      } finally {
        d.close();
      }
    });
  });

  describe('broker rights', () => {
    it('each device its own topics of both schemes (nobody else’s), each backend the union', () => {
      const entries = aclEntries([A, B], ['node-red'], mixed);
      const dev = new Permissions(A, entries);
      for (const t of [`/status/${A}`, `/will/${A}/will`, `/esp/${A}/status`, `/esp/${A}/will`, `/esp/${A}/log`]) assert.ok(dev.canPublish(t), t);
      for (const t of [`/status/${B}`, `/esp/${B}/status`, `/esp/${B}/log`, `/command/${A}/reboot`]) assert.ok(!dev.canPublish(t), t);
      assert.ok(dev.canRead(`/command/${A}/firmware`) && dev.canRead(`/esp/${A}/update/run`));
      assert.ok(!dev.canRead(`/command/${B}/firmware`) && !dev.canRead(`/esp/${B}/restart`));
      for (const f of ['/esp/#', '/esp/+/restart', '/command/#', '#']) assert.ok(!dev.canSubscribe(f), f);
      const be = new Permissions('node-red', entries);
      for (const f of ['/status/+', '/will/+/will', '/esp/+/status', '/esp/+/will', '/esp/+/log']) assert.ok(be.canSubscribe(f), f);
      assert.ok(be.canPublish(`/command/${B}/firmware`) && be.canPublish(`/esp/${A}/update/run`));
      assert.ok(!be.canPublish(`/status/${A}`) && !be.canSubscribe('#'));
      const acl = renderMosquittoAcl([A], ['node-red'], mixed, null);
      assert.equal(
        acl,
        [
          '# Generated by node-red-contrib-esp-fleet: one block per backend and per device.',
          '',
          'user node-red',
          ...['/status/+', '/will/+/will', '/esp/+/status', '/esp/+/will', '/esp/+/log'].map((f) => `topic read ${f}`),
          'topic write /command/+/#',
          'topic write /esp/+/#',
          '',
          `user ${A}`,
          ...[`/status/${A}`, `/will/${A}/will`, `/esp/${A}/status`, `/esp/${A}/will`, `/esp/${A}/log`].map((t) => `topic write ${t}`),
          `topic read /command/${A}/#`,
          `topic read /esp/${A}/#`,
          '',
        ].join('\n'),
      );
      // One scheme: exactly what it was before.
      assert.deepEqual(aclEntries([A], ['node-red'], FleetTopics.named('secure-esp8266')), aclEntries([A], ['node-red'], TopicScheme.named('secure-esp8266')));
    });
  });
});
