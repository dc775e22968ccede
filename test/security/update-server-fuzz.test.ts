import { strict as assert } from 'node:assert';
import { createHash, randomBytes } from 'node:crypto';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import * as path from 'node:path';
import * as tls from 'node:tls';
import fc from 'fast-check';
import { CaStore } from '../../lib/pki/ca-store';
import { FirmwareService } from '../../lib/firmware/firmware-service';
import { startUpdateServer, RunningUpdateServer, UpdateEvent } from '../../lib/firmware/update-server';
import { tempDir } from '../support/temp-dir';
import { deviceIdentity, localServerOptions } from '../support/update-server';
import type { ClientIdentity } from '../support/raw-https';
import { recordAttack } from './support/attack-tally';

// Property-based fuzzing of the update server's HTTP handling, over real TLS with a device
// certificate: request lines, paths, query values and headers (the x-ESP8266-* ones with
// random values among them). Whatever arrives, the server answers with a status line or closes,
// keeps serving, never sends another device's files or the CA's key, never a stack trace, and
// leaves the CA and firmware folders as they were.

const A = '84f3eb0000a1';
const B = '84f3eb0000b2';
const OLD = 'FUZZ_BOARD-1.0.0';
const NEW = 'FUZZ_BOARD-1.1.0';
const SEED = 1717;
const RUNS = 1000;

/** sha256 of every file under `dir`, by relative path. */
function snapshot(dir: string): Record<string, string> {
  const out: Record<string, string> = {};
  const walk = (d: string): void => {
    for (const name of readdirSync(d)) {
      const p = path.join(d, name);
      if (statSync(p).isDirectory()) walk(p);
      else out[path.relative(dir, p)] = createHash('sha256').update(readFileSync(p)).digest('hex');
    }
  };
  walk(dir);
  return out;
}

/** Sends `bytes` on a fresh TLS connection and reads what comes back: until the server closes, 150 ms of quiet after an answer, or 2 s. */
function exchange(port: number, id: ClientIdentity, bytes: Buffer): Promise<Buffer> {
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    const socket = tls.connect({ host: '127.0.0.1', port, ca: id.ca, cert: id.cert, key: id.key, servername: 'localhost' });
    let quiet: NodeJS.Timeout | undefined;
    const done = (): void => {
      clearTimeout(quiet);
      clearTimeout(limit);
      socket.destroy();
      resolve(Buffer.concat(chunks));
    };
    const limit = setTimeout(done, 2_000);
    socket.on('secureConnect', () => socket.write(bytes));
    socket.on('data', (c: Buffer) => {
      chunks.push(c);
      clearTimeout(quiet);
      quiet = setTimeout(done, 150);
    });
    socket.on('error', () => undefined);
    socket.on('close', done);
  });
}

// ---- generators ------------------------------------------------------------------------

const ESP_HEADERS = [
  'x-ESP8266-STA-MAC',
  'x-ESP8266-AP-MAC',
  'x-ESP8266-free-space',
  'x-ESP8266-sketch-size',
  'x-ESP8266-sketch-md5',
  'x-ESP8266-chip-size',
  'x-ESP8266-sdk-version',
  'x-ESP8266-mode',
  'x-ESP8266-version',
  'x-ESP32-STA-MAC',
  'x-ESP32-free-space',
  'x-ESP32-mode',
  'x-ESP32-version',
];
const OTHER_HEADERS = ['Host', 'Connection', 'Content-Length', 'Transfer-Encoding', 'Expect', 'Upgrade', 'Range', 'If-None-Match', 'Cookie', 'X-Forwarded-For'];

/** Mostly printable ASCII; now and then any code point (control characters, CR, LF, NUL, non-ASCII). */
const text = (maxLength: number): fc.Arbitrary<string> =>
  fc.oneof({ weight: 4, arbitrary: fc.string({ maxLength }) }, { weight: 1, arbitrary: fc.string({ maxLength, unit: 'binary' }) }, { weight: 1, arbitrary: fc.string({ maxLength, unit: 'grapheme' }) });
