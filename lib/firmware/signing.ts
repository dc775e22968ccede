/**
 * The three signed-image layouts devices verify (docs/wire-contract.md, Signed images), made and checked
 * with Node's crypto (plus @noble/curves for deterministic ECDSA). No Node-RED here.
 *
 * Every function in this file is synchronous: hashing a few MB and one RSA/ECDSA operation take
 * milliseconds, so a promise would only add noise. Signing functions throw a `SigningError` with
 * a text meant for the operator; verify functions never throw on bad input and answer
 * `{ ok: false, reason }` instead.
 *
 * Sources of the layouts:
 * - ESP8266: esp8266/Arduino `tools/signing.py` (sign: `openssl dgst -sha256 -sign`, then the
 *   signature, then `00 01 00 00`) and `cores/esp8266/Updater.cpp` + `BearSSLHelpers.cpp`
 *   (`UpdaterClass::end`, `SigningVerifier`: the trailer must equal the key's modulus length
 *   `nlen`, the first `size - siglen - 4` bytes are hashed, `br_rsa_pkcs1_vrfy` with the SHA-256 OID).
 * - ESP32 signed apps / secure boot v1: esptool `espsecure` `sign_secure_boot_v1` /
 *   `verify_signature_v1` (`struct.pack("I", 0)` then python-ecdsa's raw r||s of
 *   `sign_deterministic(data, sha256)`; the device key is `vk.to_string()` = X||Y big-endian).
 * - ESP32 secure boot v2: ESP-IDF "Secure Boot v2", Signature Block Format, and esptool
 *   `espsecure` `generate_rsa_signature_block` (`<BBxx32s384sI384sI384s`, CRC32 of bytes 0..1195,
 *   16 zero bytes, the sector filled with 0xFF; `rinv = 2^(2*3072) mod n`, `m' = -n^-1 mod 2^32`).
 */
import { KeyObject, createHash, createPublicKey, sign as cryptoSign, verify as cryptoVerify, constants } from 'node:crypto';
import { p256 } from '@noble/curves/nist';
import type { SignatureScheme } from './types';
import { shownInput } from '../input-text';

export class SigningError extends Error {}

export type VerifyResult = { ok: true; payloadLength: number } | { ok: false; reason: string };

const ESP_IMAGE_MAGIC = 0xe9;

// ---- key helpers ----------------------------------------------------------------------------

function publicOf(key: KeyObject | string): KeyObject {
  if (typeof key === 'string') return createPublicKey(key);
  return key.type === 'public' ? key : createPublicKey(key);
}

/** First 16 hex digits of the SHA-256 of the SubjectPublicKeyInfo DER (a private key gives its public one's id). */
export function keyIdOf(publicKey: KeyObject | string): string {
  const spki = publicOf(publicKey).export({ type: 'spki', format: 'der' });
  return createHash('sha256').update(spki).digest('hex').slice(0, 16);
}

function requirePrivate(key: KeyObject, what: string): void {
  if (!(key instanceof KeyObject) || key.type !== 'private') throw new SigningError(`${what} needs a private key`);
}

function rsaModulusBytes(key: KeyObject): number {
  return Math.ceil((key.asymmetricKeyDetails?.modulusLength ?? 0) / 8);
}

function describeKey(key: KeyObject): string {
  const d = key.asymmetricKeyDetails;
  if (key.asymmetricKeyType === 'rsa') return `RSA-${d?.modulusLength ?? '?'}`;
  if (key.asymmetricKeyType === 'ec') return `EC ${d?.namedCurve ?? '?'}`;
  return key.asymmetricKeyType ?? 'unknown';
}

function isP256(key: KeyObject): boolean {
  return key.asymmetricKeyType === 'ec' && key.asymmetricKeyDetails?.namedCurve === 'prime256v1';
}

/** Big-endian unsigned bytes of a JWK base64url number, left-padded to `size`. */
function jwkBytes(value: string | undefined, size: number): Buffer {
  const raw = Buffer.from(value ?? '', 'base64url');
  let start = 0;
  while (start < raw.length - 1 && raw[start] === 0) start++;
  const trimmed = raw.subarray(start);
  if (trimmed.length > size) throw new SigningError(`key component of ${trimmed.length} bytes does not fit ${size} bytes`);
  const out = Buffer.alloc(size);
  trimmed.copy(out, size - trimmed.length);
  return out;
}

