// The real Node-RED runtime (node-red's red.js, as the `node-red` command runs it) in a child
// process with a throwaway user directory, our package and Dashboard 2.0 linked into its
// node_modules the way `npm install` in the user directory would put them. A child process,
// not this one: other test files use node-red-node-test-helper, which owns this process's runtime.
//
// The runtime logs JSON lines on stdout (a custom logger in settings.js), so tests can wait
// for what a node logs and check that a deploy logged no error.
import { spawn, ChildProcess } from 'node:child_process';
import { promises as fs, realpathSync } from 'node:fs';
import * as path from 'node:path';
import { freePort } from './mosquitto';
import { nodeRedChoice } from '../../scripts/node-red-choice';
import { adminBearer, authSettingsSource, basicAuthorization, Login, newPassword } from '../../scripts/node-red-auth';

/** Root of this package (dist/test/support → the folder with package.json). */
export const PACKAGE_ROOT = path.resolve(__dirname, '..', '..', '..');

export interface LogEntry {
  level: string;
  type?: string;
  id?: string;
  name?: string;
  msg: string;
}

export type FlowNode = Record<string, unknown> & { id: string; type: string };

/** settings.js: JSON log lines on stdout, the editor off unless `editor`, no credential encryption, and (unless `login` is undefined) the login the demo uses. */
const settings = (login: Login | undefined, editor: boolean): string => `// Written by the test: JSON log lines on stdout, editor ${editor ? 'on' : 'off'}, no credential encryption.
const LEVELS = { 10: 'fatal', 20: 'error', 30: 'warn', 40: 'info', 50: 'debug', 60: 'trace', 98: 'audit', 99: 'metric' };
module.exports = {
  uiPort: Number(process.env.NR_PORT),
  uiHost: '127.0.0.1',
  flowFile: 'flows.json',
  credentialSecret: false,
  httpAdminRoot: '/admin',
${editor ? '' : '  disableEditor: true,\n'}  editorTheme: { projects: { enabled: false }, tours: false },
  telemetry: { enabled: false, updateNotification: false },
  externalModules: { autoInstall: false },${login ? authSettingsSource(login) : ''}
  logging: {
    console: { level: 'off' },
    jsonLines: {
      level: 'info',
      metrics: false,
      audit: false,
      handler: () => (m) => {
        const text = m.msg instanceof Error ? m.msg.message : typeof m.msg === 'string' ? m.msg : JSON.stringify(m.msg);
        process.stdout.write(JSON.stringify({ level: LEVELS[m.level] || String(m.level), type: m.type, id: m.id, name: m.name, msg: text }) + '\\n');
      },
    },
  },
};
`;

export class NodeRedProcess {
  readonly logs: LogEntry[] = [];
  private waiters: { match: (e: LogEntry) => boolean; resolve: (e: LogEntry) => void }[] = [];
  private stderr = '';
  private bearer: string | undefined;

  private constructor(
    readonly userDir: string,
    readonly port: number,
    private readonly child: ChildProcess,
    /** The login every admin call, http-in route and the dashboard need (none: an open Node-RED). */
    readonly login: Login | undefined,
  ) {}

  get url(): string {
    return `http://127.0.0.1:${this.port}`;
  }

  /** Headers for an admin API call: the bearer token of a login as the editor's (POST /auth/token). */
  async adminHeaders(headers: Record<string, string> = {}): Promise<Record<string, string>> {
    if (!this.login) return headers;
    this.bearer ??= await adminBearer(`${this.url}/admin`, this.login);
    return { ...headers, authorization: this.bearer };
  }

  /** Headers for http-in routes and the dashboard (HTTP Basic of httpNodeAuth). */
  nodeHeaders(headers: Record<string, string> = {}): Record<string, string> {
    return this.login ? { ...headers, authorization: basicAuthorization(this.login) } : headers;
  }

