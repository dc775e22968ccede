import { strict as assert } from 'node:assert';
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as vm from 'node:vm';
import { editorDomain } from '../../scripts/editor-domain';
import { COMMANDS, NEUTRAL_COMMANDS } from '../../lib/fleet/commands';
import { TOPIC_CHOICES } from '../../lib/fleet/fleet-topics';
import { ISSUER_ACTIONS } from '../../lib/issuer/issuer-actions';
import { FIRMWARE_ACTIONS } from '../../lib/firmware/server-actions';
import { normalizeDeviceId } from '../../lib/device-id';
import { parsePort } from '../../lib/net/port';
import { assertBackendName } from '../../lib/pki/names';
import { ENROLL_ACTIONS } from '../../lib/enroll/enroll-actions';
import { parseEnrollPolicy } from '../../lib/enroll/enroll-policy';

const ROOT = path.resolve(__dirname, '..', '..', '..');
const nodeHtml = (): { file: string; scripts: string }[] =>
  fs.readdirSync(path.join(ROOT, 'nodes')).flatMap((dir) =>
    fs
      .readdirSync(path.join(ROOT, 'nodes', dir))
      .filter((f) => f.endsWith('.html'))
      .map((f) => {
        const text = fs.readFileSync(path.join(ROOT, 'nodes', dir, f), 'utf8');
        // Only the editor code: the help text may name commands and actions.
        const scripts = [...text.matchAll(/<script type="text\/javascript">([\s\S]*?)<\/script>/g)].map((m) => m[1]).join('\n');
        return { file: `${dir}/${f}`, scripts };
      }),
  );

/** The editor's window after domain.js and editor.js ran, as the browser runs them. */
function editorWindow(): { EspFleetDomain: Record<string, unknown>; EspFleetEditor: { isDeviceId(v: string): boolean; isBackendName(v: string): boolean; port(v: unknown): boolean; isAllowlist(v: string): boolean } } {
  const window = {} as Record<string, unknown>;
  const context = vm.createContext({ window });
  for (const f of ['editor.js', 'domain.js']) vm.runInContext(fs.readFileSync(path.join(ROOT, 'resources', f), 'utf8'), context);
  return window as never;
}

describe('editor forms read the domain lists from lib/ (resources/domain.js)', () => {
  it('domain.js is generated from lib/: commands, actions, schemes, device ids and ports', () => {
    const w = editorWindow();
    const served = JSON.parse(JSON.stringify(w.EspFleetDomain)) as Record<string, unknown>;
    assert.deepEqual(served, JSON.parse(JSON.stringify(editorDomain())));
    assert.deepEqual(served.commandSets, Object.fromEntries(Object.entries(COMMANDS).map(([k, v]) => [k, Object.keys(v)])));
    assert.deepEqual(served.neutralCommands, NEUTRAL_COMMANDS);
    // Every choice the runtime takes (lib/fleet/fleet-topics.ts), mixed too, and custom.
    assert.deepEqual(Object.keys(served.schemes as object), [...Object.keys(TOPIC_CHOICES), 'custom']);
    assert.deepEqual((served.schemes as Record<string, unknown>).mixed, { schemes: ['secure-esp8266', 'secure-esp32'], commandSets: ['esp8266', 'esp32'] });
    assert.deepEqual(served.issuerActions, [...ISSUER_ACTIONS]);
    assert.deepEqual(served.firmwareActions, [...FIRMWARE_ACTIONS, ...ENROLL_ACTIONS]);
  });

  it('the editor accepts exactly the device ids and ports the runtime accepts', () => {
    const { isDeviceId, isBackendName, port } = editorWindow().EspFleetEditor;
    const accepts = (rule: (v: string) => unknown) => (v: string): boolean => {
      try {
        rule(v);
        return true;
      } catch {
        return false;
      }
    };
    const [runtimeId, runtimePort, runtimeBackend] = [accepts(normalizeDeviceId), accepts(parsePort), accepts(assertBackendName)];
    for (const id of ['84f3eb012345', '84:F3:EB:01:23:45', '84-f3-eb-01-23-45', '84:f3-eb:01:23:45', '84f3eb01234', 'zzf3eb012345', '84:F3:EB:01:23', ' 84f3eb012345 ', '']) {
      assert.equal(isDeviceId(id), runtimeId(id), `device id ${JSON.stringify(id)}`);
    }
    for (const name of ['node-red', 'backend.1', '84f3eb012345', '84F3EB012345', '-x', 'a/b', 'a b', 'x'.repeat(65)]) {
      assert.equal(isBackendName(name), runtimeBackend(name), `backend name ${JSON.stringify(name)}`);
    }
    const { isAllowlist } = editorWindow().EspFleetEditor;
    const runtimeAllow = accepts((v) => parseEnrollPolicy('allowlist', v));
    for (const list of ['', '84f3eb012345', '84F3EB*, 84:f3:eb:01:23:45', '84f3eb012345*', '*', 'a*', 'g1*', '84f3eb01234 84f3', '84f3eb0123456']) {
      assert.equal(isAllowlist(list), runtimeAllow(list), `allowlist ${JSON.stringify(list)}`);
    }
    for (const p of ['', '1', '8883', '65535', '0', '65536', '88.5', '-1', '1e3', 'abc', '0x50']) {
      assert.equal(port(p), runtimePort(p), `port ${JSON.stringify(p)}`);
    }
  });

  it('no editor form keeps its own copy of a domain list', () => {
    const copies: string[] = [];
    for (const { file, scripts } of nodeHtml()) {
      for (const [what, pattern] of [
        ['the MAC pattern', /\[0-9a-f\]\{12\}/i],
        ['a command list', /"update\/use_url"|"firmware",\s*"reboot"/],
        ['an action list', /"publish",\s*"list"|"device",\s*"server",\s*"backend"/],
        ['a scheme list', /"secure-esp8266",\s*"secure-esp32"/],
        ['the port range', /65535/],
      ] as const) {
        if (pattern.test(scripts)) copies.push(`${file}: ${what}`);
      }
    }
    assert.deepEqual(copies, []);
  });
});
