import { strict as assert } from 'node:assert';
import { randomBytes } from 'node:crypto';
import { readFileSync, readdirSync } from 'node:fs';
import * as path from 'node:path';
import { helper, catchNode, firstMessage } from '../support/node-red';
import { tempDir } from '../support/temp-dir';
import { freePort } from '../support/mosquitto';
import * as net from 'node:net';
import { rawRequest, esp8266UpdateRequest } from '../support/raw-https';
import { HttpConnection } from '../security/support/http-connection';
import type { EspCaNode } from '../../nodes/esp-ca/types';
import espCa = require('../../nodes/esp-ca/esp-ca');
import espFirmwareServer = require('../../nodes/esp-firmware-server/esp-firmware-server');

type Msg = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any

const DEV = '84f3eb0000d4';
const P = 'GARAGE_D1MINI';
const nodes = [espCa, espFirmwareServer, catchNode];
/** Child processes of this one (Linux /proc). */
const children = (): number[] =>
  readdirSync('/proc/self/task')
    .flatMap((t) => readFileSync(`/proc/self/task/${t}/children`, 'utf8').trim().split(/\s+/))
    .filter(Boolean)
    .map(Number);
async function until(what: string, ok: () => Promise<boolean>, ms = 10_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await ok())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}
const build = (): Buffer => Buffer.concat([Buffer.from([0xe9]), randomBytes(50_000)]);

