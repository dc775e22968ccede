import { strict as assert } from 'node:assert';
import { createHash, randomBytes } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import * as path from 'node:path';
import { CaStore } from '../../lib/pki/ca-store';
import { startUpdateServer, RunningUpdateServer, UpdateEvent, ImageOffer, ImageRequest } from '../../lib/firmware/update-server';
import { tempDir } from '../support/temp-dir';
import { deviceIdentity, localServerOptions } from '../support/update-server';
import { rawRequest } from '../support/raw-https';

// Arduino-ESP32's HTTPUpdate (libraries/HTTPUpdate/src/HTTPUpdate.cpp, handleUpdate, core
// 3.x): `httpUpdate.update(client, url, currentVersion)` sends an HTTP/1.0 GET with
// User-Agent: ESP32-http-Update, Cache-Control: no-cache and the x-ESP32-* headers in the order
// it adds them (no Chip-ID; sketch-md5 and sketch-sha256 when the core can compute them),
// through HTTPClient (Host with the port, then User-Agent, then Connection: close). The server
// reads them as it reads the x-ESP8266-* ones (docs/wire-contract.md).

const DEV = '24a1600000e1';
const OLD = 'ESP32_HTTPUPDATE-1.0.0';
const NEW = 'ESP32_HTTPUPDATE-1.1.0';

function esp32Request(port: number, p: { version?: string; mode?: 'sketch' | 'spiffs'; md5?: string; freeSpace?: number; range?: string }): string {
  return [
    'GET /update HTTP/1.0',
    `Host: localhost:${port}`,
    'User-Agent: ESP32-http-Update',
    'Connection: close',
    'Cache-Control: no-cache',
    'x-ESP32-STA-MAC: 24:A1:60:00:00:E1',
    'x-ESP32-AP-MAC: 24:A1:60:00:00:E2',
    `x-ESP32-free-space: ${p.freeSpace ?? 1_310_720}`,
    'x-ESP32-sketch-size: 719968',
    `x-ESP32-sketch-md5: ${p.md5 ?? '55ceae8bfcc2c19e48a2c1005afc57af'}`,
    'x-ESP32-sketch-sha256: F23CF9FA59D32774DC8AFF17398C9064B7B6C54EE0B56881FF0AF2783C3AD745',
    'x-ESP32-chip-size: 4194304',
    'x-ESP32-sdk-version: v5.1.4',
    `x-ESP32-mode: ${p.mode ?? 'sketch'}`,
    ...(p.version ? [`x-ESP32-version: ${p.version}`] : []),
    ...(p.range ? [`Range: ${p.range}`] : []),
    '',
    '',
  ].join('\r\n');
}

describe("Arduino-ESP32 HTTPUpdate's request (x-ESP32-* headers, real HTTPS)", function () {
  this.timeout(60_000);
  const tmp = tempDir('update-esp32-httpupdate');
  let store: CaStore;
  let server: RunningUpdateServer;
  let data: Buffer;
  let offer: ImageOffer;
  const asked: ImageRequest[] = [];
  const events: UpdateEvent[] = [];
  /** `device` null: no client certificate. */
  const ask = (p: Parameters<typeof esp32Request>[1], device: string | null = DEV): ReturnType<typeof rawRequest> =>
    rawRequest(server.port, deviceIdentity(store, device ?? undefined), esp32Request(server.port, p));

  before(async () => {
    store = await CaStore.open({ dir: path.join(tmp.path, 'ca') });
    await store.issueServer({ commonName: 'localhost' });
    await store.issueDevice(DEV);
    data = Buffer.concat([Buffer.from([0xe9]), randomBytes(50_000)]);
    const file = path.join(tmp.path, `${NEW}.bin`);
    writeFileSync(file, data);
    offer = { name: NEW, size: data.length, sha256: createHash('sha256').update(data).digest('hex'), md5: createHash('md5').update(data).digest('hex'), path: file };
    server = await startUpdateServer({
      ...(await localServerOptions(store)),
      clientCertificates: 'optional',
      deviceConfig: () => ({}),
      images: {
        next: (request) => {
          asked.push(request);
          if (request.currentImage === OLD && request.kind === 'app') return { kind: 'offer', image: offer };
          return { kind: 'none', reason: 'up-to-date', detail: `nothing newer than ${request.currentImage} (${request.kind})` };
        },
      },
      onEvent: (e) => events.push(e),
    });
  });
  beforeEach(() => {
    asked.length = 0;
    events.length = 0;
  });
  after(async () => {
    await server.close();
    tmp.remove();
  });

  it('reads x-ESP32-version, -mode and -free-space, and the device from its certificate: 200 with the image, then 304', async () => {
    const r = await ask({ version: OLD });
    assert.equal(r.status, 200);
    assert.ok(r.body.equals(data));
    assert.equal(r.headers['content-length'], String(data.length));
    assert.equal(r.headers['x-md5'], offer.md5);
    assert.equal(r.headers.etag, `"${offer.sha256}"`);
    assert.deepEqual(asked, [{ currentImage: OLD, deviceId: DEV, kind: 'app', freeSpace: 1_310_720 }]);
    const start = events.find((e) => e.type === 'download-start')!;
    assert.deepEqual([start.deviceId, start.authenticated], [DEV, true]);

    const newest = await ask({ version: NEW });
    assert.equal(newest.status, 304);
    assert.match(events.find((e) => e.type === 'not-modified')?.reason ?? '', /nothing newer than ESP32_HTTPUPDATE-1\.1\.0 \(app\)/);
  });

  it('x-ESP32-mode: spiffs asks for the filesystem image', async () => {
    const r = await ask({ version: OLD, mode: 'spiffs' });
    assert.equal(r.status, 304);
    assert.equal(asked[0].kind, 'spiffs');
  });

  it('x-ESP32-sketch-md5 equal to the offered image: 304, it runs these bytes already', async () => {
    const r = await ask({ version: OLD, md5: offer.md5.toUpperCase() });
    assert.equal(r.status, 304);
    assert.equal(events.find((e) => e.type === 'not-modified')?.reason, 'already running this image');
  });

  it('without a client certificate (optional mode): the MAC of x-ESP32-STA-MAC, not authenticated', async () => {
    const r = await ask({ version: OLD }, null);
    assert.equal(r.status, 200);
    assert.equal(asked[0].deviceId, DEV);
    const start = events.find((e) => e.type === 'download-start')!;
    assert.deepEqual([start.deviceId, start.authenticated, start.certificateSerial], [DEV, false, undefined]);
  });

  it('no x-ESP32-version (update() without a version): 400, as for the ESP8266', async () => {
    const r = await ask({});
    assert.equal(r.status, 400);
    assert.deepEqual(asked, []);
  });
});