function sha256(data: Buffer): Buffer {
  return createHash('sha256').update(data).digest();
}

function hex2(byte: number | undefined): string {
  return byte === undefined ? 'nothing' : `0x${byte.toString(16).padStart(2, '0').toUpperCase()}`;
}

function requireEspImage(image: Buffer, what: string): void {
  if (!Buffer.isBuffer(image) || image.length === 0) throw new SigningError(`${what}: the image is empty`);
  if (image[0] !== ESP_IMAGE_MAGIC) throw new SigningError(`${what}: image does not start with 0xE9 (starts with ${hex2(image[0])}), not an ESP32 app image`);
}

// ---- ESP8266: image || RSA PKCS#1 v1.5 SHA-256 signature || uint32_le(signature length) ----

const ESP8266_TRAILER = 4;
const ESP8266_MIN_RSA_BITS = 2048;

/**
 * True when `buf` ends like an image signed for an ESP8266 whose key has `modulusBytes`
 * (256 for RSA-2048): a little-endian length trailer equal to the modulus length, with room
 * for the signature and at least one byte of payload in front of it.
 */
export function looksSignedEsp8266(buf: Buffer, modulusBytes: number): boolean {
  if (!Buffer.isBuffer(buf) || buf.length < modulusBytes + ESP8266_TRAILER + 1) return false;
  return buf.readUInt32LE(buf.length - ESP8266_TRAILER) === modulusBytes;
}

/**
 * Signs an ESP8266 sketch or filesystem image the way Arduino's `signing.py` does (the
 * Updater verifies both kinds). Refuses non-RSA keys, keys under 2048 bits and an image that
 * already ends with a signature trailer for this key size (sign the unsigned build output).
 */
export function signEsp8266(image: Buffer, privateKey: KeyObject): Buffer {
  requirePrivate(privateKey, 'ESP8266 signing');
  if (privateKey.asymmetricKeyType !== 'rsa') {
    throw new SigningError(`ESP8266 images are signed with an RSA key (BearSSL verifies RSA PKCS#1 v1.5), not ${describeKey(privateKey)}`);
  }
  const bits = privateKey.asymmetricKeyDetails?.modulusLength ?? 0;
  if (bits < ESP8266_MIN_RSA_BITS) throw new SigningError(`RSA-${bits} is too weak to sign firmware: use RSA-2048`);
  if (!Buffer.isBuffer(image) || image.length === 0) throw new SigningError('ESP8266 signing: the image is empty');
  const n = rsaModulusBytes(privateKey);
  if (looksSignedEsp8266(image, n)) {
    throw new SigningError(`image already ends with a ${n}-byte signature trailer (signed by the Arduino build?): upload the unsigned .bin`);
  }
  const signature = cryptoSign('sha256', image, { key: privateKey, padding: constants.RSA_PKCS1_PADDING });
  const trailer = Buffer.alloc(ESP8266_TRAILER);
  trailer.writeUInt32LE(signature.length);
  return Buffer.concat([image, signature, trailer]);
}

/**
 * Exactly the checks of the ESP8266 Updater (`UpdaterClass::end` with a `SigningVerifier`):
 * the trailer equals the key's modulus length, the image is long enough for signature and
 * trailer, and the RSA PKCS#1 v1.5 SHA-256 signature over the first `size - siglen - 4` bytes
 * verifies. `payloadLength` is what the device keeps and boots.
 */
export function verifyEsp8266(signed: Buffer, publicKey: KeyObject): VerifyResult {
  let key: KeyObject;
  try {
    key = publicOf(publicKey);
  } catch (err) {
    return { ok: false, reason: `unusable public key: ${(err as Error).message}` };
  }
  if (key.asymmetricKeyType !== 'rsa') return { ok: false, reason: `ESP8266 images are verified with an RSA key, not ${describeKey(key)}` };
  const n = rsaModulusBytes(key);
  if (!Buffer.isBuffer(signed) || signed.length < ESP8266_TRAILER) {
    return { ok: false, reason: `image of ${Buffer.isBuffer(signed) ? signed.length : 0} bytes has no signature trailer` };
  }
  const sigLen = signed.readUInt32LE(signed.length - ESP8266_TRAILER);
  if (sigLen !== n) return { ok: false, reason: `signature trailer length ${sigLen} does not match the ${n}-byte key` };
  if (signed.length < sigLen + ESP8266_TRAILER) {
    return { ok: false, reason: `image of ${signed.length} bytes is too short for a ${sigLen}-byte signature and its 4-byte length` };
  }
  const payloadLength = signed.length - sigLen - ESP8266_TRAILER;
  const payload = signed.subarray(0, payloadLength);
  const signature = signed.subarray(payloadLength, payloadLength + sigLen);
  const ok = cryptoVerify('sha256', payload, { key, padding: constants.RSA_PKCS1_PADDING }, signature);
  if (!ok) return { ok: false, reason: `RSA signature does not verify with key ${keyIdOf(key)} (image altered, or signed with another key)` };
  return { ok: true, payloadLength };
}