  /**
   * Starts Node-RED with an empty flow file in `userDir` (created if missing), secured the way
   * the demo is (adminAuth, httpNodeAuth, dashboard login) unless `open` is set; the editor is
   * served only with `editor` (browser tests), as most tests need just the admin API.
   */
  static async start(userDir: string, opts: { open?: boolean; editor?: boolean; linkModules?: boolean } = {}): Promise<NodeRedProcess> {
    const modules = path.join(userDir, 'node_modules');
    await fs.mkdir(path.join(modules, '@flowfuse'), { recursive: true });
    const link = async (target: string, at: string): Promise<void> => {
      await fs.rm(at, { force: true, recursive: true });
      await fs.symlink(target, at, 'dir');
    };
    // Unless the test installs them itself, as the palette manager does (linkModules: false).
    if (opts.linkModules !== false) {
      await link(PACKAGE_ROOT, path.join(modules, 'node-red-contrib-esp-fleet'));
      await link(realpathSync(path.dirname(require.resolve('@flowfuse/node-red-dashboard/package.json'))), path.join(modules, '@flowfuse', 'node-red-dashboard'));
    }
    const login = opts.open ? undefined : { username: 'admin', password: newPassword() };
    await fs.writeFile(path.join(userDir, 'settings.js'), settings(login, opts.editor === true));
    await fs.writeFile(path.join(userDir, 'flows.json'), '[]');
    const port = await freePort();
    const child = spawn(process.execPath, [nodeRedChoice().redJs, '--userDir', userDir, '--settings', path.join(userDir, 'settings.js')], {
      env: { ...process.env, NR_PORT: String(port) },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const red = new NodeRedProcess(userDir, port, child, login);
    let partial = '';
    child.stdout!.on('data', (chunk: Buffer) => {
      const lines = (partial + chunk.toString()).split('\n');
      partial = lines.pop() ?? '';
      for (const line of lines) red.record(line);
    });
    child.stderr!.on('data', (chunk: Buffer) => (red.stderr += chunk.toString()));
    try {
      await red.waitForLog((e) => /Server now running/.test(e.msg), 30_000);
    } catch (err) {
      await red.stop();
      throw err;
    }
    return red;
  }

  private record(line: string): void {
    let entry: LogEntry;
    try {
      entry = JSON.parse(line) as LogEntry;
    } catch {
      entry = { level: 'stdout', msg: line };
    }
    this.logs.push(entry);
    if (process.env.NODE_RED_TEST_LOG) process.stderr.write(`node-red ${line}\n`);
    this.waiters = this.waiters.filter((w) => {
      if (!w.match(entry)) return true;
      w.resolve(entry);
      return false;
    });
  }

  /** Resolves with the first log entry (from `from` on) that matches. */
  waitForLog(match: (e: LogEntry) => boolean, ms = 20_000, from = 0): Promise<LogEntry> {
    const seen = this.logs.slice(from).find(match);
    if (seen) return Promise.resolve(seen);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.waiters = this.waiters.filter((w) => w.resolve !== done);
        reject(new Error(`Node-RED logged nothing matching within ${ms} ms; last lines:\n${this.tail(30)}`));
      }, ms);
      const done = (e: LogEntry): void => {
        clearTimeout(timer);
        resolve(e);
      };
      this.waiters.push({ match, resolve: done });
    });
  }

  tail(lines: number): string {
    return [...this.logs.slice(-lines).map((e) => `[${e.level}]${e.type ? ` [${e.type}:${e.name || e.id}]` : ''} ${e.msg}`), this.stderr.slice(-2000)].join('\n');
  }

  /** Error and warning entries logged since `from`, and errors the runtime printed outside its logger. */
  problemsSince(from: number): LogEntry[] {
    return this.logs.slice(from).filter((e) => e.level === 'error' || e.level === 'warn' || e.level === 'fatal' || (e.level === 'stdout' && /error/i.test(e.msg)));
  }

  /** Full deploy (as the editor's Deploy button does); resolves once the new flows started. */
  async deploy(flows: FlowNode[]): Promise<number> {
    const from = this.logs.length;
    const res = await fetch(`${this.url}/admin/flows`, {
      method: 'POST',
      headers: await this.adminHeaders({ 'content-type': 'application/json', 'Node-RED-Deployment-Type': 'full', 'Node-RED-API-Version': 'v1' }),
      body: JSON.stringify(flows),
    });
    if (res.status !== 204 && res.status !== 200) throw new Error(`deploy refused: HTTP ${res.status} ${await res.text()}`);
    await this.waitForLog((e) => e.msg === 'Started flows', 20_000, from);
    return from;
  }

  /** Presses an inject node's button (the editor's POST /inject/:id). */
  async inject(id: string): Promise<void> {
    const res = await fetch(`${this.url}/admin/inject/${encodeURIComponent(id)}`, { method: 'POST', headers: await this.adminHeaders() });
    if (res.status !== 200) throw new Error(`inject ${id}: HTTP ${res.status} ${await res.text()}`);
  }

  /** Every node type the runtime loaded, with the module that provides it. */
  async nodeTypes(): Promise<Map<string, string>> {
    const res = await fetch(`${this.url}/admin/nodes`, { headers: await this.adminHeaders({ accept: 'application/json' }) });
    const sets = (await res.json()) as { module: string; types: string[]; enabled: boolean; err?: string }[];
    const types = new Map<string, string>();
    for (const set of sets) if (set.enabled && !set.err) for (const t of set.types) types.set(t, set.module);
    return types;
  }

  async stop(): Promise<void> {
    if (this.child.exitCode !== null || this.child.signalCode !== null) return;
    const exited = new Promise((r) => this.child.once('exit', r));
    this.child.kill('SIGINT');
    const timer = setTimeout(() => this.child.kill('SIGKILL'), 10_000);
    await exited;
    clearTimeout(timer);
  }
}

