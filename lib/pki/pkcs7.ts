import { readTlv, childrenOf, expectTag, raw, content, sequence, set, explicit, oid, tlv, Tlv } from './der';

/**
 * PKCS#7 / CMS "certs-only" messages (RFC 5652 §5, RFC 7030 §4.1.3 and §4.2.3): a SignedData
 * with no signers that only carries certificates. EST answers /cacerts and /simpleenroll with
 * one. Written by hand on the DER helpers because node-forge's pkcs7 cannot carry a certificate
 * whose key is EC, and device certificates here have EC P-256 keys.
 */

const SIGNED_DATA = oid('1.2.840.113549.1.7.2');
const DATA = oid('1.2.840.113549.1.7.1');
/** RFC 5652 §5.1: version 1 when there are only X.509 v3 certificates and no attribute certificates. */
const VERSION_1 = tlv(0x02, Buffer.from([1]));

/**
 * A degenerate SignedData ContentInfo holding `certificateDers` in the order given (RFC 7030
 * §4.1.3 leaves the order to the server; clients read them all). Each must be a DER certificate.
 */
export function certsOnly(certificateDers: Buffer[]): Buffer {
  for (const der of certificateDers) {
    const t = readTlv(der, 0);
    if (t.end !== der.length) throw new Error('a certificate has trailing bytes');
    certificateTlv(der, t, 'a certificate');
  }
  const signedData = sequence(
    VERSION_1,
    set(), // digestAlgorithms: none, there are no signers
    sequence(DATA), // encapContentInfo: id-data, content omitted
    tlv(0xa0, ...certificateDers), // certificates [0] IMPLICIT SET OF Certificate
    set(), // signerInfos: none
  );
  return sequence(SIGNED_DATA, explicit(0, signedData));
}

/** The certificates (DER) of a certs-only PKCS#7 message. Throws a short Error when the bytes are not one. */
export function certificatesOf(pkcs7Der: Buffer): Buffer[] {
  try {
    return readCertificates(pkcs7Der);
  } catch (err) {
    throw new Error(`not a PKCS#7 certificate bundle: ${(err as Error).message}`);
  }
}

function readCertificates(buf: Buffer): Buffer[] {
  const top = expectTag(readTlv(buf, 0), 0x30, 'a ContentInfo SEQUENCE');
  if (top.end !== buf.length) throw new Error('trailing bytes after the ContentInfo');
  const [type, wrapped, ...extra] = childrenOf(buf, top);
  if (!type || raw(buf, expectTag(type, 0x06, 'a content type OID')).compare(SIGNED_DATA) !== 0) throw new Error('the content type is not signedData');
  if (extra.length) throw new Error('unexpected fields in the ContentInfo');
  const inner = childrenOf(buf, expectTag(wrapped, 0xa0, 'the [0] content'));
  if (inner.length !== 1) throw new Error('expected one SignedData');
  const fields = childrenOf(buf, expectTag(inner[0], 0x30, 'a SignedData SEQUENCE'));
  let at = 0;
  const version = expectTag(fields[at++], 0x02, 'the SignedData version');
  if (version.end - version.contentStart !== 1 || buf[version.contentStart] > 5) throw new Error('unknown SignedData version');
  expectTag(fields[at++], 0x31, 'the digestAlgorithms SET');
  const encap = childrenOf(buf, expectTag(fields[at++], 0x30, 'the encapContentInfo'));
  expectTag(encap[0], 0x06, 'the encapsulated content type');
  const certificates: Buffer[] = [];
  if (fields[at]?.tag === 0xa0) {
    for (const c of childrenOf(buf, fields[at++])) certificates.push(Buffer.from(certificateTlv(buf, c, 'an X.509 certificate')));
  }
  if (fields[at]?.tag === 0xa1) at++; // crls [1]: not ours to read
  expectTag(fields[at++], 0x31, 'the signerInfos SET');
  if (at !== fields.length) throw new Error('unexpected fields after signerInfos');
  return certificates;
}

/** Checks the outline of a Certificate (RFC 5280 §4.1: tbsCertificate, signatureAlgorithm, signatureValue) and returns its bytes. */
function certificateTlv(buf: Buffer, t: Tlv, what: string): Buffer {
  const parts = childrenOf(buf, expectTag(t, 0x30, what));
  if (parts.length !== 3) throw new Error(`expected ${what}`);
  childrenOf(buf, expectTag(parts[0], 0x30, 'a tbsCertificate'));
  expectTag(parts[1], 0x30, 'a signature algorithm');
  if (content(buf, expectTag(parts[2], 0x03, 'a signature BIT STRING')).length < 2) throw new Error('empty signature');
  return raw(buf, t);
}
