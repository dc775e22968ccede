import { strict as assert } from 'node:assert';
import { TopicScheme } from '../../../lib/fleet/topic-scheme';

describe('topic schemes', () => {
  const esp8266 = TopicScheme.named('secure-esp8266');
  const esp32 = TopicScheme.named('secure-esp32');

  it('secure-esp8266: secure-esp8266 topics, subscriptions and parsing', () => {
    assert.deepEqual(esp8266.subscriptions, ['/status/+', '/will/+/will']);
    assert.deepEqual(esp8266.parse('/status/84f3eb012345'), { kind: 'status', id: '84f3eb012345' });
    assert.deepEqual(esp8266.parse('/will/84f3eb012345/will'), { kind: 'will', id: '84f3eb012345' });
    assert.equal(esp8266.commandTopic('84f3eb012345', 'firmware'), '/command/84f3eb012345/firmware');
    assert.equal(esp8266.deviceCommandFilter('84f3eb012345'), '/command/84f3eb012345/#');
    assert.equal(esp8266.commandSet, 'esp8266');
  });

  it('secure-esp32: per-device prefix with log, multi-level commands', () => {
    assert.deepEqual(esp32.subscriptions, ['/esp/+/status', '/esp/+/will', '/esp/+/log']);
    assert.deepEqual(esp32.parse('/esp/84f3eb012345/log'), { kind: 'log', id: '84f3eb012345' });
    assert.equal(esp32.commandTopic('84f3eb012345', 'update/url'), '/esp/84f3eb012345/update/url');
  });

  it('names the problem with a topic that does not carry a device id', () => {
    for (const topic of ['/status/84F3EB012345', '/status/not-a-mac', '/status/84f3eb012345/extra', '/other/84f3eb012345', '']) {
      const r = esp8266.parse(topic);
      assert.ok('error' in r, topic);
    }
    assert.match((esp8266.parse('/status/..') as { error: string }).error, /does not carry a device id/);
  });

  it('accepts custom templates that identify the device', () => {
    const s = new TopicScheme({ status: 'home/{id}/state', will: 'home/{id}/lwt', command: 'home/{id}/cmd/{command}' }, 'esp8266');
    assert.deepEqual(s.parse('home/a0b1c2d3e4f5/state'), { kind: 'status', id: 'a0b1c2d3e4f5' });
    assert.equal(s.commandTopic('a0b1c2d3e4f5', 'reboot'), 'home/a0b1c2d3e4f5/cmd/reboot');
  });

  const bad: [string, Record<string, string>, RegExp][] = [
    ['no {id}', { status: '/status', will: '/will/{id}', command: '/c/{id}/{command}' }, /cannot identify the device/],
    ['{id} inside a level', { status: '/status/dev-{id}', will: '/will/{id}', command: '/c/{id}/{command}' }, /cannot identify the device/],
    ['{id} twice', { status: '/s/{id}/{id}', will: '/will/{id}', command: '/c/{id}/{command}' }, /cannot identify the device/],
    ['a wildcard', { status: '/s/+/{id}', will: '/will/{id}', command: '/c/{id}/{command}' }, /wildcard/],
    ['{command} not last', { status: '/s/{id}', will: '/will/{id}', command: '/c/{command}/{id}' }, /needs \{command\} once, as its last level/],
    ['{command} in status', { status: '/s/{id}/{command}', will: '/will/{id}', command: '/c/{id}/{command}' }, /must not contain \{command\}/],
    ['same status and will', { status: '/s/{id}', will: '/s/{id}', command: '/c/{id}/{command}' }, /must differ/],
    ['an unknown placeholder', { status: '/s/{id}/{name}', will: '/w/{id}', command: '/c/{id}/{command}' }, /unknown placeholder \{name\}/],
  ];
  for (const [what, templates, error] of bad) {
    it(`rejects templates with ${what}`, () => {
      assert.throws(() => new TopicScheme(templates as never, 'esp8266'), error);
    });
  }
});
