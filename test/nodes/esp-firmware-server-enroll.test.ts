import { strict as assert } from 'node:assert';
import { generateKeyPairSync, X509Certificate } from 'node:crypto';
import { readFileSync } from 'node:fs';
import * as net from 'node:net';
import * as path from 'node:path';
import { helper, catchNode, firstMessage } from '../support/node-red';
import { tempDir } from '../support/temp-dir';
import { freePort } from '../support/mosquitto';
import { estRequest } from '../support/est-request';
import { rawRequest } from '../support/raw-https';
import { buildCsr } from '../../lib/pki/csr-builder';
import type { EspCaNode } from '../../nodes/esp-ca/types';
import espCa = require('../../nodes/esp-ca/esp-ca');
import espFirmwareServer = require('../../nodes/esp-firmware-server/esp-firmware-server');

type Msg = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any

const nodes = [espCa, espFirmwareServer, catchNode];

describe('esp-firmware-server enrollment (real Node-RED runtime, real EST over HTTPS)', function () {
  this.timeout(60_000);
  const tmp = tempDir('fwnode-enroll');
  let port: number;
  let enrollPort: number;
  let flows = 0;

  /** A flow of its own per test: a fresh CA folder, so no test sees another's requests. */
  const flow = (ca: Msg = {}): Msg[] => [
    { id: 'tab', type: 'tab', label: 'fw' },
    { id: 'ca', type: 'esp-ca', folder: path.join(tmp.path, `ca-${++flows}`), ...ca },
    { id: 'fw', z: 'tab', x: 100, y: 100, type: 'esp-firmware-server', ca: 'ca', hostname: 'localhost', port: String(port), enrollPort: String(enrollPort), bindAddress: '127.0.0.1', downloadPath: 'fw', clientCertificates: 'required', folder: path.join(tmp.path, `fw-${flows}`), action: 'publish', wires: [['result'], ['events']] },
    { id: 'catcher', z: 'tab', x: 100, y: 100, type: 'catch', scope: null, uncaught: false, wires: [['caught']] },
    ...['result', 'events', 'caught'].map((id) => ({ id, z: 'tab', x: 100, y: 100, type: 'helper' })),
  ];
  async function send(msg: Msg): Promise<{ result?: Msg; caught?: Msg }> {
    const first = firstMessage(['result', 'caught']);
    helper.getNode('fw').receive(msg);
    const { nodeId, msg: got } = await first;
    return nodeId === 'result' ? { result: got } : { caught: got };
  }
  const events = (): Msg[] => {
    const got: Msg[] = [];
    helper.getNode('events').on('input', (m: Msg) => got.push(m));
    return got;
  };
  async function until<T>(what: string, get: () => T | undefined, ms = 10_000): Promise<T> {
    const deadline = Date.now() + ms;
    for (;;) {
      const v = get();
      if (v !== undefined) return v;
      if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
      await new Promise((r) => setTimeout(r, 25));
    }
  }
  const csr = (id: string): string => buildCsr({ commonName: id, privateKey: generateKeyPairSync('ec', { namedCurve: 'prime256v1' }).privateKey }).toString('base64');

  before(async () => {
    port = await freePort();
    enrollPort = await freePort();
    await helper.startServer();
  });
  afterEach(() => helper.unload());
  after(async () => {
    await helper.stopServer();
    tmp.remove();
  });

  it('a new device is an enroll-request msg; approve by msg issues it; the same request then gets its certificate', async () => {
    await helper.load(nodes, flow());
    const out = events();
    const shown = await send({ topic: 'bootstrap' });
    const { line } = shown.result!.payload as { line: string };
    assert.match(line, /^fleet:[A-Za-z0-9_-]{24}$/);
    const store = await (helper.getNode('ca') as unknown as EspCaNode).store();
    const id = 'ee0000000001';
    const body = csr(id);
    const ask = () => estRequest(enrollPort, 'simpleenroll', { ca: store.caCertificatePem, auth: line, body });
    const waiting = await ask();
    assert.equal(waiting.status, 202);
    const request = await until('enroll-request', () => out.find((m) => m.topic === 'enroll-request'));
    assert.deepEqual([request.payload.id, request.payload.keyType, request.payload.decision, request.pending], [id, 'ec', 'pending', 1]);
    const pending = await send({ topic: 'pending' });
    assert.deepEqual(pending.result!.payload.requests.map((r: Msg) => r.id), [id]);
    const approved = await send({ topic: 'approve', payload: id });
    assert.equal(approved.result!.payload.decided[0].id, id);
    await until('enroll-issued', () => out.find((m) => m.topic === 'enroll-issued'));
    const got = await ask();
    assert.equal(got.status, 200);
    assert.match(String(got.headers['content-type']), /certs-only/);
    // The device's config.json names the enrollment port, for its renewals.
    const files = store.identityFiles('device', (await store.issueDevice('ee00000000ff')).record.commonName);
    const config = JSON.parse((await rawRequest(port, { ca: store.caCertificatePem, cert: readFileSync(files.certificate, 'utf8'), key: readFileSync(files.privateKey, 'utf8') }, 'GET /fw/config.json HTTP/1.0\r\n\r\n')).body.toString());
    assert.equal(config.enrollport, enrollPort);
  });

  it('reject by msg keeps the device out; rotating the bootstrap credential locks the old one out at once', async () => {
    await helper.load(nodes, flow());
    const store = await (helper.getNode('ca') as unknown as EspCaNode).store();
    const { line } = (await send({ topic: 'bootstrap' })).result!.payload as { line: string };
    const id = 'ee0000000002';
    const body = csr(id);
    const first = await estRequest(enrollPort, 'simpleenroll', { ca: store.caCertificatePem, auth: line, body });
    assert.equal(first.status, 202);
    const rejected = await send({ topic: 'reject', payload: { id, reason: 'not one of ours' } });
    assert.deepEqual(rejected.result!.payload.decided, [{ id }]);
    assert.equal((await estRequest(enrollPort, 'simpleenroll', { ca: store.caCertificatePem, auth: line, body })).status, 403);
    const rotated = (await send({ topic: 'bootstrap-rotate' })).result!.payload as { line: string };
    assert.notEqual(rotated.line, line);
    const old = await estRequest(enrollPort, 'simpleenroll', { ca: store.caCertificatePem, auth: line, body: csr('ee0000000003') });
    assert.equal(old.status, 401);
    assert.equal((await estRequest(enrollPort, 'simpleenroll', { ca: store.caCertificatePem, auth: rotated.line, body: csr('ee0000000003') })).status, 202);
    await send({ topic: 'bootstrap-revoke' });
    assert.equal((await estRequest(enrollPort, 'simpleenroll', { ca: store.caCertificatePem, auth: rotated.line, body: csr('ee0000000004') })).status, 403);
    const bad = await send({ topic: 'approve', payload: 'not-a-mac' });
    assert.match(bad.caught!.error.message, /invalid device id/);
  });

  it('an enrollment port in use turns enrollment off with an error; the update server keeps serving', async () => {
    const squatter = net.createServer();
    await new Promise<void>((r) => squatter.listen(enrollPort, '127.0.0.1', () => r()));
    try {
      await helper.load(nodes, flow());
      const caught: Msg[] = [];
      helper.getNode('caught').on('input', (m: Msg) => caught.push(m));
      const store = await (helper.getNode('ca') as unknown as EspCaNode).store();
      // A Catch node hears it, so a flow can tell someone.
      const error = await until('the enrollment error at the Catch node', () => caught.find((m) => /enrollment is off/.test(String(m.error?.message))));
      assert.match(String(error.error.message), /enrollment is off: .*EADDRINUSE/);
      const shown = await send({ topic: 'bootstrap' });
      assert.ok(shown.result, 'the actions still work');
      const files = store.identityFiles('device', (await store.issueDevice('ee00000000fe')).record.commonName);
      const answer = await rawRequest(port, { ca: store.caCertificatePem, cert: readFileSync(files.certificate, 'utf8'), key: readFileSync(files.privateKey, 'utf8') }, 'GET /fw/config.json HTTP/1.0\r\n\r\n');
      assert.equal(answer.status, 200, 'devices with certificates are still served');
    } finally {
      await new Promise((r) => squatter.close(r));
    }
  });

  it('policy open: approved at once, with a warning at start', async () => {
    await helper.load(nodes, flow({ enrollPolicy: 'open' }));
    const store = await (helper.getNode('ca') as unknown as EspCaNode).store();
    const { line } = (await send({ topic: 'bootstrap' })).result!.payload as { line: string };
    const got = await estRequest(enrollPort, 'simpleenroll', { ca: store.caCertificatePem, auth: line, accept: 'application/pem-certificate-chain', body: csr('ee0000000005') });
    assert.equal(got.status, 200);
    assert.equal(new X509Certificate(got.body).subject, 'CN=ee0000000005');
    assert.match(JSON.stringify(helper.log().args), /enrollment is open/);
  });
});
