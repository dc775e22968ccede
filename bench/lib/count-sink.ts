// A Node-RED node type for benchmarks, "bench-count": it counts the msgs it receives, as
// cheaply as a node can (one performance.now() and a few additions per msg), and checks that
// msg.payload is a parsed status object. The counter lives in this module, so the benchmark
// that imports it reads what the node inside the Node-RED runtime counted (same process).
import { performance } from 'node:perf_hooks';
import type { NodeAPI, Node, NodeDef } from 'node-red';

export const SINK_TYPE = 'bench-count';

export interface SinkCounter {
  /** Msgs received since the last reset. */
  count: number;
  /** performance.now() of the first and the last msg since the reset. */
  first: number;
  last: number;
  /** Sum of msg.payload.uptimemillis: with the generator's sum it tells losses and duplicates apart. */
  sum: number;
  /** Msgs whose payload was not an object with a numeric uptimemillis (not parsed, or wrong). */
  bad: number;
  /** The first bad msg, for the report. */
  sample?: string;
}

export const counter: SinkCounter = { count: 0, first: 0, last: 0, sum: 0, bad: 0 };

export function resetCounter(): void {
  counter.count = 0;
  counter.first = 0;
  counter.last = 0;
  counter.sum = 0;
  counter.bad = 0;
  counter.sample = undefined;
}

/** What the editor needs to list the type; Node-RED only loads a node file that has its .html. */
export const SINK_HTML = `<script type="text/javascript">
RED.nodes.registerType('${SINK_TYPE}', { category: 'function', color: '#dddddd', defaults: { name: { value: '' } }, inputs: 1, outputs: 0, label: function () { return this.name || '${SINK_TYPE}'; } });
</script>
<script type="text/html" data-template-name="${SINK_TYPE}"><div class="form-row"><label>Name</label><input type="text" id="node-input-name"></div></script>
<script type="text/html" data-help-name="${SINK_TYPE}"><p>Counts msgs for a benchmark.</p></script>
`;

/** The node module; the benchmark's node file in a temp nodes folder is `module.exports = require(this file).registerSink`. */
export function registerSink(RED: NodeAPI): void {
  function BenchCount(this: Node, config: NodeDef): void {
    RED.nodes.createNode(this, config);
    this.on('input', (msg: { payload?: unknown }, _send: unknown, done: () => void) => {
      const now = performance.now();
      if (counter.count === 0) counter.first = now;
      counter.last = now;
      counter.count++;
      const p = msg.payload as { uptimemillis?: unknown } | null | undefined;
      if (p !== null && typeof p === 'object' && typeof p.uptimemillis === 'number') {
        counter.sum += p.uptimemillis;
      } else {
        counter.bad++;
        counter.sample ??= String(JSON.stringify(msg.payload)).slice(0, 200);
      }
      done();
    });
  }
  RED.nodes.registerType(SINK_TYPE, BenchCount);
}
