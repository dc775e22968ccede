import { strict as assert } from 'node:assert';
import { EntityBook } from '../../../lib/homeassistant/entity-book';
import { TopicScheme } from '../../../lib/fleet/topic-scheme';
import { validConfig, validState } from '../../support/ha-schema';

const A = '84f3eb000001';
const B = '24a16e000002';
const esp8266 = TopicScheme.named('secure-esp8266');
const esp32 = TopicScheme.named('secure-esp32');

describe('Home Assistant: which messages to publish (lib/homeassistant/entity-book.ts)', () => {
  const book = (): EntityBook => new EntityBook({ discoveryPrefix: 'homeassistant', schemeOf: (id) => (id === B ? esp32 : esp8266) });

  it('a config and a state per device with an image, then only what changed; forget sends everything again', () => {
    const b = book();
    const first = b.changes([
      { id: A, image: 'LAMP-1.0.0', latest: 'LAMP-1.1.0' },
      { id: B, image: 'fleet_esp32-1.0.0', latest: null },
      { id: '84f3eb000003', latest: null }, // no image reported yet: no entity
    ]);
    assert.deepEqual(first.map((m) => m.topic), [
      `homeassistant/update/esp-fleet/${A}/config`,
      `esp-fleet/ha/${A}/state`,
      `homeassistant/update/esp-fleet/${B}/config`,
      `esp-fleet/ha/${B}/state`,
    ]);
    for (const m of first) assert.ok(m.retain && (m.topic.endsWith('/config') ? validConfig(JSON.parse(m.payload)) : validState(JSON.parse(m.payload))), m.topic);
    // Each device's availability is its own scheme's will topic.
    assert.equal(JSON.parse(first[0]!.payload).availability[0].topic, esp8266.willTopic(A));
    assert.equal(JSON.parse(first[2]!.payload).availability[0].topic, esp32.willTopic(B));
    // Unknown latest is shown as up to date (HA needs a version to compare).
    assert.equal(JSON.parse(first[3]!.payload).latest_version, 'fleet_esp32-1.0.0');

    assert.deepEqual(b.changes([{ id: A, image: 'LAMP-1.0.0', latest: 'LAMP-1.1.0' }]), [], 'nothing changed, nothing sent');
    const progress = b.changes([{ id: A, image: 'LAMP-1.0.0', latest: 'LAMP-1.1.0', inProgress: true, percent: 40 }]);
    assert.deepEqual(progress.map((m) => m.topic), [`esp-fleet/ha/${A}/state`]);
    assert.deepEqual([JSON.parse(progress[0]!.payload).in_progress, JSON.parse(progress[0]!.payload).update_percentage], [true, 40]);
    // A new image changes the config (sw_version) and the state.
    assert.equal(b.changes([{ id: A, image: 'LAMP-1.1.0', latest: 'LAMP-1.1.0' }]).length, 2);

    b.unsent(`esp-fleet/ha/${A}/state`);
    assert.deepEqual(b.changes([{ id: A, image: 'LAMP-1.1.0', latest: 'LAMP-1.1.0' }]).map((m) => m.topic), [`esp-fleet/ha/${A}/state`], 'a failed publish goes out again');
    b.forget();
    assert.equal(b.changes([{ id: A, image: 'LAMP-1.1.0', latest: 'LAMP-1.1.0' }]).length, 2, 'after HA restarted: everything again');
  });
});
