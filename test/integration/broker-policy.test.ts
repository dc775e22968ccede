import { strict as assert } from 'node:assert';
import * as path from 'node:path';
import type { MqttClient } from 'mqtt';
import { CaStore } from '../../lib/pki/ca-store';
import { EmbeddedBroker, BrokerEvent } from '../../lib/broker/embedded-broker';
import type { Who } from '../../lib/broker/policy';
import { tempDir } from '../support/temp-dir';
import { freePort } from '../support/mosquitto';
import { connectTls, granted, identityFromFiles } from '../support/mqtt-client';

const A = '84f3eb00002a';
const B = '84f3eb00002b';
const C = '84f3eb00002c';

describe('embedded broker policy hooks (lib/broker/policy.ts): your own rules can only take rights away', function () {
  this.timeout(60_000);
  const tmp = tempDir('broker-policy');
  let store: CaStore;
  let broker: EmbeddedBroker;
  let port: number;
  const events: BrokerEvent[] = [];
  const clients: MqttClient[] = [];
  const seen: Who[] = [];
  const device = async (id: string): Promise<MqttClient> => {
    const c = await connectTls(port, identityFromFiles(path.join(store.deviceFilesDir, 'ca.crt'), path.join(store.deviceFilesDir, `${id}.crt`), path.join(store.deviceFilesDir, `${id}.key`)), id);
    c.on('error', () => undefined);
    clients.push(c);
    return c;
  };

  before(async () => {
    store = await CaStore.open({ dir: path.join(tmp.path, 'ca') });
    await Promise.all([A, B, C].map((id) => store.issueDevice(id)));
    port = await freePort();
    broker = await EmbeddedBroker.start({
      store,
      port,
      host: '127.0.0.1',
      serverNames: ['localhost'],
      onEvent: (e) => events.push(e),
      policy: {
        // Only A and B may connect; C holds a valid certificate but is not on the list.
        mayConnect: (who) => (seen.push(who), [A, B].includes(who.identity) || `${who.identity} is not on the allowlist`),
        // No device may subscribe to reboot commands; a hook that throws refuses too.
        maySubscribe: (_who, filter) => {
          if (filter.endsWith('/flash')) throw new Error('rule bug');
          return !filter.endsWith('/reboot');
        },
        // A may not publish its will by hand.
        mayPublish: (who, topic) => !(who.identity === A && topic.startsWith('/will/')),
      },
    });
  });
  after(async () => {
    await Promise.all(clients.map((c) => Promise.race([c.endAsync(true).catch(() => undefined), new Promise((r) => setTimeout(r, 500))])));
    await broker?.close();
    tmp.remove();
  });

  it('mayConnect: a valid certificate off the allowlist is refused with the hook\'s reason; the hook sees who and from where', async () => {
    await device(A);
    await assert.rejects(device(C));
    const refused = events.find((e) => e.type === 'refused' && e.identity === C);
    assert.ok(refused && refused.type === 'refused' && /84f3eb00002c is not on the allowlist/.test(refused.reason), JSON.stringify(events));
    const who = seen.find((w) => w.identity === A)!;
    assert.equal(who.kind, 'device');
    assert.match(who.serial, /^[0-9A-F]+$/);
    assert.match(who.address ?? '', /127\.0\.0\.1/);
  });

  it('maySubscribe narrows what the ACL allows, a throwing hook refuses, and no hook grants beyond the ACL', async () => {
    const b = await device(B);
    assert.deepEqual(
      [await granted(b, `/command/${B}/firmware`), await granted(b, `/command/${B}/reboot`), await granted(b, `/command/${B}/flash`), await granted(b, `/command/${A}/firmware`)],
      [0, 128, 128, 128],
    );
    const denied = events.filter((e) => e.type === 'denied' && e.identity === B).map((e) => (e.type === 'denied' ? e.reason ?? '' : ''));
    assert.ok(denied.some((r) => /the broker policy failed \(rule bug\)/.test(r)), JSON.stringify(denied));
  });

  it('mayPublish: a refused publish closes the connection (MQTT-3.3.5-2), other publishes and devices are unaffected', async () => {
    const a = await device(A);
    await a.publishAsync(`/status/${A}`, '{}');
    const closed = new Promise<void>((r) => a.once('close', () => r()));
    a.publish(`/will/${A}/will`, 'forged');
    await closed;
    assert.ok(events.some((e) => e.type === 'denied' && e.identity === A && e.action === 'publish' && /refused by the broker policy/.test(e.reason ?? '')));
    const b = await device(B);
    await b.publishAsync(`/will/${B}/will`, 'offline');
  });
});
