import { strict as assert } from 'node:assert';
import { parseStatus, isBirthMessage, MAX_STATUS_BYTES } from '../../../lib/fleet/telemetry';

export const SEED_STATUS = {
  uptimemillis: 270015,
  maxmillis: 74,
  mqttmillis: 259618,
  espname: 'measure-84f3eb0dbf7e',
  espimage: 'ESP8266_WEMOS_D1MINIPRO-00.00.08.h',
  espbuild: 'Mar 8 2020 10:19:19',
  espip: '192.168.1.182',
  rssi: -65,
  espfreeheap: 13512,
  errormessage: "Updateserver-certificate doesn't match",
};

describe('status telemetry', () => {
  it("accepts the secure ESP8266 framework's example status with all ten fields, numbers as numbers", () => {
    const r = parseStatus(Buffer.from(JSON.stringify(SEED_STATUS)));
    assert.ok(r.ok);
    assert.deepEqual(r.value, SEED_STATUS);
  });

  it('keeps only the contract fields', () => {
    const r = parseStatus(JSON.stringify({ ...SEED_STATUS, __proto__x: 1, extra: 'x' }));
    assert.ok(r.ok);
    assert.deepEqual(Object.keys(r.value).sort(), Object.keys(SEED_STATUS).sort());
  });

  const bad: [string, string, RegExp][] = [
    ['not JSON', '{uptimemillis: 1', /not JSON/],
    ['a JSON array', '[1,2]', /not a JSON object/],
    ['a string where a number belongs', JSON.stringify({ ...SEED_STATUS, rssi: '-65' }), /rssi is not a number/],
    ['a missing field', JSON.stringify({ ...SEED_STATUS, espimage: undefined }), /espimage missing/],
    ['a positive rssi', JSON.stringify({ ...SEED_STATUS, rssi: 12 }), /rssi must be dBm/],
    ['an overlong string', JSON.stringify({ ...SEED_STATUS, espname: 'x'.repeat(300) }), /espname is longer/],
    ['more than 16 KiB', JSON.stringify({ ...SEED_STATUS, pad: 'x'.repeat(MAX_STATUS_BYTES) }), /exceeds 16384/],
  ];
  for (const [what, payload, reason] of bad) {
    it(`refuses ${what} with the reason`, () => {
      const r = parseStatus(payload);
      assert.equal(r.ok, false);
      assert.match((r as { reason: string }).reason, reason);
    });
  }

  it('tells a birth message from an LWT', () => {
    for (const p of ['online', 'ONLINE', '1', 'true', '{"online":true}', '{"status":"online"}']) assert.equal(isBirthMessage(p), true, p);
    for (const p of ['offline', '0', 'connection lost', '{"online":false}', '{broken']) assert.equal(isBirthMessage(p), false, p);
  });
});
