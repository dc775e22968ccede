import { readTlv, childrenOf, content, DerError } from './der';

/**
 * The serials a CRL lists as revoked (RFC 5280 section 5.1: CertificateList → tbsCertList →
 * revokedCertificates → userCertificate), formatted as Node formats a certificate's
 * `serialNumber` and as lib/pki/names normalizeSerial does: upper-case hex, two digits per
 * byte, no leading zero bytes. Every CRL in the PEM text counts. The signature is not checked:
 * the caller hands the CRL it also gives to TLS, from its own CA store. Walked with the DER
 * helpers (microseconds per entry), so a serving process needs no ASN.1 schema library.
 */
export function revokedSerials(crlPem: string): Set<string> {
  const serials = new Set<string>();
  const blocks = crlPem.match(/-----BEGIN X509 CRL-----[\s\S]*?-----END X509 CRL-----/g) ?? [];
  if (blocks.length === 0 && crlPem.trim()) throw new Error('no PEM "X509 CRL" block in the CRL text');
  for (const block of blocks) {
    const der = Buffer.from(block.replace(/-----(BEGIN|END) X509 CRL-----|\s+/g, ''), 'base64');
    try {
      collect(der, serials);
    } catch (err) {
      if (err instanceof DerError) throw new Error(`unreadable CRL: ${err.message}`);
      throw err;
    }
  }
  return serials;
}

function collect(der: Uint8Array, into: Set<string>): void {
  const list = readTlv(der, 0);
  if (list.tag !== 0x30) throw new DerError('a CRL is a SEQUENCE');
  const tbs = childrenOf(der, list)[0];
  if (tbs?.tag !== 0x30) throw new DerError('tbsCertList missing');
  // version (optional INTEGER), signature, issuer, thisUpdate, nextUpdate (optional Time),
  // revokedCertificates (optional SEQUENCE OF), crlExtensions ([0]): the revoked list is the
  // only SEQUENCE after the two leading SEQUENCEs (signature, issuer).
  const fields = childrenOf(der, tbs);
  let sequences = 0;
  for (const f of fields) {
    if (f.tag !== 0x30) continue;
    if (++sequences < 3) continue;
    for (const entry of childrenOf(der, f)) {
      const serial = entry.tag === 0x30 ? readTlv(der, entry.contentStart, entry.end) : undefined;
      if (serial?.tag !== 0x02) throw new DerError('a revoked entry starts with the serial INTEGER');
      const bytes = content(der, serial);
      let first = 0;
      while (first < bytes.length - 1 && bytes[first] === 0) first++;
      into.add(bytes.subarray(first).toString('hex').toUpperCase());
    }
    return;
  }
}
