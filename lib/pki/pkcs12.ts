// A password-protected PKCS#12 (.p12 / .pfx, RFC 7292) of one identity, for the tools that take
// an identity as one file: Node-RED's core tls-config (certType "pfx"), browsers, Windows and
// macOS key stores, MQTT Explorer. Built with node-forge, whose pkcs12 module is the standard
// JavaScript implementation (Node's crypto reads PKCS#12 but cannot write it).
import { X509Certificate, createPrivateKey, createPublicKey } from 'node:crypto';
import forge from 'node-forge';

/** Shorter passwords fall to a guessing run: the MAC lets anyone with the file test guesses offline. */
export const PKCS12_MIN_PASSWORD = 8;

/**
 * Iterations of the password-based key derivation (PBKDF2 for the key bag, the RFC 7292 B.2 KDF
 * for the MAC): OpenSSL 3's own default for `openssl pkcs12 -export` (PKCS12_DEFAULT_ITER), so
 * every reader that takes OpenSSL's files takes ours, and loading stays quick on a Raspberry Pi.
 */
const ITERATIONS = 2048;
const SALT_BYTES = 16;

export class Pkcs12Error extends Error {}

export interface Pkcs12Identity {
  certificatePem: string;
  privateKeyPem: string;
  /** Added as the chain entry, so a reader can also trust the broker's certificate from the file. */
  caCertificatePem: string;
  /** The friendlyName bag attribute (RFC 7292 4.2, PKCS#9): what key stores show; the CN. */
  friendlyName: string;
}

export function checkPkcs12Password(password: unknown): string {
  if (typeof password !== 'string' || password.length === 0) throw new Pkcs12Error('a .p12 needs a password: payload.password');
  if ([...password].length < PKCS12_MIN_PASSWORD) throw new Pkcs12Error(`the .p12 password must have at least ${PKCS12_MIN_PASSWORD} characters`);
  if (password.includes('\0')) throw new Pkcs12Error('the .p12 password may not contain a NUL character');
  return password;
}

/**
 * The DER of a PFX with the certificate (friendlyName, localKeyId), the CA certificate, and the
 * private key in a PKCS#8 shrouded key bag encrypted with PBES2: PBKDF2 with HMAC-SHA-256 and
 * AES-256-CBC (RFC 8018), and an HMAC-SHA-256 MAC over the whole content. These are what
 * OpenSSL 3 writes by default; OpenSSL 3 refuses the old RC2 / 3DES ones unless run with -legacy.
 */
export function buildPkcs12(identity: Pkcs12Identity, passwordInput: unknown): Buffer {
  const password = checkPkcs12Password(passwordInput);
  const cert = new X509Certificate(identity.certificatePem);
  const key = createPrivateKey(identity.privateKeyPem);
  if (!createPublicKey(key).export({ type: 'spki', format: 'der' }).equals(cert.publicKey.export({ type: 'spki', format: 'der' }))) {
    throw new Pkcs12Error('the private key on disk does not belong to the certificate');
  }
  // forge reads PKCS#1 and unencrypted PKCS#8 RSA keys; the store's keys are PKCS#8.
  const forgeKey = forge.pki.privateKeyFromPem(key.export({ type: 'pkcs8', format: 'pem' }).toString());
  const chain = [forge.pki.certificateFromPem(identity.certificatePem), forge.pki.certificateFromPem(identity.caCertificatePem)];

  // PBES2 takes the password as bytes: UTF-8, as OpenSSL passes it (RFC 8018 leaves the encoding
  // to the application). forge's option type lacks prfAlgorithm, which its pbe code reads.
  const options = { algorithm: 'aes256', prfAlgorithm: 'sha256', count: ITERATIONS, saltSize: SALT_BYTES, useMac: false, friendlyName: identity.friendlyName } as Parameters<typeof forge.pkcs12.toPkcs12Asn1>[3];
  const pfx = forge.pkcs12.toPkcs12Asn1(forgeKey, chain, forge.util.encodeUtf8(password), options);

  // forge's own MAC is HMAC-SHA-1 only; this one is HMAC-SHA-256 (RFC 7292 5.1, key from the B.2
  // KDF with SHA-256, the password as a BMPString, which forge's KDF builds from the string).
  const authSafe = pfx.value as forge.asn1.Asn1[];
  const content = ((authSafe[1].value as forge.asn1.Asn1[])[1].value as forge.asn1.Asn1[])[0].value as string;
  const salt = forge.random.getBytesSync(SALT_BYTES);
  const macKey = forge.pkcs12.generateKey(password, forge.util.createBuffer(salt), 3, ITERATIONS, 32, forge.md.sha256.create());
  const hmac = forge.hmac.create();
  hmac.start(forge.md.sha256.create(), macKey.getBytes());
  hmac.update(content);
  const { asn1 } = forge;
  const macData = asn1.create(asn1.Class.UNIVERSAL, asn1.Type.SEQUENCE, true, [
    asn1.create(asn1.Class.UNIVERSAL, asn1.Type.SEQUENCE, true, [
      asn1.create(asn1.Class.UNIVERSAL, asn1.Type.SEQUENCE, true, [
        asn1.create(asn1.Class.UNIVERSAL, asn1.Type.OID, false, asn1.oidToDer(forge.pki.oids.sha256).getBytes()),
        asn1.create(asn1.Class.UNIVERSAL, asn1.Type.NULL, false, ''),
      ]),
      asn1.create(asn1.Class.UNIVERSAL, asn1.Type.OCTETSTRING, false, hmac.digest().getBytes()),
    ]),
    asn1.create(asn1.Class.UNIVERSAL, asn1.Type.OCTETSTRING, false, salt),
    asn1.create(asn1.Class.UNIVERSAL, asn1.Type.INTEGER, false, asn1.integerToDer(ITERATIONS).getBytes()),
  ]);
  const pfxValue = authSafe.filter((v) => v !== undefined);
  pfx.value = [...pfxValue, macData];
  return Buffer.from(asn1.toDer(pfx).getBytes(), 'binary');
}
