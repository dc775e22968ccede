// The real Node-RED runtime (the `node-red` package, as `node-red` the command runs it), in
// this process, with a throwaway user directory. node-red-node-test-helper is not used for
// benchmarks: it wraps Node.prototype.send/log/status/... in sinon spies that record every
// call, which would cost time and memory per msg and more for flows with more hops.
//
// Our package is linked into <userDir>/node_modules, so Node-RED loads it from package.json
// like an installed palette module; the benchmark's counting node comes from a nodes folder.
import * as http from 'node:http';
import { nodeRedChoice } from '../../scripts/node-red-choice';
import { promises as fs, rmSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { SINK_HTML, SINK_TYPE } from './count-sink';

interface NodeRedModule {
  init(server: http.Server, settings: Record<string, unknown>): void;
  start(): Promise<void>;
  stop(): Promise<void>;
  version(): string;
  nodes: { getNode(id: string): unknown };
  events: { on(event: string, fn: (...args: unknown[]) => void): void; removeListener(event: string, fn: (...args: unknown[]) => void): void };
  runtime: {
    flows: { setFlows(opts: { flows: { flows: Record<string, unknown>[]; credentials?: Record<string, unknown> }; deploymentType?: string }): Promise<unknown> };
    nodes: { getNodeList(opts: Record<string, unknown>): Promise<{ id: string; types: string[]; enabled: boolean; err?: string }[]> };
  };
}

export interface RunningNodeRed {
  version: string;
  userDir: string;
  /** Full deploy of these flows (the previous ones are stopped first, as the editor's Deploy does). */
  deploy(flows: Record<string, unknown>[]): Promise<void>;
  /** A deployed node (or config node) by id, as the runtime holds it. */
  getNode<T>(id: string): T | null;
  stop(): Promise<void>;
}

const LEVEL_NAMES: Record<number, string> = { 10: 'fatal', 20: 'error', 30: 'warn', 40: 'info', 50: 'debug', 60: 'trace' };

/** Root of this package (dist/bench/lib → the folder with package.json). */
export const PACKAGE_ROOT = path.resolve(__dirname, '..', '..', '..');

export async function startNodeRed(opts: { logLevel?: string; requiredTypes: string[] }): Promise<RunningNodeRed> {
  const base = await fs.mkdtemp(path.join(os.tmpdir(), 'esp-fleet-bench-nr-'));
  const removeBase = (): void => rmSync(base, { recursive: true, force: true });
  process.on('exit', removeBase);
  const userDir = path.join(base, 'user');
  const nodesDir = path.join(base, 'nodes');
  await fs.mkdir(path.join(userDir, 'node_modules'), { recursive: true });
  await fs.mkdir(nodesDir);
  const pkg = JSON.parse(await fs.readFile(path.join(PACKAGE_ROOT, 'package.json'), 'utf8')) as { name: string };
  await fs.symlink(PACKAGE_ROOT, path.join(userDir, 'node_modules', pkg.name), 'dir');
  // The counting node: a file Node-RED requires, pointing at the compiled module this process also imports.
  await fs.writeFile(path.join(nodesDir, `${SINK_TYPE}.js`), `module.exports = require(${JSON.stringify(require.resolve('./count-sink'))}).registerSink;\n`);
  await fs.writeFile(path.join(nodesDir, `${SINK_TYPE}.html`), SINK_HTML);

  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const RED = require(nodeRedChoice().dir) as NodeRedModule;
  const server = http.createServer();
  RED.init(server, {
    userDir,
    flowFile: 'flows.json',
    nodesDir: [nodesDir],
    credentialSecret: false,
    editorTheme: { projects: { enabled: false }, tours: false },
    httpAdminRoot: '/admin',
    httpNodeRoot: false,
    disableEditor: true,
    telemetry: { enabled: false, updateNotification: false },
    externalModules: { autoInstall: false },
    // Node-RED's console logger writes to stdout, which carries the bench's results: log to stderr instead.
    logging: {
      console: { level: 'off' },
      stderr: {
        level: opts.logLevel ?? 'warn',
        metrics: false,
        audit: false,
        handler: () => (m: { level: number; msg: unknown; type?: string; name?: string; id?: string }) => {
          const level = LEVEL_NAMES[m.level] ?? String(m.level);
          const who = m.type ? `[${m.type}:${m.name || m.id}] ` : '';
          process.stderr.write(`node-red [${level}] ${who}${m.msg instanceof Error ? m.msg.message : String(m.msg)}\n`);
        },
      },
    },
  });
  const firstStart = new Promise<void>((resolve) => {
    const once = (): void => {
      RED.events.removeListener('flows:started', once);
      resolve();
    };
    RED.events.on('flows:started', once);
  });
  try {
    await RED.start();
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([firstStart, new Promise((r) => (timer = setTimeout(r, 10_000)))]);
    clearTimeout(timer);
    const list = await RED.runtime.nodes.getNodeList({});
    for (const type of opts.requiredTypes) {
      const set = list.find((s) => s.types.includes(type));
      if (!set || !set.enabled || set.err) throw new Error(`Node-RED did not load the node type "${type}"${set?.err ? `: ${set.err}` : ''}`);
    }
  } catch (err) {
    await RED.stop().catch(() => undefined);
    server.close();
    removeBase();
    process.off('exit', removeBase);
    throw err;
  }
  return {
    version: RED.version(),
    userDir,
    async deploy(flows) {
      await RED.runtime.flows.setFlows({ flows: { flows }, deploymentType: 'full' });
    },
    getNode: <T>(id: string) => (RED.nodes.getNode(id) as T | null) ?? null,
    async stop() {
      await RED.stop();
      server.close();
      removeBase();
      process.off('exit', removeBase);
    },
  };
}
