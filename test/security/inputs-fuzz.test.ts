import { strict as assert } from 'node:assert';
import { readFileSync } from 'node:fs';
import * as path from 'node:path';
import { createPrivateKey, generateKeyPairSync } from 'node:crypto';
import fc from 'fast-check';
import { CaStore, REVOCATION_REASONS } from '../../lib/pki/ca-store';
import { runIssuerAction, IssuerAction } from '../../lib/issuer/issuer-actions';
import { FirmwareService, PublishInput } from '../../lib/firmware/firmware-service';
import { signImage } from '../../lib/firmware/signing';
import { parseStatus, MAX_STATUS_BYTES } from '../../lib/fleet/telemetry';
import { DeviceRegistry } from '../../lib/fleet/registry';
import { tempDir } from '../support/temp-dir';
import { opensslOk } from '../support/openssl';
import { treeSnapshot } from '../support/fleet-state';
import { recordAttack } from './support/attack-tally';

/**
 * Property-based fuzzing of what flows feed into our domain code: PEM and CSR payloads into
 * the issuer actions, firmware into the catalogue, status JSON into the validator esp-status
 * relies on. Every call either does what it is for or fails with a short, plain Error, and a
 * failed call leaves everything stored exactly as it was (snapshot of every file's hash).
 * Fixed seeds: a failure is reproducible; each area is bounded in runs and in time.
 */

/** Error classes that mean our code tripped over the input instead of refusing it. */
const UNEXPECTED = [TypeError, RangeError, SyntaxError, ReferenceError];
/** What the messages of such slips look like when something wrapped them. */
const SLIP = /Cannot read propert|is not a function|is not iterable|undefined is not|Cannot convert|Maximum call stack|\bat .+\(.*:\d+:\d+\)/;
/** A line of the log: quoted input is cut to about 80 characters (escaped, up to six each). */
const MAX_MESSAGE = 600;

function assertCleanError(err: unknown, context: string): void {
  assert.ok(err instanceof Error, `${context}: threw a non-Error ${describeInput(err)}`);
  for (const C of UNEXPECTED) assert.ok(!(err.constructor === C), `${context}: ${err.constructor.name}: ${err.message.slice(0, 300)}`);
  assert.ok(err.message.length > 0 && err.message.length <= MAX_MESSAGE, `${context}: a message of ${err.message.length} characters: ${err.message.slice(0, 200)}…`);
  assert.doesNotMatch(err.message, SLIP, `${context}: ${err.message.slice(0, 300)}`);
  assert.doesNotMatch(err.message, /\n\s+at /, `${context}: a stack trace in the message`);
}

const describeInput = (v: unknown): string => {
  try {
    // JSON.stringify has called Buffer's toJSON before a replacer sees it.
    const isBufferJson = (x: unknown): x is { data: number[] } => typeof x === 'object' && x !== null && (x as { type?: unknown }).type === 'Buffer' && Array.isArray((x as { data?: unknown }).data);
    const s = JSON.stringify(v, (_k, x: unknown) =>
      isBufferJson(x) ? `<Buffer ${x.data.length}: ${Buffer.from(x.data.slice(0, 8)).toString('hex')}…>` : typeof x === 'string' && x.length > 120 ? `${x.slice(0, 120)}…(${x.length})` : x,
    );
    return (s ?? String(v)).slice(0, 400);
  } catch {
    return typeof v;
  }
};

/** A failure report of bounded size: the default one prints every byte of a megabyte counterexample. */
function shortReport<T>(d: fc.RunDetails<T>): void {
  if (!d.failed) return;
  const err = d.errorInstance as Error | null;
  throw new Error(
    `property failed after ${d.numRuns} runs (seed ${d.seed}, path ${String(d.counterexamplePath)}${d.interrupted ? ', interrupted' : ''}): ${describeInput(d.counterexample)}\n${String(err?.message ?? err).slice(0, 1500)}`,
  );
}
const shortAsyncReport = async <T>(d: fc.RunDetails<T>): Promise<void> => shortReport(d);