// ---- ESP32 signed apps (secure boot v1 scheme): image || uint32_le(0) || r || s ----------

const V1_BLOCK = 68;
const V1_SIGNATURE = 64;

/** The 64 raw bytes X||Y (big-endian each) that an ESP32 with the v1 scheme embeds as its verification key. */
export function esp32RawPublicKey(publicKey: KeyObject): Buffer {
  const key = publicOf(publicKey);
  if (!isP256(key)) throw new SigningError(`the ESP32 v1 scheme uses an EC P-256 key, not ${describeKey(key)}`);
  const jwk = key.export({ format: 'jwk' });
  return Buffer.concat([jwkBytes(jwk.x, 32), jwkBytes(jwk.y, 32)]);
}

/**
 * Signs an ESP32 app image for the "signed apps" / secure boot v1 scheme: deterministic ECDSA
 * P-256 (RFC 6979, as espsecure's `sign_deterministic`) over SHA-256 of the whole image.
 * Node's own ECDSA is randomized; devices would verify it too, but deterministic output means
 * signing the same image twice gives the same bytes (same sha256/md5 in the catalogue).
 * The signature is checked back with Node's crypto before it is returned.
 */
export function signEsp32V1(image: Buffer, privateKey: KeyObject): Buffer {
  requirePrivate(privateKey, 'ESP32 v1 signing');
  if (!isP256(privateKey)) throw new SigningError(`ESP32 signed apps (v1 scheme) need an EC P-256 key, not ${describeKey(privateKey)}`);
  requireEspImage(image, 'ESP32 v1 signing');
  if (looksSignedEsp32V1(image)) throw new SigningError('image already ends with what looks like a v1 signature block: upload the unsigned .bin');
  return Buffer.concat([image, Buffer.alloc(4), signP256Deterministic(image, privateKey)]);
}

/**
 * Deterministic ECDSA P-256 (RFC 6979, HMAC-SHA-256 nonces) over SHA-256 of `message`: the 64
 * bytes r||s, big-endian, s not normalised to the low half (python-ecdsa's `sign_deterministic`
 * does not either, so both give the same bytes). Checked back with Node's crypto before it is returned.
 */
export function signP256Deterministic(message: Buffer, privateKey: KeyObject): Buffer {
  requirePrivate(privateKey, 'ECDSA signing');
  if (!isP256(privateKey)) throw new SigningError(`ECDSA P-256 signing needs an EC P-256 key, not ${describeKey(privateKey)}`);
  const d = jwkBytes(privateKey.export({ format: 'jwk' }).d, 32);
  const signature = Buffer.from(p256.sign(sha256(message), d, { prehash: false, lowS: false }).toCompactRawBytes());
  if (!cryptoVerify('sha256', message, { key: createPublicKey(privateKey), dsaEncoding: 'ieee-p1363' }, signature)) {
    throw new SigningError('internal error: the ECDSA signature did not verify back with the public key');
  }
  return signature;
}

/**
 * A cheap guess that an app image already carries a v1 block. ESP-IDF app images end on a
 * 16-byte boundary (checksum padding) and optionally a 32-byte SHA-256, so `len % 16 == 4`
 * with a zero version word 68 bytes before the end is a strong hint.
 */
function looksSignedEsp32V1(image: Buffer): boolean {
  return image.length > V1_BLOCK && image.length % 16 === V1_BLOCK % 16 && image.readUInt32LE(image.length - V1_BLOCK) === 0;
}

