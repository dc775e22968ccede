import { strict as assert } from 'node:assert';
import fc from 'fast-check';
import { parseInstallCommand } from '../../../lib/homeassistant/install-command';

const A = '84f3eb012345';
const TOPIC = `esp-fleet/ha/${A}/install`;

describe('Home Assistant: what arrives on an install topic (lib/homeassistant)', () => {
  it('accepts exactly the install payload, as text or bytes, and names the device', () => {
    assert.deepEqual(parseInstallCommand(TOPIC, 'install'), { ok: true, id: A });
    assert.deepEqual(parseInstallCommand(TOPIC, Buffer.from('install')), { ok: true, id: A });
    assert.deepEqual(parseInstallCommand(TOPIC, new Uint8Array(Buffer.from('install'))), { ok: true, id: A });
  });

  it('refuses everything else with a short reason', () => {
    const cases: [string, string | Uint8Array, { retain?: boolean }?, RegExp?][] = [
      [TOPIC, 'Install', undefined, /not "install"/],
      [TOPIC, 'install ', undefined, /not "install"/],
      [TOPIC, ' install', undefined, /not "install"/],
      [TOPIC, '', undefined, /not "install"/],
      [TOPIC, '{"install":true}', undefined, /not "install"/],
      [TOPIC, 'install\n', undefined, /binary/],
      [TOPIC, Buffer.from([0x69, 0x6e, 0xff, 0xfe]), undefined, /binary/],
      [TOPIC, Buffer.from('install\0'), undefined, /binary/],
      [TOPIC, 'x'.repeat(65), undefined, /too large/],
      [TOPIC, Buffer.alloc(1 << 20, 0x69), undefined, /too large/],
      [TOPIC, 'install', { retain: true }, /retained/],
      [`esp-fleet/ha/84F3EB012345/install`, 'install', undefined, /not an install topic/],
      [`esp-fleet/ha/${A}/state`, 'install', undefined, /not an install topic/],
      [`esp-fleet/ha/${A}/install/x`, 'install', undefined, /not an install topic/],
      [`/command/${A}/firmware`, 'install', undefined, /not an install topic/],
    ];
    for (const [topic, payload, opts, reason] of cases) {
      const r = parseInstallCommand(topic, payload, opts);
      assert.equal(r.ok, false, `${topic} ${String(payload).slice(0, 20)}`);
      if (!r.ok) {
        assert.match(r.reason, reason!);
        assert.ok(r.reason.length < 120);
      }
    }
  });

  it('property: any payload but the exact bytes of "install" is refused', () => {
    fc.assert(
      fc.property(fc.oneof(fc.uint8Array({ maxLength: 80 }), fc.string({ maxLength: 80 }).map((s) => Buffer.from(s))), (bytes) => {
        const r = parseInstallCommand(TOPIC, bytes);
        assert.equal(r.ok, Buffer.from(bytes).equals(Buffer.from('install')));
      }),
      { seed: 15003, numRuns: 2000 },
    );
  });
});
