import { strict as assert } from 'node:assert';
import { createHash, createPublicKey, randomBytes } from 'node:crypto';
import { spawn } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import * as path from 'node:path';
import { CaStore } from '../../lib/pki/ca-store';
import { FirmwareService } from '../../lib/firmware/firmware-service';
import { runFirmwareAction } from '../../lib/firmware/server-actions';
import { verifyImage } from '../../lib/firmware/signing';
import { compareVersions } from '../../lib/firmware/version';
import { startUpdateServer, RunningUpdateServer, UpdateEvent, UpdateServerOptions } from '../../lib/firmware/update-server';
import { tempDir } from '../support/temp-dir';
import { deviceIdentity, localServerOptions } from '../support/update-server';
import { rawRequest } from '../support/raw-https';
import { probeMaxFragmentLength } from '../support/mfln-probe';
import * as tls from 'node:tls';

// The self-updating ESP8266 sketch that calls `ESPhttpUpdate.update(client, url, "0.1")`: a
// bare version, no product, no client certificate, the server trusted by its CA
// (docs/wire-contract.md, Bare versions). The request is the one esp8266/Arduino's
// ESP8266httpUpdate.cpp (handleUpdate) builds through ESP8266HTTPClient (sendHeader): HTTP/1.0,
// Host with the port, its User-Agent, Connection: close, then the x-ESP8266-* headers in the
// order it adds them.

const P = 'SELF_OTA';
const Q = 'GARAGE_OTA';
const MAC = '84:F3:EB:00:01:01';
const GARAGE_MAC = '84:F3:EB:00:02:02';

const build = (): Buffer => Buffer.concat([Buffer.from([0xe9]), randomBytes(30_000)]);

/** The exact bytes ESPhttpUpdate.update(client, url, version) sends (esp8266/Arduino core 3.x). */
function selfOtaRequest(port: number, version: string, mac = MAC, pathname = '/update'): string {
  const chip = parseInt(mac.replace(/:/g, '').slice(6), 16);
  const ap = `${(parseInt(mac.slice(0, 2), 16) | 0x02).toString(16).toUpperCase().padStart(2, '0')}${mac.slice(2)}`;
  return [
    `GET ${pathname} HTTP/1.0`,
    `Host: localhost:${port}`,
    'User-Agent: ESP8266-http-Update',
    'Connection: close',
    `x-ESP8266-Chip-ID: ${chip}`,
    `x-ESP8266-STA-MAC: ${mac}`,
    `x-ESP8266-AP-MAC: ${ap}`,
    'x-ESP8266-free-space: 1000000',
    'x-ESP8266-sketch-size: 300000',
    'x-ESP8266-sketch-md5: 0123456789abcdef0123456789abcdef',
    'x-ESP8266-chip-size: 4194304',
    'x-ESP8266-sdk-version: 2.2.2-dev(38a443e)',
    'x-ESP8266-mode: sketch',
    `x-ESP8266-version: ${version}`,
    '',
    '',
  ].join('\r\n');
}

