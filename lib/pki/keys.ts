import { generateKeyPair, createPrivateKey, createPublicKey, KeyObject, webcrypto, X509Certificate } from 'node:crypto';
import { availableParallelism } from 'node:os';
import { RSA_SHA256, CryptoKey } from './x509';
import { Semaphore } from '../concurrency/semaphore';
import { CaStoreError } from './ca-error';
import { shownInput } from '../input-text';

export const RSA_KEY_SIZES = [2048, 3072, 4096] as const;
export type RsaKeySize = (typeof RSA_KEY_SIZES)[number];

/**
 * The key of a leaf: RSA (the default for keys made here) or EC, which means NIST P-256 only
 * (prime256v1, RFC 5480 §2.1.1.1): the one curve BearSSL on the ESP8266 and mbedTLS on the
 * ESP32 both handle in hardware-friendly time (docs/enrollment.md).
 */
export const KEY_TYPES = ['rsa', 'ec'] as const;
export type KeyType = (typeof KEY_TYPES)[number];

/** A user's keyType, or `fallback` when none is given. */
export function assertKeyType(value: unknown, fallback: KeyType = 'rsa'): KeyType {
  if (value === undefined || value === null || value === '') return fallback;
  if (typeof value === 'string' && (KEY_TYPES as readonly string[]).includes(value)) return value as KeyType;
  throw new CaStoreError(`unknown keyType ${shownInput(value)}: use "rsa" or "ec" (P-256)`);
}

export interface KeyMaterial {
  /** PKCS#8 PEM, unencrypted (BearSSL on the ESP8266 reads it as is). */
  privateKeyPem: string;
  /** SubjectPublicKeyInfo DER. */
  publicKeySpki: Buffer;
}

export function assertKeySize(bits: unknown): RsaKeySize {
  const n = Number(bits);
  if (!(RSA_KEY_SIZES as readonly number[]).includes(n)) {
    throw new Error(`unsupported RSA key size ${String(bits)}: use 2048 (best for ESP8266), 3072 or 4096`);
  }
  return n as RsaKeySize;
}

/**
 * Key generations under way at once: one per core keeps every core busy, and leaves the
 * libuv pool's other threads free for the signatures and file writes of keys already made
 * (so certificates come out steadily instead of in bursts).
 */
const keygenSlots = new Semaphore(Math.max(1, availableParallelism()));

/** Native key generation in the libuv thread pool, at most one per core at a time (first come first served). */
export function generateRsaKey(bits: RsaKeySize): Promise<KeyMaterial> {
  return keygenSlots.run(() => generateKeyNow('rsa', bits));
}

/** A P-256 key, natively and under the same slots as RSA (a P-256 key takes well under a millisecond). */
export function generateEcKey(): Promise<KeyMaterial> {
  return keygenSlots.run(() => generateKeyNow('ec', 0));
}

/** A fresh leaf key of the type asked for; `rsaBits` is the store's RSA leaf size. */
export function generateLeafKey(keyType: KeyType, rsaBits: RsaKeySize): Promise<KeyMaterial> {
  return keyType === 'ec' ? generateEcKey() : generateRsaKey(rsaBits);
}

function generateKeyNow(type: KeyType, bits: number): Promise<KeyMaterial> {
  // The encodings are asked for here so that they, too, run in the libuv pool: exporting the
  // KeyObjects afterwards would take ~0.2 ms of main thread per key.
  const encoding = { publicKeyEncoding: { type: 'spki', format: 'der' }, privateKeyEncoding: { type: 'pkcs8', format: 'pem' } } as const;
  return new Promise((resolve, reject) => {
    const done = (err: Error | null, publicKeySpki: Buffer, privateKeyPem: string): void => {
      if (err) return reject(err);
      resolve({ privateKeyPem, publicKeySpki });
    };
    if (type === 'ec') generateKeyPair('ec', { namedCurve: 'prime256v1', ...encoding }, done);
    else generateKeyPair('rsa', { modulusLength: bits, publicExponent: 0x10001, ...encoding }, done);
  });
}

/**
 * The type of a key a holder brings (CSR): EC P-256 or RSA of 2048 to 4096 bits; anything else
 * (other curves, Ed25519, short RSA) is refused. `what` names the key in the message.
 */
export function leafKeyTypeOf(key: KeyObject, what = 'the key'): KeyType {
  const t = key.asymmetricKeyType;
  if (t === 'ec') {
    const curve = key.asymmetricKeyDetails?.namedCurve;
    if (curve !== 'prime256v1') throw new CaStoreError(`${what} is EC on curve ${curve ?? 'unknown'}; only P-256 (prime256v1) is accepted`);
    return 'ec';
  }
  if (t === 'rsa') {
    const bits = key.asymmetricKeyDetails?.modulusLength ?? 0;
    if (bits < 2048 || bits > 4096) throw new CaStoreError(`${what} is RSA of ${bits} bits; use 2048 to 4096`);
    return 'rsa';
  }
  throw new CaStoreError(`${what} is ${t ?? 'unknown'}; use EC P-256 or RSA 2048 to 4096`);
}

/** How a key type is named in messages. */
export const keyTypeName = (t: KeyType): string => (t === 'ec' ? 'EC P-256' : 'RSA');

/** Reads a PEM private key (PKCS#1 or PKCS#8, optionally encrypted) and insists on RSA. */
export function readRsaPrivateKey(pem: string, passphrase?: string): KeyObject {
  let key: KeyObject;
  try {
    key = createPrivateKey({ key: pem, format: 'pem', passphrase: passphrase || undefined });
  } catch (err) {
    const msg = (err as Error).message;
    // A wrong passphrase can also decrypt to garbage with valid padding (about 1 in 256), which
    // then fails as undecodable DER: for an encrypted key every failure means the passphrase.
    if (/ENCRYPTED/.test(pem) || /passphrase|decrypt|interrupted or cancelled/i.test(msg)) throw new Error('cannot read the CA private key: wrong or missing passphrase');
    throw new Error(`cannot read the private key: ${msg}`);
  }
  if (key.asymmetricKeyType !== 'rsa') throw new Error(`the private key is ${key.asymmetricKeyType ?? 'unknown'}, expected RSA`);
  return key;
}

export function spkiOf(key: KeyObject): Buffer {
  return createPublicKey(key).export({ type: 'spki', format: 'der' });
}

/** True when the (private or public) key is the one the certificate certifies. */
export function keyBelongsTo(key: KeyObject, certificate: X509Certificate): boolean {
  return spkiOf(key).equals(certificate.publicKey.export({ type: 'spki', format: 'der' }));
}

export function exportPrivateKeyPem(key: KeyObject, passphrase?: string): string {
  if (passphrase) {
    return key.export({ type: 'pkcs8', format: 'pem', cipher: 'aes-256-cbc', passphrase }).toString();
  }
  return key.export({ type: 'pkcs8', format: 'pem' }).toString();
}

export function toSigningKey(key: KeyObject): Promise<CryptoKey> {
  const der = key.export({ type: 'pkcs8', format: 'der' });
  return webcrypto.subtle.importKey('pkcs8', der, RSA_SHA256, false, ['sign']) as Promise<CryptoKey>;
}
