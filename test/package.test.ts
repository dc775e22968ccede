import { strict as assert } from 'node:assert';
import { existsSync, readFileSync } from 'node:fs';
import { spawnSync } from 'node:child_process';
import * as path from 'node:path';

const root = path.resolve(__dirname, '..', '..');
const pkg = JSON.parse(readFileSync(path.join(root, 'package.json'), 'utf8')) as {
  keywords: string[];
  'node-red': { version: string; nodes: Record<string, string> };
};

describe('the package as Node-RED sees it', () => {
  it('declares every node, each compiled with its editor html and icons beside it', () => {
    assert.ok(pkg.keywords.includes('node-red'));
    assert.match(pkg['node-red'].version, />=\s*4/);
    const nodes = Object.entries(pkg['node-red'].nodes);
    assert.ok(nodes.length >= 2);
    for (const [type, file] of nodes) {
      const js = path.join(root, file);
      assert.ok(existsSync(js), `${file} is built`);
      const html = readFileSync(js.replace(/\.js$/, '.html'), 'utf8');
      assert.match(html, new RegExp(`registerType\\("${type}"`), `${type}.html registers the type`);
      assert.match(html, new RegExp(`data-help-name="${type}"`), `${type} has help text`);
      const icon = /icon:\s*"([^"]+)"/.exec(html)?.[1];
      if (icon) assert.ok(existsSync(path.join(path.dirname(js), 'icons', icon)), `${type} icon ${icon} is shipped`);
      // CommonJS, so Node-RED 4 and 5 both load it.
      assert.equal(typeof require(js), 'function');
    }
  });

  it('packs only what Node-RED needs: no sources, tests or benchmarks', () => {
    const r = spawnSync('npm', ['pack', '--dry-run', '--json', '--ignore-scripts'], { cwd: root, encoding: 'utf8' });
    assert.equal(r.status, 0, r.stderr);
    const files = (JSON.parse(r.stdout) as { files: { path: string }[] }[])[0].files.map((f) => f.path);
    assert.ok(files.includes('dist/nodes/esp-ca/esp-ca.js'));
    assert.ok(files.includes('dist/nodes/esp-ca/esp-ca.html'));
    assert.ok(files.includes('package.json'));
    const stray = files.filter((f) => /^(lib|nodes|test|bench|scripts)\//.test(f) || f.startsWith('dist/test/') || f.startsWith('dist/bench/') || f.endsWith('.ts') && !f.endsWith('.d.ts'));
    assert.deepEqual(stray, []);
  });
});
