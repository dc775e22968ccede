import { strict as assert } from 'node:assert';
import { CORE_DIR, requireCoreTools, run } from '../support/firmware-core';

/**
 * `npm test` includes the firmware's C++ side here: the host tests of firmware/core against
 * test/vectors (g++ with sanitizers) and the cross build for the ESP8266 CPU.
 */
describe('firmware/core (C++)', function () {
  this.timeout(180_000);

  before(() => requireCoreTools());

  it('passes its host tests (make -C firmware/core test)', async () => {
    const r = await run('make', ['-C', CORE_DIR, 'test']);
    assert.equal(r.code, 0, `make test failed:\n${r.stdout}\n${r.stderr}`);
    const summary = /host tests: (\d+) checks, 0 failed/.exec(r.stdout);
    assert.ok(summary, `no passing summary in:\n${r.stdout}`);
    assert.ok(Number(summary[1]) > 500, `only ${summary[1]} checks ran`);
    // The shared device-timing and wifi vectors (docs/wire-contract.md) ran, each with checks.
    for (const group of ['device-timing.json (jitter)', 'device-timing.json (reconnect)', 'device-timing.json (watchdog)', 'commands.json (wifiPayloads)', 'wifi switch', 'enrollment.json', 'enrollment steps', 'base64, PEM, bootstrap', 'CSR shape', 'PKCS#7 certs-only', 'esp32-device.json (topics)', 'esp32-device.json (payloads)', 'esp32-device.json (descriptors)', 'esp32 settings', 'esp32 candidates', 'esp32 resume']) {
      const line = new RegExp(`^${group.replace(/[()]/g, '\\$&')}\\s+(\\d+) checks$`, 'm').exec(r.stdout);
      assert.ok(line && Number(line[1]) > 10, `group ${group} missing or without checks in:\n${r.stdout}`);
    }
  });

  it('compiles for xtensa-lx106 at -Os without a warning and prints its size (make -C firmware/core lx106)', async () => {
    // -B: rebuild every object so that a warning cannot hide behind an up-to-date file.
    const r = await run('make', ['-B', '-C', CORE_DIR, 'lx106']);
    assert.equal(r.code, 0, `make lx106 failed:\n${r.stdout}\n${r.stderr}`);
    assert.doesNotMatch(`${r.stdout}\n${r.stderr}`, /warning/i);
    const total = /^\s*(\d+)\s+(\d+)\s+(\d+)\s+\d+\s+[0-9a-f]+\s+\(TOTALS\)$/m.exec(r.stdout);
    assert.ok(total, `no size output in:\n${r.stdout}`);
    const [text, data, bss] = total.slice(1).map(Number);
    // The core is logic only: it must stay far below the 1 MB sketch space and use no static RAM.
    assert.ok(text > 1000 && text < 32 * 1024, `text ${text} bytes`);
    assert.equal(data + bss, 0, 'no static RAM');
  });
});
