import { strict as assert } from 'node:assert';
import * as https from 'node:https';
import * as tls from 'node:tls';
import type { AddressInfo } from 'node:net';
import * as path from 'node:path';
import { readFileSync } from 'node:fs';
import { buildSimImage, readSimManifest } from '../../../lib/sim/sim-image';
import { deviceIds } from '../../../lib/sim/fleet-simulator';
import { deviceGet, esp8266UpdateHeaders } from '../../../lib/sim/device-https';
import { CaStore } from '../../../lib/pki/ca-store';
import { tempDir } from '../../support/temp-dir';
import { ESP8266_TIMING, FAST_TIMING, resolveTiming, scaled, bootToNetworkMs } from '../../../lib/sim/device-timing';

describe('simulator images', () => {
  const manifest = { image: 'SIM-1.0.0', build: 'today', trusts: ['-----BEGIN PUBLIC KEY-----\nx\n-----END PUBLIC KEY-----\n'] };

  it('carry their manifest after an ESP8266 header, padded to the size asked', () => {
    const image = buildSimImage(manifest, 4096);
    assert.equal(image.length, 4096);
    assert.equal(image[0], 0xe9);
    assert.deepEqual(readSimManifest(image), manifest);
    assert.ok(buildSimImage(manifest, 4096).equals(image), 'same name, same bytes');
    assert.ok(!buildSimImage({ ...manifest, image: 'SIM-1.0.1' }, 4096).subarray(2048).equals(image.subarray(2048)), 'another name, other filler');
  });

  it('anything else has no manifest: a real build, a wrong magic, a broken length or JSON', () => {
    const image = buildSimImage(manifest, 1024);
    assert.equal(readSimManifest(Buffer.concat([Buffer.from([0xe9]), Buffer.alloc(2000)])), undefined);
    const wrongMagic = Buffer.from(image);
    wrongMagic[0] = 0x1f;
    assert.equal(readSimManifest(wrongMagic), undefined);
    const hugeLength = Buffer.from(image);
    hugeLength.writeUInt32LE(0xffffff, 16 + 'ESP-FLEET-SIMULATOR-IMAGE\n'.length);
    assert.equal(readSimManifest(hugeLength), undefined);
    const badJson = Buffer.from(image);
    badJson[16 + 'ESP-FLEET-SIMULATOR-IMAGE\n'.length + 4] = 0x20; // '{' → ' '
    assert.equal(readSimManifest(badJson), undefined);
    assert.equal(readSimManifest(buildSimImage({ ...manifest, trusts: [1 as unknown as string] })), undefined);
  });
});

describe('simulated device ids and headers', () => {
  it('numbers devices after a MAC prefix', () => {
    assert.deepEqual(deviceIds('A4:CF:12', 3), ['a4cf12000001', 'a4cf12000002', 'a4cf12000003']);
    assert.deepEqual(deviceIds('a4cf12abcd', 2, 0xfe), ['a4cf12abcdfe', 'a4cf12abcdff']);
    assert.throws(() => deviceIds('a4cf12abcd', 3, 0xfe), /do not fit/);
    assert.throws(() => deviceIds('zz', 1), /MAC prefix "zz" must be 2 to 10 hex digits/);
    assert.throws(() => deviceIds('a4cf12', 0), /do not fit/);
  });

  it('sends the headers ESP8266httpUpdate sends, MACs in its colon form', () => {
    const h = esp8266UpdateHeaders({ mac: '84f3eb012345', freeSpace: 1000, sketchSize: 400, sketchMd5: 'ab'.repeat(16), version: 'P-1' });
    assert.equal(h['User-Agent'], 'ESP8266-http-Update');
    assert.equal(h['x-ESP8266-STA-MAC'], '84:F3:EB:01:23:45');
    assert.equal(h['x-ESP8266-AP-MAC'], '86:F3:EB:01:23:45', 'the soft-AP MAC is the locally administered twin');
    assert.equal(h['x-ESP8266-free-space'], '1000');
    assert.equal(h['x-ESP8266-mode'], 'sketch');
    assert.equal(h['x-ESP8266-version'], 'P-1');
  });
});

