// Image names and their order: the grammar and order of lib/firmware/version.ts, checked
// against the same vectors (test/vectors/image-versions.json).
#include "fleet_core.h"
#include "text.h"

namespace fleet {

namespace {

bool isWordChar(char c) { return text::isAlpha(c) || text::isDigit(c) || c == '_'; }

// 1..9 ASCII digits.
bool parseNumber(const char* s, size_t n, uint32_t& value) {
  if (n == 0 || n > 9) return false;
  value = 0;
  for (size_t i = 0; i < n; i++) {
    if (!text::isDigit(s[i])) return false;
    value = value * 10 + static_cast<uint32_t>(s[i] - '0');
  }
  return true;
}

// A letter, then up to 15 of [A-Za-z0-9_].
bool isBuild(const char* s, size_t n) {
  if (n == 0 || n > kMaxBuild || !text::isAlpha(s[0])) return false;
  for (size_t i = 1; i < n; i++) {
    if (!isWordChar(s[i])) return false;
  }
  return true;
}

bool isProduct(const char* s, size_t n) {
  if (n == 0 || n > kMaxProduct || s[0] == '.') return false;
  for (size_t i = 0; i < n; i++) {
    if (!isWordChar(s[i]) && s[i] != '.') return false;
  }
  return true;
}

}  // namespace

bool parseVersion(const char* s, size_t n, Version& out) {
  if (n == 0 || n > kMaxVersion) return false;
  out.count = 0;
  out.build[0] = '\0';
  // A last field that starts with a letter is the build suffix (only when there are numbers before it).
  size_t end = n;
  size_t lastDot = n;
  while (lastDot > 0 && s[lastDot - 1] != '.') lastDot--;
  if (lastDot > 0 && lastDot < n && text::isAlpha(s[lastDot])) {
    if (!isBuild(s + lastDot, n - lastDot)) return false;
    text::copy(out.build, sizeof out.build, s + lastDot, n - lastDot);
    end = lastDot - 1;
  }
  size_t start = 0;
  for (size_t i = 0; i <= end; i++) {
    if (i < end && s[i] != '.') continue;
    if (out.count == kMaxParts || !parseNumber(s + start, i - start, out.parts[out.count])) return false;
    out.count++;
    start = i + 1;
  }
  return true;
}

bool parseImageName(const char* s, size_t n, ImageName& out) {
  if (n == 0 || n > kMaxProduct + 1 + kMaxVersion) return false;
  size_t dash = n;
  while (dash > 0 && s[dash - 1] != '-') dash--;
  if (dash == 0) return false;  // no '-'
  const size_t productLength = dash - 1;
  if (!isProduct(s, productLength)) return false;
  text::copy(out.product, sizeof out.product, s, productLength);
  return parseVersion(s + dash, n - dash, out.version);
}

int compareVersions(const Version& a, const Version& b) {
  const uint8_t n = a.count > b.count ? a.count : b.count;
  for (uint8_t i = 0; i < n; i++) {
    const uint32_t x = i < a.count ? a.parts[i] : 0;
    const uint32_t y = i < b.count ? b.parts[i] : 0;
    if (x != y) return x < y ? -1 : 1;
  }
  for (size_t i = 0;; i++) {
    const unsigned char x = static_cast<unsigned char>(a.build[i]);
    const unsigned char y = static_cast<unsigned char>(b.build[i]);
    if (x != y) return x < y ? -1 : 1;
    if (x == 0) return 0;
  }
}

bool compareImageNames(const ImageName& a, const ImageName& b, int& order) {
  const size_t n = text::length(a.product);
  if (!text::equal(a.product, n, b.product)) return false;
  order = compareVersions(a.version, b.version);
  return true;
}

}  // namespace fleet