const imageName = fc.oneof(
  fc.constantFrom(OLD, NEW, '', 'FUZZ_BOARD-0.9.0', 'OTHER-1.0.0', '../../ca/ca.key', `${OLD}%00`, 'FUZZ_BOARD-1.0.0.a'),
  fc.stringMatching(/^[A-Z_]{1,12}-[0-9]{1,3}(\.[0-9]{1,3}){0,4}[a-z]?$/),
  text(60),
);
const mac = fc.oneof(
  fc.constantFrom(A, B, '84:F3:EB:00:00:A1', '84:F3:EB:00:00:B2', 'ff:ff:ff:ff:ff:ff', ''),
  fc.stringMatching(/^[0-9A-Fa-f]{2}(:[0-9A-Fa-f]{2}){5}$/),
  text(20),
);
const headerValue = fc.oneof(
  text(40),
  imageName,
  mac,
  fc.constantFrom('chunked', 'close', 'keep-alive', '100-continue', 'websocket', 'spiffs', 'sketch', '0', '-1', '99999999999999999999', 'bytes=0-10'),
  fc.integer().map(String),
  fc.stringMatching(/^[0-9a-f]{32}$/),
);
const header = fc.oneof(
  { weight: 8, arbitrary: fc.tuple(fc.constantFrom(...ESP_HEADERS), headerValue) },
  { weight: 4, arbitrary: fc.tuple(fc.constantFrom(...OTHER_HEADERS), headerValue) },
  { weight: 2, arbitrary: fc.tuple(fc.stringMatching(/^[A-Za-z0-9!#$%&'*+.^_`|~-]{1,20}$/), headerValue) },
  { weight: 1, arbitrary: fc.tuple(text(20), text(20)) },
);
const segment = fc.oneof(
  fc.constantFrom('fw', 'update', '..', '.', '', '%2e%2e', '%2f', '%5c', '%ZZ', '%', '%00', '%c0%ae', '%252e', '\\', 'config.json', 'ca.crt', 'firmware.bin', `${A}.key`, `${A}.crt`, `${B}.key`, `${B}.crt`, 'ca.key', 'crl.pem', 'journal.jsonl', 'ｆｗ'),
  fc.stringMatching(/^[A-Za-z0-9._~%-]{1,12}$/),
  text(12).map(encodeURIComponent),
  fc.string({ maxLength: 12, unit: 'grapheme' }).map(encodeURIComponent),
);
/** Now and then a segment as raw text (spaces, control characters: refused by the parser). */
const rawSegment = fc.oneof({ weight: 12, arbitrary: segment }, { weight: 1, arbitrary: text(12) });
const query = fc.oneof(
  { weight: 2, arbitrary: fc.constant('') },
  { weight: 1, arbitrary: imageName.map((v) => `?curimage=${v}`) },
  { weight: 6, arbitrary: imageName.map((v) => `?curimage=${encodeURIComponent(v)}`) },
  { weight: 1, arbitrary: fc.tuple(text(10), text(10)).map(([k, v]) => `?${encodeURIComponent(k)}=${encodeURIComponent(v)}`) },
  { weight: 1, arbitrary: fc.tuple(imageName, imageName).map(([a, b]) => `?curimage=${encodeURIComponent(a)}&curimage=${encodeURIComponent(b)}`) },
);
const target = fc.oneof(
  { weight: 4, arbitrary: fc.tuple(fc.array(rawSegment, { minLength: 1, maxLength: 5 }), query).map(([s, q]) => `/${s.join('/')}${q}`) },
  { weight: 4, arbitrary: fc.tuple(fc.constantFrom('/fw/firmware.bin', '/update', '/fw/config.json', `/fw/${B}.key`, `/fw/${A}.key`, '/fw/ca.crt'), query).map(([p, q]) => p + q) },
  { weight: 1, arbitrary: fc.constantFrom('*', 'http://localhost/fw/config.json', `http://evil.example/fw/${B}.key`, 'localhost:443', '', '//fw/config.json') },
  { weight: 1, arbitrary: text(40) },
);
const method = fc.oneof(
  { weight: 12, arbitrary: fc.constant('GET') },
  { weight: 1, arbitrary: fc.constantFrom('HEAD', 'POST', 'PUT', 'DELETE', 'OPTIONS', 'CONNECT', 'TRACE', 'PRI', 'get', 'PATCH') },
  { weight: 1, arbitrary: fc.oneof(fc.stringMatching(/^[A-Z]{1,10}$/), text(8)) },
);
const version = fc.oneof({ weight: 12, arbitrary: fc.constantFrom('HTTP/1.0', 'HTTP/1.1') }, { weight: 1, arbitrary: fc.constantFrom('HTTP/0.9', 'HTTP/2.0', 'HTTP/1.2', 'http/1.1', '', 'HTTP/1.1 extra') }, { weight: 1, arbitrary: text(10) });
const request = fc
  .record({
    method,
    target,
    version,
    headers: fc.array(header, { maxLength: 8 }),
    host: fc.nat(9),
    close: fc.nat(9),
    eol: fc.oneof({ weight: 12, arbitrary: fc.constant('\r\n') }, { weight: 1, arbitrary: fc.constantFrom('\n', '\r', '\r\r\n', '\n\r') }),
    body: fc.oneof({ weight: 8, arbitrary: fc.constant('') }, { weight: 1, arbitrary: text(60) }),
  })
  .map((r) => {
    const lines = [`${r.method} ${r.target} ${r.version}`.trimEnd()];
    if (r.host < 9) lines.push('Host: localhost');
    for (const [k, v] of r.headers) lines.push(`${k}: ${v}`);
    if (r.close < 7) lines.push('Connection: close');
    return Buffer.from(lines.join(r.eol) + r.eol + r.eol + r.body, 'utf8');
  });

describe('security: fuzzing the update server over TLS (fast-check, fixed seed)', function () {
  this.timeout(120_000);
  const tmp = tempDir('update-fuzz');
  let store: CaStore;
  let server: RunningUpdateServer;
  const events: UpdateEvent[] = [];
  let secrets: string[];

  before(async () => {
    store = await CaStore.open({ dir: path.join(tmp.path, 'ca') });
    await store.issueServer({ commonName: 'localhost' });
    await store.issueDevice(A);
    await store.issueDevice(B);
    const service = await FirmwareService.open(path.join(tmp.path, 'firmware'));
    for (const name of [OLD, NEW]) await service.publish({ data: Buffer.concat([Buffer.from([0xe9]), randomBytes(20_000)]), platform: 'esp8266', name });
    server = await startUpdateServer({
      ...(await localServerOptions(store)),
      deviceConfig: (id) => service.deviceConfig({ mqttserver: 'broker.local', mqttport: 8883 }, id),
      images: service.imageSource(),
      onEvent: (e) => events.push(e),
      // Requests the fuzzer leaves unfinished end sooner than with the default deadline.
      headersTimeoutMs: 1_500,
    });
    const line = (file: string): string => readFileSync(file, 'utf8').split('\n')[1];
    secrets = [line(path.join(store.deviceFilesDir, `${B}.key`)), line(path.join(store.deviceFilesDir, `${B}.crt`)), line(path.join(store.dir, 'ca.key'))];
    await store.idle();
  });
  after(async () => {
    await server?.close();
    await store?.idle();
    tmp.remove();
  });

  it(`answers ${RUNS} generated requests with a status line or a close, and leaks nothing`, async () => {
    const folders = [path.join(tmp.path, 'ca'), path.join(tmp.path, 'firmware')];
    const before = folders.map(snapshot);
    const id = deviceIdentity(store, A);
    const statuses = new Map<string, number>();
    let runs = 0;
    await fc.assert(
      fc.asyncProperty(request, async (bytes) => {
        runs++;
        const answer = await exchange(server.port, id, bytes);
        const textOf = answer.toString('latin1');
        const status = /^HTTP\/1\.[01] (\d{3}) /.exec(textOf)?.[1];
        statuses.set(status ?? 'closed', (statuses.get(status ?? 'closed') ?? 0) + 1);
        // A status line, or nothing at all (the connection closed).
        assert.ok(answer.length === 0 || status !== undefined, `not an HTTP answer: ${JSON.stringify(textOf.slice(0, 80))}`);
        for (const s of secrets) assert.ok(!textOf.includes(s), "another device's file or the CA's key");
        assert.doesNotMatch(textOf, /\n\s+at [^\n]+:\d+|<html|node_modules/i, 'a stack trace or an HTML page');
        assert.ok(!textOf.includes(tmp.path) && !textOf.includes(process.cwd()), 'a path of this machine');
        // 503 (download cap, request bound) and 505 (HTTP/0.9) are refusals; a 500 is only ever our short text.
        if (status === '500') assert.match(textOf, /\r\n\r\ninternal error: [^\n]*\n$/, 'a 500 with more than a short reason');
      }),
      { seed: SEED, numRuns: RUNS },
    );
    // Still serving, nothing stored changed, and no event names a file of B's as sent.
    assert.equal((await exchange(server.port, id, Buffer.from('GET /fw/config.json HTTP/1.0\r\nHost: localhost\r\n\r\n'))).toString().split(' ')[1], '200');
    assert.deepEqual(folders.map(snapshot), before);
    assert.ok(!events.some((e) => e.type === 'file' && e.path.includes(B)));
    recordAttack('update-server', 'refused', runs);
    console.log(`      fuzz: ${runs} requests, answers ${[...statuses].sort().map(([s, n]) => `${s}×${n}`).join(' ')}`);
  });
});
