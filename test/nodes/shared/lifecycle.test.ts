import { strict as assert } from 'node:assert';
import { EventEmitter } from 'node:events';
import type { Node, NodeAPI, NodeDef } from 'node-red';
import { helper, catchNode, Collector } from '../../support/node-red';
import { lifecycle } from '../../../nodes/shared/lifecycle';

type Status = { fill?: string; text?: string };
type Msg = Record<string, unknown>;

/**
 * A probe node on the shared lifecycle, run in the real Node-RED runtime: its start waits for the
 * test to let it go, then attaches a listener, an interval and a close step, as our nodes do.
 */
class Probe {
  readonly emitter = new EventEmitter();
  readonly log: string[] = [];
  private release!: (outcome: Error | undefined) => void;
  private gate!: Promise<Error | undefined>;
  reset(): void {
    this.log.length = 0;
    this.gate = new Promise((r) => (this.release = r));
  }
  let(outcome?: Error): void {
    this.release(outcome);
  }
  register = (RED: NodeAPI): void => {
    const probe = this;
    function LifecycleProbe(this: Node, config: NodeDef): void {
      RED.nodes.createNode(this, config);
      const node = this;
      const life = lifecycle(node, async (own) => {
        const failure = await probe.gate;
        if (failure) throw failure;
        own.listen(probe.emitter, 'tick', () => probe.log.push('tick'));
        own.every(() => probe.log.push('interval'), 20);
        const redraw = own.soon(() => probe.log.push('redraw'), 50);
        probe.emitter.on('redraw', redraw);
        own.onClose(() => probe.emitter.off('redraw', redraw));
        own.onClose(async () => {
          await new Promise((r) => setTimeout(r, 30));
          probe.log.push('closed');
        });
        probe.log.push('started');
        return 'ready';
      });
      life.input<string | undefined>(
        async (msg, send, started, secret) => {
          if (msg.payload === 'fail') throw new Error('cannot do "fail"');
          send({ ...msg, payload: `${started}: ${String(msg.payload)}${secret ? ` (with a secret of ${String(secret).length} characters)` : ''}` });
        },
        {
          takeSecrets: (msg) => {
            const m = msg as typeof msg & { secret?: string };
            const secret = m.secret;
            delete m.secret;
            return secret;
          },
        },
      );
    }
    RED.nodes.registerType('lifecycle-probe', LifecycleProbe);
  };
}

describe('the shared node lifecycle (nodes/shared/lifecycle.ts) in the real runtime', function () {
  this.timeout(20_000);
  const probe = new Probe();
  const flow = [
    { id: 'tab', type: 'tab', label: 'lifecycle' },
    { id: 'p', z: 'tab', type: 'lifecycle-probe', wires: [['out']] },
    { id: 'catcher', z: 'tab', type: 'catch', scope: null, uncaught: false, wires: [['caught']] },
    { id: 'out', z: 'tab', type: 'helper' },
    { id: 'caught', z: 'tab', type: 'helper' },
  ];
  let statuses: Status[];
  let out: Collector<Msg>;
  let caught: Collector<Msg>;

  async function deploy(): Promise<void> {
    probe.reset();
    await helper.load([probe.register, catchNode], flow);
    statuses = [];
    helper.getNode('p').on('call:status', (call: { args: Status[] }) => statuses.push(call.args[0]));
    out = new Collector<Msg>('out');
    caught = new Collector<Msg>('caught');
  }

  before(() => helper.startServer());
  after(() => helper.stopServer());
  afterEach(async () => {
    probe.let();
    await helper.unload();
  });

  it('a node closed while it is still starting: close waits for start, then removes what start attached', async () => {
    await deploy();
    let closed = false;
    const unloading = helper.unload().then(() => (closed = true));
    await new Promise((r) => setTimeout(r, 100));
    assert.equal(closed, false, 'close waits for start to settle');
    probe.let();
    await unloading;
    assert.deepEqual(probe.log, ['started', 'closed'], 'the close steps ran, after start');
    assert.equal(probe.emitter.listenerCount('tick'), 0, 'no listener left behind');
    assert.equal(probe.emitter.listenerCount('redraw'), 0);
    probe.emitter.emit('tick');
    await new Promise((r) => setTimeout(r, 60));
    assert.deepEqual(probe.log, ['started', 'closed'], 'no listener or interval runs after close');
  });

  it('input waits for start; a failure goes to Catch with the msg and a red badge, and the node keeps working', async () => {
    await deploy();
    helper.getNode('p').receive({ payload: 'early', _id: 1 });
    await new Promise((r) => setTimeout(r, 50));
    assert.equal(out.msgs.length, 0, 'nothing happens before start');
    probe.let();
    assert.equal((await out.until(() => true)).payload, 'ready: early');
    helper.getNode('p').receive({ payload: 'fail', _marker: 'bad' });
    const err = await caught.until(() => true);
    assert.equal(err._marker, 'bad', 'the Catch node gets the original msg');
    assert.match((err.error as { message: string }).message, /cannot do "fail"/);
    assert.deepEqual([statuses.at(-1)?.fill, statuses.at(-1)?.text], ['red', 'cannot do "fail"']);
    helper.getNode('p').receive({ payload: 'again', secret: 'hunter22' });
    const again = await out.until((m) => String(m.payload).startsWith('ready: again'));
    assert.equal(again.payload, 'ready: again (with a secret of 8 characters)', 'act gets the secret, the output does not');
    assert.equal(again.secret, undefined);
  });

  it('a start that fails: red badge with the short reason, and every input goes to Catch with it (without its secret)', async () => {
    await deploy();
    probe.let(new Error('the CA folder cannot be read'));
    helper.getNode('p').receive({ payload: 'x', secret: 'hunter22' });
    const err = await caught.until(() => true);
    assert.equal(err.secret, undefined, 'the secret left the msg before anything could fail');
    assert.doesNotMatch(JSON.stringify(err), /hunter22/);
    assert.match((err.error as { message: string }).message, /the CA folder cannot be read/);
    assert.deepEqual([statuses[0]?.fill, statuses.at(-1)?.fill, statuses.at(-1)?.text], ['yellow', 'red', 'the CA folder cannot be read']);
    assert.equal(out.msgs.length, 0);
  });

  it('owned timers: a coalescing redraw runs once for a burst, and never after close', async () => {
    await deploy();
    probe.let();
    await out.until(() => true, 50).catch(() => undefined); // let start run
    for (let i = 0; i < 10; i++) probe.emitter.emit('redraw');
    await new Promise((r) => setTimeout(r, 120));
    assert.equal(probe.log.filter((l) => l === 'redraw').length, 1, 'ten calls, one redraw');
    assert.ok(probe.log.filter((l) => l === 'interval').length >= 2, 'the interval runs while deployed');
    probe.emitter.emit('redraw');
    await helper.unload();
    const after = probe.log.length;
    await new Promise((r) => setTimeout(r, 120));
    assert.equal(probe.log.length, after, 'nothing fires after close');
    assert.ok(!probe.log.slice(probe.log.indexOf('closed')).includes('redraw'));
  });
});
