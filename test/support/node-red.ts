import helper from 'node-red-node-test-helper';
import { nodeRedChoice, resolveFromNodeRed } from '../../scripts/node-red-choice';

/** The Node-RED these tests run: 5 where this Node.js allows it, else 4.1 (scripts/node-red-choice.ts). */
export const NODE_RED = nodeRedChoice();
helper.init(require.resolve(NODE_RED.dir));

/** Node-RED core nodes that our flows wire to, loaded from the real runtime. */
// eslint-disable-next-line @typescript-eslint/no-require-imports
export const catchNode = require(resolveFromNodeRed(NODE_RED, '@node-red/nodes/core/common/25-catch.js')) as (RED: never) => void;

export { helper };

/** Resolves with the next msg a helper node receives. */
export function nextMessage(nodeId: string, ms = 15_000): Promise<Record<string, unknown>> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no msg at ${nodeId} within ${ms} ms`)), ms);
    helper.getNode(nodeId).once('input', (msg: Record<string, unknown>) => {
      clearTimeout(timer);
      resolve(msg);
    });
  });
}

/** Resolves with whichever of the given helper nodes receives a msg first. */
export function firstMessage(nodeIds: string[], ms = 15_000): Promise<{ nodeId: string; msg: Record<string, unknown> }> {
  return new Promise((resolve, reject) => {
    const listeners = nodeIds.map((nodeId) => {
      const listener = (msg: Record<string, unknown>): void => {
        cleanup();
        resolve({ nodeId, msg });
      };
      helper.getNode(nodeId).on('input', listener);
      return { nodeId, listener };
    });
    const timer = setTimeout(() => {
      cleanup();
      reject(new Error(`no msg at ${nodeIds.join(' or ')} within ${ms} ms`));
    }, ms);
    function cleanup(): void {
      clearTimeout(timer);
      for (const { nodeId, listener } of listeners) helper.getNode(nodeId).removeListener('input', listener);
    }
  });
}

/** Collects every msg a helper node receives, and waits for one that matches. */
export class Collector<M = Record<string, unknown>> {
  readonly msgs: M[] = [];
  private from = 0;
  constructor(nodeId: string) {
    helper.getNode(nodeId).on('input', (m: M) => this.msgs.push(m));
  }
  /** From here on `until` looks only at newer msgs: call it in beforeEach when tests share a collector. */
  mark(): void {
    this.from = this.msgs.length;
  }
  /** The msgs since the last mark. */
  sinceMark(): M[] {
    return this.msgs.slice(this.from);
  }
  async until(match: (m: M) => boolean, ms = 10_000): Promise<M> {
    const until = Date.now() + ms;
    for (;;) {
      const found = this.msgs.slice(this.from).find(match);
      if (found) return found;
      if (Date.now() > until) throw new Error(`no matching msg within ${ms} ms; got ${JSON.stringify(this.msgs.slice(-8)).slice(0, 600)}`);
      await new Promise((r) => setTimeout(r, 20));
    }
  }
}
