// @peculiar/x509 resolves its algorithm registry through tsyringe, which needs the Reflect
// metadata polyfill loaded first.
import 'reflect-metadata';
import * as x509 from '@peculiar/x509';
import { webcrypto, createHash, X509Certificate as NodeX509 } from 'node:crypto';

export type CryptoKey = webcrypto.CryptoKey;

// Node's WebCrypto signs natively in the libuv thread pool: ~1 ms per RSA-2048 signature
// off the event loop, where a JavaScript RSA (node-forge) takes ~25 ms on it.
x509.cryptoProvider.set(webcrypto as unknown as NonNullable<Parameters<typeof x509.X509CertificateGenerator.create>[1]>);

export { x509 };

export const RSA_SHA256: webcrypto.RsaHashedImportParams = { name: 'RSASSA-PKCS1-v1_5', hash: 'SHA-256' };

export type PemLabel = 'CERTIFICATE' | 'X509 CRL' | 'PRIVATE KEY' | 'PUBLIC KEY' | 'CERTIFICATE REQUEST';

export function toPem(label: PemLabel, der: ArrayBuffer | Uint8Array): string {
  const b64 = Buffer.from(der instanceof Uint8Array ? der : new Uint8Array(der)).toString('base64');
  const lines = b64.match(/.{1,64}/g) ?? [];
  return `-----BEGIN ${label}-----\n${lines.join('\n')}\n-----END ${label}-----\n`;
}

/** Colon-separated upper-case hex, the form `openssl x509 -fingerprint` prints. */
export function fingerprint(der: Uint8Array, algorithm: 'sha1' | 'sha256'): string {
  return createHash(algorithm).update(der).digest('hex').toUpperCase().match(/../g)!.join(':');
}

/** Checks that a certificate was signed by the CA, with Node's native X.509 code. */
export function isSignedBy(certPem: string, caPem: string): boolean {
  try {
    return new NodeX509(certPem).verify(new NodeX509(caPem).publicKey);
  } catch {
    return false;
  }
}