describe('bare-version self-OTA devices (x-ESP8266-version: 0.1, no client certificate, real HTTPS)', function () {
  this.timeout(60_000);
  const tmp = tempDir('update-bare');
  let store: CaStore;
  let service: FirmwareService;
  let server: RunningUpdateServer | undefined;
  const events: UpdateEvent[] = [];
  const files: Record<string, Buffer> = {};

  async function start(overrides: Partial<UpdateServerOptions> = {}): Promise<RunningUpdateServer> {
    await server?.close();
    server = await startUpdateServer({
      ...(await localServerOptions(store)),
      clientCertificates: 'optional',
      deviceConfig: () => ({}),
      images: service.imageSource({ bareVersionProduct: P }),
      onEvent: (e) => events.push(e),
      ...overrides,
    });
    return server;
  }
  /** No client certificate: only the CA, to trust the server. */
  const ask = (version: string, mac?: string, pathname?: string): ReturnType<typeof rawRequest> => rawRequest(server!.port, deviceIdentity(store), selfOtaRequest(server!.port, version, mac, pathname));
  const publish = async (product: string, version: string): Promise<void> => {
    const { entry } = await service.publish({ data: build(), platform: 'esp8266', product, version });
    files[entry.name] = readFileSync(service.catalogue.pathOf(entry));
  };

  before(async () => {
    store = await CaStore.open({ dir: path.join(tmp.path, 'ca') });
    await store.issueServer({ commonName: 'localhost' });
    service = await FirmwareService.open(path.join(tmp.path, 'firmware'));
    for (const v of ['0.1', '0.2', '0.10']) await publish(P, v);
    for (const v of ['0.1', '0.2']) await publish(Q, v);
    await start();
  });
  beforeEach(() => (events.length = 0));
  after(async () => {
    await server?.close();
    tmp.remove();
  });

  it('orders bare versions part by part as numbers: 0.1 < 0.2 < 0.10 (not as decimals)', () => {
    assert.deepEqual([compareVersions('0.1', '0.2'), compareVersions('0.2', '0.10'), compareVersions('0.1', '0.10')], [-1, -1, -1]);
  });

  it('gets the next signed image of its product (0.1 → 0.10), and 304 at the newest', async () => {
    const r = await ask('0.1');
    assert.equal(r.status, 200, r.body.toString().slice(0, 200));
    assert.match(r.head, /Content-Length: \d+/i);
    assert.doesNotMatch(r.head, /chunked/i);
    assert.equal(r.headers['content-disposition'], `attachment; filename="${P}-0.10.bin"`);
    assert.ok(r.body.equals(files[`${P}-0.10`]), 'the catalogue file of SELF_OTA-0.10');
    assert.equal(r.headers['x-md5'], createHash('md5').update(r.body).digest('hex'));
    // Signed with the key SELF_OTA-0.1 trusts, as the device's Updater checks it.
    const key = service.catalogue.list({ product: P }).find((e) => e.name === `${P}-0.1`)!.trusts[0];
    assert.ok(verifyImage('esp8266-rsa', r.body, createPublicKey(service.keyring.exportPublic(key).pem)).ok);
    // Who asked: the MAC it claims, not authenticated, no certificate serial.
    const start = events.find((e) => e.type === 'download-start')!;
    assert.deepEqual([start.deviceId, start.authenticated, start.certificateSerial], ['84f3eb000101', false, undefined]);

    const newest = await ask('0.10');
    assert.equal(newest.status, 304);
    assert.equal(newest.body.length, 0);
    assert.match(events.find((e) => e.type === 'not-modified')?.reason ?? '', /no image of SELF_OTA newer than 0\.10/);
  });

  it('keeps the trust rule: a newer image signed with a key the running one does not trust is not offered', async () => {
    await runFirmwareAction(service, 'rotate', { payload: 'esp8266-rsa' });
    try {
      await service.publish({ data: build(), platform: 'esp8266', product: P, version: '0.11' });
      const r = await ask('0.10');
      assert.equal(r.status, 304);
      assert.match(events.find((e) => e.type === 'not-modified')?.reason ?? '', /SELF_OTA-0\.10 can verify/);
    } finally {
      await service.catalogue.remove(`${P}-0.11`);
    }
  });

  it('a bare version whose image is not in the catalogue gets 404: the keys it trusts are unknown', async () => {
    const r = await ask('0.3');
    assert.equal(r.status, 404);
    assert.match(r.body.toString(), /current image SELF_OTA-0\.3 is not in the catalogue/);
  });

  it('a group with its own bare-version product: the device of that group (by its claimed MAC) gets that product', async () => {
    await service.setGroups(GARAGE_MAC, ['garage']);
    const set = await runFirmwareAction(service, 'bare-product', { payload: { group: 'garage', product: Q } });
    assert.deepEqual(set, { action: 'bare-product', group: 'garage', product: Q });
    try {
      const r = await ask('0.1', GARAGE_MAC);
      assert.equal(r.status, 200);
      assert.ok(r.body.equals(files[`${Q}-0.2`]), 'GARAGE_OTA-0.2');
      // The others keep the server's product.
      assert.ok((await ask('0.1')).body.equals(files[`${P}-0.10`]));
      // The MAC is only a claim: it chose an image, it opens no device file.
      const key = await rawRequest(server!.port, deviceIdentity(store), `GET /fw/84f3eb000202.key HTTP/1.0\r\nHost: localhost\r\nx-ESP8266-STA-MAC: ${GARAGE_MAC}\r\n\r\n`);
      assert.equal(key.status, 403);
    } finally {
      await runFirmwareAction(service, 'bare-product', { payload: { group: 'garage', product: null } });
      await service.setGroups(GARAGE_MAC, []);
    }
    // Cleared: the server's product again.
    assert.ok((await ask('0.1', GARAGE_MAC)).body.equals(files[`${P}-0.10`]));
  });

  it('with no product for bare versions: 400 naming the setting', async () => {
    await start({ images: service.imageSource() });
    try {
      const r = await ask('0.1');
      assert.equal(r.status, 400);
      assert.match(r.body.toString(), /version 0\.1 names no product .*"Product for bare versions"/);
    } finally {
      await start();
    }
  });

  it('with clientCertificates required: refused at the TLS handshake, as before', async () => {
    await start({ clientCertificates: 'required' });
    try {
      await assert.rejects(ask('0.1'));
      await until(() => events.some((e) => e.type === 'rejected' && e.status === 0));
      assert.ok(!events.some((e) => e.type === 'check'), 'no HTTP request got through');
    } finally {
      await start();
    }
  });

  it("says yes to BearSSL's probeMaxFragmentLength(1024) as the device judges it (and the probe can say no)", async () => {
    assert.equal(await probeMaxFragmentLength(server!.port, 1024), true);
    assert.equal(await probeMaxFragmentLength(server!.port, 512), true);
    // A control: a server that speaks TLS 1.3 only has no TLS 1.2 ServerHello to echo it in.
    const id = store.identityFiles('server', 'localhost');
    const only13 = tls.createServer({ key: readFileSync(id.privateKey), cert: readFileSync(id.certificate), minVersion: 'TLSv1.3' });
    only13.on('tlsClientError', () => undefined);
    await new Promise<void>((r) => only13.listen(0, '127.0.0.1', r));
    try {
      assert.equal(await probeMaxFragmentLength((only13.address() as { port: number }).port, 1024), false);
    } finally {
      await new Promise((r) => only13.close(r));
    }
  });

  it("acknowledges BearSSL's max_fragment_length 1024 probe and answers the same request over it (openssl s_client, no certificate)", async () => {
    const ca = path.join(tmp.path, 'ca.crt');
    writeFileSync(ca, store.caCertificatePem);
    const out = await new Promise<string>((resolve, reject) => {
      const child = spawn('openssl', ['s_client', '-connect', `127.0.0.1:${server!.port}`, '-servername', 'localhost', '-tls1_2', '-maxfraglen', '1024', '-tlsextdebug', '-ign_eof', '-CAfile', ca]);
      let text = '';
      child.stdout.on('data', (c: Buffer) => (text += c.toString('latin1')));
      child.stderr.on('data', (c: Buffer) => (text += c.toString('latin1')));
      child.on('error', reject);
      child.on('close', () => resolve(text));
      child.stdin.end(selfOtaRequest(server!.port, '0.10'));
    });
    assert.match(out, /TLS server extension "max fragment length"/);
    assert.match(out, /Verify return code: 0 \(ok\)/);
    assert.match(out, /HTTP\/1\.1 304 Not Modified/);
  });
});

async function until(ok: () => boolean, ms = 5_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!ok()) {
    if (Date.now() > deadline) throw new Error('timed out');
    await new Promise((r) => setTimeout(r, 20));
  }
}
