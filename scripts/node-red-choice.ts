// Which Node-RED the demo, the tests and the benchmarks run: Node-RED 5 (the package `node-red`)
// where the running Node.js allows it (22.9 or later), else Node-RED 4.1 (installed as the
// package alias `node-red-4`), which still runs on Node.js 20.19+ until its end of life
// (2026-12-31). ESP_FLEET_NODE_RED=4 or =5 picks one explicitly.
import * as path from 'node:path';

export interface NodeRedChoice {
  major: 4 | 5;
  /** The package folder (…/node_modules/node-red or …/node_modules/node-red-4). */
  dir: string;
  /** Its red.js, what the `node-red` command runs. */
  redJs: string;
  version: string;
  /** Why this one, for a log line. */
  reason: string;
}

/** Node-RED 5 needs Node.js 22.9 or later (its package.json `engines`). */
export function nodeAllowsNodeRed5(version = process.versions.node): boolean {
  const [major, minor] = version.split('.').map(Number) as [number, number];
  return major > 22 || (major === 22 && minor >= 9);
}

export function nodeRedChoice(env: NodeJS.ProcessEnv = process.env): NodeRedChoice {
  const forced = env.ESP_FLEET_NODE_RED?.trim();
  if (forced && forced !== '4' && forced !== '5') throw new Error(`ESP_FLEET_NODE_RED must be 4 or 5, got ${JSON.stringify(forced)}`);
  const five = forced ? forced === '5' : nodeAllowsNodeRed5();
  if (five && !nodeAllowsNodeRed5()) throw new Error(`Node-RED 5 needs Node.js 22.9 or later; this is ${process.versions.node}`);
  const pkg = five ? 'node-red' : 'node-red-4';
  const dir = path.dirname(require.resolve(`${pkg}/package.json`));
  const version = (require(path.join(dir, 'package.json')) as { version: string }).version;
  const reason = forced ? `ESP_FLEET_NODE_RED=${forced}` : five ? `Node.js ${process.versions.node}` : `Node.js ${process.versions.node} is older than 22.9, which Node-RED 5 needs`;
  return { major: five ? 5 : 4, dir, redJs: path.join(dir, 'red.js'), version, reason };
}

/** A module as the chosen Node-RED resolves it (its own @node-red/* packages, bcryptjs, …). */
export function resolveFromNodeRed(choice: NodeRedChoice, request: string): string {
  return require.resolve(request, { paths: [choice.dir] });
}
