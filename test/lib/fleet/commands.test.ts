import { strict as assert } from 'node:assert';
import { EventEmitter } from 'node:events';
import { buildCommand, resolveTargets, CommandDispatcher, BuiltCommand, CommandOutcome } from '../../../lib/fleet/commands';
import { DeviceRegistry } from '../../../lib/fleet/registry';
import { StatusReport } from '../../../lib/fleet/telemetry';
import { SEED_STATUS } from './telemetry.test';

const ids = (n: number): string[] => Array.from({ length: n }, (_, i) => `0e00000000${i.toString(16).padStart(2, '0')}`);

describe('commands', () => {
  describe('validation', () => {
    it('builds the secure-esp8266 commands and refuses others', () => {
      assert.deepEqual(buildCommand('esp8266', 'firmware'), { command: 'firmware', payload: '', tracking: 'image', commandSet: 'esp8266' });
      assert.equal(buildCommand('esp8266', 'reboot').tracking, 'restart');
      assert.equal(buildCommand('esp8266', 'cert').tracking, 'none');
      assert.throws(() => buildCommand('esp8266', 'selfdestruct'), /unknown command "selfdestruct": one of firmware, flash, reboot, ca, cert, key/);
      assert.throws(() => buildCommand('esp8266', 'update/run'), /unknown command/);
      assert.throws(() => buildCommand('esp8266', 42), /unknown command 42/);
    });

    it('checks the ESP32 arguments: https only, 0|1, 300..9999999 seconds', () => {
      assert.equal(buildCommand('esp32', 'update/url', 'https://fw.local:8070/app.bin').payload, 'https://fw.local:8070/app.bin');
      assert.throws(() => buildCommand('esp32', 'update/url', 'http://fw.local/app.bin'), /https:\/\/ URL/);
      assert.throws(() => buildCommand('esp32', 'update/url', 'not a url'), /https:\/\/ URL/);
      assert.equal(buildCommand('esp32', 'update/use_url', 1).payload, '1');
      assert.throws(() => buildCommand('esp32', 'update/use_url', 2), /0 or 1/);
      assert.equal(buildCommand('esp32', 'update/interval', '10000').payload, '10000');
      for (const bad of [299, 10_000_000, 3.5, '', 'soon']) assert.throws(() => buildCommand('esp32', 'update/interval', bad), /300 to 9999999/);
    });

    it('resolves one id, a list, or * (optionally online only)', () => {
      const r = new DeviceRegistry();
      r.recordStatus('0e0000000001', SEED_STATUS);
      r.recordStatus('0e0000000002', SEED_STATUS);
      r.recordWill('0e0000000002', false);
      assert.deepEqual(resolveTargets('0E:00:00:00:00:01', r), ['0e0000000001']);
      assert.deepEqual(resolveTargets(['0e0000000001', '0e-00-00-00-00-01', '0e0000000009'], r), ['0e0000000001', '0e0000000009']);
      assert.deepEqual(resolveTargets('*', r).sort(), ['0e0000000001', '0e0000000002']);
      assert.deepEqual(resolveTargets('*', r, { onlineOnly: true }), ['0e0000000001']);
      assert.deepEqual(resolveTargets('0e0000000001, 0e:00:00:00:00:03; 0e0000000004', r), ['0e0000000001', '0e0000000003', '0e0000000004']);
      assert.equal(resolveTargets(' * ', r).length, 2);
      assert.throws(() => resolveTargets(['0e0000000001', 'bogus', 7], r), /invalid device ids "bogus", 7/);
      assert.throws(() => resolveTargets(undefined, r), /msg.device must name/);
      assert.throws(() => resolveTargets([], r), /msg.device must name/);
    });
  });

  describe('dispatcher', () => {
    let fleet: EventEmitter;
    let registry: DeviceRegistry;
    let published: { id: string; command: string; at: number }[];
    let dispatcher: CommandDispatcher;
    const report = (id: string, status: Partial<StatusReport>): void => {
      const update = registry.recordStatus(id, { ...SEED_STATUS, errormessage: '', ...status });
      if (update.presence) fleet.emit('presence', update.presence);
      fleet.emit('status', id, update);
    };
    const setup = (maxInFlight: number, outcomeTimeoutMs = 2_000, publish?: (id: string, c: BuiltCommand) => Promise<void>): void => {
      fleet = new EventEmitter();
      registry = new DeviceRegistry();
      published = [];
      dispatcher = new CommandDispatcher(
        publish ?? (async (id, c) => void published.push({ id, command: c.command, at: Date.now() })),
        registry,
        fleet as never,
        { maxInFlight, outcomeTimeoutMs },
      );
    };
    afterEach(() => dispatcher.close());

    it('firmware: success when the image changes, with the elapsed time', async () => {
      setup(5);
      const [a] = ids(1);
      report(a, { espimage: 'P-00.00.01.a', uptimemillis: 5000 });
      const run = dispatcher.dispatch([a], buildCommand('esp8266', 'firmware'));
      await new Promise((r) => setImmediate(r));
      report(a, { espimage: 'P-00.00.01.a', uptimemillis: 6000 }); // a routine report: still waiting
      report(a, { espimage: 'P-00.00.02.a', uptimemillis: 100 });
      const [o] = await run;
      assert.equal(o.outcome, 'success');
      assert.equal(o.image, 'P-00.00.02.a');
      assert.equal(o.previousImage, 'P-00.00.01.a');
      assert.ok(o.elapsedMs >= 0);
    });

    it('failed with the errormessage, timeout when nothing happens', async () => {
      setup(5, 150);
      const [a, b] = ids(2);
      report(a, { espimage: 'P-1' });
      report(b, { espimage: 'P-1' });
      const run = dispatcher.dispatch([a, b], buildCommand('esp8266', 'flash'));
      await new Promise((r) => setImmediate(r));
      report(a, { espimage: 'P-1', errormessage: 'Signature verification failed' });
      const outcomes = await run;
      assert.deepEqual(outcomes.map((o) => [o.device, o.outcome, o.error]), [
        [a, 'failed', 'Signature verification failed'],
        [b, 'timeout', undefined],
      ]);
    });

    it('reboot: success when the uptime starts over, or after offline → online', async () => {
      setup(5);
      const [a, b] = ids(2);
      report(a, { uptimemillis: 90_000 });
      report(b, { uptimemillis: 90_000 });
      const run = dispatcher.dispatch([a, b], buildCommand('esp8266', 'reboot'));
      await new Promise((r) => setImmediate(r));
      report(a, { uptimemillis: 1_200 });
      fleet.emit('presence', registry.recordWill(b, false));
      fleet.emit('presence', registry.recordWill(b, true));
      assert.deepEqual((await run).map((o) => o.outcome), ['success', 'success']);
    });

    it('never has more than the cap in flight, and all finish', async () => {
      setup(3);
      const devices = ids(10);
      for (const d of devices) report(d, { espimage: 'P-1' });
      let maxSeen = 0;
      const run = dispatcher.dispatch(devices, buildCommand('esp8266', 'firmware'), {
        onSent: () => (maxSeen = Math.max(maxSeen, dispatcher.inFlight)),
      });
      // Devices answer a while after their command; each answer frees a slot for the next.
      const answered = new Set<string>();
      while (answered.size < devices.length) {
        await new Promise((r) => setTimeout(r, 5));
        for (const p of published) {
          if (!answered.has(p.id)) {
            answered.add(p.id);
            report(p.id, { espimage: 'P-2' });
            break;
          }
        }
      }
      const outcomes = await run;
      assert.equal(outcomes.length, 10);
      assert.ok(outcomes.every((o) => o.outcome === 'success'));
      assert.equal(maxSeen, 3);
    });

    it('shares the cap between overlapping dispatches', async () => {
      setup(2, 100);
      const devices = ids(6);
      let peak = 0;
      const onSent = (): void => void (peak = Math.max(peak, dispatcher.inFlight));
      await Promise.all([
        dispatcher.dispatch(devices.slice(0, 3), buildCommand('esp8266', 'reboot'), { onSent }),
        dispatcher.dispatch(devices.slice(3), buildCommand('esp8266', 'reboot'), { onSent }),
      ]);
      assert.equal(peak, 2);
    });

    it('a dispatch with its own cap (msg.maxInFlight) keeps to that cap instead of the node setting', async () => {
      setup(1, 100);
      const devices = ids(6);
      let peak = 0;
      const onSent = (): void => void (peak = Math.max(peak, dispatcher.inFlight));
      const outcomes = await dispatcher.dispatch(devices, buildCommand('esp8266', 'reboot'), { onSent }, { maxInFlight: 4 });
      assert.equal(peak, 4);
      assert.equal(outcomes.length, 6);
    });

    it('close() ends a dispatch queued behind its own cap', async () => {
      setup(5, 60_000);
      const run = dispatcher.dispatch(ids(3), buildCommand('esp8266', 'reboot'), {}, { maxInFlight: 1 });
      await new Promise((r) => setImmediate(r));
      dispatcher.close();
      assert.deepEqual((await run).map((o) => o.outcome), ['timeout', 'failed', 'failed']);
    });

    it('takes the first report of a device it knew nothing about as the baseline, not as a change', async () => {
      setup(5, 200);
      const [a] = ids(1);
      const run = dispatcher.dispatch([a], buildCommand('esp8266', 'firmware'));
      await new Promise((r) => setImmediate(r));
      report(a, { espimage: 'P-1' });
      report(a, { espimage: 'P-1' });
      assert.equal((await run)[0].outcome, 'timeout');
    });

    it('a newer command to the same device supersedes the one awaiting its outcome', async () => {
      setup(5);
      const [a] = ids(1);
      report(a, { espimage: 'P-1' });
      const first = dispatcher.dispatch([a], buildCommand('esp8266', 'firmware'));
      await new Promise((r) => setImmediate(r));
      const second = dispatcher.dispatch([a], buildCommand('esp8266', 'flash'));
      await new Promise((r) => setImmediate(r));
      report(a, { espimage: 'P-2' });
      assert.deepEqual((await first).map((o) => [o.outcome, o.error]), [['superseded', 'superseded by flash']]);
      assert.deepEqual((await second).map((o) => o.outcome), ['success']);
      assert.deepEqual(published.map((p) => p.command), ['firmware', 'flash']);
    });

    it('on close, queued devices are never sent to', async () => {
      setup(1, 5_000);
      const devices = ids(3);
      for (const d of devices) report(d, { espimage: 'P-1' });
      const run = dispatcher.dispatch(devices, buildCommand('esp8266', 'firmware'));
      await new Promise((r) => setImmediate(r));
      dispatcher.close();
      const outcomes = await run;
      assert.equal(published.length, 1);
      assert.deepEqual(outcomes.map((o) => o.outcome), ['timeout', 'failed', 'failed']);
      assert.match(outcomes[1].error!, /not sent: the node was stopped/);
    });

    it('untracked commands report "sent" and a publish failure reports "failed"', async () => {
      setup(1, 5_000, async (id) => {
        if (id.endsWith('01')) throw new Error('broker gone');
      });
      const outcomes: CommandOutcome[] = await dispatcher.dispatch(ids(2), buildCommand('esp8266', 'cert'));
      assert.deepEqual(outcomes.map((o) => [o.outcome, o.error]), [['sent', undefined], ['failed', 'publish failed: broker gone']]);
    });
  });
});
