import { createHash, sign, KeyObject } from 'node:crypto';
import { isIPv4, isIPv6 } from 'node:net';
import { sequence, set, explicit, oid, integerFromHex, time, utf8String, octetString, bitString, tlv, NULL, TRUE, readTlv, childrenOf, expectTag, content, raw } from './der';

const SHA256_WITH_RSA = sequence(oid('1.2.840.113549.1.1.11'), NULL);
const VERSION_3 = explicit(0, tlv(0x02, Buffer.from([2])));
const CN = oid('2.5.4.3');
const EKU = { server: oid('1.3.6.1.5.5.7.3.1'), client: oid('1.3.6.1.5.5.7.3.2') };
// Fixed extensions, encoded once: CA:FALSE (critical) and the key usage (critical). An RSA key
// may do TLS key transport, so digitalSignature + keyEncipherment; an EC key only signs (ECDHE),
// so digitalSignature alone (RFC 5480 §3: keyEncipherment is not for id-ecPublicKey).
const BASIC_CONSTRAINTS_LEAF = sequence(oid('2.5.29.19'), TRUE, octetString(sequence()));
const KEY_USAGE_RSA_LEAF = sequence(oid('2.5.29.15'), TRUE, octetString(bitString(Buffer.from([0xa0]), 5)));
const KEY_USAGE_EC_LEAF = sequence(oid('2.5.29.15'), TRUE, octetString(bitString(Buffer.from([0x80]), 7)));
const EC_PUBLIC_KEY = oid('1.2.840.10045.2.1');

export interface LeafSpec {
  serialHex: string;
  /** The issuer's subject Name, DER, exactly as in the CA certificate. */
  issuerName: Buffer;
  /** The CA's key identifier, for the authority key identifier extension. */
  authorityKeyId: Buffer;
  notBefore: Date;
  notAfter: Date;
  commonName: string;
  /** SubjectPublicKeyInfo, DER. */
  spki: Buffer;
  usage: 'server' | 'client';
  dnsNames?: string[];
  ipAddresses?: string[];
}

/** RFC 5280 method 1: SHA-1 of the subjectPublicKey bits. */
export function keyIdentifier(spki: Buffer): Buffer {
  const outer = readTlv(spki, 0);
  const [, bits] = childrenOf(spki, outer);
  const key = content(spki, expectTag(bits, 0x03, 'the subjectPublicKey BIT STRING'));
  return createHash('sha1').update(key.subarray(1)).digest();
}

/** The subject Name of a certificate, DER, taken from its bytes (for use as an issuer Name). */
export function subjectNameOf(certDer: Buffer): Buffer {
  const [tbs] = childrenOf(certDer, readTlv(certDer, 0));
  const fields = childrenOf(certDer, tbs);
  const offset = fields[0].tag === 0xa0 ? 1 : 0; // [0] version is optional
  return raw(certDer, expectTag(fields[offset + 4], 0x30, 'the subject Name'));
}

/** Whether a SubjectPublicKeyInfo holds an EC key (its algorithm is id-ecPublicKey). */
export function isEcSpki(spki: Buffer): boolean {
  const [algorithm] = childrenOf(spki, readTlv(spki, 0));
  const [id] = childrenOf(spki, expectTag(algorithm, 0x30, 'the key AlgorithmIdentifier'));
  return raw(spki, expectTag(id, 0x06, 'the key algorithm OID')).equals(EC_PUBLIC_KEY);
}

export function buildTbsCertificate(spec: LeafSpec): Buffer {
  const extensions = [
    BASIC_CONSTRAINTS_LEAF,
    isEcSpki(spec.spki) ? KEY_USAGE_EC_LEAF : KEY_USAGE_RSA_LEAF,
    sequence(oid('2.5.29.37'), octetString(sequence(EKU[spec.usage]))),
    sequence(oid('2.5.29.14'), octetString(octetString(keyIdentifier(spec.spki)))),
    sequence(oid('2.5.29.35'), octetString(sequence(tlv(0x80, spec.authorityKeyId)))),
  ];
  const names = [...(spec.dnsNames ?? []).map((d) => tlv(0x82, Buffer.from(d, 'ascii'))), ...(spec.ipAddresses ?? []).map((ip) => tlv(0x87, ipBytes(ip)))];
  if (names.length) extensions.push(sequence(oid('2.5.29.17'), octetString(sequence(...names))));
  return sequence(
    VERSION_3,
    integerFromHex(spec.serialHex),
    SHA256_WITH_RSA,
    spec.issuerName,
    sequence(time(spec.notBefore), time(spec.notAfter)),
    sequence(set(sequence(CN, utf8String(spec.commonName)))),
    spec.spki,
    explicit(3, sequence(...extensions)),
  );
}

/** Signs natively in the libuv thread pool (the callback form of crypto.sign). */
export function signCertificate(tbs: Buffer, caKey: KeyObject): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    sign('sha256', tbs, caKey, (err, signature) => {
      if (err) return reject(err);
      resolve(sequence(tbs, SHA256_WITH_RSA, bitString(signature)));
    });
  });
}

function ipBytes(ip: string): Buffer {
  if (isIPv4(ip)) return Buffer.from(ip.split('.').map(Number));
  if (!isIPv6(ip)) throw new Error(`invalid IP address ${JSON.stringify(ip)}`);
  const [head, tail = ''] = ip.includes('::') ? ip.split('::') : [ip, undefined];
  const words = (s: string | undefined): number[] => (s ? s.split(':').map((w) => parseInt(w, 16)) : []);
  const h = words(head);
  const t = words(tail);
  const all = ip.includes('::') ? [...h, ...new Array(8 - h.length - t.length).fill(0), ...t] : h;
  const out = Buffer.alloc(16);
  all.forEach((w, i) => out.writeUInt16BE(w, i * 2));
  return out;
}
