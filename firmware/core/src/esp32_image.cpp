// ESP32 app images as the device judges them before switching partitions: esp_app_desc_t (ESP-IDF
// components/esp_app_format/include/esp_app_desc.h, v5.5), the image name the fleet knows them by,
// the version rule of docs/wire-contract.md (Update server), anti-rollback, and resuming a download.
#include "fleet_core.h"
#include "text.h"

namespace fleet {

namespace {

constexpr uint8_t kImageMagic = 0xE9;  // ESP_IMAGE_HEADER_MAGIC

// Offsets inside esp_app_desc_t (the same table as lib/firmware/app-descriptor.ts).
constexpr size_t kSecureVersionAt = 4, kVersionAt = 16, kProjectAt = 48, kTimeAt = 80, kDateAt = 96, kIdfAt = 112, kShaAt = 144;

uint32_t le32(const uint8_t* p) {
  return static_cast<uint32_t>(p[0]) | static_cast<uint32_t>(p[1]) << 8 | static_cast<uint32_t>(p[2]) << 16 | static_cast<uint32_t>(p[3]) << 24;
}

// A C string field: up to its first NUL or its whole width; out has width + 1 bytes.
void field(const uint8_t* desc, size_t at, size_t width, char* out) {
  size_t n = 0;
  while (n < width && desc[at + n]) n++;
  for (size_t i = 0; i < n; i++) out[i] = static_cast<char>(desc[at + i]);
  out[n] = '\0';
}

bool fail(const char** reason, const char* why) {
  if (reason) *reason = why;
  return false;
}

bool isEtagChar(unsigned char c) { return c == 0x21 || (c >= 0x23 && c != 0x7f); }  // etagc, obs-text included

}  // namespace

bool readAppDescriptor(const uint8_t* image, size_t length, AppDescriptor& out, const char** reason) {
  if (!image || length < kAppDescOffset + kAppDescSize) return fail(reason, "image shorter than its app descriptor");
  if (image[0] != kImageMagic) return fail(reason, "not an ESP32 app image (no 0xE9 first)");
  const uint8_t* d = image + kAppDescOffset;
  if (le32(d) != kAppDescMagic) return fail(reason, "no app descriptor (magic 0xABCD5432) at offset 32");
  out.secureVersion = le32(d + kSecureVersionAt);
  field(d, kVersionAt, 32, out.version);
  field(d, kProjectAt, 32, out.projectName);
  field(d, kTimeAt, 16, out.time);
  field(d, kDateAt, 16, out.date);
  field(d, kIdfAt, 32, out.idfVersion);
  for (size_t i = 0; i < sizeof out.appElfSha256; i++) out.appElfSha256[i] = d[kShaAt + i];
  return true;
}

bool esp32ImageName(const char* projectName, const char* version, char* out, size_t size) {
  text::Writer w(out, size);
  for (const char* p = projectName ? projectName : ""; *p; p++) {
    const char c = *p;
    w.put(text::isAlpha(c) || text::isDigit(c) || c == '_' || c == '.' ? c : '_');
  }
  w.put('-').put(version ? version : "");
  ImageName parsed;
  return w.ok() && parseImageName(out, w.length(), parsed);
}

bool checkEsp32Candidate(const AppIdentity& running, const AppIdentity& candidate, uint32_t efuseSecureVersion,
                         bool antiRollback, const char** reason) {
  if (!running.projectName || !candidate.projectName || !running.version || !candidate.version) return fail(reason, "no app descriptor");
  if (!text::equal(candidate.projectName, text::length(candidate.projectName), running.projectName)) {
    return fail(reason, "another project: its project name differs from the running app's");
  }
  Version now, next;
  if (!parseVersion(running.version, text::length(running.version), now)) return fail(reason, "the running app's version does not parse");
  if (!parseVersion(candidate.version, text::length(candidate.version), next)) return fail(reason, "its version does not parse");
  const int order = compareVersions(next, now);
  if (order == 0) return fail(reason, "the same version as the running app");
  if (order < 0) return fail(reason, "a lower version than the running app: never installed");
  if (antiRollback && candidate.secureVersion < efuseSecureVersion) {
    return fail(reason, "secure_version below the one in eFuse: the bootloader would refuse it");
  }
  return true;
}

bool isStrongEtag(const char* s, size_t n) {
  if (!s || n < 2 || n > kEtagMax || s[0] != '"' || s[n - 1] != '"') return false;
  for (size_t i = 1; i + 1 < n; i++) {
    if (!isEtagChar(static_cast<unsigned char>(s[i]))) return false;
  }
  return true;
}

uint32_t resumeOffset(const OtaProgress& stored, const char* url) {
  if (!url || stored.bytes == 0 || !isStrongEtag(stored.etag, text::length(stored.etag))) return 0;
  return text::equal(url, text::length(url), stored.url) ? stored.bytes : 0;
}

}  // namespace fleet
