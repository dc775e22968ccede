import { strict as assert } from 'node:assert';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import * as path from 'node:path';
import { helper, catchNode, firstMessage } from '../support/node-red';
import { tempDir } from '../support/temp-dir';
import { openssl } from '../support/openssl';
import espCa = require('../../nodes/esp-ca/esp-ca');
import espCertIssuer = require('../../nodes/esp-cert-issuer/esp-cert-issuer');
import type { EspCaNode } from '../../nodes/esp-ca/types';

interface Status {
  fill: string;
  shape: string;
  text: string;
}

const nodes = [espCa, espCertIssuer, catchNode];

describe('esp-ca and esp-cert-issuer nodes (real Node-RED runtime)', function () {
  this.timeout(60_000);
  const tmp = tempDir('nodes');
  const folder = path.join(tmp.path, 'ca');

  const flow = (issuer: Record<string, unknown> = {}): Record<string, unknown>[] => [
    { id: 'f1', type: 'tab', label: 'test' },
    { id: 'ca1', type: 'esp-ca', name: 'test CA', folder, commonName: 'Node Test CA', keySize: '2048', validityYears: '10' },
    { id: 'iss', z: 'f1', x: 100, y: 100, type: 'esp-cert-issuer', ca: 'ca1', action: 'device', wires: [['out']], ...issuer },
    { id: 'catcher', z: 'f1', x: 100, y: 100, type: 'catch', scope: null, uncaught: false, wires: [['caught']] },
    { id: 'out', z: 'f1', x: 100, y: 100, type: 'helper' },
    { id: 'caught', z: 'f1', x: 100, y: 100, type: 'helper' },
  ];

  /** Sends a msg and resolves with the output msg or the msg a Catch node received. */
  async function send(msg: Record<string, unknown>): Promise<{ out?: Record<string, unknown>; caught?: Record<string, unknown> }> {
    const first = firstMessage(['out', 'caught']);
    helper.getNode('iss').receive(msg);
    const { nodeId, msg: received } = await first;
    return nodeId === 'out' ? { out: received } : { caught: received };
  }

  before(() => helper.startServer());
  after(async () => {
    await helper.stopServer();
    tmp.remove();
  });
  afterEach(() => helper.unload());

  it('creates the CA on deploy and shows the issued count and CA expiry on the badge', async () => {
    const statuses: Status[] = [];
    await helper.load(nodes, flow());
    helper.getNode('iss').on('call:status', (call: { args: Status[] }) => statuses.push(call.args[0]));
    const { out } = await send({ topic: 'device', payload: '84:F3:EB:AA:BB:01' });
    assert.ok(out);
    assert.ok(existsSync(path.join(folder, 'ca.crt')));
    const last = statuses[statuses.length - 1];
    // The test runtime has no adminAuth: the badge says so, in yellow (the count and expiry stay first).
    assert.equal(last.fill, 'yellow');
    assert.match(last.text, /^1 issued · CA until 20\d\d-\d\d-\d\d · editor without login$/);
  });

  it('issues a device certificate from msg.topic/msg.payload, verifiable by openssl, without the key in the msg', async () => {
    await helper.load(nodes, flow());
    const { out } = await send({ topic: 'device', payload: { id: '84-f3-eb-aa-bb-02' }, correlation: 42 });
    const p = out!.payload as Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any
    assert.equal(out!.correlation, 42, 'the msg passes through');
    assert.equal(p.commonName, '84f3ebaabb02');
    assert.equal(p.kind, 'device');
    assert.match(p.serial, /^[0-9A-F]+$/);
    assert.match(p.fingerprints.sha256, /^([0-9A-F]{2}:){31}[0-9A-F]{2}$/);
    assert.ok(Buffer.isBuffer(p.certificate.der));
    assert.equal(p.privateKey, undefined, 'keys stay out of msgs unless asked for');
    const certFile = path.join(tmp.path, 'issued.crt');
    writeFileSync(certFile, p.certificate.pem);
    const r = openssl(['verify', '-CAfile', path.join(folder, 'ca.crt'), certFile]);
    assert.equal(r.status, 0, r.stderr);
    assert.equal(p.files.privateKey, path.join(folder, 'devices', '84f3ebaabb02.key'));
  });

  it('puts the private key into the msg only when the node is set to', async () => {
    await helper.load(nodes, flow({ includePrivateKey: true }));
    const { out } = await send({ topic: 'backend', payload: 'flows' });
    const p = out!.payload as { privateKey: { pem: string; der: Buffer }; commonName: string };
    assert.equal(p.commonName, 'flows');
    assert.match(p.privateKey.pem, /BEGIN PRIVATE KEY/);
    assert.ok(Buffer.isBuffer(p.privateKey.der));
  });

  it('uses the node default action when msg.topic is empty, and lists/revokes by msg', async () => {
    await helper.load(nodes, flow({ action: 'list' }));
    const { out } = await send({ payload: { kind: 'device' } });
    const listed = out!.payload as { certificates: { serial: string; commonName: string }[]; count: number };
    assert.ok(listed.count >= 2);
    const target = listed.certificates.find((c) => c.commonName === '84f3ebaabb02')!;
    const revoked = await send({ topic: 'revoke', payload: { serial: target.serial, reason: 'keyCompromise' } });
    assert.equal((revoked.out!.payload as { revoked: { revocationReason: string } }).revoked.revocationReason, 'keyCompromise');
    const crl = openssl(['crl', '-in', path.join(folder, 'crl.pem'), '-noout', '-text']);
    assert.match(crl.stdout, new RegExp(`Serial Number: ${target.serial}`));
  });

  const badInputs: [string, Record<string, unknown>, RegExp][] = [
    ['an unknown action', { topic: 'explode', payload: {} }, /unknown action "explode"/],
    ['a malformed MAC', { topic: 'device', payload: '84:F3:EB:AA:BB' }, /invalid device id/],
    ['a CSR that is not PEM', { topic: 'csr', payload: { csr: 'garbage', deviceId: '84f3ebaabb03' } }, /PEM certificate request/],
    ['revoking an unknown serial', { topic: 'revoke', payload: 'DEADBEEF' }, /no certificate with serial DEADBEEF/],
    ['a payload of the wrong type', { topic: 'device', payload: [1, 2] }, /msg.payload must be an object/],
    ['an inject timestamp as days for expiring', { topic: 'expiring', payload: 1795239171000 }, /expiring needs a number of days from 0 to 3650/],
    ['revoke-device for a device without a certificate', { topic: 'revoke-device', payload: '84:f3:eb:aa:bb:ee' }, /no valid certificate for 84f3ebaabbee to revoke/],
    ['an inject timestamp as days for renew-expiring', { topic: 'renew-expiring', payload: { days: 1795239171000 } }, /renew-expiring needs a number of days from 0 to 3650/],
    ['path traversal in a server name', { topic: 'server', payload: { commonName: '../../x' } }, /invalid DNS name/],
  ];
  for (const [what, msg, error] of badInputs) {
    it(`reports ${what} to a Catch node with the msg, and changes nothing stored`, async () => {
      await helper.load(nodes, flow());
      const statuses: Status[] = [];
      helper.getNode('iss').on('call:status', (call: { args: Status[] }) => statuses.push(call.args[0]));
      await (helper.getNode('ca1') as unknown as EspCaNode).store();
      const index = readFileSync(path.join(folder, 'journal.jsonl'), 'utf8');
      const { caught, out } = await send({ ...msg, _marker: 'bad' });
      assert.equal(out, undefined);
      assert.equal(caught!._marker, 'bad', 'the Catch node gets the original msg');
      assert.match((caught!.error as { message: string }).message, error);
      assert.equal(readFileSync(path.join(folder, 'journal.jsonl'), 'utf8'), index);
      assert.equal(statuses[statuses.length - 1].fill, 'red');
    });
  }

  it('renew-expiring renews each device whose newest certificate is due, once, as renew msgs; revoke-device revokes all it holds', async () => {
    await helper.load(nodes, flow());
    const outs: Record<string, unknown>[] = [];
    helper.getNode('out').on('input', (m: Record<string, unknown>) => outs.push(m));
    const untilSummary = async (): Promise<Record<string, unknown>[]> => {
      for (let i = 0; !outs.some((m) => m.topic === 'renew-expiring'); i++) {
        if (i > 500) throw new Error(`no renew-expiring summary: ${JSON.stringify(outs.map((m) => m.topic))}`);
        await new Promise((r) => setTimeout(r, 20));
      }
      return outs.splice(0);
    };
    const [soon1, soon2, later] = ['84f3ebaacc01', '84f3ebaacc02', '84f3ebaacc03'];
    for (const [id, validityDays] of [[soon1, 10], [soon2, 20], [later, 400]] as const) await send({ topic: 'device', payload: { id, validityDays } });
    outs.length = 0;

    helper.getNode('iss').receive({ topic: 'renew-expiring', payload: 30 });
    const first = await untilSummary();
    assert.deepEqual(first.map((m) => m.topic), ['renew', 'renew', 'renew-expiring']);
    const renewed = first.slice(0, 2).map((m) => m.payload as { action: string; commonName: string; serial: string; renewedFrom: string; notAfter: string });
    assert.deepEqual(renewed.map((r) => [r.action, r.commonName]), [['renew', soon1], ['renew', soon2]]);
    assert.ok(renewed.every((r) => Date.parse(r.notAfter) > Date.now() + 300 * 86_400_000), 'renewed for the default validity');
    assert.deepEqual((first[2].payload as { count: number; days: number }).count, 2);
    // The old certificates still expire within 30 days, but each device's newest does not.
    helper.getNode('iss').receive({ topic: 'renew-expiring', payload: 30 });
    const second = await untilSummary();
    assert.deepEqual(second.map((m) => [m.topic, (m.payload as { count: number }).count]), [['renew-expiring', 0]]);

    const { out } = await send({ topic: 'revoke-device', payload: { device: soon1.toUpperCase(), reason: 'keyCompromise' } });
    const result = out!.payload as { device: string; revoked: { serial: string; revocationReason: string }[] };
    assert.equal(result.device, soon1);
    assert.deepEqual(result.revoked.map((r) => r.serial).sort(), [renewed[0].serial, renewed[0].renewedFrom].sort());
    const crl = openssl(['crl', '-in', path.join(folder, 'crl.pem'), '-noout', '-text']).stdout;
    for (const r of result.revoked) assert.match(crl, new RegExp(`Serial Number: ${r.serial}`));
    const again = await send({ topic: 'revoke-device', payload: soon1 });
    assert.match((again.caught!.error as { message: string }).message, /no valid certificate for 84f3ebaacc01 to revoke/);
  });

  it('takes a bare device id for renew and ignores an inject timestamp for list', async () => {
    await helper.load(nodes, flow());
    const { out } = await send({ topic: 'renew', payload: '84:f3:eb:aa:bb:01' });
    assert.equal((out!.payload as { commonName: string }).commonName, '84f3ebaabb01');
    const listed = await send({ topic: 'list', payload: Date.now() });
    assert.ok((listed.out!.payload as { count: number }).count > 0);
  });

  it('refuses half an import instead of creating a new CA', async () => {
    const halfFolder = path.join(tmp.path, 'half-import');
    const half = flow().map((n) => (n.id === 'ca1' ? { ...n, folder: halfFolder, importCertificate: readFileSync(path.join(folder, 'ca.crt'), 'utf8') } : n));
    await helper.load(nodes, half);
    const { caught } = await send({ topic: 'device', payload: '84f3ebaabb07' });
    assert.match((caught!.error as { message: string }).message, /paste both its certificate and its private key/);
    assert.equal(existsSync(path.join(halfFolder, 'ca.crt')), false);
  });

  it('keeps working after bad input', async () => {
    await helper.load(nodes, flow());
    await send({ topic: 'device', payload: 'nonsense' });
    const { out } = await send({ topic: 'device', payload: '84f3ebaabb04' });
    assert.equal((out!.payload as { commonName: string }).commonName, '84f3ebaabb04');
  });

  it('p12: exports an identity as a .p12 that openssl reads; the password leaves the msg, also on the way to a Catch node', async () => {
    const password = 'node test p12 password';
    await helper.load(nodes, flow());
    await send({ topic: 'backend', payload: 'node-red' });
    const { out } = await send({ topic: 'p12', payload: { kind: 'backend', name: 'node-red', password }, correlation: 7 });
    const p = out!.payload as { action: string; commonName: string; p12: Buffer; password?: string };
    assert.equal(out!.correlation, 7, 'the msg passes through');
    assert.equal(p.action, 'p12');
    assert.equal(p.commonName, 'node-red');
    assert.equal(p.password, undefined);
    assert.ok(!JSON.stringify(out).includes(password), 'the password appears nowhere in the output msg');
    const file = path.join(tmp.path, 'node.p12');
    writeFileSync(file, p.p12);
    const r = openssl(['pkcs12', '-info', '-nodes', '-in', file, '-passin', `pass:${password}`]);
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stdout, /subject=CN = node-red/);

    for (const [payload, why] of [
      [{ kind: 'backend', name: 'node-red', password: 'short7!' }, /at least 8 characters/],
      [{ kind: 'backend', name: 'nobody', password }, /this CA never issued one/],
    ] as const) {
      const { out: none, caught } = await send({ topic: 'p12', payload });
      assert.equal(none, undefined);
      assert.match((caught!.error as { message: string }).message, why);
      assert.equal((caught!.payload as { password?: string }).password, undefined, 'the Catch node gets the msg without the password');
      assert.ok(!JSON.stringify(caught).includes(payload.password));
    }
  });

  it('keeps the same CA across redeploys and encrypts the key with the passphrase credential', async () => {
    const encFolder = path.join(tmp.path, 'enc');
    const encFlow = flow().map((n) => (n.id === 'ca1' ? { ...n, folder: encFolder } : n));
    await helper.load(nodes, encFlow, { ca1: { passphrase: 's3cret' } });
    await send({ topic: 'device', payload: '84f3ebaabb05' });
    const ca = readFileSync(path.join(encFolder, 'ca.crt'), 'utf8');
    assert.match(readFileSync(path.join(encFolder, 'ca.key'), 'utf8'), /ENCRYPTED PRIVATE KEY/);
    await helper.unload();
    await helper.load(nodes, encFlow, { ca1: { passphrase: 's3cret' } });
    await send({ topic: 'device', payload: '84f3ebaabb06' });
    assert.equal(readFileSync(path.join(encFolder, 'ca.crt'), 'utf8'), ca);
  });

  it('writes a Mosquitto config folder on the mosquitto action', async () => {
    await helper.load(nodes, flow({ serverName: 'broker.local', mosquittoPort: '18884' }));
    const { out } = await send({ topic: 'mosquitto', payload: {} });
    const p = out!.payload as { confFile: string; aclFile: string };
    const conf = readFileSync(p.confFile, 'utf8');
    assert.match(conf, /^listener 18884$/m);
    assert.match(conf, /^require_certificate true$/m);
    assert.match(conf, /^use_identity_as_username true$/m);
    assert.match(conf, /^crlfile .*crl\.pem$/m);
    assert.match(readFileSync(p.aclFile, 'utf8'), /^user 84f3ebaabb04\ntopic write \/status\/84f3ebaabb04$/m);
  });

  it('serves a CA summary and ca.crt on relative admin URLs', async () => {
    await helper.load(nodes, flow());
    await (helper.getNode('ca1') as unknown as EspCaNode).store();
    const summary = await helper.request().get('/esp-fleet/ca/ca1/summary');
    assert.equal(summary.status, 200);
    assert.match((summary.body as { subject: string }).subject, /Node Test CA/);
    const pem = await helper.request().get('/esp-fleet/ca/ca1/ca.crt');
    assert.equal(pem.status, 200);
    assert.equal(pem.text, readFileSync(path.join(folder, 'ca.crt'), 'utf8'));
    assert.equal((await helper.request().get('/esp-fleet/ca/nope/summary')).status, 404);
  });
});