/** The ESP-IDF checks of a v1 signature block: version word 0, ECDSA P-256 over SHA-256 of everything before it. */
export function verifyEsp32V1(signed: Buffer, publicKey: KeyObject): VerifyResult {
  let key: KeyObject;
  try {
    key = publicOf(publicKey);
  } catch (err) {
    return { ok: false, reason: `unusable public key: ${(err as Error).message}` };
  }
  if (!isP256(key)) return { ok: false, reason: `the ESP32 v1 scheme is verified with an EC P-256 key, not ${describeKey(key)}` };
  if (!Buffer.isBuffer(signed) || signed.length <= V1_BLOCK) {
    return { ok: false, reason: `image of ${Buffer.isBuffer(signed) ? signed.length : 0} bytes is too short for the 68-byte signature block` };
  }
  const payloadLength = signed.length - V1_BLOCK;
  if (signed[0] !== ESP_IMAGE_MAGIC) return { ok: false, reason: `image does not start with 0xE9 (starts with ${hex2(signed[0])})` };
  const version = signed.readUInt32LE(payloadLength);
  if (version !== 0) return { ok: false, reason: `signature block version ${version} is not 0` };
  const signature = signed.subarray(payloadLength + 4, payloadLength + 4 + V1_SIGNATURE);
  const ok = cryptoVerify('sha256', signed.subarray(0, payloadLength), { key, dsaEncoding: 'ieee-p1363' }, signature);
  if (!ok) return { ok: false, reason: `ECDSA signature does not verify with key ${keyIdOf(key)} (image altered, or signed with another key)` };
  return { ok: true, payloadLength };
}

// ---- ESP32 secure boot v2 (RSA-3072, RSA-PSS) -------------------------------------------

export const SBV2_SECTOR = 4096;
export const SBV2_BLOCK = 1216;
const SBV2_MAGIC = 0xe7;
const SBV2_VERSION_RSA = 0x02;
const SBV2_RSA_BITS = 3072;
const SBV2_RSA_BYTES = SBV2_RSA_BITS / 8;
const SBV2_SALT = 32;
/** Byte offsets inside the block (ESP-IDF, Signature Block Format). */
export const SBV2_OFFSETS = {
  magic: 0,
  version: 1,
  digest: 4,
  modulus: 36,
  exponent: 420,
  rinv: 424,
  mPrime: 808,
  signature: 812,
  crc: 1196,
  padding: 1200,
} as const;

// CRC-32/IEEE (reflected, polynomial 0xEDB88320, init and final xor 0xFFFFFFFF): what
// ESP-IDF's esp_rom_crc32_le(0, ...) and Python's zlib.crc32 compute. Written out here
// because zlib.crc32 only arrived in Node 22.2 and the package supports Node >= 20.
const CRC_TABLE = (() => {
  const table = new Uint32Array(256);
  for (let i = 0; i < 256; i++) {
    let c = i;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    table[i] = c >>> 0;
  }
  return table;
})();

export function crc32(data: Uint8Array): number {
  let crc = 0xffffffff;
  for (let i = 0; i < data.length; i++) crc = CRC_TABLE[(crc ^ data[i]) & 0xff] ^ (crc >>> 8);
  return (crc ^ 0xffffffff) >>> 0;
}

function bigFromBytes(be: Buffer): bigint {
  return be.length ? BigInt(`0x${be.toString('hex')}`) : 0n;
}

function bytesFromBig(value: bigint, size: number): Buffer {
  const hex = value.toString(16).padStart(size * 2, '0');
  if (hex.length > size * 2) throw new SigningError(`number does not fit ${size} bytes`);
  return Buffer.from(hex, 'hex');
}

function reversed(buf: Buffer): Buffer {
  return Buffer.from(buf).reverse();
}

/** x^-1 mod 2^32 for odd x (Newton's iteration: each step doubles the correct low bits). */
function inverseMod2p32(x: bigint): bigint {
  const mod = 1n << 32n;
  const a = x % mod;
  let inv = 1n;
  for (let i = 0; i < 5; i++) inv = (inv * (2n - a * inv)) % mod;
  return ((inv % mod) + mod) % mod;
}

/**
 * The 776 bytes of RSA key material of a v2 block (offsets 36..811): n (384 bytes LE), e (u32 LE),
 * rinv = 2^6144 mod n (384 bytes LE), m' = -n^-1 mod 2^32 (u32 LE), the Montgomery constants
 * the ESP32's RSA peripheral uses.
 */
