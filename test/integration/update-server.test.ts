import { strict as assert } from 'node:assert';
import { createHash, randomBytes } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import * as path from 'node:path';
import { opensslEspHandshake } from '../support/openssl';
import { CaStore } from '../../lib/pki/ca-store';
import { startUpdateServer, RunningUpdateServer, UpdateEvent, ImageSource, ImageOffer, UpdateServerOptions } from '../../lib/firmware/update-server';
import { withDownloadPolicy } from '../../lib/firmware/download-policy';
import { tempDir } from '../support/temp-dir';
import { deviceIdentity, localServerOptions } from '../support/update-server';
import { rawRequest, esp8266UpdateRequest, ClientIdentity } from '../support/raw-https';

const A = '84f3eb0000a1';
const B = '84f3eb0000b2';
const OLD = 'ESP8266_WEMOS_D1MINIPRO-00.00.07.a';
/** A device on BIG_FROM is offered a 24 MB image: more than loopback socket buffers hold, so a stalled client really stalls. */
const BIG_FROM = 'ESP8266_WEMOS_D1MINIPRO-00.00.06.a';
/** A device on CHANGED_FROM is offered a file whose bytes no longer match the catalogue's SHA-256. */
const CHANGED_FROM = 'ESP8266_WEMOS_D1MINIPRO-00.00.05.a';
const NEW = 'ESP8266_WEMOS_D1MINIPRO-00.00.08.f';

