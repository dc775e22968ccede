import { strict as assert } from 'node:assert';
import fc from 'fast-check';
import { updateEntityConfig, updateEntityRemoval, UpdateEntityConfig } from '../../../lib/homeassistant/update-entity';
import { updateEntityState, updateStateMessage } from '../../../lib/homeassistant/update-state';
import { checkDiscoveryPrefix, HomeAssistantError } from '../../../lib/homeassistant/topics';
import { TopicScheme } from '../../../lib/fleet/topic-scheme';
import { validConfig, validState } from '../../support/ha-schema';

const A = '84f3eb012345';

function configOf(...args: Parameters<typeof updateEntityConfig>): UpdateEntityConfig {
  return JSON.parse(updateEntityConfig(...args).payload) as UpdateEntityConfig;
}

describe('Home Assistant: update entity discovery (lib/homeassistant)', () => {
  it('the schema fixture refuses what HA refuses (so passing it means something)', () => {
    const good = configOf({ id: A });
    assert.ok(validConfig(good), JSON.stringify(validConfig.errors));
    const bad: unknown[] = [
      { ...good, device_class: 'firmwares' },
      { ...good, entity_category: 'system' },
      { ...good, qos: 3 },
      { ...good, device: { name: 'x' } }, // no identifiers nor connections
      { ...good, origin: { sw_version: '1' } }, // origin without a name
      { ...good, availability_topic: '/will/x/will' }, // both availability forms
      { ...good, command_topic: undefined }, // payload_install without a command topic
      { ...good, state_topic: 'a/+/b' },
      { ...good, default_entity_id: 'sensor.x' },
    ].map((c) => JSON.parse(JSON.stringify(c)));
    for (const c of bad) assert.ok(!validConfig(c), JSON.stringify(c));
    for (const s of [{ update_percentage: 101 }, { update_percentage: -1 }, { in_progress: 'yes' }, { release_summary: 'x'.repeat(256) }, { latest_version: 3 }]) assert.ok(!validState(s), JSON.stringify(s));
  });

  it('publishes a retained config on <prefix>/update/esp-fleet/<id>/config with the keys HA documents', () => {
    const msg = updateEntityConfig({ id: A, name: 'kitchen', image: 'ESP8266_WEMOS_D1MINIPRO-00.00.08.f' }, { softwareVersion: '0.1.0', supportUrl: 'https://example.org/esp-fleet' });
    assert.equal(msg.topic, `homeassistant/update/esp-fleet/${A}/config`);
    assert.equal(msg.retain, true);
    const c = JSON.parse(msg.payload) as UpdateEntityConfig;
    assert.ok(validConfig(c), JSON.stringify(validConfig.errors));
    assert.equal(c.unique_id, `esp-fleet-${A}-firmware`);
    assert.equal(c.default_entity_id, `update.esp_${A}_firmware`);
    assert.deepEqual(c.device, {
      identifiers: [`esp-fleet-${A}`],
      connections: [['mac', '84:f3:eb:01:23:45']],
      name: 'kitchen',
      model: 'ESP8266_WEMOS_D1MINIPRO',
      manufacturer: 'Espressif',
      sw_version: 'ESP8266_WEMOS_D1MINIPRO-00.00.08.f',
    });
    assert.deepEqual(c.origin, { name: 'node-red-contrib-esp-fleet', sw_version: '0.1.0', support_url: 'https://example.org/esp-fleet' });
    assert.equal(c.device_class, 'firmware');
    assert.equal(c.entity_category, 'config');
    assert.equal(c.state_topic, `esp-fleet/ha/${A}/state`);
    assert.equal(c.command_topic, `esp-fleet/ha/${A}/install`);
    assert.equal(c.payload_install, 'install');
    assert.equal(c.retain, false, 'HA must not retain an install press');
    // What our firmware publishes on its will topic (docs/wire-contract.md): retained online, LWT offline.
    assert.deepEqual(c.availability, [{ topic: `/will/${A}/will`, payload_available: 'online', payload_not_available: 'offline' }]);
  });

  it('follows the topic scheme, the prefix and a bridge topic', () => {
    const c = configOf({ id: A }, { scheme: TopicScheme.named('secure-esp32'), discoveryPrefix: 'ha/disc', bridgeTopic: 'esp-fleet/ha/bridge' });
    assert.ok(validConfig(c), JSON.stringify(validConfig.errors));
    assert.deepEqual(
      c.availability.map((a) => a.topic),
      [`/esp/${A}/will`, 'esp-fleet/ha/bridge'],
    );
    assert.equal(c.availability_mode, 'all');
    assert.equal(updateEntityConfig({ id: A }, { discoveryPrefix: 'ha/disc' }).topic, `ha/disc/update/esp-fleet/${A}/config`);
  });

  it('removes an entity with an empty retained config and clears its state', () => {
    assert.deepEqual(updateEntityRemoval(A), [
      { topic: `homeassistant/update/esp-fleet/${A}/config`, payload: '', retain: true, qos: 1 },
      { topic: `esp-fleet/ha/${A}/state`, payload: '', retain: true, qos: 1 },
    ]);
  });

  it('state payloads carry HA types: versions, in_progress, update_percentage 0..100 or null', () => {
    const idle = updateEntityState({ installed: 'P-1.0.0', latest: 'P-1.1.0', title: 'P firmware' });
    assert.deepEqual(idle, { installed_version: 'P-1.0.0', latest_version: 'P-1.1.0', title: 'P firmware', in_progress: false, update_percentage: null });
    assert.deepEqual(updateEntityState({ installed: 'P-1.0.0', latest: null }), { installed_version: 'P-1.0.0', latest_version: null, in_progress: false, update_percentage: null });
    const running = updateEntityState({ installed: 'P-1.0.0', latest: 'P-1.1.0', percent: 42.5, releaseSummary: 's', releaseUrl: 'https://example.org/r' });
    assert.equal(running.in_progress, true);
    assert.equal(running.update_percentage, 42.5);
    for (const s of [idle, running]) assert.ok(validState(s), JSON.stringify(validState.errors));
    const msg = updateStateMessage(A, { installed: 'P-1.0.0', latest: 'P-1.0.0' });
    assert.equal(msg.topic, `esp-fleet/ha/${A}/state`);
    assert.equal(msg.retain, true);
  });

  it('refuses bad input with a short reason', () => {
    const bad: [string, () => unknown][] = [
      ['id', () => updateEntityConfig({ id: '84:F3:EB:01:23:45' })],
      ['prefix', () => updateEntityConfig({ id: A }, { discoveryPrefix: 'home/#' })],
      ['url', () => updateEntityConfig({ id: A }, { supportUrl: 'ftp://x' })],
      ['bridge', () => updateEntityConfig({ id: A }, { bridgeTopic: 'a/+' })],
      ['name', () => updateEntityConfig({ id: A, name: 'a\nb' })],
      ['percent', () => updateEntityState({ installed: 'a', latest: 'b', percent: 100.5 })],
      ['percent NaN', () => updateEntityState({ installed: 'a', latest: 'b', percent: Number.NaN })],
      ['percent idle', () => updateEntityState({ installed: 'a', latest: 'b', percent: 5, inProgress: false })],
      ['summary', () => updateEntityState({ installed: 'a', latest: 'b', releaseSummary: 'x'.repeat(256) })],
      ['installed', () => updateEntityState({ installed: '', latest: 'b' })],
    ];
    for (const [what, f] of bad) {
      assert.throws(f, (e: Error) => e instanceof HomeAssistantError && e.message.length < 300 && !e.message.includes('\n    at '), what);
    }
  });

  it('property: any valid id, prefix, versions and percent give payloads the schema accepts', () => {
    const hex = fc.stringMatching(/^[0-9a-f]{12}$/);
    const level = fc.stringMatching(/^[A-Za-z0-9_-]{1,12}$/);
    const prefix = fc.array(level, { minLength: 1, maxLength: 4 }).map((l) => l.join('/')).filter((p) => p.length <= 64);
    const version = fc.stringMatching(/^[A-Za-z0-9_.]{1,20}-[0-9]{1,3}\.[0-9]{1,3}\.[0-9]{1,3}$/);
    fc.assert(
      fc.property(hex, prefix, version, fc.option(version), fc.option(fc.double({ min: 0, max: 100, noNaN: true })), (id, p, installed, latest, percent) => {
        const msg = updateEntityConfig({ id, image: installed }, { discoveryPrefix: p });
        assert.equal(msg.topic, `${p}/update/esp-fleet/${id}/config`);
        assert.ok(validConfig(JSON.parse(msg.payload)), JSON.stringify(validConfig.errors));
        assert.ok(validState(updateEntityState({ installed, latest, percent })), JSON.stringify(validState.errors));
      }),
      { seed: 15001, numRuns: 300 },
    );
  });

  it('property: invalid ids, prefixes and percents throw', () => {
    const badId = fc.string({ maxLength: 20 }).filter((s) => !/^[0-9a-f]{12}$/.test(s));
    const badPrefix = fc.oneof(fc.constant(''), fc.string({ maxLength: 70 }).filter((s) => !/^[A-Za-z0-9_-]+(\/[A-Za-z0-9_-]+)*$/.test(s) || s.length > 64), fc.constant('a'.repeat(65)));
    const badPercent = fc.oneof(fc.double({ noNaN: false }).filter((d) => !(d >= 0 && d <= 100)), fc.constant(Infinity));
    fc.assert(
      fc.property(badId, badPrefix, badPercent, (id, p, percent) => {
        assert.throws(() => updateEntityConfig({ id }), HomeAssistantError);
        assert.throws(() => checkDiscoveryPrefix(p), HomeAssistantError);
        assert.throws(() => updateEntityConfig({ id: A }, { discoveryPrefix: p }), HomeAssistantError);
        assert.throws(() => updateEntityState({ installed: 'a', latest: 'b', percent }), HomeAssistantError);
      }),
      { seed: 15002, numRuns: 300 },
    );
  });
});
