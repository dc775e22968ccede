import type { Node, NodeMessage, NodeMessageInFlow } from 'node-red';
import { errorText, shortText } from './settings';

/** What a node's start may attach: everything registered here is undone when the node closes. */
export interface Owner {
  /** Adds a listener and removes it on close, so a redeploy never leaves one behind. */
  listen<A extends unknown[]>(emitter: Listenable<A>, event: string, listener: (...args: A) => void): void;
  /**
   * A coalescing timer: the first call schedules `fn` after `ms`, further calls before it fires
   * do nothing. Cleared on close. For badges and redraws that must not follow every event.
   */
  soon(fn: () => void, ms: number): () => void;
  /** A repeating timer that does not keep the process alive; cleared on close. */
  every(fn: () => void, ms: number): void;
  /** Runs when the node closes, after start has settled; last registered runs first. */
  onClose(fn: () => unknown): void;
  /** True once the node is closing: late callbacks check it before they send. */
  readonly closing: boolean;
}

/** The part of an EventEmitter the lifecycle needs (a FleetClient, a broker, a CA store). */
export interface Listenable<A extends unknown[]> {
  on(event: string, listener: (...args: A) => void): unknown;
  off(event: string, listener: (...args: A) => void): unknown;
}

export type Send = (msg: NodeMessage | (NodeMessage | NodeMessage[] | null)[]) => void;

export interface Lifecycle<R> extends Owner {
  /** Settles with what start returned, or rejects with why the node could not start. */
  readonly ready: Promise<R>;
  /**
   * The node's input: every msg waits for start, then `act` runs. One error path for all: a red
   * badge with the short reason and `done(err)`, which Node-RED reports as `node.error(err, msg)`
   * so Catch nodes see the msg (Node-RED docs, "Handling errors").
   */
  input<S = undefined>(act: (msg: NodeMessageInFlow, send: Send, started: R, secrets: S) => Promise<void>, options?: InputOptions<S>): void;
}

export interface InputOptions<S> {
  /** Replaces the red badge, for a node whose badge must keep saying something else. */
  onError?: (err: unknown) => void;
  /**
   * Runs the moment a msg arrives, before anything can fail: takes secrets (a password) out of
   * the msg, so neither an output, nor a Catch node, nor an error text ever carries them; what
   * it returns reaches `act` as `secrets`.
   */
  takeSecrets?: (msg: NodeMessageInFlow) => S;
}

export interface LifecycleOptions {
  /** Badge while starting; `starting…` when not given. */
  startingText?: string;
  /** Config nodes have no badge: off for them. */
  badges?: boolean;
  /**
   * Also log a start failure with node.error, prefixed with this text (for nodes nothing else
   * reports for, such as a broker, a server or a config node); the red badge is always shown.
   */
  logStartError?: string;
}

/**
 * One lifecycle for every node of this package: an async start that close waits for, owned
 * listeners and timers, and input handling with one error path. Node-RED calls a close handler
 * with `(removed, done)` and waits for `done` (Node-RED docs, "Closing the node").
 */
export function lifecycle<R>(node: Node, start: (own: Owner) => Promise<R>, options: LifecycleOptions = {}): Lifecycle<R> {
  const disposers: (() => unknown)[] = [];
  const timers = new Set<NodeJS.Timeout>();
  let closing = false;

  const own: Owner = {
    listen(emitter, event, listener) {
      if (closing) return;
      emitter.on(event, listener);
      disposers.push(() => emitter.off(event, listener));
    },
    soon(fn, ms) {
      let timer: NodeJS.Timeout | undefined;
      return () => {
        if (timer || closing) return;
        timer = setTimeout(() => {
          timers.delete(timer!);
          timer = undefined;
          if (!closing) fn();
        }, ms);
        timers.add(timer);
      };
    },
    every(fn, ms) {
      if (closing) return;
      const timer = setInterval(() => {
        if (!closing) fn();
      }, ms);
      timer.unref();
      timers.add(timer);
    },
    onClose(fn) {
      disposers.push(fn);
    },
    get closing() {
      return closing;
    },
  };

  const badges = options.badges !== false;
  if (badges) node.status({ fill: 'yellow', shape: 'ring', text: options.startingText ?? 'starting…' });
  const ready = Promise.resolve().then(() => start(own));
  ready.catch((err: unknown) => {
      if (closing) return;
      if (badges) node.status({ fill: 'red', shape: 'ring', text: shortText(errorText(err)) });
      if (options.logStartError) node.error(`${options.logStartError}: ${errorText(err)}`, { topic: 'error', payload: errorText(err) });
  });

  node.on('close', (_removed: boolean, done: () => void) => {
    closing = true;
    for (const t of timers) clearTimeout(t); // clears intervals too (same timer ids in Node.js)
    timers.clear();
    ready
      .catch(() => undefined)
      .then(async () => {
        // Start has settled, so whatever it attached is registered: undo it, newest first.
        for (const dispose of disposers.splice(0).reverse()) {
          try {
            await dispose();
          } catch (err) {
            node.warn(`closing: ${errorText(err)}`);
          }
        }
      })
      .finally(done);
  });

  return {
    ...own,
    get closing() {
      return closing;
    },
    ready,
    input(act, options = {}) {
      const { onError, takeSecrets } = options;
      node.on('input', (msg: NodeMessageInFlow, send: Send, done: (err?: Error) => void) => {
        let secrets: ReturnType<NonNullable<typeof takeSecrets>>;
        try {
          secrets = takeSecrets ? takeSecrets(msg) : (undefined as typeof secrets);
        } catch (err) {
          if (!closing) node.status({ fill: 'red', shape: 'ring', text: shortText(errorText(err)) });
          return done(err instanceof Error ? err : new Error(errorText(err)));
        }
        ready
          .then((started) => {
            if (closing) throw new Error('the node is closing; nothing was done');
            return act(msg, send, started, secrets);
          })
          .then(
            () => done(),
            (err: unknown) => {
              if (onError) onError(err);
              else if (!closing) node.status({ fill: 'red', shape: 'ring', text: shortText(errorText(err)) });
              done(err instanceof Error ? err : new Error(errorText(err)));
            },
          );
      });
    },
  };
}
