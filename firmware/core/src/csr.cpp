// What the device sends to the enrollment listener (docs/enrollment.md): the PKCS#10 CSR of its
// P-256 key and the HTTP Basic credential of bootstrap.txt.
#include "der.h"
#include "fleet_core.h"
#include "text.h"

namespace fleet {

namespace {

// OIDs with their tag and length (RFC 5280 §4.1.2.4 id-at-commonName 2.5.4.3; RFC 5480 §2.1.1
// id-ecPublicKey 1.2.840.10045.2.1 and secp256r1 1.2.840.10045.3.1.7; RFC 5758 §3.2
// ecdsa-with-SHA256 1.2.840.10045.4.3.2).
constexpr uint8_t kOidCommonName[] = {0x06, 0x03, 0x55, 0x04, 0x03};
constexpr uint8_t kOidEcPublicKey[] = {0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01};
constexpr uint8_t kOidP256[] = {0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07};
constexpr uint8_t kOidEcdsaSha256[] = {0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x02};
constexpr uint8_t kVersion0[] = {der::kInteger, 0x01, 0x00};
constexpr uint8_t kNoAttributes[] = {der::kContext0, 0x00};  // attributes [0] IMPLICIT SET OF, empty

// A positive INTEGER of at most 33 bytes in its fewest bytes.
bool isScalar(const der::Element& x) {
  if (x.length == 0 || x.length > 33 || (x.value[0] & 0x80)) return false;
  return x.length == 1 || x.value[0] != 0 || (x.value[1] & 0x80);
}

// An ECDSA-Sig-Value (RFC 5480 §2.2 / RFC 3279 §2.2.3): SEQUENCE { r INTEGER, s INTEGER },
// both positive, minimally encoded, nothing after.
bool isEcdsaDer(const uint8_t* sig, size_t n) {
  der::Reader top(sig, n);
  der::Element seq, r, s;
  if (!top.expect(der::kSequence, seq) || !top.atEnd()) return false;
  der::Reader parts(seq);
  return parts.expect(der::kInteger, r) && parts.expect(der::kInteger, s) && parts.atEnd() && isScalar(r) && isScalar(s);
}

}  // namespace

size_t buildCsr(const char* id, const uint8_t publicKey[kEcP256PointSize], CsrSigner sign, void* context, uint8_t* out,
                size_t size, const char** reason) {
  const char* ignored;
  if (!reason) reason = &ignored;
  const size_t idLength = text::length(id);
  if (!isDeviceId(id, idLength)) return *reason = "the CN must be a device id (12 lower-case hex digits)", 0;
  if (!publicKey || publicKey[0] != 0x04) return *reason = "the key must be an uncompressed P-256 point", 0;
  if (!sign || !out) return *reason = "no signer or no buffer", 0;

  // Sizes of the contents, from the inside out (RFC 2986 §4.1 CertificationRequestInfo).
  const size_t atvBody = sizeof kOidCommonName + der::elementSize(idLength);  // AttributeTypeAndValue
  const size_t rdnBody = der::elementSize(atvBody);                           // SET of one
  const size_t nameBody = der::elementSize(rdnBody);                          // SEQUENCE of one RDN
  const size_t algorithmBody = sizeof kOidEcPublicKey + sizeof kOidP256;
  const size_t keyBits = 1 + kEcP256PointSize;                                // no unused bits, then the point
  const size_t spkiBody = der::elementSize(algorithmBody) + der::elementSize(keyBits);
  const size_t infoBody = sizeof kVersion0 + der::elementSize(nameBody) + der::elementSize(spkiBody) + sizeof kNoAttributes;
  const size_t info = der::elementSize(infoBody);
  const size_t algorithm = der::elementSize(sizeof kOidEcdsaSha256);  // no parameters (RFC 5758 §3.2)
  // The info is written after room for the outer header (3 bytes cover kCsrMax) and moved down
  // once the signature, and with it the outer length, is known.
  const size_t reserve = 3;
  if (size < reserve + info + algorithm + der::elementSize(1 + kEcdsaDerMax)) return *reason = "CSR buffer too small", 0;

  der::Writer w(out + reserve, size - reserve);
  w.header(der::kSequence, infoBody).bytes(kVersion0, sizeof kVersion0);
  w.header(der::kSequence, nameBody).header(der::kSet, rdnBody).header(der::kSequence, atvBody);
  w.bytes(kOidCommonName, sizeof kOidCommonName).header(der::kUtf8String, idLength).bytes(reinterpret_cast<const uint8_t*>(id), idLength);
  w.header(der::kSequence, spkiBody).header(der::kSequence, algorithmBody).bytes(kOidEcPublicKey, sizeof kOidEcPublicKey).bytes(kOidP256, sizeof kOidP256);
  w.header(der::kBitString, keyBits).byte(0).bytes(publicKey, kEcP256PointSize);
  w.bytes(kNoAttributes, sizeof kNoAttributes);
  if (!w.ok() || w.length() != info) return *reason = "CSR buffer too small", 0;

  uint8_t signature[kEcdsaDerMax];
  const size_t signatureLength = sign(context, out + reserve, info, signature, sizeof signature);
  if (signatureLength == 0 || signatureLength > sizeof signature) return *reason = "the key could not sign the CSR", 0;
  if (!isEcdsaDer(signature, signatureLength)) return *reason = "the signer returned no DER ECDSA signature", 0;

  const size_t body = info + algorithm + der::elementSize(1 + signatureLength);
  const size_t header = der::headerSize(body);
  if (header > reserve || header + body > size) return *reason = "CSR buffer too small", 0;
  for (size_t i = 0; i < info; i++) out[header + i] = out[reserve + i];  // down: no overlap trouble
  der::Writer top(out, size);
  top.header(der::kSequence, body);
  der::Writer tail(out + header + info, size - header - info);
  tail.header(der::kSequence, sizeof kOidEcdsaSha256).bytes(kOidEcdsaSha256, sizeof kOidEcdsaSha256);
  tail.header(der::kBitString, 1 + signatureLength).byte(0).bytes(signature, signatureLength);
  if (!top.ok() || !tail.ok()) return *reason = "CSR buffer too small", 0;
  *reason = nullptr;
  return header + body;
}

bool basicAuthorization(const char* line, size_t length, char* out, size_t size, const char** reason) {
  const char* ignored;
  if (!reason) reason = &ignored;
  if (!line) return *reason = "bootstrap.txt is empty", false;
  // One line: what follows a line break may only be more line breaks or blanks.
  size_t n = 0;
  while (n < length && line[n] != '\n' && line[n] != '\r') n++;
  for (size_t i = n; i < length; i++) {
    if (!text::isBlank(line[i])) return *reason = "bootstrap.txt must be one line user:password", false;
  }
  if (n == 0) return *reason = "bootstrap.txt is empty", false;
  if (n > kBootstrapMax) return *reason = "bootstrap.txt is longer than 160 characters", false;
  size_t colon = n;
  for (size_t i = 0; i < n; i++) {
    const uint8_t c = static_cast<uint8_t>(line[i]);
    if (c < 0x20 || c == 0x7f) return *reason = "bootstrap.txt holds a control character", false;  // RFC 7617 §2: no CTL
    if (c == ':' && colon == n) colon = i;
  }
  if (colon == n) return *reason = "bootstrap.txt must be user:password", false;
  if (colon == 0) return *reason = "bootstrap.txt has no user before the ':'", false;
  text::Writer w(out, size);
  if (!w.put("Basic ").ok()) return *reason = "Authorization buffer too small", false;
  if (base64Encode(reinterpret_cast<const uint8_t*>(line), n, out + w.length(), size - w.length()) == 0) {
    out[0] = '\0';
    return *reason = "Authorization buffer too small", false;
  }
  *reason = nullptr;
  return true;
}

}  // namespace fleet