// ---- shared arbitraries -----------------------------------------------------------------

const hugeString = fc.constantFrom(70_000, 1_000_000).chain((n) => fc.constantFrom('A', '8', ':', 'é', '\0').map((c) => c.repeat(n)));
const protoKeys = fc.constantFrom('__proto__', 'constructor', 'prototype', 'toString', 'hasOwnProperty', 'valueOf');
/** Values of every type, small and huge. */
const anyValue = fc.oneof(
  { arbitrary: fc.anything({ maxDepth: 2 }), weight: 4 },
  { arbitrary: fc.string(), weight: 2 },
  { arbitrary: hugeString, weight: 1 },
  { arbitrary: protoKeys, weight: 1 },
  { arbitrary: fc.constantFrom(null, undefined, true, 0, -1, NaN, Infinity, 1e308, '', [], {}), weight: 1 },
  { arbitrary: fc.uint8Array({ maxLength: 64 }).map((u) => Buffer.from(u)), weight: 1 },
);
/** Things that look like a MAC, mostly not quite. */
const macish = fc.oneof(
  { arbitrary: fc.constantFrom('84:F3:EB:00:00:C1', '84-f3-eb-00-00-c1', '84f3eb0000c', '84f3eb0000c1z', ' 84f3eb0000c1\n', '84:f3-eb:00:00:c1', '84f3eb0000c1'.repeat(2), '８４f3eb0000c1', 'g4f3eb0000c1', '84:F3:EB:00:00'), weight: 3 },
  { arbitrary: fc.string({ unit: fc.constantFrom(...'0123456789abcdefABCDEF:-. xg'), minLength: 10, maxLength: 20 }), weight: 6 },
  // Rarely a valid one: it is issued (a fresh RSA key each time).
  { arbitrary: fc.stringMatching(/^84f3eb[0-9a-f]{6}$/), weight: 1 },
);
const serialish = (known: () => string[]): fc.Arbitrary<unknown> =>
  fc.oneof(
    { arbitrary: fc.constant(null).map(() => known()).chain((k) => fc.constantFrom(...k)), weight: 3 },
    { arbitrary: fc.stringMatching(/^[0-9A-Fa-f: ]{1,48}$/), weight: 3 },
    { arbitrary: fc.constantFrom('', '0', '00', '-1', '1e3', '0x1000', ' 10 00 ', '10:00', 'FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF'), weight: 2 },
    { arbitrary: fc.integer(), weight: 1 },
    { arbitrary: anyValue, weight: 2 },
  );

// ---- text and DER mutations of a PEM -------------------------------------------------------

type Mutation = { kind: 'flip' | 'delete' | 'insert' | 'dup' | 'truncate' | 'der-byte' | 'der-cut' | 'der-extend'; at: number; len: number; text: string; byte: number };
const mutation: fc.Arbitrary<Mutation> = fc.record({
  kind: fc.constantFrom('flip', 'delete', 'insert', 'dup', 'truncate', 'der-byte', 'der-byte', 'der-cut', 'der-extend'),
  at: fc.nat(),
  len: fc.integer({ min: 1, max: 64 }),
  text: fc.string({ maxLength: 8 }),
  byte: fc.integer({ min: 0, max: 255 }),
});

