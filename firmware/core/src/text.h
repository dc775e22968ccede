// Small string helpers shared by the core's sources (internal, not part of the API).
#pragma once

#include <stddef.h>
#include <stdint.h>

namespace fleet {
namespace text {

inline bool isDigit(char c) { return c >= '0' && c <= '9'; }
inline bool isAlpha(char c) { return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z'); }
inline bool isBlank(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f'; }

// Appends to a NUL-terminated buffer; false (buffer left terminated) when it does not fit.
class Writer {
 public:
  Writer(char* out, size_t size) : out_(out), size_(size) {
    if (size_) out_[0] = '\0';
  }
  Writer& put(char c);
  Writer& put(const char* s);
  Writer& put(const char* s, size_t n);
  Writer& number(uint64_t value);
  Writer& number(int64_t value);
  bool ok() const { return ok_ && size_ > 0; }
  size_t length() const { return length_; }

 private:
  char* out_;
  size_t size_;
  size_t length_ = 0;
  bool ok_ = true;
};

// Copies `n` bytes into `out` (size `size`) with a NUL; false when it does not fit.
bool copy(char* out, size_t size, const char* s, size_t n);
size_t length(const char* s);
bool equal(const char* a, size_t n, const char* b);       // a[0..n) == NUL-terminated b
bool startsWith(const char* a, size_t n, const char* b);  // a[0..n) begins with NUL-terminated b

}  // namespace text
}  // namespace fleet
