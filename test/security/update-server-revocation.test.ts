import { strict as assert } from 'node:assert';
import { recordAttack } from './support/attack-tally';
import { HttpConnection } from './support/http-connection';
import { UpdateTarget, OLD, A, sleep, until } from './support/update-target';

// Finding: revocation stopped at new handshakes. A revoked device that kept one keep-alive
// connection busy still got its key, config and images. Now every open connection of a
// revoked certificate is closed within 1 s of the revocation, in every serving process.

/**
 * A device that keeps one keep-alive connection busy: config.json, its own key, an image,
 * again and again, until the connection closes. Counts what it got after `since()`.
 */
function keepBusy(conn: HttpConnection, device: string, since: () => number | undefined): Promise<{ answers: number; okAfter: number }> {
  return (async () => {
    let answers = 0;
    let okAfter = 0;
    const requests: [string, boolean][] = [
      ['/fw/config.json', false],
      [`/fw/${device}.key`, false],
      [`/fw/firmware.bin?curimage=${OLD}`, false],
    ];
    for (let i = 0; i < 10_000 && conn.closedAt === undefined; i++) {
      const [p] = requests[i % requests.length];
      conn.get(p);
      const r = await conn.next({ timeoutMs: 5_000 });
      if (!r) break;
      answers++;
      const t = since();
      if (t !== undefined && Date.now() > t && r.status === 200) okAfter++;
      await sleep(5);
    }
    return { answers, okAfter };
  })();
}

/**
 * Steers a connection towards one serving process (as test/integration/update-workers.test.ts
 * does): for 0 the worker is stopped meanwhile; for the worker this process blocks its event
 * loop while the connection waits to be accepted. Either way the caller checks who served.
 */
async function steeredBy(pid: number | undefined, to: number | undefined, open: () => Promise<HttpConnection>): Promise<HttpConnection> {
  if (to === undefined || pid === undefined) return open();
  if (to === 0) {
    process.kill(pid, 'SIGSTOP');
    try {
      return await open();
    } finally {
      process.kill(pid, 'SIGCONT');
    }
  }
  const opened = open();
  await new Promise((r) => setImmediate(r));
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 100);
  return opened;
}