function mutatePem(pem: string, label: string, muts: Mutation[]): string {
  let text = pem;
  for (const m of muts) {
    if (m.kind.startsWith('der-')) {
      const body = new RegExp(`-----BEGIN ${label}-----([\\s\\S]*?)-----END ${label}-----`).exec(text)?.[1];
      if (!body) continue;
      let der = Buffer.from(body.replace(/\s+/g, ''), 'base64');
      if (der.length === 0) continue;
      const at = m.at % der.length;
      if (m.kind === 'der-byte') der[at] = m.byte;
      if (m.kind === 'der-cut') der = der.subarray(0, at);
      if (m.kind === 'der-extend') der = Buffer.concat([der.subarray(0, at), Buffer.alloc(m.len, m.byte), der.subarray(at)]);
      const b64 = der.toString('base64').replace(/.{64}/g, '$&\n');
      text = `-----BEGIN ${label}-----\n${b64}\n-----END ${label}-----\n`;
      continue;
    }
    const at = text.length ? m.at % text.length : 0;
    if (m.kind === 'flip') text = `${text.slice(0, at)}${String.fromCharCode(text.charCodeAt(at) ^ (1 << m.len % 7))}${text.slice(at + 1)}`;
    if (m.kind === 'delete') text = text.slice(0, at) + text.slice(at + m.len);
    if (m.kind === 'insert') text = text.slice(0, at) + m.text + text.slice(at);
    if (m.kind === 'dup') text = text.slice(0, at + m.len) + text.slice(at, at + m.len) + text.slice(at + m.len);
    if (m.kind === 'truncate') text = text.slice(0, at);
  }
  return text;
}