describe('the HTTPS update server with real client certificates', function () {
  this.timeout(60_000);
  const tmp = tempDir('update');
  let store: CaStore;
  let server: RunningUpdateServer;
  let image: Buffer;
  let offer: ImageOffer;
  let bigOffer: ImageOffer;
  const events: UpdateEvent[] = [];
  const id = (device?: string): ClientIdentity => deviceIdentity(store, device);
  const get = (device: string | undefined, p: string, extra = ''): ReturnType<typeof rawRequest> =>
    rawRequest(server.port, id(device), `GET ${p} HTTP/1.0\r\nHost: localhost\r\n${extra}Connection: close\r\n\r\n`);

  /** The two-version catalogue of this test: OLD → NEW, NEW is the latest. */
  const images: ImageSource = {
    next: ({ currentImage, freeSpace }) => {
      if (!/^[A-Za-z0-9_.]+-[0-9.]+[a-z]*$/.test(currentImage)) return { kind: 'none', reason: 'bad-request', detail: `malformed image name ${JSON.stringify(currentImage.slice(0, 60))}` };
      if (currentImage === NEW) return { kind: 'none', reason: 'up-to-date', detail: 'already the newest' };
      if (currentImage === BIG_FROM) return { kind: 'offer', image: bigOffer };
      if (currentImage === CHANGED_FROM) return { kind: 'offer', image: { ...offer, path: path.join(tmp.path, 'changed.bin') } };
      if (currentImage !== OLD) return { kind: 'none', reason: 'unknown-image', detail: `unknown image ${currentImage}` };
      if (freeSpace !== undefined && freeSpace < offer.size) return { kind: 'none', reason: 'too-large', detail: `image of ${offer.size} bytes does not fit the reported free space ${freeSpace}` };
      return { kind: 'offer', image: offer };
    },
  };

  async function start(overrides: Partial<UpdateServerOptions> = {}): Promise<void> {
    await server?.close();
    server = await startUpdateServer({
      ...(await localServerOptions(store)),
      deviceConfig: (device) => ({ mqttserver: 'broker.local', mqttport: 8883, statusinterval: 60000, ...(device === A ? { statusinterval: 15000 } : {}) }),
      images,
      onEvent: (e) => events.push(e),
      ...overrides,
    });
  }

  before(async () => {
    store = await CaStore.open({ dir: path.join(tmp.path, 'ca') });
    await store.issueServer({ commonName: 'localhost' });
    await store.issueDevice(A);
    await store.issueDevice(B);
    image = Buffer.concat([Buffer.from([0xe9]), randomBytes(300_000)]);
    const file = path.join(tmp.path, `${NEW}.bin`);
    writeFileSync(file, image);
    offer = { name: NEW, size: image.length, sha256: createHash('sha256').update(image).digest('hex'), md5: createHash('md5').update(image).digest('hex'), path: file };
    const big = Buffer.alloc(24 * 1024 * 1024, 0x5a);
    big[0] = 0xe9;
    writeFileSync(path.join(tmp.path, 'big.bin'), big);
    const changed = Buffer.from(image);
    changed[1000] ^= 0xff;
    writeFileSync(path.join(tmp.path, 'changed.bin'), changed);
    bigOffer = { name: NEW, size: big.length, sha256: createHash('sha256').update(big).digest('hex'), md5: createHash('md5').update(big).digest('hex'), path: path.join(tmp.path, 'big.bin') };
    await start();
  });
  beforeEach(() => (events.length = 0));
  after(async () => {
    await server.close();
    tmp.remove();
  });

  it("gives a device its own config (with its overrides), certificate and key, and never another device's", async () => {
    const config = await get(A, '/fw/config.json');
    assert.equal(config.status, 200);
    assert.deepEqual(JSON.parse(config.body.toString()), { mqttserver: 'broker.local', mqttport: 8883, statusinterval: 15000 });
    assert.equal(JSON.parse((await get(B, '/fw/config.json')).body.toString()).statusinterval, 60000);
    const crt = await get(A, `/fw/${A}.crt`);
    assert.equal(crt.body.toString(), readFileSync(path.join(store.deviceFilesDir, `${A}.crt`), 'utf8'));
    assert.equal((await get(A, `/fw/${A}.key`)).status, 200);
    assert.equal((await get(A, '/fw/ca.crt')).body.toString(), store.caCertificatePem);
    const stolen = await get(A, `/fw/${B}.key`);
    assert.equal(stolen.status, 403);
    assert.match(stolen.body.toString(), new RegExp(`only for the device whose certificate says so`));
    const audit = events.find((e) => e.type === 'rejected' && e.status === 403)!;
    assert.equal(audit.deviceId, A);
    assert.match(audit.certificateSerial!, /^[0-9A-F]+$/);
  });

  it('refuses a client without a certificate and one with a certificate of another CA', async () => {
    await assert.rejects(get(undefined, '/fw/config.json'), /certificate|socket hang up|ECONNRESET|no HTTP response|alert/);
    const foreign = await CaStore.open({ dir: path.join(tmp.path, 'foreign') });
    await foreign.issueDevice(A);
    const foreignId = { ca: store.caCertificatePem, cert: readFileSync(path.join(foreign.deviceFilesDir, `${A}.crt`), 'utf8'), key: readFileSync(path.join(foreign.deviceFilesDir, `${A}.key`), 'utf8') };
    await assert.rejects(rawRequest(server.port, foreignId, 'GET /fw/config.json HTTP/1.0\r\n\r\n'), /certificate|socket hang up|ECONNRESET|no HTTP response|alert/);
  });

  it('answers 304 at the latest image, and the next image byte for byte with Content-Length and x-MD5', async () => {
    assert.equal((await get(A, `/fw/firmware.bin?curimage=${NEW}`)).status, 304);
    const r = await get(A, `/fw/firmware.bin?curimage=${OLD}`);
    assert.equal(r.status, 200);
    assert.ok(r.body.equals(image), 'the image arrives byte for byte');
    assert.equal(r.headers['content-length'], String(image.length));
    assert.equal(r.headers['x-md5'], offer.md5);
    assert.equal(r.headers['transfer-encoding'], undefined, 'never chunked');
    // Progress (test/integration/update-server-progress.test.ts) comes between start and complete.
    const types = events.map((e) => e.type).filter((t) => t !== 'download-progress');
    assert.deepEqual(types, ['check', 'not-modified', 'check', 'download-start', 'download-complete']);
    assert.equal(events[events.length - 2].type, 'download-progress');
    const done = events[events.length - 1];
    assert.deepEqual([done.deviceId, done.image, done.sha256, done.bytes], [A, NEW, offer.sha256, image.length]);
  });

  it('serves the exact ESP8266httpUpdate request (HTTP/1.0, x-ESP8266-* headers) on firmware.bin and /update', async () => {
    const viaQuery = await rawRequest(server.port, id(A), esp8266UpdateRequest(`/fw/firmware.bin?curimage=${OLD}`, { mac: '84:F3:EB:00:00:A1' }));
    assert.equal(viaQuery.status, 200);
    assert.ok(viaQuery.body.equals(image));
    assert.match(viaQuery.head, /^HTTP\/1\.1 200/);
    const viaHeader = await rawRequest(server.port, id(A), esp8266UpdateRequest('/update', { mac: '84:F3:EB:00:00:A1', version: OLD }));
    assert.equal(viaHeader.status, 200);
    assert.equal(viaHeader.headers['x-md5'], offer.md5);
    const latest = await rawRequest(server.port, id(A), esp8266UpdateRequest('/update', { mac: '84:F3:EB:00:00:A1', version: NEW }));
    assert.equal(latest.status, 304);
    const running = await rawRequest(server.port, id(A), esp8266UpdateRequest('/update', { mac: '84:F3:EB:00:00:A1', version: OLD, sketchMd5: offer.md5 }));
    assert.equal(running.status, 304, 'a device already running these bytes gets 304');
  });

  it('refuses an image larger than the free space the device reports, with the reason', async () => {
    const r = await rawRequest(server.port, id(A), esp8266UpdateRequest(`/fw/firmware.bin?curimage=${OLD}`, { mac: '84:F3:EB:00:00:A1', freeSpace: 1000 }));
    assert.equal(r.status, 413);
    assert.match(r.body.toString(), /does not fit the reported free space 1000/);
  });

  it('a download policy holds offers back as 304 with its reason, only where the rule had an offer; a failing policy holds back too', async () => {
    const asked: string[] = [];
    await start({
      images: withDownloadPolicy(images, (request, offered) => {
        asked.push(`${request.deviceId}:${offered.name}`);
        if (request.deviceId === B && asked.length > 2) throw new Error('rule bug');
        return request.deviceId === A || 'held until the night';
      }),
    });
    try {
      const a = await get(A, `/fw/firmware.bin?curimage=${OLD}`);
      assert.equal(a.status, 200);
      assert.equal(a.body.length, image.length);
      const held = await get(B, `/fw/firmware.bin?curimage=${OLD}`);
      assert.equal(held.status, 304);
      const failed = await get(B, `/fw/firmware.bin?curimage=${OLD}`);
      assert.equal(failed.status, 304);
      const reasons = JSON.stringify(events.filter((e) => e.deviceId === B).map((e) => e.reason));
      assert.match(reasons, /held until the night/);
      assert.match(reasons, /the download policy failed: rule bug/);
      // Nothing newer: the policy is not asked, the rule's own answer goes out.
      assert.equal((await get(A, `/fw/firmware.bin?curimage=${NEW}`)).status, 304);
      assert.deepEqual(asked, [`${A}:${NEW}`, `${B}:${NEW}`, `${B}:${NEW}`]);
    } finally {
      await start();
    }
  });

  const badPaths: [string, number][] = [
    ['/fw/../ca/ca.key', 404],
    ['/fw/%2e%2e/ca.key', 404],
    ['/fw/..%2f..%2fca.key', 404],
    [`/fw/${B}.key/..`, 404],
    [`/fw/${A.toUpperCase()}.key`, 404],
    ['/fw/firmware.bin?curimage=../../etc/passwd', 400],
    ['/fw/firmware.bin?curimage=', 400],
    ['/fw/firmware.bin?curimage=OTHER_PRODUCT-01.00.00.a', 404],
    ['/fw/firmware.bin', 400],
  ];
  for (const [p, status] of badPaths) {
    it(`answers ${status} to ${p}, and keeps serving`, async () => {
      const r = await get(A, p);
      assert.equal(r.status, status, r.body.toString());
      assert.ok(!r.body.includes('PRIVATE KEY'));
      assert.equal((await get(A, '/fw/config.json')).status, 200);
    });
  }

  it('never serves an image whose file changed on disk after it was published', async () => {
    const r = await get(A, `/fw/firmware.bin?curimage=${CHANGED_FROM}`);
    assert.equal(r.status, 500);
    assert.match(r.body.toString(), /changed on disk since it was published/);
    assert.ok(!events.some((e) => e.type === 'download-start'));
  });

  it('refuses other methods and oversized headers', async () => {
    const post = await rawRequest(server.port, id(A), 'POST /fw/config.json HTTP/1.0\r\nContent-Length: 0\r\n\r\n');
    assert.equal(post.status, 405);
    const huge = await rawRequest(server.port, id(A), `GET /fw/config.json HTTP/1.0\r\nX-Big: ${'a'.repeat(20_000)}\r\n\r\n`);
    assert.equal(huge.status, 431);
  });

  it('answers 503 with Retry-After beyond the download cap, and counts a dropped client as aborted', async () => {
    await start({ maxConcurrentDownloads: 1, retryAfterSeconds: 7 });
    let stalled: import('node:tls').TLSSocket | undefined;
    // The first client reads a little, then stops reading mid-download.
    const first = rawRequest(server.port, id(A), `GET /fw/firmware.bin?curimage=${BIG_FROM} HTTP/1.0\r\n\r\n`, {
      onData: (socket, received) => {
        if (received > 20_000 && !stalled) {
          stalled = socket;
          socket.pause();
        }
      },
    });
    while (!stalled) await new Promise((r) => setTimeout(r, 10));
    const second = await get(B, `/fw/firmware.bin?curimage=${OLD}`);
    assert.equal(second.status, 503);
    assert.equal(second.headers['retry-after'], '7');
    assert.match(second.body.toString(), /1 downloads under way \(limit 1\)/);
    // Now the stalled client dies without a goodbye.
    stalled!.destroy();
    const deadline = Date.now() + 5_000;
    while (!events.some((e) => e.type === 'download-aborted')) {
      if (Date.now() > deadline) throw new Error(`no download-aborted event: ${events.map((e) => e.type).join(',')}`);
      await new Promise((r) => setTimeout(r, 20));
    }
    const aborted = events.find((e) => e.type === 'download-aborted')!;
    assert.ok(aborted.bytes! < bigOffer.size);
    assert.equal(aborted.reason, 'the client went away');
    await first.catch(() => undefined);
    // The slot is free again.
    assert.equal((await get(B, `/fw/firmware.bin?curimage=${OLD}`)).status, 200);
    await start();
  });

  it('optional client certificates: the public endpoints for devices without one, still 403 for keys, refusal for a bad one', async () => {
    await start({ clientCertificates: 'optional' });
    const anon = await rawRequest(server.port, id(undefined), esp8266UpdateRequest(`/fw/firmware.bin?curimage=${OLD}`, { mac: '84:F3:EB:00:00:A1' }));
    assert.equal(anon.status, 200);
    const config = await get(undefined, '/fw/config.json');
    assert.equal(JSON.parse(config.body.toString()).statusinterval, 60000, 'no per-device overrides without a certificate');
    const key = await get(undefined, `/fw/${A}.key`, 'x-ESP8266-STA-MAC: 84:F3:EB:00:00:A1\r\n');
    assert.equal(key.status, 403, 'a header is no identity for secrets');
    const foreign = await CaStore.open({ dir: path.join(tmp.path, 'foreign2') });
    await foreign.issueDevice(A);
    const forged = await rawRequest(server.port, { ca: store.caCertificatePem, cert: readFileSync(path.join(foreign.deviceFilesDir, `${A}.crt`), 'utf8'), key: readFileSync(path.join(foreign.deviceFilesDir, `${A}.key`), 'utf8') }, 'GET /fw/config.json HTTP/1.0\r\n\r\n');
    assert.equal(forged.status, 403);
    assert.match(forged.body.toString(), /client certificate refused/);
    await start();
  });

  it('a HEAD request neither downloads nor takes a download slot', async () => {
    await start({ maxConcurrentDownloads: 1 });
    const head = await rawRequest(server.port, id(A), `HEAD /fw/firmware.bin?curimage=${OLD} HTTP/1.0\r\n\r\n`);
    assert.equal(head.status, 200);
    assert.equal(head.headers['content-length'], String(offer.size));
    assert.equal(head.body.length, 0);
    assert.ok(!events.some((e) => e.type.startsWith('download')));
    assert.equal((await get(B, `/fw/firmware.bin?curimage=${OLD}`)).status, 200);
    await start();
  });

  it('refuses a device revoked while the server runs, at once, and records refused handshakes', async () => {
    const C = '84f3eb0000c3';
    const issued = await store.issueDevice(C);
    const unsubscribe = store.onCrlChange((crl) => server.setCrl(crl));
    try {
      assert.equal((await get(C, '/fw/config.json')).status, 200);
      await store.revoke(issued.record.serial, 'keyCompromise');
      await assert.rejects(get(C, '/fw/config.json'), /revoked|certificate|socket hang up|ECONNRESET|no HTTP response|alert/);
      assert.equal((await get(A, '/fw/config.json')).status, 200, 'others are unaffected');
      const refused = events.find((e) => e.type === 'rejected' && /TLS handshake/.test(e.reason ?? ''));
      assert.ok(refused, `a TLS rejection event: ${JSON.stringify(events.map((e) => [e.type, e.reason]))}`);
    } finally {
      unsubscribe();
    }
  });

  it('speaks TLS 1.2 and echoes max_fragment_length 512 (what ESP8266 BearSSL asks for)', async () => {
    const files = { cert: path.join(store.deviceFilesDir, `${A}.crt`), key: path.join(store.deviceFilesDir, `${A}.key`), ca: path.join(store.deviceFilesDir, 'ca.crt') };
    const out = await opensslEspHandshake(server.port, files, 'GET /fw/config.json HTTP/1.0\r\n\r\n');
    assert.match(out, /Protocol\s*: TLSv1\.2/);
    assert.match(out, /TLS server extension "max fragment length"/);
    assert.match(out, /Verify return code: 0 \(ok\)/);
    assert.match(out, /"mqttserver":"broker.local"/);
  });
});
