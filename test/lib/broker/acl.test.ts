import { strict as assert } from 'node:assert';
import { filterCovers, isValidFilter, topicMatches } from '../../../lib/broker/topic-filter';
import { aclEntries, Permissions } from '../../../lib/broker/acl';
import { renderMosquittoAcl } from '../../../lib/mosquitto/mosquitto-config';
import { TopicScheme } from '../../../lib/fleet/topic-scheme';

const A = '84f3eb00000a';
const B = '84f3eb00000b';

describe('MQTT topic filters (embedded broker authorizer)', () => {
  it('matches topics the way mosquitto_topic_matches_sub does', () => {
    const yes: [string, string][] = [
      ['/status/+', `/status/${A}`],
      ['/command/+/#', `/command/${A}/reboot`],
      ['/command/+/#', `/command/${A}`], // # also matches the parent level
      ['a/#', 'a'],
      ['#', 'a/b/c'],
      ['+/+', '/x'], // a leading / is an empty first level
      ['a/+/c', 'a//c'], // + matches an empty level
      ['$SYS/#', '$SYS/broker/load'],
      ['$SYS/+/load', '$SYS/broker/load'],
    ];
    const no: [string, string][] = [
      ['/status/+', `/status/${A}/x`],
      ['/status/+', '/status'],
      ['a/+', 'a'],
      ['#', '$SYS/broker'], // wildcards in the first level never match $ topics
      ['+/broker', '$SYS/broker'],
      ['/command/+/#', '/commands/x/y'],
      ['a/#/b', 'a/x/b'], // invalid filter
      ['a/b+', 'a/b+'], // invalid filter
      ['a/b', 'a/+'], // not a topic name
    ];
    for (const [f, t] of yes) assert.ok(topicMatches(f, t), `${f} should match ${t}`);
    for (const [f, t] of no) assert.ok(!topicMatches(f, t), `${f} should not match ${t}`);
  });

  it('covers a subscription only when every topic it can match is matched by the ACL filter', () => {
    const device = `/command/${A}/#`;
    const covered: [string, string][] = [
      [device, `/command/${A}/#`],
      [device, `/command/${A}/reboot`],
      [device, `/command/${A}/+`],
      [device, `/command/${A}`],
      [device, `/command/${A}/+/x/#`],
      ['/status/+', `/status/${A}`],
      ['/status/+', '/status/+'],
      ['/command/+/#', '/command/+/reboot'],
      ['#', 'a/+/#'],
      ['$SYS/#', '$SYS/broker/+'],
    ];
    const notCovered: [string, string][] = [
      [device, '/command/#'],
      [device, '/command/+/reboot'],
      [device, `/command/${B}/#`],
      [device, '#'],
      [device, '+/#'],
      ['/status/+', '/status/#'], // # reaches deeper levels (and /status itself)
      ['/status/+', '/status'],
      ['/status/+', `/status/${A}/x`],
      ['a/+', 'a/#'],
      ['#', '$SYS/#'], // $ topics are outside #
      ['+/#', '$SYS/broker'],
      ['/status/+', '/status/a/#/x'], // invalid filter
    ];
    for (const [o, i] of covered) assert.ok(filterCovers(o, i), `${o} should cover ${i}`);
    for (const [o, i] of notCovered) assert.ok(!filterCovers(o, i), `${o} should not cover ${i}`);
  });

  it('validates filters', () => {
    for (const f of ['#', '+', '/+/#', '$SYS/#', 'a//b']) assert.ok(isValidFilter(f), f);
    for (const f of ['', 'a#', '#/a', 'a/b+', 'a\0b']) assert.ok(!isValidFilter(f), JSON.stringify(f));
  });
});