describe('esp-firmware-server node (real Node-RED runtime, real HTTPS)', function () {
  this.timeout(60_000);
  const tmp = tempDir('fwnode');
  let port: number;

  const flow = (): Msg[] => [
    { id: 'tab', type: 'tab', label: 'fw' },
    { id: 'ca', type: 'esp-ca', folder: path.join(tmp.path, 'ca') },
    { id: 'fw', z: 'tab', x: 100, y: 100, type: 'esp-firmware-server', ca: 'ca', hostname: 'localhost', port: String(port), bindAddress: '127.0.0.1', downloadPath: 'fw', clientCertificates: 'required', folder: path.join(tmp.path, 'firmware'), maxDownloads: '5', action: 'publish', mqttserver: 'broker.local', statusinterval: '30000', wires: [['result'], ['events']] },
    { id: 'catcher', z: 'tab', x: 100, y: 100, type: 'catch', scope: null, uncaught: false, wires: [['caught']] },
    ...['result', 'events', 'caught'].map((id) => ({ id, z: 'tab', x: 100, y: 100, type: 'helper' })),
  ];
  async function send(msg: Msg): Promise<{ result?: Msg; caught?: Msg }> {
    const first = firstMessage(['result', 'caught']);
    helper.getNode('fw').receive(msg);
    const { nodeId, msg: got } = await first;
    return nodeId === 'result' ? { result: got } : { caught: got };
  }

  before(async () => {
    port = await freePort();
    await helper.startServer();
  });
  afterEach(() => helper.unload());
  after(async () => {
    await helper.stopServer();
    tmp.remove();
  });

  it('publishes by msg, serves config.json and the next image to a device, and reports the download on output 2', async () => {
    await helper.load(nodes, flow());
    const store = await (helper.getNode('ca') as unknown as EspCaNode).store();
    await store.issueDevice(DEV);
    const v1 = await send({ topic: 'publish', payload: build(), platform: 'esp8266', product: P, version: '1.0.0' });
    assert.equal(v1.result!.payload.signature, 'signed');
    const v2 = await send({ payload: build(), platform: 'esp8266', product: P, version: '1.1.0' });
    assert.equal(v2.result!.payload.image.name, `${P}-1.1.0`);
    const events: Msg[] = [];
    helper.getNode('events').on('input', (m: Msg) => events.push(m));
    const id = {
      ca: store.caCertificatePem,
      cert: readFileSync(path.join(store.deviceFilesDir, `${DEV}.crt`), 'utf8'),
      key: readFileSync(path.join(store.deviceFilesDir, `${DEV}.key`), 'utf8'),
    };
    const config = JSON.parse((await rawRequest(port, id, 'GET /fw/config.json HTTP/1.0\r\n\r\n')).body.toString());
    assert.deepEqual(
      [config.downloadserver, config.downloadport, config.downloadpath, config.mqttserver, config.mqttport, config.statusinterval],
      ['localhost', port, 'fw', 'broker.local', 8883, 30000],
    );
    const update = await rawRequest(port, id, esp8266UpdateRequest(`/fw/firmware.bin?curimage=${P}-1.0.0`, { mac: '84:F3:EB:00:00:D4' }));
    assert.equal(update.status, 200);
    assert.equal(update.headers['x-md5'], v2.result!.payload.image.md5);
    const deadline = Date.now() + 5_000;
    while (!events.some((e) => e.topic === 'download-complete')) {
      if (Date.now() > deadline) throw new Error(`no download-complete event: ${events.map((e) => e.topic).join(',')}`);
      await new Promise((r) => setTimeout(r, 20));
    }
    const done = events.find((e) => e.topic === 'download-complete')!;
    assert.deepEqual([done.payload.deviceId, done.payload.image, done.payload.bytes], [DEV, `${P}-1.1.0`, update.body.length]);
  });

  it('sends download progress out of output 2 but keeps it out of msg.recent', async () => {
    // A product and device of its own: the folder is shared with the tests above.
    const P3 = 'BARN_D1MINI';
    const DEV3 = '84f3eb0000f6';
    await helper.load(nodes, flow());
    const store = await (helper.getNode('ca') as unknown as EspCaNode).store();
    await store.issueDevice(DEV3);
    await send({ topic: 'publish', payload: build(), platform: 'esp8266', product: P3, version: '1.0.0' });
    // 1 MB: about 16 writes of 64 KiB, so progress crosses many 5 % steps.
    const big = Buffer.concat([Buffer.from([0xe9]), randomBytes(1_000_000)]);
    await send({ topic: 'publish', payload: big, platform: 'esp8266', product: P3, version: '1.1.0' });
    const events: Msg[] = [];
    helper.getNode('events').on('input', (m: Msg) => events.push(m));
    const id = { ca: store.caCertificatePem, cert: readFileSync(path.join(store.deviceFilesDir, `${DEV3}.crt`), 'utf8'), key: readFileSync(path.join(store.deviceFilesDir, `${DEV3}.key`), 'utf8') };
    const update = await rawRequest(port, id, esp8266UpdateRequest(`/fw/firmware.bin?curimage=${P3}-1.0.0`, { mac: '84:F3:EB:00:00:F6' }));
    assert.equal(update.status, 200);
    await until('download-complete', async () => events.some((e) => e.topic === 'download-complete'), 5_000);
    const progress = events.filter((e) => e.topic === 'download-progress');
    assert.ok(progress.length >= 10 && progress.length <= 20, `${progress.length} progress msgs`);
    assert.deepEqual(progress.map((m) => m.payload.type), progress.map(() => 'download-progress'));
    assert.deepEqual(progress.map((m) => m.payload.percent), [...progress.map((m) => m.payload.percent)].sort((a, b) => a - b));
    const last = progress[progress.length - 1]!.payload;
    assert.deepEqual([last.deviceId, last.image, last.percent, last.bytes, last.total], [DEV3, `${P3}-1.1.0`, 100, update.body.length, update.body.length]);
    // The window: the other events only, and a progress msg carries it as it stands.
    const done = events.find((e) => e.topic === 'download-complete')!;
    assert.deepEqual(done.recent.slice(0, 3).map((r: Msg) => r.type), ['download-complete', 'download-start', 'check']);
    for (const m of events) assert.ok(!m.recent.some((r: Msg) => r.type === 'download-progress'), `${m.topic} msg has progress rows`);
    const start = events.find((e) => e.topic === 'download-start')!;
    assert.deepEqual(progress[0]!.recent, start.recent);
  });

  it('sets per-device config overrides, exports the public key, lists and assigns by msg', async () => {
    await helper.load(nodes, flow());
    const set = await send({ topic: 'config', payload: { device: '84:F3:EB:00:00:D4', overrides: { statusinterval: 5000 } } });
    assert.deepEqual(set.result!.payload.overrides, { statusinterval: 5000 });
    const key = await send({ topic: 'public-key', payload: { scheme: 'esp8266-rsa' } });
    assert.match(key.result!.payload.pem, /^-----BEGIN PUBLIC KEY-----/);
    const list = await send({ topic: 'list', payload: P });
    assert.deepEqual(list.result!.payload.images.map((i: Msg) => i.version), ['1.1.0', '1.0.0']);
    assert.equal(list.result!.payload.images[0].file, undefined, 'internal file names stay inside');
    const assigned = await send({ topic: 'assign', payload: { target: DEV, rollback: `${P}-1.0.0` } });
    assert.equal(assigned.result!.payload.assignment.rollback, `${P}-1.0.0`);
  });

  it('with 2 processes: a worker serves, its events arrive as msgs, a publish reaches it, and it stops on redeploy', async () => {
    // Another product and device: the tests above leave an assignment for DEV in the shared folder.
    const P2 = 'SHED_D1MINI';
    const DEV2 = '84f3eb0000e5';
    const workersNow = (): number[] => children().filter((pid) => readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes('update-worker.js'));
    const before = workersNow();
    await helper.load(nodes, flow().map((n) => (n.id === 'fw' ? { ...n, workers: '2' } : n)));
    const store = await (helper.getNode('ca') as unknown as EspCaNode).store();
    await store.issueDevice(DEV2);
    await send({ topic: 'publish', payload: build(), platform: 'esp8266', product: P2, version: '1.0.0' });
    await send({ topic: 'publish', payload: build(), platform: 'esp8266', product: P2, version: '1.1.0' });
    const started = workersNow().filter((p) => !before.includes(p));
    assert.equal(started.length, 1, 'one worker process besides Node-RED');
    const events: Msg[] = [];
    helper.getNode('events').on('input', (m: Msg) => events.push(m));
    const id = { ca: store.caCertificatePem, cert: readFileSync(path.join(store.deviceFilesDir, `${DEV2}.crt`), 'utf8'), key: readFileSync(path.join(store.deviceFilesDir, `${DEV2}.key`), 'utf8') };
    /** Asks until the worker (not Node-RED's process) answered; returns the answer and its msgs. */
    const fromWorker = async (current: string): Promise<{ status: number; md5?: string; msgs: Msg[] }> => {
      for (let i = 0; i < 60; i++) {
        const n = events.length;
        const sent = rawRequest(port, id, esp8266UpdateRequest(`/fw/firmware.bin?curimage=${current}`, { mac: '84:F3:EB:00:00:E5' }), { host: '127.0.0.1' });
        // Node-RED's process accepts too: blocking it while the connection waits lets the worker take it more often.
        await new Promise((res) => setImmediate(res));
        Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 100);
        const r = await sent;
        const deadline = Date.now() + 5_000;
        while (!events.slice(n).some((e) => !['check', 'download-start', 'download-progress'].includes(e.topic))) {
          if (Date.now() > deadline) throw new Error(`no events: ${events.slice(n).map((e) => e.topic).join(',')}`);
          await new Promise((res) => setTimeout(res, 20));
        }
        const msgs = events.slice(n);
        if (msgs.every((e) => e.payload.worker === 1)) return { status: r.status, md5: r.headers['x-md5'], msgs };
      }
      throw new Error('60 requests and none answered by the worker');
    };
    const first = await fromWorker(`${P2}-1.0.0`);
    assert.equal(first.status, 200);
    // A 50 KB image is one write: one progress msg, at 100 %.
    assert.deepEqual(first.msgs.map((m) => m.topic), ['check', 'download-start', 'download-progress', 'download-complete']);
    assert.deepEqual([first.msgs[2]!.payload.percent, first.msgs[2]!.payload.worker], [100, 1]);
    const done = first.msgs[3]!.payload;
    assert.deepEqual([done.deviceId, done.image, done.authenticated], [DEV2, `${P2}-1.1.0`, true]);
    assert.match(done.sha256, /^[0-9a-f]{64}$/);
    assert.match(done.certificateSerial, /^[0-9A-F]+$/);
    assert.equal((await fromWorker(`${P2}-1.1.0`)).status, 304);
    const v12 = await send({ topic: 'publish', payload: build(), platform: 'esp8266', product: P2, version: '1.2.0' });
    const next = await fromWorker(`${P2}-1.1.0`);
    assert.equal(next.status, 200, 'the worker offers the image published a moment ago');
    assert.equal(next.md5, v12.result!.payload.image.md5);
    // Redeploy: the worker goes, a new one comes; unloading stops it.
    await helper.unload();
    const deadline = Date.now() + 5_000;
    while (started.some((p) => workersNow().includes(p))) {
      if (Date.now() > deadline) throw new Error('the worker outlived its node');
      await new Promise((res) => setTimeout(res, 20));
    }
  });

  it("takes its connection limits from the editor fields, and closes a revoked device's open connection", async () => {
    const f = flow();
    Object.assign(f[2], { maxRequests: '3', maxConnectionsPerAddress: '4', handshakeTimeout: '1.5' });
    await helper.load(nodes, f);
    const store = await (helper.getNode('ca') as unknown as EspCaNode).store();
    // A device of its own: the CA folder is shared by the tests of this file (one certificate per device).
    const issued = await store.issueDevice('84f3eb0000d6');
    const events: Msg[] = [];
    helper.getNode('events').on('input', (m: Msg) => events.push(m));
    const id = { ca: store.caCertificatePem, cert: issued.certificatePem, key: issued.privateKeyPem! };
    await until('the server to listen', async () => (await rawRequest(port, id, 'GET /fw/config.json HTTP/1.0\r\nHost: localhost\r\n\r\n').catch(() => undefined))?.status === 200);
    // maxRequests 3: the third answer on a keep-alive connection closes it.
    const conn = await HttpConnection.open(port, id);
    const statuses: number[] = [];
    for (let i = 0; i < 5; i++) {
      conn.get('/fw/config.json');
      const r = await conn.next({ timeoutMs: 3_000 });
      if (!r) break;
      statuses.push(r.status);
    }
    conn.close();
    assert.deepEqual(statuses, [200, 200, 200]);
    // 4 per address: a fifth idle socket is refused at once, and the 1.5 s handshake deadline drops the rest.
    const idle = await Promise.all(Array.from({ length: 5 }, () => new Promise<net.Socket>((resolve) => { const s = net.connect(port, '127.0.0.1', () => resolve(s)); s.on('error', () => undefined); })));
    const closed = idle.map((s) => new Promise<number>((resolve) => s.once('close', () => resolve(Date.now()))));
    const t0 = Date.now();
    const times = await Promise.all(closed);
    assert.equal(times.filter((t) => t - t0 < 1_000).length, 1, 'one refused at once');
    assert.ok(times.every((t) => t - t0 < 3_000), 'the others at the deadline');
    // A revocation reaches an open keep-alive connection through the CA's CRL.
    const busy = await HttpConnection.open(port, id);
    busy.get('/fw/config.json');
    assert.equal((await busy.next())?.status, 200);
    const before = Date.now();
    await store.revoke(issued.record.serial);
    await Promise.race([busy.closed, new Promise((r) => setTimeout(r, 2_000))]);
    assert.ok(busy.closedAt !== undefined && busy.closedAt - before <= 1_000, 'closed within 1 s of the revocation');
    await until('the event', async () => events.some((e) => e.topic === 'rejected' && /revoked/.test(e.payload.reason)));
  });

  it('in a flood of refused connections sends at most 20 rejected msgs a second and counts the rest in a rejected-summary msg', async () => {
    const f = flow();
    Object.assign(f[2], { maxConnectionsPerAddress: '2', handshakeTimeout: '1' });
    await helper.load(nodes, f);
    const events: Msg[] = [];
    helper.getNode('events').on('input', (m: Msg) => events.push(m));
    await until('the server to listen', async () => new Promise<boolean>((resolve) => net.connect(port, '127.0.0.1').once('connect', function (this: net.Socket) { this.destroy(); resolve(true); }).once('error', () => resolve(false))));
    await new Promise((r) => setTimeout(r, 1_100)); // a fresh one-second window
    events.length = 0;
    // 2 held, 80 refused at once by the per-address cap.
    const flood = await Promise.all(Array.from({ length: 82 }, () => new Promise<net.Socket>((resolve) => { const s = net.connect(port, '127.0.0.1', () => resolve(s)); s.on('error', () => undefined); })));
    await until('the summary', async () => events.some((e) => e.topic === 'rejected-summary'), 5_000);
    flood.forEach((s) => s.destroy());
    // (The 2 held sockets reach their handshake deadline a window later: those are not the flood's.)
    const single = events.filter((e) => e.topic === 'rejected' && /^connection refused/.test(e.payload.reason));
    const summary = events.find((e) => e.topic === 'rejected-summary')!;
    assert.ok(single.length >= 1 && single.length <= 20, `${single.length} rejected msgs for the flood in its first second`);
    assert.ok(summary.payload.count >= 80 - 20, JSON.stringify(summary.payload));
    assert.ok(summary.payload.byCause['connection-cap'] >= 60, JSON.stringify(summary.payload));
  });

  const bad: [string, Msg, RegExp][] = [
    ['an unknown action', { topic: 'format-disk', payload: {} }, /unknown action "format-disk"/],
    ['an image with the wrong magic byte', { topic: 'publish', payload: Buffer.from('not firmware'), platform: 'esp8266', product: P, version: '2.0.0' }, /0xE9/],
    ['a path-traversing product', { topic: 'publish', payload: build(), platform: 'esp8266', product: '../../etc', version: '2.0.0' }, /invalid/],
    ['an unknown config key', { topic: 'config', payload: { device: DEV, overrides: { wifipassword: 'x' } } }, /unknown config.json key "wifipassword"/],
    ['a config for a bad MAC', { topic: 'config', payload: { device: 'nope', overrides: {} } }, /invalid device id/],
  ];
  for (const [what, msg, error] of bad) {
    it(`reports ${what} to a Catch node and changes nothing`, async () => {
      await helper.load(nodes, flow());
      const before = (await send({ topic: 'list', payload: {} })).result!.payload.count;
      const { caught } = await send({ ...msg, _marker: 'bad' });
      assert.equal(caught!._marker, 'bad');
      assert.match(caught!.error.message, error);
      assert.equal((await send({ topic: 'list', payload: {} })).result!.payload.count, before);
    });
  }
});
