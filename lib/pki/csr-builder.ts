import { sign, createPublicKey, KeyObject } from 'node:crypto';
import { sequence, set, oid, tlv, utf8String, bitString, NULL } from './der';

/** RFC 5758 §3.2: ecdsa-with-SHA256 has no parameters. */
const ECDSA_SHA256 = sequence(oid('1.2.840.10045.4.3.2'));
/** RFC 4055 §5: sha256WithRSAEncryption with NULL parameters. */
const RSA_SHA256 = sequence(oid('1.2.840.113549.1.1.11'), NULL);
const CN = oid('2.5.4.3');
const VERSION_0 = tlv(0x02, Buffer.from([0]));
/** attributes [0] IMPLICIT SET OF Attribute, empty (RFC 2986 §4.1: the field itself is not optional). */
const NO_ATTRIBUTES = Buffer.from([0xa0, 0x00]);

/**
 * A PKCS#10 certification request (RFC 2986), DER: subject CN only, no attributes, signed with
 * ecdsa-with-SHA256 (EC P-256 key) or sha256WithRSAEncryption (RSA key). For the simulator,
 * tests and benchmarks; a real device builds the same request in firmware/core.
 */
export function buildCsr(opts: { commonName: string; privateKey: KeyObject }): Buffer {
  const { commonName, privateKey } = opts;
  if (privateKey.type !== 'private') throw new Error('buildCsr needs a private key');
  let algorithm: Buffer;
  if (privateKey.asymmetricKeyType === 'ec' && privateKey.asymmetricKeyDetails?.namedCurve === 'prime256v1') algorithm = ECDSA_SHA256;
  else if (privateKey.asymmetricKeyType === 'rsa') algorithm = RSA_SHA256;
  else throw new Error('buildCsr signs with EC P-256 or RSA keys only');
  const spki = createPublicKey(privateKey).export({ type: 'spki', format: 'der' });
  const info = sequence(VERSION_0, sequence(set(sequence(CN, utf8String(commonName)))), spki, NO_ATTRIBUTES);
  // node:crypto gives ECDSA signatures as DER Ecdsa-Sig-Value (RFC 3279 §2.2.3), what X.509 wants.
  const signature = sign('sha256', info, privateKey);
  return sequence(info, algorithm, bitString(signature));
}