/** A copy of an example flow (examples/<name>). */
export async function loadExample(name: string): Promise<FlowNode[]> {
  return JSON.parse(await fs.readFile(path.join(PACKAGE_ROOT, 'examples', name), 'utf8')) as FlowNode[];
}

/** The node with this id; throws when the example has none (an id the tests rely on was renamed). */
export function nodeById(flows: FlowNode[], id: string): FlowNode {
  const node = flows.find((n) => n.id === id);
  if (!node) throw new Error(`no node "${id}" in the flow`);
  return node;
}

/**
 * Replaces a node (typically a debug node, the "replace me" hooks) by a function node that
 * logs each msg's payload as JSON: `TAP <json>` under the node's id, for `tapped()`.
 */
export function tap(flows: FlowNode[], id: string): void {
  const node = nodeById(flows, id);
  Object.assign(node, { type: 'function', func: 'node.log("TAP " + JSON.stringify({ topic: msg.topic, payload: msg.payload }));\nreturn null;', outputs: 1, wires: [[]], noerr: 0, libs: [] });
}

/** Adds a tap on one output of a node (wires it to a new logging function node). */
export function tapOutput(flows: FlowNode[], id: string, output: number): string {
  const node = nodeById(flows, id);
  const tapId = `${id}-tap-${output}`;
  const wires = node.wires as string[][];
  wires[output] = [...(wires[output] ?? []), tapId];
  flows.push({ id: tapId, type: 'function', z: node.z, name: '', func: '', outputs: 1, x: 0, y: 0, wires: [] });
  tap(flows, tapId);
  return tapId;
}

/** Msgs (topic, payload) a tap has logged, from `from` on. */
export function tapped(red: NodeRedProcess, id: string, from = 0): { topic?: string; payload: unknown }[] {
  return red.logs
    .slice(from)
    .filter((e) => e.id === id && e.msg.startsWith('TAP '))
    .map((e) => JSON.parse(e.msg.slice(4)) as { topic?: string; payload: unknown });
}

/** Resolves with the first msg at a tap (from `from` on) that matches. */
export async function untilTapped(red: NodeRedProcess, id: string, match: (m: { topic?: string; payload: unknown }) => boolean, ms = 20_000, from = 0): Promise<{ topic?: string; payload: unknown }> {
  const entry = await red.waitForLog((e) => e.id === id && e.msg.startsWith('TAP ') && match(JSON.parse(e.msg.slice(4)) as { topic?: string; payload: unknown }), ms, from);
  return JSON.parse(entry.msg.slice(4)) as { topic?: string; payload: unknown };
}
