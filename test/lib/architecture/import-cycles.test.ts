import { strict as assert } from 'node:assert';
import { readdirSync, readFileSync } from 'node:fs';
import * as path from 'node:path';

// No module of lib/ may reach itself through its imports (type-only imports included: a loop of
// types is still two files that cannot be understood one without the other). Parsed from the
// source, so the check needs no build of the graph and no extra package.

const ROOT = path.resolve(__dirname, '..', '..', '..', '..');
const LIB = path.join(ROOT, 'lib');

/**
 * Cycles known and left for now, each as its files in order (relative to lib/, without .ts),
 * starting at the alphabetically first. Any other cycle is a failure.
 */
const KNOWN_CYCLES: string[][] = [];

function sourceFiles(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
    const full = path.join(dir, e.name);
    if (e.isDirectory()) return sourceFiles(full);
    return e.isFile() && e.name.endsWith('.ts') && !e.name.endsWith('.d.ts') ? [full] : [];
  });
}

/** Relative specifiers of `import … from`, `export … from`, `import('…')` and `require('…')`. */
export function importSpecifiers(source: string): string[] {
  const code = source.replace(/\/\*[\s\S]*?\*\//g, '').replace(/(^|[^:'"`])\/\/.*$/gm, '$1');
  const found: string[] = [];
  const patterns = [/\b(?:import|export)\s[^'"`;]*?\sfrom\s*['"]([^'"]+)['"]/g, /\bimport\s*['"]([^'"]+)['"]/g, /\b(?:import|require)\s*\(\s*['"]([^'"]+)['"]\s*\)/g];
  for (const re of patterns) for (const m of code.matchAll(re)) if (m[1].startsWith('.')) found.push(m[1]);
  return found;
}

function resolveImport(from: string, spec: string, known: Set<string>): string | undefined {
  const base = path.resolve(path.dirname(from), spec);
  return [`${base}.ts`, path.join(base, 'index.ts')].find((f) => known.has(f));
}

/** Every elementary cycle found by a depth-first walk, each once (starting at its smallest file). */
export function findCycles(graph: Map<string, string[]>): string[][] {
  const cycles = new Map<string, string[]>();
  const state = new Map<string, 'open' | 'done'>();
  const stack: string[] = [];
  const visit = (node: string): void => {
    state.set(node, 'open');
    stack.push(node);
    for (const next of graph.get(node) ?? []) {
      if (state.get(next) === 'open') {
        const cycle = stack.slice(stack.indexOf(next));
        const start = cycle.indexOf([...cycle].sort()[0]);
        const canonical = [...cycle.slice(start), ...cycle.slice(0, start)];
        cycles.set(canonical.join(' -> '), canonical);
      } else if (!state.has(next)) visit(next);
    }
    stack.pop();
    state.set(node, 'done');
  };
  for (const node of [...graph.keys()].sort()) if (!state.has(node)) visit(node);
  return [...cycles.values()];
}

describe('the import graph of lib/', () => {
  it('reads the specifiers of every kind of import and export', () => {
    const src = [
      "import { a } from './a';",
      "import type { B } from '../b';",
      "export { c } from './c';",
      "export * from './d';",
      "import './e';",
      "const f = require('./f');",
      "// import { g } from './g';",
      "/* import { h } from './h'; */",
      "import { promises } from 'node:fs';",
      "import {\n  x,\n  y,\n} from './multi';",
    ].join('\n');
    assert.deepEqual(importSpecifiers(src).sort(), ['../b', './a', './c', './d', './e', './f', './multi'].sort());
  });

  it('finds a cycle, and none in a tree', () => {
    assert.deepEqual(findCycles(new Map([['a', ['b']], ['b', ['c']], ['c', ['a']], ['d', ['a']]])), [['a', 'b', 'c']]);
    assert.deepEqual(findCycles(new Map([['a', ['b', 'c']], ['b', ['c']], ['c', []]])), []);
  });

  it('has no cycle', () => {
    const files = sourceFiles(LIB);
    assert.ok(files.length > 50, `found only ${files.length} .ts files under ${LIB}`);
    const known = new Set(files);
    const graph = new Map<string, string[]>();
    for (const f of files) {
      const deps = importSpecifiers(readFileSync(f, 'utf8'))
        .map((s) => resolveImport(f, s, known))
        .filter((d): d is string => d !== undefined);
      graph.set(f, [...new Set(deps)]);
    }
    const name = (f: string): string => path.relative(LIB, f).replace(/\.ts$/, '').split(path.sep).join('/');
    const allowed = new Set(KNOWN_CYCLES.map((c) => c.join(' -> ')));
    const cycles = findCycles(graph)
      .map((c) => c.map(name))
      .filter((c) => !allowed.has(c.join(' -> ')));
    assert.deepEqual(
      cycles.map((c) => [...c, c[0]].join(' -> ')),
      [],
      'import cycles under lib/ (each file imports the next)',
    );
  });
});