export function secureBootV2KeyMaterial(publicKey: KeyObject): Buffer {
  const key = publicOf(publicKey);
  if (key.asymmetricKeyType !== 'rsa' || key.asymmetricKeyDetails?.modulusLength !== SBV2_RSA_BITS) {
    throw new SigningError(`secure boot v2 uses an RSA-3072 key, not ${describeKey(key)}`);
  }
  const jwk = key.export({ format: 'jwk' });
  const nBytes = jwkBytes(jwk.n, SBV2_RSA_BYTES);
  const eBytes = jwkBytes(jwk.e, 8);
  const e = bigFromBytes(eBytes);
  if (e > 0xffffffffn) throw new SigningError('secure boot v2 stores the RSA exponent in 32 bits: this key has a larger one');
  const n = bigFromBytes(nBytes);
  const rinv = (1n << BigInt(SBV2_RSA_BITS * 2)) % n;
  const mPrime = ((1n << 32n) - inverseMod2p32(n)) % (1n << 32n);
  const out = Buffer.alloc(SBV2_OFFSETS.signature - SBV2_OFFSETS.modulus);
  reversed(nBytes).copy(out, 0);
  out.writeUInt32LE(Number(e), SBV2_OFFSETS.exponent - SBV2_OFFSETS.modulus);
  reversed(bytesFromBig(rinv, SBV2_RSA_BYTES)).copy(out, SBV2_OFFSETS.rinv - SBV2_OFFSETS.modulus);
  out.writeUInt32LE(Number(mPrime), SBV2_OFFSETS.mPrime - SBV2_OFFSETS.modulus);
  return out;
}

/** SHA-256 of the key material: the digest burnt into eFuse (espsecure `digest_sbv2_public_key`). */
export function secureBootV2KeyDigest(publicKey: KeyObject): Buffer {
  return sha256(secureBootV2KeyMaterial(publicKey));
}

function looksSignedSecureBootV2(image: Buffer): boolean {
  if (image.length < 2 * SBV2_SECTOR || image.length % SBV2_SECTOR !== 0) return false;
  const block = image.subarray(image.length - SBV2_SECTOR, image.length - SBV2_SECTOR + SBV2_BLOCK);
  return block[0] === SBV2_MAGIC && block.readUInt32LE(SBV2_OFFSETS.crc) === crc32(block.subarray(0, SBV2_OFFSETS.crc));
}

/**
 * Signs an ESP32 app image for secure boot v2 (RSA scheme): the image padded with 0xFF to a
 * multiple of 4096, then one 4096-byte sector holding a single 1216-byte signature block and
 * 0xFF fill. RSA-PSS with SHA-256, MGF1-SHA-256 and a 32-byte salt, so the block differs on
 * every signing (the salt is random); the digest and key material do not.
 */
export function signSecureBootV2(image: Buffer, privateKey: KeyObject): Buffer {
  requirePrivate(privateKey, 'secure boot v2 signing');
  if (privateKey.asymmetricKeyType !== 'rsa' || privateKey.asymmetricKeyDetails?.modulusLength !== SBV2_RSA_BITS) {
    throw new SigningError(`secure boot v2 signs with an RSA-3072 key, not ${describeKey(privateKey)}`);
  }
  requireEspImage(image, 'secure boot v2 signing');
  if (looksSignedSecureBootV2(image)) throw new SigningError('image already ends with a secure boot v2 signature sector: upload the unsigned .bin');
  const padTo = Math.ceil(image.length / SBV2_SECTOR) * SBV2_SECTOR;
  const padded = Buffer.alloc(padTo, 0xff);
  image.copy(padded, 0);
  const signature = cryptoSign('sha256', padded, { key: privateKey, padding: constants.RSA_PKCS1_PSS_PADDING, saltLength: SBV2_SALT });
  const sector = Buffer.alloc(SBV2_SECTOR, 0xff);
  const block = sector.subarray(0, SBV2_BLOCK);
  block.fill(0);
  block[SBV2_OFFSETS.magic] = SBV2_MAGIC;
  block[SBV2_OFFSETS.version] = SBV2_VERSION_RSA;
  sha256(padded).copy(block, SBV2_OFFSETS.digest);
  secureBootV2KeyMaterial(createPublicKey(privateKey)).copy(block, SBV2_OFFSETS.modulus);
  reversed(signature).copy(block, SBV2_OFFSETS.signature);
  block.writeUInt32LE(crc32(block.subarray(0, SBV2_OFFSETS.crc)), SBV2_OFFSETS.crc);
  return Buffer.concat([padded, sector]);
}

