import { generateKeyPair, createPrivateKey, createPublicKey, KeyObject, webcrypto, X509Certificate } from 'node:crypto';
import { availableParallelism } from 'node:os';
import { RSA_SHA256, CryptoKey } from './x509';
import { Semaphore } from '../concurrency/semaphore';

export const RSA_KEY_SIZES = [2048, 3072, 4096] as const;
export type RsaKeySize = (typeof RSA_KEY_SIZES)[number];

export interface RsaKeyMaterial {
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
export function generateRsaKey(bits: RsaKeySize): Promise<RsaKeyMaterial> {
  return keygenSlots.run(() => generateRsaKeyNow(bits));
}

function generateRsaKeyNow(bits: RsaKeySize): Promise<RsaKeyMaterial> {
  return new Promise((resolve, reject) => {
    generateKeyPair('rsa', { modulusLength: bits, publicExponent: 0x10001 }, (err, publicKey, privateKey) => {
      if (err) return reject(err);
      resolve({
        privateKeyPem: privateKey.export({ type: 'pkcs8', format: 'pem' }).toString(),
        publicKeySpki: publicKey.export({ type: 'spki', format: 'der' }),
      });
    });
  });
}

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