describe('fuzzing the inputs of the issuer, the catalogue and esp-status (fast-check, fixed seeds)', function () {
  this.timeout(120_000);
  const tmp = tempDir('inputs-fuzz');
  after(() => tmp.remove());

  describe('PEM and CSR payloads into the issuer actions', () => {
    let store: CaStore;
    const CSR_ID = '84f3eb00c5c5';
    let csrPem: string;
    let otherCsrPem: string;

    before(async () => {
      store = await CaStore.open({ dir: path.join(tmp.path, 'ca') });
      for (const id of ['84f3eb0000a1', '84f3eb0000a2']) await store.issueDevice(id);
      await store.issueServer({ commonName: 'broker.local' });
      await store.idle();
      const csr = (name: string, subj: string): string => {
        const base = path.join(tmp.path, name);
        opensslOk(['req', '-new', '-newkey', 'rsa:2048', '-nodes', '-keyout', `${base}.key`, '-out', `${base}.csr`, '-subj', subj]);
        return readFileSync(`${base}.csr`, 'utf8');
      };
      csrPem = csr('device', `/CN=${CSR_ID}`);
      otherCsrPem = csr('other', '/CN=84f3eb00c5c6');
    });
    after(() => store.idle());

    it('each call succeeds as specified or fails with a short plain Error, and a failed one changes nothing stored', async () => {
      const serials = (): string[] => store.list({ includeRevoked: true }).map((r) => r.serial);
      const unrevoked = (): string[] => {
        const valid = store.list().map((r) => r.serial);
        return valid.length ? valid : serials();
      };
      const mutatedCsr = fc
        .tuple(fc.constantFrom(csrPem, otherCsrPem), fc.array(mutation, { minLength: 1, maxLength: 3 }))
        .map(([pem, muts]) => mutatePem(pem, 'CERTIFICATE REQUEST', muts));
      const csrText = fc.oneof(
        { arbitrary: mutatedCsr, weight: 6 },
        { arbitrary: fc.constantFrom(csrPem, otherCsrPem, csrPem.replace(/CERTIFICATE REQUEST/g, 'CERTIFICATE'), csrPem.replace(/\n/g, '\r\n'), `${csrPem}${csrPem}`), weight: 1 },
        { arbitrary: hugeString.map((s) => `-----BEGIN CERTIFICATE REQUEST-----\n${s}\n-----END CERTIFICATE REQUEST-----\n`), weight: 1 },
        { arbitrary: anyValue, weight: 2 },
      );
      const payloads: Record<'csr' | 'device' | 'renew' | 'revoke', fc.Arbitrary<unknown>> = {
        csr: fc.oneof(
          fc.record({ csr: csrText, deviceId: fc.oneof(fc.constant(CSR_ID), macish, anyValue) }),
          fc.record({ csr: csrText, id: macish, mac: anyValue, validityDays: anyValue }, { requiredKeys: ['csr'] }),
          anyValue,
        ),
        device: fc.oneof(macish, fc.record({ id: fc.oneof(macish, anyValue), mac: anyValue, deviceId: anyValue, validityDays: anyValue }, { requiredKeys: [] }), anyValue),
        renew: fc.oneof(
          serialish(serials),
          macish,
          fc.record({ serial: serialish(serials), commonName: fc.oneof(macish, anyValue), id: anyValue, newKey: fc.oneof(fc.constant(false), anyValue), revokeOld: fc.boolean(), validityDays: anyValue }, { requiredKeys: [] }),
        ),
        revoke: fc.oneof(
          serialish(serials),
          fc.record({ serial: serialish(serials), reason: fc.oneof(fc.constantFrom('keyCompromise', 'superseded', 'unspecified'), protoKeys, anyValue) }, { requiredKeys: [] }),
          // A serial that can still be revoked, so the reason is what decides.
          { arbitrary: fc.record({ serial: serialish(unrevoked), reason: fc.oneof(protoKeys, fc.constantFrom('keyCompromise', 'KeyCompromise', 'removeFromCRL', 'certificateHold', ''), anyValue) }), weight: 2 },
        ),
      };
      const call = fc.constantFrom<keyof typeof payloads>('csr', 'device', 'renew', 'revoke').chain((action) => payloads[action].map((payload) => ({ action, payload })));

      // endOnFailure: the store keeps what earlier runs did, so shrinking would replay on another state.
      let refused = 0;
      let succeeded = 0;
      let before = await treeSnapshot(store.dir);
      let records = JSON.stringify(store.list({ includeRevoked: true }));
      await fc.assert(
        fc.asyncProperty(call, async ({ action, payload }) => {
          let failure: unknown;
          let result: Awaited<ReturnType<typeof runIssuerAction>> | undefined;
          try {
            result = await runIssuerAction(store, action as IssuerAction, payload);
          } catch (err) {
            failure = err;
          }
          await store.idle();
          const context = `${action} ${describeInput(payload)}`;
          if (failure !== undefined) {
            refused++;
            assertCleanError(failure, context);
            assert.deepEqual(await treeSnapshot(store.dir), before, `${context}: a refused call changed the CA folder`);
            assert.equal(JSON.stringify(store.list({ includeRevoked: true })), records, `${context}: a refused call changed the records`);
            return;
          }
          succeeded++;
          // A success is what the action is for.
          assert.equal(result!.action, action);
          if (action === 'revoke') {
            assert.ok('revoked' in result! && result.revoked.revokedAt, context);
            assert.ok(Object.keys(REVOCATION_REASONS).includes(String(result.revoked.revocationReason)), `${context}: revoked with reason ${String(result.revoked.revocationReason)}`);
          } else {
            assert.ok('serial' in result! && store.list({ includeRevoked: true }).some((r) => r.serial === result.serial), context);
            assert.match(result.commonName, /^[0-9a-f]{12}$|^broker\.local$/, `${context}: issued for ${result.commonName}`);
          }
          if (action === 'csr') assert.equal('commonName' in result! && result.commonName, CSR_ID, `${context}: only the CSR of the expected device is signed`);
          before = await treeSnapshot(store.dir);
          records = JSON.stringify(store.list({ includeRevoked: true }));
        }),
        { seed: 170017, numRuns: 1500, interruptAfterTimeLimit: 14_000, markInterruptAsFailure: false, endOnFailure: true, asyncReporter: shortAsyncReport },
      );
      recordAttack('inputs', 'refused', refused);
      assert.ok(refused > 100, `only ${refused} refused calls ran`);
      assert.ok(succeeded >= 1, 'some calls were valid');
      // Still a working CA after all that.
      const again = await runIssuerAction(store, 'device', '84f3eb00ffff');
      assert.equal('commonName' in again && again.commonName, '84f3eb00ffff');
    });
  });

  describe('firmware into the catalogue (FirmwareService.publish)', () => {
    let service: FirmwareService;
    let dir: string;
    const P = 'FUZZ_D1MINI';
    const MAX = 64 * 1024;
    let signedOurs: Buffer;
    let signedForeign: Buffer;

    before(async () => {
      dir = path.join(tmp.path, 'firmware');
      service = await FirmwareService.open(dir, { maxImageSize: MAX });
      const key = await service.keyring.current('esp8266-rsa');
      signedOurs = await service.keyring.sign(key.id, Buffer.concat([Buffer.from([0xe9]), Buffer.alloc(4000, 7)]));
      const foreign = generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey;
      signedForeign = signImage('esp8266-rsa', Buffer.concat([Buffer.from([0xe9]), Buffer.alloc(4000, 9)]), createPrivateKey(foreign.export({ type: 'pkcs8', format: 'pem' })));
    });

    it('each publish stores a checked image or fails with a short plain Error, and a failed one changes nothing stored', async () => {
      const body = fc.uint8Array({ minLength: 0, maxLength: 3000 }).map((u) => Buffer.from(u));
      const data = fc.oneof(
        { arbitrary: body.map((b) => Buffer.concat([Buffer.from([0xe9]), b])), weight: 3 },
        { arbitrary: body, weight: 2 },
        { arbitrary: fc.tuple(fc.constantFrom(0x1f, 0x00, 0xea, 0xe8, 0xff), body).map(([m, b]) => Buffer.concat([Buffer.from([m]), b])), weight: 2 },
        { arbitrary: fc.tuple(fc.constantFrom(signedOurs, signedForeign), fc.nat(), fc.integer({ min: 0, max: 255 })).map(([s, at, v]) => { const b = Buffer.from(s); b[at % b.length] = v; return b; }), weight: 3 },
        { arbitrary: fc.constantFrom(signedOurs, signedForeign, Buffer.alloc(0), Buffer.alloc(MAX + 1, 0xe9), Buffer.from([0x1f, 0x8b])), weight: 2 },
        { arbitrary: anyValue, weight: 1 },
      );
      const version = fc.oneof(fc.stringMatching(/^\d{1,3}\.\d{1,3}\.\d{1,3}$/), fc.constantFrom('00.00.01.a', '1.0', '1.0.0-beta', '1..0', '../1.0', '1.0/..', '%2e%2e', '1.0\0'), fc.string({ maxLength: 20 }), anyValue);
      const traversal = fc.constantFrom('../../etc/passwd', '..%2F..%2Fx', 'A/../B', 'A\\..\\B', '/abs', 'P\0X', '....//', 'CON', 'a'.repeat(300), `${P}/../../x`);
      const name = fc.oneof(version.map((v) => `${P}-${typeof v === 'string' ? v : describeInput(v)}`), traversal.map((t) => `${t}-1.0.0`), fc.string({ maxLength: 40 }), anyValue);
      const input = fc.record(
        {
          data,
          platform: fc.oneof({ arbitrary: fc.constant('esp8266'), weight: 6 }, { arbitrary: fc.constantFrom('esp32', 'ESP8266', '', 'esp8266 '), weight: 1 }, { arbitrary: anyValue, weight: 1 }),
          kind: fc.oneof(fc.constantFrom(undefined, 'app', 'app', 'spiffs'), anyValue),
          name,
          product: fc.oneof(fc.constant(P), traversal, fc.string({ maxLength: 40 }), anyValue),
          version,
          channel: fc.oneof(fc.constantFrom(undefined, 'beta', 'stable', 'Beta', '../x', ''), anyValue),
          signWith: fc.oneof(fc.constant(undefined), fc.string({ maxLength: 20 }), anyValue),
          trusts: fc.oneof(fc.constant(undefined), fc.array(fc.string({ maxLength: 20 }), { maxLength: 3 }), anyValue),
          file: fc.oneof(traversal, fc.string({ maxLength: 30 }), anyValue),
        },
        { requiredKeys: ['data'] },
      );

      // endOnFailure: as above, the folder keeps what earlier runs stored.
      let refused = 0;
      let stored = 0;
      let before = await treeSnapshot(dir);
      await fc.assert(
        fc.asyncProperty(input, async (raw) => {
          // Name or product/version, not always both: drop one side now and then.
          const i = { ...raw } as Record<string, unknown>;
          if (i.name !== undefined && (i.product !== undefined || i.version !== undefined) && Buffer.isBuffer(i.data) && i.data.length % 2 === 0) delete i.name;
          let failure: unknown;
          try {
            await service.publish(i as unknown as PublishInput, path.join(tmp.path, 'nowhere'));
          } catch (err) {
            failure = err;
          }
          await service.catalogue.idle();
          await service.keyring.idle();
          const context = `publish ${describeInput(i)}`;
          if (failure !== undefined) {
            refused++;
            assertCleanError(failure, context);
            assert.deepEqual(await treeSnapshot(dir), before, `${context}: a refused publish changed the firmware folder`);
            return;
          }
          stored++;
          before = await treeSnapshot(dir);
        }),
        { seed: 170018, numRuns: 5000, interruptAfterTimeLimit: 14_000, markInterruptAsFailure: false, endOnFailure: true, asyncReporter: shortAsyncReport },
      );
      recordAttack('inputs', 'refused', refused);
      assert.ok(refused > 200, `only ${refused} refused publishes ran`);
      assert.ok(stored >= 1, 'some publishes were valid');
      // What was stored still reads back checked, and nothing lies outside its folders.
      const reopened = await FirmwareService.open(dir, { maxImageSize: MAX });
      for (const e of reopened.catalogue.list()) await reopened.catalogue.read(e);
      assert.equal(reopened.catalogue.list().length, stored);
    });
  });

  describe('status payloads into the validator esp-status relies on (lib/fleet/telemetry.ts parseStatus)', () => {
    const FIELDS = ['uptimemillis', 'maxmillis', 'mqttmillis', 'espname', 'espimage', 'espbuild', 'espip', 'rssi', 'espfreeheap', 'errormessage'];
    const valid = { uptimemillis: 1000, maxmillis: 20, mqttmillis: 5, espname: 'garage', espimage: 'ESP8266_WEMOS_D1MINIPRO-00.00.01.a', espbuild: 'Jan  1 2025', espip: '192.168.1.20', rssi: -60, espfreeheap: 30000, errormessage: '' };

    it('never throws; accepts exactly well-formed reports, rejects the rest with a reason; Object.prototype stays untouched', () => {
      const protoNames = Object.getOwnPropertyNames(Object.prototype).sort();
      const jsonish = fc.jsonValue({ maxDepth: 3 });
      const mutatedValid = fc
        .tuple(
          fc.subarray(FIELDS),
          fc.array(fc.tuple(fc.oneof(fc.constantFrom(...FIELDS), protoKeys, fc.string({ maxLength: 10 })), fc.oneof(jsonish, fc.constantFrom(-1, -151, 1, 1e309, 300, 'x'.repeat(300)))), { maxLength: 4 }),
        )
        .map(([drop, sets]) => {
          const o: Record<string, unknown> = { ...valid };
          for (const f of drop) delete o[f];
          let text = JSON.stringify(o);
          // Keys set in the JSON text, so __proto__ arrives as JSON.parse makes it (an own property).
          for (const [k, v] of sets) text = `${text.slice(0, -1)}${text.length > 2 ? ',' : ''}${JSON.stringify(k)}:${JSON.stringify(v) ?? 'null'}}`;
          return text;
        });
      const deep = fc.integer({ min: 1, max: 20_000 }).map((n) => `${'['.repeat(n)}${']'.repeat(n)}`);
      const deepObject = fc.integer({ min: 1, max: 4000 }).map((n) => `${'{"a":'.repeat(n)}1${'}'.repeat(n)}`);
      const pollution = fc.constantFrom(
        '{"__proto__":{"polluted":1}}',
        `{"__proto__":{"polluted":1},${JSON.stringify(valid).slice(1)}`,
        `{"constructor":{"prototype":{"polluted":1}},${JSON.stringify(valid).slice(1)}`,
        `${JSON.stringify(valid).slice(0, -1)},"__proto__":{"uptimemillis":-1,"polluted":1}}`,
      );
      const payload = fc.oneof(
        { arbitrary: mutatedValid, weight: 5 },
        { arbitrary: jsonish.map((v) => JSON.stringify(v)), weight: 2 },
        { arbitrary: fc.string({ maxLength: 200 }), weight: 1 },
        { arbitrary: fc.uint8Array({ maxLength: 300 }).map((u) => Buffer.from(u)), weight: 1 },
        { arbitrary: mutatedValid.map((t) => Buffer.from(t, 'utf8')), weight: 1 },
        { arbitrary: fc.oneof(deep, deepObject), weight: 1 },
        { arbitrary: pollution, weight: 1 },
        { arbitrary: fc.integer({ min: MAX_STATUS_BYTES - 50, max: MAX_STATUS_BYTES + 50 }).map((n) => `{"espname":"${'x'.repeat(Math.max(0, n - 14))}"}`), weight: 1 },
        { arbitrary: hugeString, weight: 1 },
      );
      let refused = 0;
      const registry = new DeviceRegistry();
      fc.assert(
        fc.property(payload, (p) => {
          const r = parseStatus(p);
          assert.equal(({} as Record<string, unknown>).polluted, undefined);
          assert.deepEqual(Object.getOwnPropertyNames(Object.prototype).sort(), protoNames);
          const size = typeof p === 'string' ? Buffer.byteLength(p) : p.length;
          if (size > MAX_STATUS_BYTES) assert.equal(r.ok, false, `a payload of ${size} bytes was accepted`);
          if (!r.ok) {
            refused++;
            assert.equal(typeof r.reason, 'string');
            assert.ok(r.reason.length > 0 && r.reason.length <= MAX_MESSAGE, r.reason.slice(0, 200));
            return;
          }
          // Accepted: the ten fields of the contract, typed and in range, and nothing else.
          assert.equal(Object.getPrototypeOf(r.value), Object.prototype);
          assert.deepEqual(Object.keys(r.value).sort(), [...FIELDS].sort());
          for (const f of ['uptimemillis', 'maxmillis', 'mqttmillis', 'rssi', 'espfreeheap'] as const) assert.ok(Number.isFinite(r.value[f]), f);
          for (const f of ['espname', 'espimage', 'espbuild', 'espip', 'errormessage'] as const) assert.ok(typeof r.value[f] === 'string' && r.value[f].length <= 256, f);
          assert.ok(r.value.rssi <= 0 && r.value.rssi >= -150 && r.value.uptimemillis >= 0 && r.value.espfreeheap >= 0);
          // What esp-status passes on goes through the registry: no pollution there either.
          const entry = registry.recordStatus('84f3eb0000a1', r.value).entry;
          assert.equal(Object.getPrototypeOf(entry), Object.prototype);
          assert.equal(({} as Record<string, unknown>).polluted, undefined);
        }),
        { seed: 170019, numRuns: 150_000, interruptAfterTimeLimit: 12_000, markInterruptAsFailure: false, reporter: shortReport },
      );
      recordAttack('inputs', 'refused', refused);
      assert.ok(refused > 1000, `only ${refused} refused payloads ran`);
      // The valid one itself still passes: the property is not vacuous.
      assert.ok(parseStatus(JSON.stringify(valid)).ok);
    });
  });
});
