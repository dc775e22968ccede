import { strict as assert } from 'node:assert';
import { writeFileSync } from 'node:fs';
import * as path from 'node:path';
import { spawnSync } from 'node:child_process';
import { KeyObject, createHash, createPrivateKey, createPublicKey, generateKeyPairSync, randomBytes } from 'node:crypto';
import {
  SBV2_BLOCK,
  SBV2_OFFSETS,
  SBV2_SECTOR,
  crc32,
  esp32RawPublicKey,
  keyIdOf,
  looksSignedEsp8266,
  secureBootV2KeyDigest,
  signEsp32V1,
  signEsp8266,
  signImage,
  signP256Deterministic,
  signSecureBootV2,
  verifyEsp32V1,
  verifyEsp8266,
  verifyImage,
  verifySecureBootV2,
} from '../../../lib/firmware/signing';
import { APP_DESC_MAGIC, checkMagic, readAppDescriptor } from '../../../lib/firmware/app-descriptor';
import { tempDir } from '../../support/temp-dir';
import { openssl, opensslOk } from '../../support/openssl';

/** An ESP-style image: 0xE9 first, random body, a fixed tail so it never looks signed by chance. */
function fakeImage(size: number): Buffer {
  const image = randomBytes(size);
  image[0] = 0xe9;
  image.fill(0xaa, size - 8);
  return image;
}

function pem(key: KeyObject): string {
  return createPublicKey(key).export({ type: 'spki', format: 'pem' }).toString();
}

function rsa(bits: number): KeyObject {
  return generateKeyPairSync('rsa', { modulusLength: bits }).privateKey;
}

function p256Key(): KeyObject {
  return generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey;
}

/** Runs python3 (another implementation to judge ours by); returns stdout. */
function python(code: string, input?: Buffer, pythonBin = 'python3'): string {
  const r = spawnSync(pythonBin, ['-c', code], { input });
  if (r.error) throw r.error;
  if (r.status !== 0) throw new Error(`python failed: ${r.stderr.toString()}`);
  return r.stdout.toString().trim();
}

/** DER ECDSA-Sig-Value (SEQUENCE of two INTEGERs), written here independently of the code under test. */
function derSignature(rs: Buffer): Buffer {
  const integer = (be: Buffer): Buffer => {
    let v = be;
    while (v.length > 1 && v[0] === 0) v = v.subarray(1);
    if (v[0] & 0x80) v = Buffer.concat([Buffer.from([0]), v]);
    return Buffer.concat([Buffer.from([0x02, v.length]), v]);
  };
  const body = Buffer.concat([integer(rs.subarray(0, 32)), integer(rs.subarray(32, 64))]);
  return Buffer.concat([Buffer.from([0x30, body.length]), body]);
}

