import { strict as assert } from 'node:assert';
import { EventEmitter } from 'node:events';
import { readFileSync } from 'node:fs';
import * as path from 'node:path';
import { buildCommand, CommandDispatcher } from '../../../lib/fleet/commands';
import { checkWifiCredentials, takeWifiPassword } from '../../../lib/fleet/wifi-credentials';
import { DeviceRegistry } from '../../../lib/fleet/registry';
import type { StatusReport } from '../../../lib/fleet/telemetry';
import { SEED_STATUS } from './telemetry.test';

interface WifiVectors {
  valid: { payload: string; ssid: string; password: string; why: string }[];
  invalid: { payload: string; why: string; deviceOnly?: boolean }[];
}
/** test/vectors/commands.json: the contract firmware/core tests against too. */
const v = (JSON.parse(readFileSync(path.join(__dirname, '../../../../test/vectors/commands.json'), 'utf8')) as { wifiPayloads: WifiVectors }).wifiPayloads;

/** The argument a msg would carry for a vector's payload: the parsed JSON, or the text when it is none. */
function argumentOf(payload: string): unknown {
  try {
    return JSON.parse(payload);
  } catch {
    return payload;
  }
}

describe('wifi command (docs/wire-contract.md, MQTT topics: wifi)', () => {
  describe('the argument, against test/vectors/commands.json wifiPayloads', () => {
    for (const c of v.valid) {
      it(`accepts ${c.why}: canonical JSON, ssid first, tracked by reconnect`, () => {
        const built = buildCommand('esp8266', 'wifi', argumentOf(c.payload));
        assert.equal(built.tracking, 'reconnect');
        assert.equal(built.payload, JSON.stringify({ ssid: c.ssid, password: c.password }));
        assert.deepEqual(JSON.parse(built.payload), { ssid: c.ssid, password: c.password });
        // The JSON text of the argument is accepted too.
        assert.equal(buildCommand('esp8266', 'wifi', c.payload).payload, built.payload);
      });
    }
    for (const c of v.invalid.filter((x) => !x.deviceOnly)) {
      it(`refuses ${c.why}, without repeating the password`, () => {
        const arg = argumentOf(c.payload);
        const password = arg && typeof arg === 'object' && 'password' in arg ? String((arg as { password: unknown }).password) : undefined;
        assert.throws(
          () => buildCommand('esp8266', 'wifi', arg),
          (err: Error) => {
            assert.match(err.message, /^wifi/);
            if (password && password.length >= 4) assert.ok(!err.message.includes(password), `${err.message} shows the password`);
            return true;
          },
        );
      });
    }
    it('refuses a missing argument and lone surrogates in the ssid', () => {
      assert.throws(() => buildCommand('esp8266', 'wifi'), /wifi needs msg.argument = \{ssid, password\}/);
      assert.throws(() => checkWifiCredentials({ ssid: 'a\ud800b', password: '' }), /control characters/);
    });
  });

  it('takeWifiPassword takes the password out of an object or its JSON text, and leaves other arguments alone', () => {
    const t = takeWifiPassword({ ssid: 'home', password: 'correct horse' });
    assert.deepEqual([t.kept, t.password, t.argument], [{ ssid: 'home' }, 'correct horse', { ssid: 'home', password: 'correct horse' }]);
    const text = takeWifiPassword('{"ssid":"home","password":"correct horse"}');
    assert.deepEqual([text.kept, text.password], [{ ssid: 'home' }, 'correct horse']);
    for (const other of ['https://x.local/a.bin', 1, undefined, { ssid: 'x' }, '[1]']) {
      const o = takeWifiPassword(other);
      assert.deepEqual([o.kept, o.password, o.argument], [other, undefined, other]);
    }
  });

  describe('outcome', () => {
    let fleet: EventEmitter;
    let registry: DeviceRegistry;
    let dispatcher: CommandDispatcher;
    const A = '0e0000000001';
    const report = (status: Partial<StatusReport>): void => {
      const update = registry.recordStatus(A, { ...SEED_STATUS, errormessage: '', ...status });
      if (update.presence) fleet.emit('presence', update.presence);
      fleet.emit('status', A, update);
    };
    beforeEach(() => {
      fleet = new EventEmitter();
      registry = new DeviceRegistry();
      dispatcher = new CommandDispatcher(async () => undefined, registry, fleet as never, { maxInFlight: 5, outcomeTimeoutMs: 300 });
    });
    afterEach(() => dispatcher.close());
    const wifi = buildCommand('esp8266', 'wifi', { ssid: 'office', password: 'correct horse' });
    const tick = (): Promise<void> => new Promise((r) => setImmediate(r));

    it('success when mqttmillis starts over with an empty errormessage; routine reports and the uptime do not count', async () => {
      report({ mqttmillis: 50_000, uptimemillis: 60_000 });
      const run = dispatcher.dispatch([A], wifi);
      await tick();
      report({ mqttmillis: 51_000, uptimemillis: 61_000 });
      assert.equal(dispatcher.inFlight, 1, 'a routine report is no outcome');
      report({ mqttmillis: 200, uptimemillis: 70_000 });
      const [o] = await run;
      assert.deepEqual([o.outcome, o.error, o.command], ['success', undefined, 'wifi']);
    });

    it('success after offline → online and a clean status', async () => {
      report({ mqttmillis: 50_000 });
      const run = dispatcher.dispatch([A], wifi);
      await tick();
      fleet.emit('presence', registry.recordWill(A, false));
      fleet.emit('presence', registry.recordWill(A, true));
      assert.equal(dispatcher.inFlight, 1, 'presence alone does not say whether it failed');
      report({ mqttmillis: 60_000 });
      assert.equal((await run)[0].outcome, 'success');
    });

    it('failed on a wifi: error, also the same text as before once the connection started over', async () => {
      const error = 'wifi: cannot join office within 30 s; back on home';
      report({ mqttmillis: 50_000, errormessage: error });
      const run = dispatcher.dispatch([A], wifi);
      await tick();
      report({ mqttmillis: 52_000, errormessage: error });
      assert.equal(dispatcher.inFlight, 1, 'the old error, still reported, is not this outcome');
      report({ mqttmillis: 100, errormessage: error });
      const [o] = await run;
      assert.deepEqual([o.outcome, o.error], ['failed', error]);
    });

    it("another command's error or a reconnect with an error is no success; nothing at all is a timeout", async () => {
      report({ mqttmillis: 50_000 });
      const run = dispatcher.dispatch([A], wifi);
      await tick();
      report({ mqttmillis: 100, errormessage: 'firmware: no newer image (304)' });
      const [o] = await run;
      assert.equal(o.outcome, 'timeout');
    });
  });
});
