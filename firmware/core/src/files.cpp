// Checks on downloaded files and images before the device relies on them.
#include "fleet_core.h"
#include "text.h"

namespace fleet {

bool checkSignedLayout(size_t imageSize, const uint8_t trailer[4], size_t modulusLength, size_t& payloadLength,
                       const char** reason) {
  const char* ignored;
  if (!reason) reason = &ignored;
  if (imageSize < 4) {
    *reason = "image too short for a signature trailer";
    return false;
  }
  const uint32_t signatureLength = static_cast<uint32_t>(trailer[0]) | static_cast<uint32_t>(trailer[1]) << 8 |
                                   static_cast<uint32_t>(trailer[2]) << 16 | static_cast<uint32_t>(trailer[3]) << 24;
  if (modulusLength == 0 || signatureLength != modulusLength) {
    *reason = "signature trailer length does not match the signing key";
    return false;
  }
  if (imageSize - 4 <= signatureLength) {
    *reason = "image too short for its signature";
    return false;
  }
  payloadLength = imageSize - 4 - signatureLength;
  *reason = nullptr;
  return true;
}

bool looksLikePem(const char* s, size_t n, PemKind kind) {
  // The first line must begin the expected kind, and an END line must follow.
  const char* const certificate[] = {"-----BEGIN CERTIFICATE-----"};
  const char* const key[] = {"-----BEGIN PRIVATE KEY-----", "-----BEGIN RSA PRIVATE KEY-----", "-----BEGIN EC PRIVATE KEY-----"};
  const char* const* begins = kind == PemKind::Certificate ? certificate : key;
  const size_t count = kind == PemKind::Certificate ? 1 : 3;
  size_t i = 0;
  while (i < n && text::isBlank(s[i])) i++;
  bool matched = false;
  for (size_t b = 0; b < count; b++) matched = matched || text::startsWith(s + i, n - i, begins[b]);
  if (!matched) return false;
  for (size_t k = i + 1; k < n; k++) {
    if (text::startsWith(s + k, n - k, "-----END ")) return true;
  }
  return false;
}

}  // namespace fleet
