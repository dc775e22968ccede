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
    assert.match(acl, /^user node-red\ntopic read \/status\/\+\ntopic read \/will\/\+\/will\ntopic write \/command\/\+\/#$/m);
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

  it('gives an identity without an entry nothing at all', () => {
    const p = new Permissions('stranger', aclEntries([A], ['node-red']));
    assert.ok(!p.canPublish(`/status/${A}`) && !p.canRead(`/status/${A}`) && !p.canSubscribe('#'));
    assert.equal(p.kinds.size, 0);
  });
});
