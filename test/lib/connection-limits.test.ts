import { strict as assert } from 'node:assert';
import { ConnectionLimits, addressKey } from '../../lib/net/connection-limits';

describe('ConnectionLimits: open connections in total and per key', () => {
  it('admits up to the per-key cap for one key and up to the total across keys', () => {
    const l = new ConnectionLimits({ total: 5, perKey: 2 });
    assert.equal(l.acquire('a'), undefined);
    assert.equal(l.acquire('a'), undefined);
    assert.equal(l.acquire('a'), 'per-key');
    assert.equal(l.acquire('b'), undefined);
    assert.equal(l.acquire('b'), undefined);
    assert.equal(l.acquire('c'), undefined);
    assert.equal(l.acquire('d'), 'total');
    assert.deepEqual([l.count(), l.count('a'), l.count('c'), l.count('d'), l.keys], [5, 2, 1, 0, 3]);
  });

  it('frees a place on release, and forgets a key with no connection left', () => {
    const l = new ConnectionLimits({ total: 2, perKey: 1 });
    l.acquire('a');
    l.acquire('b');
    assert.equal(l.acquire('c'), 'total');
    l.release('a');
    assert.equal(l.keys, 1);
    assert.equal(l.acquire('c'), undefined);
    assert.equal(l.acquire('a'), 'total');
    l.release('b');
    l.release('c');
    l.release('c');
    assert.deepEqual([l.count(), l.keys], [0, 0], 'a release without an admission changes nothing');
  });

  it('refuses caps that are not whole numbers ≥ 1', () => {
    assert.throws(() => new ConnectionLimits({ total: 0, perKey: 1 }), /total/);
    assert.throws(() => new ConnectionLimits({ total: 1, perKey: 1.5 }), /perKey/);
  });

  it('counts an IPv4-mapped address as its IPv4 address, other addresses whole', () => {
    assert.equal(addressKey('::ffff:192.0.2.7'), '192.0.2.7');
    assert.equal(addressKey('192.0.2.7'), '192.0.2.7');
    assert.equal(addressKey('2001:db8::1'), '2001:db8::1');
    assert.equal(addressKey(undefined), '');
  });
});