/**
 * The bootloader's checks of the first signature block: sector-aligned size, magic 0xE7,
 * version 2 (RSA), CRC32, the digest of everything before the signature sector, key material
 * equal to the trusted key's, and the RSA-PSS signature. `payloadLength` includes the 0xFF padding.
 */
export function verifySecureBootV2(signed: Buffer, publicKey: KeyObject): VerifyResult {
  let material: Buffer;
  let key: KeyObject;
  try {
    key = publicOf(publicKey);
    material = secureBootV2KeyMaterial(key);
  } catch (err) {
    return { ok: false, reason: (err as Error).message };
  }
  if (!Buffer.isBuffer(signed) || signed.length < 2 * SBV2_SECTOR || signed.length % SBV2_SECTOR !== 0) {
    const len = Buffer.isBuffer(signed) ? signed.length : 0;
    return { ok: false, reason: `image of ${len} bytes is not a sector-aligned image followed by a 4096-byte signature sector` };
  }
  if (signed[0] !== ESP_IMAGE_MAGIC) return { ok: false, reason: `image does not start with 0xE9 (starts with ${hex2(signed[0])})` };
  const payloadLength = signed.length - SBV2_SECTOR;
  const block = signed.subarray(payloadLength, payloadLength + SBV2_BLOCK);
  if (block[SBV2_OFFSETS.magic] !== SBV2_MAGIC) return { ok: false, reason: `signature block magic ${hex2(block[0])} is not 0xE7` };
  if (block[SBV2_OFFSETS.version] !== SBV2_VERSION_RSA) return { ok: false, reason: `signature block version ${block[1]} is not 2 (RSA)` };
  const crcStored = block.readUInt32LE(SBV2_OFFSETS.crc);
  const crcActual = crc32(block.subarray(0, SBV2_OFFSETS.crc));
  if (crcStored !== crcActual) {
    return { ok: false, reason: `signature block CRC32 0x${crcStored.toString(16).padStart(8, '0')} does not match its content (0x${crcActual.toString(16).padStart(8, '0')})` };
  }
  const digest = sha256(signed.subarray(0, payloadLength));
  if (!digest.equals(block.subarray(SBV2_OFFSETS.digest, SBV2_OFFSETS.digest + 32))) {
    return { ok: false, reason: 'image digest does not match the one in the signature block (image altered)' };
  }
  if (!material.equals(block.subarray(SBV2_OFFSETS.modulus, SBV2_OFFSETS.signature))) {
    return { ok: false, reason: `signature block carries another public key than ${keyIdOf(key)}` };
  }
  const signature = reversed(block.subarray(SBV2_OFFSETS.signature, SBV2_OFFSETS.crc));
  const ok = cryptoVerify('sha256', signed.subarray(0, payloadLength), { key, padding: constants.RSA_PKCS1_PSS_PADDING, saltLength: SBV2_SALT }, signature);
  if (!ok) return { ok: false, reason: `RSA-PSS signature does not verify with key ${keyIdOf(key)}` };
  return { ok: true, payloadLength };
}

// ---- by scheme ------------------------------------------------------------------------------

/** Signs `image` in the layout of `scheme`. */
export function signImage(scheme: SignatureScheme, image: Buffer, privateKey: KeyObject): Buffer {
  switch (scheme) {
    case 'esp8266-rsa':
      return signEsp8266(image, privateKey);
    case 'esp32-ecdsa-v1':
      return signEsp32V1(image, privateKey);
    case 'esp32-sbv2-rsa':
      return signSecureBootV2(image, privateKey);
    default:
      throw new SigningError(`unknown signature scheme ${shownInput(scheme)}`);
  }
}

/** Verifies `signed` in the layout of `scheme` (never throws). */
export function verifyImage(scheme: SignatureScheme, signed: Buffer, publicKey: KeyObject): VerifyResult {
  switch (scheme) {
    case 'esp8266-rsa':
      return verifyEsp8266(signed, publicKey);
    case 'esp32-ecdsa-v1':
      return verifyEsp32V1(signed, publicKey);
    case 'esp32-sbv2-rsa':
      return verifySecureBootV2(signed, publicKey);
    default:
      return { ok: false, reason: `unknown signature scheme ${shownInput(scheme)}` };
  }
}
