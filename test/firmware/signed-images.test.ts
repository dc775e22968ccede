import { strict as assert } from 'node:assert';
import { readFileSync, writeFileSync } from 'node:fs';
import * as path from 'node:path';
import { KeyObject, createPublicKey, generateKeyPairSync, randomBytes } from 'node:crypto';
import { signEsp8266, verifyEsp8266 } from '../../lib/firmware/signing';
import { tempDir } from '../support/temp-dir';
import { CORE_DIR, REPO_ROOT, VERIFY_IMAGE, requireCoreTools, run } from '../support/firmware-core';

type Mutation =
  | { kind: 'none' | 'otherKey' }
  | { kind: 'flipPayloadByte' | 'flipSignatureByte'; offset: number }
  | { kind: 'trailer'; value: number }
  | { kind: 'truncate' | 'append'; bytes: number };

interface SignedCase {
  why: string;
  keyBits: number;
  payloadLength: number;
  mutation: Mutation;
  ok: boolean;
}

const CASES: SignedCase[] = JSON.parse(readFileSync(path.join(REPO_ROOT, 'test', 'vectors', 'signed-images.json'), 'utf8')).signedImages;

function mutate(signed: Buffer, payloadLength: number, m: Mutation): Buffer {
  const out = Buffer.from(signed);
  switch (m.kind) {
    case 'flipPayloadByte':
      out[m.offset] ^= 0x01;
      return out;
    case 'flipSignatureByte':
      out[payloadLength + m.offset] ^= 0x01;
      return out;
    case 'trailer':
      out.writeUInt32LE(m.value, out.length - 4);
      return out;
    case 'truncate':
      return out.subarray(0, out.length - m.bytes);
    case 'append':
      return Buffer.concat([out, Buffer.alloc(m.bytes)]);
    default:
      return out;
  }
}

/**
 * Images signed by lib/firmware/signing.ts, verified by BearSSL through the calls the
 * ESP8266 Updater makes (firmware/core/test/verify_image.cpp). Keys and images are made
 * here, in a temporary folder, and removed afterwards.
 */
describe('ESP8266 signed images: lib/firmware signing → BearSSL verification', function () {
  this.timeout(120_000);
  const dir = tempDir('signed-images');
  const keys = new Map<number, { signer: KeyObject; other: KeyObject }>();

  before(async () => {
    requireCoreTools();
    const r = await run('make', ['-C', CORE_DIR, 'build/verify_image']);
    assert.equal(r.code, 0, `building verify_image failed:\n${r.stdout}\n${r.stderr}`);
    for (const bits of new Set(CASES.map((c) => c.keyBits))) {
      keys.set(bits, {
        signer: generateKeyPairSync('rsa', { modulusLength: bits }).privateKey,
        other: generateKeyPairSync('rsa', { modulusLength: bits }).privateKey,
      });
    }
  });
  after(() => dir.remove());

  it('has good and bad cases', () => {
    assert.ok(CASES.some((c) => c.ok) && CASES.filter((c) => !c.ok).length >= 8);
  });

  CASES.forEach((c, i) => {
    it(`${c.ok ? 'accepts' : 'refuses'} ${c.why}`, async () => {
      const { signer, other } = keys.get(c.keyBits)!;
      const payload = randomBytes(c.payloadLength);
      payload[0] = 0xe9;
      const signed = mutate(signEsp8266(payload, signer), c.payloadLength, c.mutation);
      const verifier = createPublicKey(c.mutation.kind === 'otherKey' ? other : signer);
      const keyFile = path.join(dir.path, `public-${i}.key`);
      const imageFile = path.join(dir.path, `image-${i}.bin.signed`);
      writeFileSync(keyFile, verifier.export({ type: 'spki', format: 'pem' }));
      writeFileSync(imageFile, signed);

      const r = await run(VERIFY_IMAGE, [keyFile, imageFile]);
      assert.ok(r.code === 0 || r.code === 1, `verify_image crashed (${r.code}): ${r.stdout}${r.stderr}`);
      assert.equal(r.code === 0, c.ok, `BearSSL said: ${r.stdout.trim()}`);
      if (c.ok) assert.equal(r.stdout.trim(), `ok ${c.payloadLength}`);
      // Node's verification (what the update server and simulator use) agrees.
      assert.equal(verifyEsp8266(signed, verifier).ok, c.ok);
    });
  });
});
