import { strict as assert } from 'node:assert';
import * as fs from 'node:fs';
import * as path from 'node:path';

const ROOT = path.resolve(__dirname, '..', '..', '..', '..');

/**
 * Who may import whom (docs/architecture.md). `base` is lib/'s own files and its tool folders;
 * a layer may import itself, `base` and the layers listed for it, never one above.
 */
const MAY_IMPORT: Record<string, string[]> = {
  base: [],
  pki: [],
  device: [],
  fleet: ['pki'],
  firmware: ['pki'],
  homeassistant: ['fleet'],
  broker: ['pki', 'fleet', 'homeassistant'],
  mosquitto: ['pki', 'fleet', 'broker', 'homeassistant'],
  enroll: ['pki', 'firmware'],
  rollout: [],
  backup: ['pki', 'fleet', 'firmware', 'mosquitto'],
  issuer: ['pki', 'fleet', 'broker', 'mosquitto', 'backup'],
  dashboard: ['fleet', 'firmware', 'rollout'],
  sim: ['pki', 'fleet', 'firmware', 'mosquitto', 'device'],
};
const BASE = new Set(['concurrency', 'fs', 'net']);
/** Imports that break the rule today, each with the reason it is still there. Kept exact: a fixed one must leave this list. */
const KNOWN: Record<string, string> = {};

function layerOf(file: string): string {
  const rel = path.relative(path.join(ROOT, 'lib'), file).split(path.sep);
  if (rel.length === 1 || BASE.has(rel[0])) return 'base';
  return rel[0];
}

function tsFiles(dir: string): string[] {
  return fs.readdirSync(dir, { withFileTypes: true }).flatMap((e) => (e.isDirectory() ? tsFiles(path.join(dir, e.name)) : e.name.endsWith('.ts') ? [path.join(dir, e.name)] : []));
}

function importsOf(file: string): string[] {
  const text = fs.readFileSync(file, 'utf8');
  return [...text.matchAll(/(?:^|\n)\s*(?:import|export)\s[^'"]*?from\s+'([^']+)'|require\('([^']+)'\)|import\('([^']+)'\)/g)].map((m) => m[1] ?? m[2] ?? m[3]);
}

describe('architecture: the layers of lib/ and nodes/ (docs/architecture.md)', () => {
  it('no lib/ file imports a layer above its own, Node-RED or the nodes', () => {
    const broken: string[] = [];
    for (const file of tsFiles(path.join(ROOT, 'lib'))) {
      if (path.basename(file) === 'index.ts' && path.dirname(file) === path.join(ROOT, 'lib')) continue; // the package entry re-exports every layer
      const from = layerOf(file);
      for (const spec of importsOf(file)) {
        const where = `${path.relative(ROOT, file)} → ${spec}`;
        if (spec === 'node-red' || spec.startsWith('@node-red/')) broken.push(`${where} (Node-RED in the domain core)`);
        if (!spec.startsWith('.')) continue;
        const target = path.resolve(path.dirname(file), spec);
        if (!target.startsWith(path.join(ROOT, 'lib') + path.sep)) {
          broken.push(`${where} (outside lib/)`);
          continue;
        }
        const to = layerOf(target + '.ts');
        const allowed = to === from || to === 'base' || (MAY_IMPORT[from] ?? []).includes(to);
        if (!allowed && !KNOWN[where]) broken.push(`${where} (${from} may not import ${to})`);
      }
    }
    assert.deepEqual(broken, []);
  });

  it('every known exception still exists (a fixed one leaves the list)', () => {
    for (const where of Object.keys(KNOWN)) {
      const [file, spec] = where.split(' → ');
      assert.ok(importsOf(path.join(ROOT, file)).includes(spec), `${where} is gone: remove it from KNOWN`);
    }
  });

  it('nodes import lib/ and nodes/shared, never tests or scripts; nodes/shared imports no node', () => {
    const broken: string[] = [];
    for (const file of tsFiles(path.join(ROOT, 'nodes'))) {
      const shared = path.dirname(file) === path.join(ROOT, 'nodes', 'shared');
      for (const spec of importsOf(file).filter((s) => s.startsWith('.'))) {
        const target = path.relative(ROOT, path.resolve(path.dirname(file), spec));
        const where = `${path.relative(ROOT, file)} → ${spec}`;
        if (!target.startsWith(`lib${path.sep}`) && !target.startsWith(`nodes${path.sep}`)) broken.push(`${where} (outside lib/ and nodes/)`);
        if (shared && target.startsWith(`nodes${path.sep}`) && !target.startsWith(`nodes${path.sep}shared`) && !target.endsWith('types')) broken.push(`${where} (shared code imports a node)`);
      }
    }
    assert.deepEqual(broken, []);
  });
});
