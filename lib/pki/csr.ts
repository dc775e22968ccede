import { createPublicKey, verify, KeyObject } from 'node:crypto';
import { readTlv, childrenOf, expectTag, content, raw, oid, DerError, Tlv } from './der';

/** Signature algorithms a CSR may use; SHA-1 is refused. */
const SIGNATURE_HASHES = new Map<string, string>([
  [oid('1.2.840.113549.1.1.11').toString('hex'), 'sha256'],
  [oid('1.2.840.113549.1.1.12').toString('hex'), 'sha384'],
  [oid('1.2.840.113549.1.1.13').toString('hex'), 'sha512'],
  [oid('1.2.840.10045.4.3.2').toString('hex'), 'sha256'],
  [oid('1.2.840.10045.4.3.3').toString('hex'), 'sha384'],
]);
const CN = oid('2.5.4.3').toString('hex');

export interface VerifiedCsr {
  commonName: string | undefined;
  spki: Buffer;
  publicKey: KeyObject;
}

/** The results readVerifiedCsr made: only these are trusted as verified (a look-alike object is not). */
const VERIFIED = new WeakSet<VerifiedCsr>();

/** True for a VerifiedCsr this module made, so a caller may pass one on instead of verifying twice. */
export function isVerifiedCsr(value: unknown): value is VerifiedCsr {
  return typeof value === 'object' && value !== null && VERIFIED.has(value as VerifiedCsr);
}

/**
 * Reads a PKCS#10 request and checks its self-signature with Node's native crypto. Throws
 * with a reason a user can act on. `acceptKey` (optional) judges the key before the signature
 * algorithm is, so a refused key (say Ed25519) is named as such.
 */
export function readVerifiedCsr(pem: string, acceptKey?: (key: KeyObject) => void): VerifiedCsr {
  const body = /-----BEGIN (?:NEW )?CERTIFICATE REQUEST-----([\s\S]*?)-----END (?:NEW )?CERTIFICATE REQUEST-----/.exec(pem)?.[1];
  if (!body) throw new Error('csr must be a PEM certificate request (-----BEGIN CERTIFICATE REQUEST-----)');
  const der = Buffer.from(body.replace(/\s+/g, ''), 'base64');
  let info: Buffer, algorithm: Buffer, signature: Buffer, subject: Buffer, spki: Buffer;
  try {
    // Strict DER (X.690 §10): the request is the whole input, exactly three parts, no unused
    // bits in the signature (RFC 2986 §4.2), and an algorithm with no parameters but NULL. A byte
    // the signature does not cover can then change nothing: the same request has one encoding.
    const outer = expectTag(readTlv(der, 0), 0x30, 'a SEQUENCE');
    if (outer.end !== der.length) throw new DerError('bytes after the request');
    const parts = childrenOf(der, outer);
    if (parts.length !== 3) throw new DerError('a request has three parts');
    const [criTlv, algTlv, sigTlv] = parts as [Tlv, Tlv, Tlv];
    const cri = childrenOf(der, expectTag(criTlv, 0x30, 'CertificationRequestInfo'));
    info = raw(der, criTlv);
    subject = raw(der, expectTag(cri[1], 0x30, 'the subject Name'));
    spki = raw(der, expectTag(cri[2], 0x30, 'the SubjectPublicKeyInfo'));
    const alg = childrenOf(der, expectTag(algTlv, 0x30, 'the signature algorithm'));
    if (alg.length > 2 || (alg.length === 2 && raw(der, alg[1]!).toString('hex') !== '0500')) throw new DerError('signature algorithm parameters other than NULL');
    algorithm = raw(der, expectTag(alg[0], 0x06, 'an algorithm OID'));
    const bits = content(der, expectTag(sigTlv, 0x03, 'the signature BIT STRING'));
    if (bits.length < 2 || bits[0] !== 0) throw new DerError('the signature BIT STRING must have no unused bits');
    signature = bits.subarray(1);
  } catch (err) {
    throw new Error(`cannot parse the CSR: ${(err as Error).message}`);
  }
  let publicKey: KeyObject;
  try {
    publicKey = createPublicKey({ key: spki, format: 'der', type: 'spki' });
  } catch (err) {
    throw new Error(`cannot read the CSR public key: ${(err as Error).message}`);
  }
  acceptKey?.(publicKey);
  const hash = SIGNATURE_HASHES.get(algorithm.toString('hex'));
  if (!hash) throw new Error('the CSR is signed with an unsupported or weak algorithm (use SHA-256 or better)');
  let ok = false;
  try {
    ok = verify(hash, info, publicKey, signature);
  } catch {
    ok = false;
  }
  if (!ok) throw new Error('the CSR signature does not verify');
  const verified = { commonName: commonNameOf(subject), spki, publicKey };
  VERIFIED.add(verified);
  return verified;
}

/** The first CN of a DER Name (subject or issuer), or undefined. */
export function commonNameOf(name: Buffer): string | undefined {
  try {
    for (const rdn of childrenOf(name, readTlv(name, 0))) {
      for (const atv of childrenOf(name, rdn)) {
        const [type, value] = childrenOf(name, atv);
        if (raw(name, type).toString('hex') !== CN) continue;
        const bytes = content(name, value);
        // UTF8String, PrintableString, IA5String, TeletexString; BMPString is UCS-2 big-endian.
        return value.tag === 0x1e ? Buffer.from(bytes).swap16().toString('utf16le') : bytes.toString(value.tag === 0x14 ? 'latin1' : 'utf8');
      }
    }
  } catch (err) {
    if (err instanceof DerError) return undefined;
    throw err;
  }
  return undefined;
}