describe('security: the update server closes the open connections of a revoked certificate', function () {
  this.timeout(60_000);
  const target = new UpdateTarget();

  before(async () => {
    await target.open();
  });
  after(async () => {
    await target.close();
  });

  const steered = (to: number | undefined, open: () => Promise<HttpConnection>): Promise<HttpConnection> => steeredBy(target.server.workerPids()[0], to, open);

  for (const workers of [1, 2]) {
    it(`a revoked device busy on one keep-alive connection is cut off within 1 s (workers: ${workers})`, async () => {
      // No bound on requests per connection here: only the revocation may end these connections.
      await target.start({ workers, maxRequestsPerConnection: 1_000_000 });
      const device = `84f3eb00c${workers}0${workers}`;
      const issued = await target.store.issueDevice(device);
      const id = target.id(device);
      // With workers, hold connections until both processes serve at least one of them.
      const conns: HttpConnection[] = [];
      const servedBy = new Set<number | undefined>();
      for (let i = 0; i < 40 && (conns.length < 2 || servedBy.size < workers); i++) {
        const before = target.events.length;
        const conn = await steered(workers > 1 ? i % 2 : undefined, async () => {
          const c = await HttpConnection.open(target.port, id);
          c.get('/fw/config.json');
          assert.equal((await c.next())?.status, 200);
          return c;
        });
        await until('the file event', () => target.events.slice(before).some((e) => e.type === 'file'));
        servedBy.add(target.events.slice(before).find((e) => e.type === 'file')!.worker);
        conns.push(conn);
      }
      assert.equal(servedBy.size, workers, `connections held by every process (${[...servedBy].join(', ')})`);
      let revokedAt: number | undefined;
      const busy = conns.map((c) => keepBusy(c, device, () => revokedAt));
      await sleep(300);
      const t0 = Date.now();
      await target.store.revoke(issued.record.serial, 'keyCompromise');
      revokedAt = Date.now();
      const closedAt = await Promise.race([Promise.all(conns.map((c) => c.closed)), sleep(5_000).then(() => undefined)]);
      for (const c of conns) c.close();
      const results = await Promise.all(busy);
      assert.ok(closedAt, 'every connection of the revoked device closed');
      const worst = Math.max(...closedAt) - t0;
      assert.ok(worst <= 1_000, `closed ${worst} ms after the revocation (limit 1000 ms)`);
      assert.ok(results.every((r) => r.answers > 0), 'the device was busy before');
      // An answer already on its way when revoke() returned may arrive; nothing is served later than that.
      assert.ok(results.every((r) => r.okAfter <= 1), `answers after the revocation: ${results.map((r) => r.okAfter).join(', ')}`);
      await until('the audit events of the closed connections', () => target.rejected(/revoked/).filter((e) => e.certificateSerial === issued.record.serial).length >= conns.length, 5_000);
      const audit = target.rejected(/revoked/).filter((e) => e.certificateSerial === issued.record.serial);
      assert.ok(audit.every((e) => e.deviceId === device));
      // Others are unaffected, and the revoked certificate does not get back in.
      const other = await HttpConnection.open(target.port, target.id(A));
      other.get('/fw/config.json');
      assert.equal((await other.next())?.status, 200);
      other.close();
      const again = await HttpConnection.open(target.port, id).then(
        async (c) => {
          c.get('/fw/config.json');
          const r = await c.next({ timeoutMs: 3_000 });
          c.close();
          return r?.status;
        },
        () => 'refused in the handshake',
      );
      assert.notEqual(again, 200, 'a new connection of the revoked certificate is refused');
      recordAttack('update-server', 'refused', conns.length);
    });
  }

  it('refuses requests on a keep-alive connection after a revocation even before the new CRL reaches the server (isRevoked)', async () => {
    const device = '84f3eb00d4d4';
    const issued = await target.store.issueDevice(device);
    const revoked = new Set<string>();
    // Not wired to onCrlChange: only the store's own record (the node's isRevoked) knows.
    await target.start({ isRevoked: (serial) => revoked.has(serial) }, false);
    const conn = await HttpConnection.open(target.port, target.id(device));
    conn.get('/fw/config.json');
    assert.equal((await conn.next())?.status, 200);
    revoked.add(issued.record.serial);
    conn.get(`/fw/${device}.key`);
    const r = await conn.next();
    assert.equal(r?.status, 403);
    assert.match(r!.body.toString(), /revoked/);
    assert.ok(!r!.body.includes('PRIVATE KEY'));
    await Promise.race([conn.closed, sleep(2_000)]);
    assert.ok(conn.closedAt, 'the connection is closed after the refusal');
    assert.ok(target.rejected(/client certificate revoked/).some((e) => e.status === 403 && e.certificateSerial === issued.record.serial));
    recordAttack('update-server', 'refused');
  });

  it('setCrl closes only the connections of the certificates the CRL lists', async () => {
    await target.start();
    const device = '84f3eb00e5e5';
    const issued = await target.store.issueDevice(device);
    const mine = await HttpConnection.open(target.port, target.id(device));
    const other = await HttpConnection.open(target.port, target.id(A));
    for (const c of [mine, other]) {
      c.get('/fw/config.json');
      assert.equal((await c.next())?.status, 200);
    }
    await target.store.revoke(issued.record.serial);
    await Promise.race([mine.closed, sleep(2_000)]);
    assert.ok(mine.closedAt, 'the revoked one is closed');
    other.get('/fw/config.json');
    assert.equal((await other.next())?.status, 200, 'the other keeps its connection');
    other.close();
  });
});