describe('ACL entries: one source for Mosquitto and the embedded broker', () => {
  it('renders the acl_file from the entries (backends first, sorted, deduplicated)', () => {
    const entries = aclEntries([B, A, A], ['node-red', 'flows']);
    assert.deepEqual(entries.map((e) => e.user), ['flows', 'node-red', A, B]);
    const acl = renderMosquittoAcl([B, A], ['node-red']);
    assert.match(acl, /^user node-red\ntopic read \/status\/\+\ntopic read \/will\/\+\/will\ntopic read homeassistant\/\+\/\+\/config\n/m);
    assert.match(acl, /\ntopic write \/command\/\+\/#\ntopic write homeassistant\/update\/esp-fleet\/\+\/config\ntopic write homeassistant\/status\ntopic write esp-fleet\/ha\/\+\/state\ntopic write esp-fleet\/ha\/\+\/install\n/);
    assert.doesNotMatch(renderMosquittoAcl([A], ['node-red'], undefined, null), /homeassistant|esp-fleet\/ha/);
    assert.match(acl, new RegExp(`^user ${A}\\ntopic write /status/${A}\\ntopic write /will/${A}/will\\ntopic read /command/${A}/#$`, 'm'));
  });

  it('lets a device write only its own status and will and read only its own commands', () => {
    const p = new Permissions(A, aclEntries([A, B], ['node-red']));
    assert.ok(p.canPublish(`/status/${A}`) && p.canPublish(`/will/${A}/will`));
    assert.ok(!p.canPublish(`/status/${B}`) && !p.canPublish(`/command/${A}/reboot`) && !p.canPublish('$SYS/x'));
    assert.ok(p.canRead(`/command/${A}/reboot`) && !p.canRead(`/command/${B}/reboot`) && !p.canRead(`/status/${A}`));
    assert.ok(p.canSubscribe(`/command/${A}/#`) && p.canSubscribe(`/command/${A}/reboot`));
    for (const f of ['/command/#', '/command/+/reboot', '#', '$SYS/#', `/status/${A}`]) assert.ok(!p.canSubscribe(f), f);
  });

  it('lets a backend read every status, will and log and write every command (secure-esp32)', () => {
    const p = new Permissions('node-red', aclEntries([A], ['node-red'], TopicScheme.named('secure-esp32')));
    assert.ok(p.canSubscribe('/esp/+/status') && p.canSubscribe('/esp/+/log') && p.canSubscribe(`/esp/${A}/will`));
    assert.ok(!p.canSubscribe('/esp/#') && !p.canSubscribe('#'));
    assert.ok(p.canPublish(`/esp/${A}/restart`) && p.canPublish(`/esp/${A}/update/url`));
    assert.deepEqual([...p.kinds], ['backend']);
  });

  it('gives backends the Home Assistant link topics and devices none of them', () => {
    const entries = aclEntries([A], ['node-red', 'home-assistant'], undefined, 'ha');
    const backend = new Permissions('home-assistant', entries);
    // The two filters HA subscribes to for discovery, its birth topic, our state and install topics.
    for (const f of ['ha/+/+/config', 'ha/+/+/+/config', 'ha/status', 'esp-fleet/ha/+/state', `esp-fleet/ha/${A}/install`]) assert.ok(backend.canSubscribe(f), f);
    for (const t of [`ha/update/esp-fleet/${A}/config`, 'ha/status', `esp-fleet/ha/${A}/state`, `esp-fleet/ha/${A}/install`]) assert.ok(backend.canPublish(t) && backend.canRead(t), t);
    // Least privilege: no other component's configs, no other prefix, no wider filters.
    for (const t of [`ha/sensor/esp-fleet/${A}/config`, `ha/update/other/${A}/config`, `homeassistant/update/esp-fleet/${A}/config`, 'esp-fleet/ha/x', 'ha/x']) assert.ok(!backend.canPublish(t), t);
    for (const f of ['ha/#', 'esp-fleet/#', 'esp-fleet/ha/#', '#']) assert.ok(!backend.canSubscribe(f), f);
    const device = new Permissions(A, entries);
    for (const t of [`ha/update/esp-fleet/${A}/config`, 'ha/status', `esp-fleet/ha/${A}/state`, `esp-fleet/ha/${A}/install`]) assert.ok(!device.canPublish(t) && !device.canRead(t), t);
    for (const f of ['ha/+/+/+/config', 'ha/status', `esp-fleet/ha/${A}/install`]) assert.ok(!device.canSubscribe(f), f);
    assert.throws(() => aclEntries([A], ['node-red'], undefined, 'bad/#'), /discovery prefix/);
  });

  it('gives an identity without an entry nothing at all', () => {
    const p = new Permissions('stranger', aclEntries([A], ['node-red']));
    assert.ok(!p.canPublish(`/status/${A}`) && !p.canRead(`/status/${A}`) && !p.canSubscribe('#'));
    assert.equal(p.kinds.size, 0);
  });
});