describe('deviceGet: what the device accepts from an update server', function () {
  this.timeout(30_000);
  const tmp = tempDir('sim-https');
  let store: CaStore;
  let other: CaStore;
  let server: https.Server;
  let port: number;
  let reply: (res: import('node:http').ServerResponse) => void = (res) => res.end('ok');

  before(async () => {
    store = await CaStore.open({ dir: path.join(tmp.path, 'ca') });
    other = await CaStore.open({ dir: path.join(tmp.path, 'other') });
    await store.issueServer({ commonName: 'localhost' });
    const files = store.identityFiles('server', 'localhost');
    server = https.createServer({ key: readFileSync(files.privateKey), cert: readFileSync(files.certificate) }, (_req, res) => reply(res));
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
    port = (server.address() as AddressInfo).port;
  });
  after(async () => {
    server.closeAllConnections();
    await new Promise((r) => server.close(r));
    await store.idle();
    await other.idle();
    tmp.remove();
  });

  it('reads a reply with Content-Length', async () => {
    reply = (res) => res.writeHead(200, { 'Content-Length': '2' }).end('ok');
    const res = await deviceGet({ host: 'localhost', port }, '/x', { ca: store.caCertificatePem });
    assert.deepEqual([res.status, res.body.toString()], [200, 'ok']);
  });

  it('refuses a reply that does not say its size, as ESP8266httpUpdate does', async () => {
    // Node answers an HTTP/1.0 request without a length by closing the connection at the end.
    reply = (res) => {
      res.writeHead(200);
      res.write('a');
      res.end('b');
    };
    await assert.rejects(deviceGet({ host: 'localhost', port }, '/x', { ca: store.caCertificatePem }), /did not report the size \(no Content-Length\)/);
  });

  it('refuses a chunked reply even when the server sends one to HTTP/1.0', async () => {
    const files = store.identityFiles('server', 'localhost');
    const raw = tls.createServer({ key: readFileSync(files.privateKey), cert: readFileSync(files.certificate) }, (socket) => {
      socket.once('data', () => socket.end('HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n'));
    });
    await new Promise<void>((r) => raw.listen(0, '127.0.0.1', () => r()));
    try {
      const rawPort = (raw.address() as AddressInfo).port;
      await assert.rejects(deviceGet({ host: 'localhost', port: rawPort }, '/x', { ca: store.caCertificatePem }), /chunked reply without Content-Length/);
    } finally {
      raw.close();
    }
  });

  it('refuses a reply larger than its free space', async () => {
    reply = (res) => res.writeHead(200, { 'Content-Length': '5000' }).end(Buffer.alloc(5000));
    await assert.rejects(deviceGet({ host: 'localhost', port }, '/x', { ca: store.caCertificatePem }, { maxBody: 4000 }), /does not fit 4000|larger than 4000/);
  });

  it("refuses a server whose certificate is not from its CA, in the secure ESP8266 framework's words", async () => {
    await assert.rejects(deviceGet({ host: 'localhost', port }, '/x', { ca: other.caCertificatePem }), /Updateserver-certificate doesn't match/);
  });

  it('refuses a server certificate for another host name', async () => {
    await assert.rejects(deviceGet({ host: '127.0.0.1', port }, '/x', { ca: store.caCertificatePem }), /Updateserver-certificate doesn't match/);
  });
});

describe('simulator timing (lib/sim/device-timing.ts)', () => {
  it('defaults to a real ESP8266; fast is the same steps a hundred times quicker', () => {
    assert.deepEqual(resolveTiming(undefined), ESP8266_TIMING);
    assert.deepEqual(resolveTiming('esp8266'), ESP8266_TIMING);
    assert.equal(ESP8266_TIMING.downloadBytesPerSecond, 20_000);
    assert.equal(bootToNetworkMs(ESP8266_TIMING), 3_900);
    assert.equal(bootToNetworkMs(FAST_TIMING), 39);
    assert.equal(scaled(FAST_TIMING, FAST_TIMING.wifiTryMs), 300);
  });

  it('takes single figures over a preset and refuses what is not a duration', () => {
    assert.deepEqual(resolveTiming({ downloadBytesPerSecond: 5_000 }), { ...ESP8266_TIMING, downloadBytesPerSecond: 5_000 });
    assert.deepEqual(resolveTiming({ base: 'fast', tlsHandshakeMs: 0 }), { ...FAST_TIMING, tlsHandshakeMs: 0 });
    assert.throws(() => resolveTiming({ downloadBytesPerSecond: 0 }), /downloadBytesPerSecond must be a number ≥ 0 and not 0/);
    assert.throws(() => resolveTiming({ bootMs: -1 }), /bootMs must be a number ≥ 0/);
    assert.throws(() => resolveTiming({ bootMs: Number.NaN }), /bootMs must be a number/);
    assert.throws(() => resolveTiming({ warpSpeed: 1 } as never), /unknown timing "warpSpeed"/);
  });
});
