// What the device reads from the enrollment listener (docs/enrollment.md, `200`): the first
// certificate of a PKCS#7 certs-only answer and its validity, for the renewal time.
#include "der.h"
#include "fleet_core.h"
#include "text.h"

namespace fleet {

namespace {

// id-signedData 1.2.840.113549.1.7.2 (RFC 5652 §5.1), the contents of its OID element.
constexpr uint8_t kSignedData[] = {0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x07, 0x02};

bool fail(const char** reason, const char* why) {
  *reason = why;
  return false;
}

bool sameBytes(const der::Element& e, const uint8_t* b, size_t n) {
  if (e.length != n) return false;
  for (size_t i = 0; i < n; i++) {
    if (e.value[i] != b[i]) return false;
  }
  return true;
}

bool digits(const uint8_t* p, size_t n, uint32_t& value) {
  value = 0;
  for (size_t i = 0; i < n; i++) {
    if (!text::isDigit(static_cast<char>(p[i]))) return false;
    value = value * 10 + static_cast<uint32_t>(p[i] - '0');
  }
  return true;
}

bool isLeap(uint32_t y) { return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0; }

// Days from 0001-01-01 to the first of January of year y (proleptic Gregorian).
int64_t daysBeforeYear(uint32_t y) {
  const int64_t p = static_cast<int64_t>(y) - 1;
  return p * 365 + p / 4 - p / 100 + p / 400;
}

// UTCTime YYMMDDHHMMSSZ or GeneralizedTime YYYYMMDDHHMMSSZ (RFC 5280 §4.1.2.5.1/2), Unix seconds.
bool parseTime(const der::Element& e, int64_t& out) {
  size_t yearDigits;
  if (e.tag == der::kUtcTime && e.length == 13) yearDigits = 2;
  else if (e.tag == der::kGeneralizedTime && e.length == 15) yearDigits = 4;
  else return false;
  const uint8_t* p = e.value;
  uint32_t year, month, day, hour, minute, second;
  if (!digits(p, yearDigits, year) || !digits(p + yearDigits, 2, month) || !digits(p + yearDigits + 2, 2, day) ||
      !digits(p + yearDigits + 4, 2, hour) || !digits(p + yearDigits + 6, 2, minute) || !digits(p + yearDigits + 8, 2, second) ||
      p[yearDigits + 10] != 'Z')
    return false;
  if (yearDigits == 2) year += year >= 50 ? 1900 : 2000;
  if (year == 0 || month < 1 || month > 12 || hour > 23 || minute > 59 || second > 59) return false;
  const uint32_t monthDays = month == 2 ? (isLeap(year) ? 29 : 28) : (month == 4 || month == 6 || month == 9 || month == 11) ? 30 : 31;
  if (day < 1 || day > monthDays) return false;
  // Days before the month: (367 m - 362) / 12 counts February as 30 days; take back 2 (1 in a leap year).
  int64_t yearDay = (367 * static_cast<int64_t>(month) - 362) / 12 + day - 1;
  if (month > 2) yearDay -= isLeap(year) ? 1 : 2;
  const int64_t days = daysBeforeYear(year) - daysBeforeYear(1970) + yearDay;
  out = days * 86400 + hour * 3600 + minute * 60 + second;
  return true;
}

}  // namespace

bool readCertificateValidity(const uint8_t* data, size_t length, int64_t& notBefore, int64_t& notAfter, const char** reason) {
  const char* ignored;
  if (!reason) reason = &ignored;
  // Certificate ::= SEQUENCE { tbsCertificate, signatureAlgorithm, signatureValue } (RFC 5280 §4.1)
  der::Reader top(data, data ? length : 0);
  der::Element certificate, tbs, algorithm, signature;
  if (!top.expect(der::kSequence, certificate) || !top.atEnd()) return fail(reason, "not a DER certificate");
  der::Reader parts(certificate);
  if (!parts.expect(der::kSequence, tbs) || !parts.expect(der::kSequence, algorithm) || !parts.expect(der::kBitString, signature) || !parts.atEnd())
    return fail(reason, "not a DER certificate");
  // TBSCertificate: [0] version (optional), serialNumber, signature, issuer, validity, ...
  der::Reader fields(tbs);
  der::Element e, validity;
  if (!fields.next(e)) return fail(reason, "not a DER certificate");
  if (e.tag == der::kContext0 && !fields.next(e)) return fail(reason, "not a DER certificate");
  if (e.tag != der::kInteger || !fields.expect(der::kSequence, e) || !fields.expect(der::kSequence, e) || !fields.expect(der::kSequence, validity))
    return fail(reason, "not a DER certificate");
  der::Reader times(validity);
  der::Element from, until;
  if (!times.next(from) || !times.next(until) || !times.atEnd()) return fail(reason, "certificate validity malformed");
  if (!parseTime(from, notBefore) || !parseTime(until, notAfter)) return fail(reason, "certificate validity malformed");
  if (notAfter < notBefore) return fail(reason, "certificate expires before it starts");
  *reason = nullptr;
  return true;
}

bool readCertsOnly(const uint8_t* data, size_t length, CertificateInfo& out, const char** reason) {
  const char* ignored;
  if (!reason) reason = &ignored;
  out = CertificateInfo{nullptr, 0, 0, 0};
  // ContentInfo ::= SEQUENCE { contentType OID, content [0] EXPLICIT } (RFC 5652 §3), nothing after.
  der::Reader top(data, data ? length : 0);
  der::Element info, type, explicitContent, signedData;
  if (!top.expect(der::kSequence, info) || !top.atEnd()) return fail(reason, "not a DER PKCS#7");
  der::Reader content(info);
  if (!content.expect(der::kOid, type) || !sameBytes(type, kSignedData, sizeof kSignedData)) return fail(reason, "not a PKCS#7 SignedData");
  if (!content.expect(der::kContext0, explicitContent) || !content.atEnd()) return fail(reason, "PKCS#7 content malformed");
  der::Reader wrapped(explicitContent);
  if (!wrapped.expect(der::kSequence, signedData) || !wrapped.atEnd()) return fail(reason, "PKCS#7 content malformed");
  // SignedData ::= SEQUENCE { version, digestAlgorithms SET, encapContentInfo, [0] certificates,
  // [1] crls, signerInfos SET } (RFC 5652 §5.1).
  der::Reader sd(signedData);
  der::Element version, digests, encap, certificates, e;
  if (!sd.expect(der::kInteger, version) || version.length != 1 || version.value[0] > 5) return fail(reason, "PKCS#7 version malformed");
  if (!sd.expect(der::kSet, digests) || !sd.expect(der::kSequence, encap)) return fail(reason, "PKCS#7 SignedData malformed");
  der::Reader encapsulated(encap);
  if (!encapsulated.expect(der::kOid, e)) return fail(reason, "PKCS#7 SignedData malformed");
  if (!encapsulated.atEnd() && (!encapsulated.expect(der::kContext0, e) || !encapsulated.atEnd())) return fail(reason, "PKCS#7 SignedData malformed");
  if (!sd.next(certificates) || certificates.tag != der::kContext0) return fail(reason, "no certificate in the PKCS#7");
  if (!sd.next(e)) return fail(reason, "PKCS#7 SignedData malformed");
  if (e.tag == der::kContext1 && !sd.next(e)) return fail(reason, "PKCS#7 SignedData malformed");
  if (e.tag != der::kSet || !sd.atEnd()) return fail(reason, "PKCS#7 SignedData malformed");
  // Every element of the certificates is a whole certificate; the first one is the device's.
  der::Reader list(certificates);
  der::Element first, other;
  if (!list.expect(der::kSequence, first)) return fail(reason, "no certificate in the PKCS#7");
  while (!list.atEnd()) {
    if (!list.expect(der::kSequence, other)) return fail(reason, "PKCS#7 certificates malformed");
  }
  const size_t size = static_cast<size_t>(first.end - first.start);
  if (!readCertificateValidity(first.start, size, out.notBefore, out.notAfter, reason)) return false;
  out.der = first.start;
  out.length = size;
  *reason = nullptr;
  return true;
}

bool readCertsOnlyBase64(const char* text, size_t length, uint8_t* buffer, size_t size, CertificateInfo& out, const char** reason) {
  const char* ignored;
  if (!reason) reason = &ignored;
  out = CertificateInfo{nullptr, 0, 0, 0};
  size_t n = 0;
  if (!text || !buffer || !base64Decode(text, length, buffer, size, n)) return fail(reason, "the answer is not base64 or too big");
  return readCertsOnly(buffer, n, out, reason);
}

}  // namespace fleet
