// Types for the parts of node-red-node-test-helper our tests use (the package ships none).
declare module 'node-red-node-test-helper' {
  import type { Node } from 'node-red';
  // `never`: any node module's register(RED) function is accepted.
  type NodeModule = (RED: never) => void | Promise<void>;
  interface TestNode extends Node {
    on(event: 'input', cb: (msg: Record<string, unknown>) => void): this;
    on(event: string, cb: (...args: any[]) => void): this; // eslint-disable-line @typescript-eslint/no-explicit-any
  }
  interface SuperTest {
    get(url: string): Promise<{ status: number; text: string; body: unknown; headers: Record<string, string> }>;
  }
  interface Helper {
    init(runtimePath: string, settings?: Record<string, unknown>): void;
    settings(settings: Record<string, unknown>): Record<string, unknown>;
    startServer(): Promise<void>;
    stopServer(): Promise<void>;
    load(nodes: NodeModule | NodeModule[], flow: Record<string, unknown>[], credentials?: Record<string, Record<string, string>>): Promise<void>;
    unload(): Promise<void>;
    getNode(id: string): TestNode;
    request(): SuperTest;
    /** The spy on the runtime's log: every call's arguments. */
    log(): { args: unknown[][] };
  }
  const helper: Helper;
  export = helper;
}