describe('firmware signing', function () {
  this.timeout(120_000);
  const tmp = tempDir('signing');
  let n = 0;
  /** Writes a fresh file in the test folder and returns its path. */
  const file = (name: string, data: string | Buffer): string => {
    const p = path.join(tmp.path, `${n++}-${name}`);
    writeFileSync(p, data);
    return p;
  };
  after(() => tmp.remove());

  describe('keyIdOf', () => {
    it('is the first 16 hex digits of the SHA-256 of the SPKI DER, as openssl computes it, for a key or its PEM', () => {
      const key = rsa(2048);
      const derFile = path.join(tmp.path, `${n++}-pub.der`);
      opensslOk(['pkey', '-pubin', '-in', file('pub.pem', pem(key)), '-outform', 'DER', '-out', derFile]);
      const digest = opensslOk(['dgst', '-sha256', '-r', derFile]).split(' ')[0];
      assert.equal(keyIdOf(key), digest.slice(0, 16));
      assert.equal(keyIdOf(createPublicKey(key)), digest.slice(0, 16));
      assert.equal(keyIdOf(pem(key)), digest.slice(0, 16));
      assert.match(keyIdOf(key), /^[0-9a-f]{16}$/);
    });
  });

  describe('ESP8266 (signing.py layout, RSA PKCS#1 v1.5 SHA-256)', () => {
    let key: KeyObject;
    let image: Buffer;
    let signed: Buffer;
    before(() => {
      key = rsa(2048);
      image = fakeImage(50_001);
      signed = signEsp8266(image, key);
    });

    it('appends the 256-byte signature and uint32_le(256) = 00 01 00 00, as signing.py writes', () => {
      assert.equal(signed.length, image.length + 256 + 4);
      assert.ok(signed.subarray(0, image.length).equals(image));
      assert.deepEqual([...signed.subarray(signed.length - 4)], [0x00, 0x01, 0x00, 0x00]);
      assert.equal(looksSignedEsp8266(signed, 256), true);
      assert.equal(looksSignedEsp8266(image, 256), false);
    });

    it('is byte for byte what `openssl dgst -sha256 -sign` gives (the command signing.py runs), and openssl verifies it', () => {
      const payload = file('payload.bin', image);
      const priv = file('private.key', key.export({ type: 'pkcs8', format: 'pem' }).toString());
      const sigFile = file('sig.bin', signed.subarray(image.length, image.length + 256));
      const reference = spawnSync('openssl', ['dgst', '-sha256', '-sign', priv, payload]);
      assert.equal(reference.status, 0, reference.stderr.toString());
      assert.ok(reference.stdout.equals(signed.subarray(image.length, image.length + 256)));
      const out = opensslOk(['dgst', '-sha256', '-verify', file('public.key', pem(key)), '-signature', sigFile, payload]);
      assert.match(out, /Verified OK/);
    });

    it('verifies as the device does, and reports the payload length it keeps', () => {
      assert.deepEqual(verifyEsp8266(signed, createPublicKey(key)), { ok: true, payloadLength: image.length });
      assert.deepEqual(verifyImage('esp8266-rsa', signed, key), { ok: true, payloadLength: image.length });
    });

    it('fails on a tampered payload byte (and openssl agrees)', () => {
      const bad = Buffer.from(signed);
      bad[1234] ^= 0x01;
      const r = verifyEsp8266(bad, createPublicKey(key));
      assert.equal(r.ok, false);
      assert.match(!r.ok ? r.reason : '', /RSA signature does not verify with key [0-9a-f]{16}/);
      const o = openssl(['dgst', '-sha256', '-verify', file('pub.pem', pem(key)), '-signature', file('sig.bin', bad.subarray(image.length, image.length + 256)), file('bad.bin', bad.subarray(0, image.length))]);
      assert.notEqual(o.status, 0);
      assert.match(o.stdout, /Verification failure/);
    });

    it('fails with another key of the same size', () => {
      const r = verifyEsp8266(signed, createPublicKey(rsa(2048)));
      assert.equal(r.ok, false);
      assert.match(!r.ok ? r.reason : '', /does not verify/);
    });

    it('fails on a truncated or foreign trailer with the lengths in the reason', () => {
      const cut = signed.subarray(0, signed.length - 2);
      const r = verifyEsp8266(cut, createPublicKey(key));
      assert.equal(r.ok, false);
      assert.match(!r.ok ? r.reason : '', /^signature trailer length \d+ does not match the 256-byte key$/);
      const big = verifyEsp8266(signed, createPublicKey(rsa(3072)));
      assert.deepEqual(big, { ok: false, reason: 'signature trailer length 256 does not match the 384-byte key' });
      const short = Buffer.alloc(100);
      short.writeUInt32LE(256, 96);
      const s = verifyEsp8266(short, createPublicKey(key));
      assert.match(!s.ok ? s.reason : '', /too short for a 256-byte signature/);
      assert.match((verifyEsp8266(Buffer.alloc(2), key) as { reason: string }).reason, /no signature trailer/);
    });

    it('refuses non-RSA and weak keys, and an image that already carries a trailer', () => {
      assert.throws(() => signEsp8266(image, p256Key()), /signed with an RSA key .*not EC prime256v1/);
      assert.throws(() => signEsp8266(image, createPublicKey(key)), /needs a private key/);
      assert.throws(() => signEsp8266(image, rsa(1024)), /RSA-1024 is too weak/);
      assert.throws(() => signEsp8266(signed, key), /already ends with a 256-byte signature trailer/);
      assert.throws(() => signEsp8266(Buffer.alloc(0), key), /empty/);
      const r = verifyEsp8266(signed, createPublicKey(p256Key()));
      assert.match(!r.ok ? r.reason : '', /verified with an RSA key, not EC prime256v1/);
    });
  });

  describe('ESP32 signed apps (v1 scheme: image || uint32_le(0) || r || s)', () => {
    let key: KeyObject;
    let image: Buffer;
    let signed: Buffer;
    before(() => {
      key = p256Key();
      image = fakeImage(40_000);
      signed = signEsp32V1(image, key);
    });

    it('appends a zero version word and 64 bytes r||s', () => {
      assert.equal(signed.length, image.length + 68);
      assert.ok(signed.subarray(0, image.length).equals(image));
      assert.equal(signed.readUInt32LE(image.length), 0);
      assert.deepEqual(verifyEsp32V1(signed, createPublicKey(key)), { ok: true, payloadLength: image.length });
      assert.deepEqual(verifyImage('esp32-ecdsa-v1', signed, key), { ok: true, payloadLength: image.length });
    });

    it('r||s verifies with openssl (as a DER ECDSA-Sig-Value over SHA-256 of the image)', () => {
      const rs = signed.subarray(image.length + 4);
      const out = opensslOk(['dgst', '-sha256', '-verify', file('pub.pem', pem(key)), '-signature', file('sig.der', derSignature(rs)), file('image.bin', image)]);
      assert.match(out, /Verified OK/);
    });

    it('is deterministic: the same image signed twice gives the same bytes', () => {
      assert.ok(signEsp32V1(image, key).equals(signed));
      assert.ok(!signEsp32V1(fakeImage(40_000), key).subarray(-64).equals(signed.subarray(-64)));
    });

    it('gives the RFC 6979 A.2.5 answer (P-256, SHA-256, message "sample")', () => {
      // Private key x from RFC 6979, wrapped as SEC1 DER without the public point (openssl derives it).
      const x = Buffer.from('C9AFA9D845BA75166B5C215767B1D6934E50C3DB36E89B127B8A622B120F6721', 'hex');
      const sec1 = Buffer.concat([Buffer.from('30310201010420', 'hex'), x, Buffer.from('a00a06082a8648ce3d030107', 'hex')]);
      const rfcKey = createPrivateKey({ key: sec1, format: 'der', type: 'sec1' });
      const sig = signP256Deterministic(Buffer.from('sample'), rfcKey);
      assert.equal(
        sig.toString('hex').toUpperCase(),
        'EFD48B2AACB6A8FD1140DD9CD45E81D69D2C877B56AAF991C34D0EA84EAF3716' + 'F7CB1C942D657C41D436C7A1B6E29F65F3E900DBB9AFF4064DC4AB2F843ACDA8',
      );
      assert.equal(
        esp32RawPublicKey(rfcKey).toString('hex').toUpperCase(),
        '60FED4BA255A9D31C961EB74C6356D68C049B8923B61FA6CE669622E60F29FB6' + '7903FE1008B8BC99A41AE9E95628BC64F2F1B20C2D7E9F5177A3C294D4462299',
      );
    });

    it("matches python-ecdsa's sign_deterministic (what espsecure sign_data --version 1 uses)", function () {
      // Debian's python3-ecdsa (.ci/run installs it); a pyenv python3 earlier on PATH may lack it.
      const bin = ['python3', '/usr/bin/python3'].find((b) => spawnSync(b, ['-c', 'import ecdsa']).status === 0);
      if (!bin) throw new Error('python3-ecdsa is not installed: apt-get install python3-ecdsa (the CI script does)');
      const keyFile = file('key.pem', key.export({ type: 'sec1', format: 'pem' }).toString());
      const code = `import ecdsa,hashlib,sys\nsk=ecdsa.SigningKey.from_pem(open(${JSON.stringify(keyFile)}).read())\nprint(sk.sign_deterministic(sys.stdin.buffer.read(), hashlib.sha256).hex())\nprint(sk.get_verifying_key().to_string().hex())`;
      const [sig, vk] = python(code, image, bin).split('\n');
      assert.equal(sig, signed.subarray(image.length + 4).toString('hex'));
      assert.equal(vk, esp32RawPublicKey(key).toString('hex'));
    });

    it('exports the 64-byte raw key X||Y = the uncompressed point openssl prints, without its 04 prefix', () => {
      const text = opensslOk(['ec', '-pubin', '-in', file('pub.pem', pem(key)), '-text', '-noout']);
      const point = /pub:\s*\n((?:\s+[0-9a-f:]+\n)+)/.exec(text)?.[1].replace(/[\s:]/g, '') ?? '';
      assert.equal(point.length, 130);
      assert.equal(point.slice(0, 2), '04');
      const raw = esp32RawPublicKey(createPublicKey(key));
      assert.equal(raw.length, 64);
      assert.equal(raw.toString('hex'), point.slice(2));
      const jwk = createPublicKey(key).export({ format: 'jwk' });
      assert.equal(raw.toString('base64url'), Buffer.concat([Buffer.from(jwk.x ?? '', 'base64url'), Buffer.from(jwk.y ?? '', 'base64url')]).toString('base64url'));
    });

    it('fails on a tampered byte, another key, a non-zero version word or a short file', () => {
      const bad = Buffer.from(signed);
      bad[999] ^= 0x80;
      assert.match((verifyEsp32V1(bad, key) as { reason: string }).reason, /ECDSA signature does not verify/);
      assert.match((verifyEsp32V1(signed, p256Key()) as { reason: string }).reason, /does not verify with key/);
      const v1 = Buffer.from(signed);
      v1.writeUInt32LE(1, image.length);
      assert.deepEqual(verifyEsp32V1(v1, key), { ok: false, reason: 'signature block version 1 is not 0' });
      assert.match((verifyEsp32V1(signed.subarray(0, 60), key) as { reason: string }).reason, /too short for the 68-byte signature block/);
      assert.match((verifyEsp32V1(signed, rsa(2048)) as { reason: string }).reason, /EC P-256 key, not RSA-2048/);
    });

    it('refuses an RSA key, an image that is not an ESP32 app and an image already signed', () => {
      assert.throws(() => signEsp32V1(image, rsa(2048)), /need an EC P-256 key, not RSA-2048/);
      assert.throws(() => signEsp32V1(Buffer.from([0x1f, 0x8b, 1, 2]), key), /image does not start with 0xE9 \(starts with 0x1F\)/);
      const aligned = fakeImage(4096);
      const twice = signEsp32V1(aligned, key);
      assert.throws(() => signEsp32V1(twice, key), /already ends with what looks like a v1 signature block/);
    });
  });

  describe('ESP32 secure boot v2 (RSA-3072 PSS signature sector)', () => {
    let key: KeyObject;
    let image: Buffer;
    let signed: Buffer;
    let padded: Buffer;
    let block: Buffer;
    before(() => {
      key = rsa(3072);
      image = fakeImage(10_000);
      signed = signSecureBootV2(image, key);
      padded = signed.subarray(0, 12_288);
      block = signed.subarray(12_288, 12_288 + SBV2_BLOCK);
    });

    it('pads the image with 0xFF to 4096 and appends one 4096-byte sector: block, then 0xFF', () => {
      assert.equal(signed.length, 12_288 + SBV2_SECTOR);
      assert.ok(padded.subarray(0, image.length).equals(image));
      assert.ok(padded.subarray(image.length).every((b) => b === 0xff));
      assert.equal(block[0], 0xe7);
      assert.equal(block[1], 0x02);
      assert.deepEqual([...block.subarray(2, 4)], [0, 0]);
      assert.ok(block.subarray(1200, 1216).every((b) => b === 0), '16 zero bytes after the CRC');
      assert.ok(signed.subarray(12_288 + SBV2_BLOCK).every((b) => b === 0xff), 'rest of the sector is 0xFF');
      assert.deepEqual(verifySecureBootV2(signed, createPublicKey(key)), { ok: true, payloadLength: 12_288 });
      assert.deepEqual(verifyImage('esp32-sbv2-rsa', signed, key), { ok: true, payloadLength: 12_288 });
    });

    it('does not pad an image that is already sector-aligned', () => {
      const aligned = fakeImage(8192);
      const s = signSecureBootV2(aligned, key);
      assert.equal(s.length, 8192 + 4096);
      assert.ok(s.subarray(0, 8192).equals(aligned));
      assert.equal(verifySecureBootV2(s, key).ok, true);
    });

    it('stores the CRC32 of bytes 0..1195 as Python zlib.crc32 computes it', () => {
      const py = Number(python('import sys,zlib; print(zlib.crc32(sys.stdin.buffer.read()[:1196]))', block));
      assert.equal(block.readUInt32LE(SBV2_OFFSETS.crc), py);
      assert.equal(crc32(Buffer.from('123456789')), 0xcbf43926, 'the CRC-32/IEEE check value');
      const data = randomBytes(3000);
      assert.equal(crc32(data), Number(python('import sys,zlib; print(zlib.crc32(sys.stdin.buffer.read()))', data)));
    });

    it('stores the SHA-256 of the padded image, as openssl computes it', () => {
      const hex = opensslOk(['dgst', '-sha256', '-r', file('padded.bin', padded)]).split(' ')[0];
      assert.equal(block.subarray(4, 36).toString('hex'), hex);
    });

    it('holds an RSA-PSS (SHA-256, salt 32) signature, little-endian, that openssl pkeyutl verifies once reversed', () => {
      const sigBe = Buffer.from(block.subarray(SBV2_OFFSETS.signature, SBV2_OFFSETS.crc)).reverse();
      const args = ['pkeyutl', '-verify', '-pubin', '-inkey', file('pub.pem', pem(key)), '-pkeyopt', 'digest:sha256', '-pkeyopt', 'rsa_padding_mode:pss', '-pkeyopt', 'rsa_pss_saltlen:32'];
      const ok = openssl([...args, '-in', file('digest.bin', block.subarray(4, 36)), '-sigfile', file('sig_be.bin', sigBe)]);
      assert.equal(ok.status, 0, ok.stderr);
      assert.match(ok.stdout, /Signature Verified Successfully/);
      const littleEndian = openssl([...args, '-in', file('digest.bin', block.subarray(4, 36)), '-sigfile', file('sig_le.bin', block.subarray(812, 1196))]);
      assert.notEqual(littleEndian.status, 0, 'the stored byte order is little-endian');
      const saltAuto = openssl(['pkeyutl', '-verify', '-pubin', '-inkey', file('pub.pem', pem(key)), '-pkeyopt', 'digest:sha256', '-pkeyopt', 'rsa_padding_mode:pss', '-pkeyopt', 'rsa_pss_saltlen:20', '-in', file('digest.bin', block.subarray(4, 36)), '-sigfile', file('sig_be.bin', sigBe)]);
      assert.notEqual(saltAuto.status, 0, 'salt length is 32, not 20');
    });

    it('holds n (LE), e, rinv = 2^6144 mod n (LE) and m\' = -n^-1 mod 2^32 as Python computes them', () => {
      const modulusHex = /Modulus=([0-9A-F]+)/.exec(opensslOk(['rsa', '-pubin', '-in', file('pub.pem', pem(key)), '-modulus', '-noout']))?.[1] ?? '';
      assert.equal(modulusHex.length, 768);
      assert.equal(Buffer.from(block.subarray(36, 420)).reverse().toString('hex').toUpperCase(), modulusHex);
      assert.equal(block.readUInt32LE(420), 65537);
      const [rinvHex, mPrime] = python(`n=int(${JSON.stringify(modulusHex)},16)\nprint(format(pow(2,6144,n),'0768x'))\nprint((-pow(n,-1,2**32))%2**32)`).split('\n');
      assert.equal(Buffer.from(block.subarray(424, 808)).reverse().toString('hex'), rinvHex);
      assert.equal(block.readUInt32LE(808), Number(mPrime));
      assert.ok(secureBootV2KeyDigest(key).equals(createHash('sha256').update(block.subarray(36, 812)).digest()), 'eFuse key digest = SHA-256 of bytes 36..811 (espsecure signature_info_v2)');
    });

    it('fails on a tampered image, a damaged block, a forged signature and another key', () => {
      const bad = Buffer.from(signed);
      bad[5000] ^= 0x01;
      assert.match((verifySecureBootV2(bad, key) as { reason: string }).reason, /image digest does not match/);

      const crcBad = Buffer.from(signed);
      crcBad[12_288 + 100] ^= 0x01;
      assert.match((verifySecureBootV2(crcBad, key) as { reason: string }).reason, /signature block CRC32 0x[0-9a-f]{8} does not match/);

      const forged = Buffer.from(signed);
      const fb = forged.subarray(12_288, 12_288 + SBV2_BLOCK);
      fb[SBV2_OFFSETS.signature + 10] ^= 0x01;
      fb.writeUInt32LE(crc32(fb.subarray(0, 1196)), 1196);
      assert.match((verifySecureBootV2(forged, key) as { reason: string }).reason, /RSA-PSS signature does not verify/);

      assert.match((verifySecureBootV2(signed, rsa(3072)) as { reason: string }).reason, /signature block carries another public key/);

      const magic = Buffer.from(signed);
      magic[12_288] = 0xe6;
      assert.deepEqual(verifySecureBootV2(magic, key), { ok: false, reason: 'signature block magic 0xE6 is not 0xE7' });
      const version = Buffer.from(signed);
      version[12_288 + 1] = 0x03;
      assert.match((verifySecureBootV2(version, key) as { reason: string }).reason, /version 3 is not 2/);
      assert.match((verifySecureBootV2(signed.subarray(0, signed.length - 1), key) as { reason: string }).reason, /not a sector-aligned image/);
    });

    it('refuses keys other than RSA-3072 and an image already signed', () => {
      assert.throws(() => signSecureBootV2(image, rsa(2048)), /RSA-3072 key, not RSA-2048/);
      assert.throws(() => signSecureBootV2(image, p256Key()), /RSA-3072 key, not EC prime256v1/);
      assert.throws(() => signSecureBootV2(signed, key), /already ends with a secure boot v2 signature sector/);
      assert.throws(() => signImage('esp32-sbv2-rsa', Buffer.from([0x00, 0x01]), key), /image does not start with 0xE9/);
    });
  });

  describe('app descriptor and magic bytes', () => {
    /** esp_image_header_t (24) + esp_image_segment_header_t (8) + esp_app_desc_t (256) + some code. */
    function esp32Image(desc: { version: string; project: string; time: string; date: string; idf: string; secureVersion: number }): Buffer {
      const img = Buffer.alloc(32 + 256 + 64, 0);
      img[0] = 0xe9;
      img[1] = 3; // segment count
      img.writeUInt32LE(0x3f400020, 24); // segment load address (DROM)
      img.writeUInt32LE(256, 28); // segment length
      const d = 32;
      img.writeUInt32LE(APP_DESC_MAGIC, d);
      img.writeUInt32LE(desc.secureVersion, d + 4);
      img.write(desc.version, d + 16, 32, 'utf8');
      img.write(desc.project, d + 48, 32, 'utf8');
      img.write(desc.time, d + 80, 16, 'utf8');
      img.write(desc.date, d + 96, 16, 'utf8');
      img.write(desc.idf, d + 112, 32, 'utf8');
      img.fill(0x5a, d + 144, d + 176); // app_elf_sha256
      return img;
    }

    it('reads version, project, time, date, IDF version and secure version from offset 32', () => {
      const img = esp32Image({ version: '00.00.08.f', project: 'ESP32_DEVKIT', time: '12:34:56', date: 'Mar  1 2025', idf: 'v5.1.4-dirty', secureVersion: 7 });
      assert.deepEqual(readAppDescriptor(img), {
        projectName: 'ESP32_DEVKIT',
        version: '00.00.08.f',
        time: '12:34:56',
        date: 'Mar  1 2025',
        idfVersion: 'v5.1.4-dirty',
        secureVersion: 7,
        appElfSha256: '5a'.repeat(32),
      });
    });

    it('takes a field that fills its whole array (no NUL) completely', () => {
      const version = 'v'.repeat(32);
      const img = esp32Image({ version, project: 'p', time: 't', date: 'd', idf: 'i', secureVersion: 0 });
      assert.equal(readAppDescriptor(img)?.version, version);
      assert.equal(readAppDescriptor(img)?.projectName, 'p');
    });

    it('is undefined without the magic, without 0xE9, or when the image is too short', () => {
      const img = esp32Image({ version: '1', project: 'p', time: 't', date: 'd', idf: 'i', secureVersion: 0 });
      const noMagic = Buffer.from(img);
      noMagic.writeUInt32LE(0xabcd5433, 32);
      assert.equal(readAppDescriptor(noMagic), undefined);
      const not = Buffer.from(img);
      not[0] = 0x1f;
      assert.equal(readAppDescriptor(not), undefined);
      assert.equal(readAppDescriptor(img.subarray(0, 200)), undefined);
      assert.equal(readAppDescriptor(fakeImage(1000)), undefined);
    });

    it('reads the descriptor of a signed image too (signing appends only)', () => {
      const img = esp32Image({ version: '2.0.0', project: 'signed', time: 't', date: 'd', idf: 'i', secureVersion: 1 });
      assert.equal(readAppDescriptor(signEsp32V1(img, p256Key()))?.version, '2.0.0');
    });

    it('checks the first bytes the way each device does', () => {
      const e9 = Buffer.from([0xe9, 0, 0, 0]);
      const gz = Buffer.from([0x1f, 0x8b, 8, 0]);
      assert.deepEqual(checkMagic(e9, 'esp8266', 'app'), { ok: true });
      assert.deepEqual(checkMagic(gz, 'esp8266', 'app'), { ok: true });
      assert.match((checkMagic(Buffer.from([0x1f, 0x00]), 'esp8266', 'app') as { reason: string }).reason, /not gzip/);
      assert.match((checkMagic(Buffer.from([0x7f, 0x45]), 'esp8266', 'app') as { reason: string }).reason, /^image does not start with 0xE9 \(starts with 0x7F\)/);
      assert.deepEqual(checkMagic(e9, 'esp32', 'app'), { ok: true });
      assert.match((checkMagic(gz, 'esp32', 'app') as { reason: string }).reason, /image does not start with 0xE9 \(starts with 0x1F\).*gzip/);
      assert.deepEqual(checkMagic(Buffer.from([0x12]), 'esp8266', 'spiffs'), { ok: true });
      assert.deepEqual(checkMagic(Buffer.from([0x12]), 'esp32', 'spiffs'), { ok: true });
      assert.deepEqual(checkMagic(Buffer.alloc(0), 'esp32', 'spiffs'), { ok: false, reason: 'image is empty' });
      assert.deepEqual(checkMagic(Buffer.alloc(0), 'esp8266', 'app'), { ok: false, reason: 'image is empty' });
    });
  });
});
