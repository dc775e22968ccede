#include "text.h"

namespace fleet {
namespace text {

Writer& Writer::put(char c) {
  if (!ok_ || length_ + 1 >= size_) {
    ok_ = false;
    return *this;
  }
  out_[length_++] = c;
  out_[length_] = '\0';
  return *this;
}

Writer& Writer::put(const char* s, size_t n) {
  for (size_t i = 0; i < n && ok_; i++) put(s[i]);
  return *this;
}

Writer& Writer::put(const char* s) { return put(s, text::length(s)); }

Writer& Writer::number(uint64_t value) {
  char digits[20];
  size_t n = 0;
  do {
    digits[n++] = static_cast<char>('0' + value % 10);
    value /= 10;
  } while (value);
  while (n) put(digits[--n]);
  return *this;
}

Writer& Writer::number(int64_t value) {
  if (value >= 0) return number(static_cast<uint64_t>(value));
  put('-');
  return number(static_cast<uint64_t>(0) - static_cast<uint64_t>(value));
}

bool copy(char* out, size_t size, const char* s, size_t n) {
  if (n >= size) return false;
  for (size_t i = 0; i < n; i++) out[i] = s[i];
  out[n] = '\0';
  return true;
}

size_t length(const char* s) {
  size_t n = 0;
  while (s && s[n]) n++;
  return n;
}

bool equal(const char* a, size_t n, const char* b) {
  for (size_t i = 0; i < n; i++) {
    if (b[i] != a[i] || b[i] == '\0') return false;
  }
  return b[n] == '\0';
}

bool startsWith(const char* a, size_t n, const char* b) {
  const size_t m = length(b);
  return m <= n && equal(a, m, b);
}

}  // namespace text
}  // namespace fleet
