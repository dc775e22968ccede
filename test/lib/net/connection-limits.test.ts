import { strict as assert } from 'node:assert';
import { KeyedCounter, RefusalTally, Slot } from '../../../lib/net/connection-limits';
import { sourceKey } from '../../../lib/net/source-address';
import { RateGate } from '../../../lib/net/rate-gate';

describe('KeyedCounter (connection caps per key and in total)', () => {
  it('refuses beyond the per-key cap and beyond the total, and counts both', () => {
    const c = new KeyedCounter({ total: 3, perKey: 2 });
    const a1 = c.take('a') as Slot;
    const a2 = c.take('a') as Slot;
    assert.equal(c.take('a'), 'per-key');
    const b1 = c.take('b') as Slot;
    assert.equal(c.take('c'), 'total');
    assert.deepEqual([c.count(), c.count('a'), c.count('b'), c.keys], [3, 2, 1, 2]);
    for (const s of [a1, a2, b1]) assert.equal(typeof s.release, 'function');
  });

  it('gives a slot back exactly once, however often release is called', () => {
    const c = new KeyedCounter({ total: 2, perKey: 2 });
    const a = c.take('a') as Slot;
    c.take('a');
    a.release();
    a.release();
    assert.deepEqual([c.count(), c.count('a')], [1, 1]);
    assert.notEqual(c.take('a'), 'per-key');
    assert.equal(c.take('a'), 'total');
  });

  it('forgets a key once it holds nothing, and takes a per-call cap', () => {
    const c = new KeyedCounter({ total: Infinity, perKey: 1 });
    const s = c.take('x') as Slot;
    s.release();
    assert.equal(c.keys, 0);
    assert.notEqual(c.take('y', 3), 'per-key');
    assert.notEqual(c.take('y', 3), 'per-key');
    assert.notEqual(c.take('y', 3), 'per-key');
    assert.equal(c.take('y', 3), 'per-key');
  });

  it('rejects caps below 1', () => {
    assert.throws(() => new KeyedCounter({ total: 0, perKey: 1 }), /total must be at least 1/);
    assert.throws(() => new KeyedCounter({ total: 1, perKey: NaN }), /perKey must be at least 1/);
  });

  it('RefusalTally counts by cause and in total', () => {
    const t = new RefusalTally<'a' | 'b'>();
    t.add('a');
    t.add('b');
    t.add('a');
    assert.deepEqual([t.total, t.byCause()], [3, { a: 2, b: 1 }]);
  });
});

describe('sourceKey (what a per-address cap counts)', () => {
  it('keeps IPv4 as it is, also IPv4-mapped IPv6', () => {
    assert.equal(sourceKey('192.0.2.7'), '192.0.2.7');
    assert.equal(sourceKey('::ffff:192.0.2.7'), '192.0.2.7');
    assert.equal(sourceKey('::FFFF:c000:0207'), '192.0.2.7');
  });

  it('counts IPv6 by its /64, whatever the spelling', () => {
    const key = '2001:db8:0:1::/64';
    for (const a of ['2001:db8:0:1::1', '2001:0db8:0000:0001:ffff:ffff:ffff:ffff', '2001:db8::1:0:0:0:9', '2001:db8:0:1::1%eth0']) {
      assert.equal(sourceKey(a), key, a);
    }
    assert.notEqual(sourceKey('2001:db8:0:2::1'), key);
    assert.equal(sourceKey('::1'), '0:0:0:0::/64');
  });

  it('has a key for a missing address', () => {
    assert.equal(sourceKey(undefined), 'unknown');
  });
});

describe('RateGate (a flood of events as a few messages and a summary)', () => {
  it('passes `limit` per window, counts the rest by key, and starts afresh in the next window', () => {
    let now = 0;
    const gate = new RateGate<'a' | 'b'>(2, 1_000, () => now);
    assert.deepEqual([gate.pass('a'), gate.pass('a'), gate.pass('a'), gate.pass('b'), gate.pass('a')], [true, true, false, false, false]);
    assert.deepEqual(gate.takeHeld(), { total: 3, byKey: { a: 2, b: 1 } });
    assert.equal(gate.takeHeld(), undefined);
    now = 1_000;
    assert.deepEqual([gate.pass('b'), gate.pass('b'), gate.pass('b')], [true, true, false]);
    assert.deepEqual(gate.takeHeld(), { total: 1, byKey: { b: 1 } });
  });
});
