// DER reader and writer (der.h) and base64/PEM (RFC 4648, RFC 7468) for the enrollment code.
#include "der.h"

#include "fleet_core.h"
#include "text.h"

namespace fleet {
namespace der {

bool Reader::next(Element& e) {
  if (p_ >= end_) return false;
  const size_t left = static_cast<size_t>(end_ - p_);
  if (left < 2) return false;
  const uint8_t tag = p_[0];
  if ((tag & 0x1f) == 0x1f) return false;  // high tag numbers: nothing the device reads has one
  size_t length = p_[1];
  size_t header = 2;
  if (length & 0x80) {
    const size_t count = length & 0x7f;
    // 0x80 is the indefinite form (BER only); more than 3 bytes is more than any answer here.
    if (count == 0 || count > 3 || left < 2 + count) return false;
    length = 0;
    for (size_t i = 0; i < count; i++) length = (length << 8) | p_[2 + i];
    // DER: the fewest bytes (no leading zero byte, the long form only from 128 on).
    if (p_[2] == 0 || length < 0x80) return false;
    header += count;
  }
  if (length > left - header) return false;
  e.start = p_;
  e.tag = tag;
  e.value = p_ + header;
  e.length = length;
  e.end = e.value + length;
  p_ = e.end;
  return true;
}

size_t headerSize(size_t length) {
  if (length < 0x80) return 2;
  if (length < 0x100) return 3;
  if (length < 0x10000) return 4;
  return 5;
}

Writer& Writer::header(uint8_t tag, size_t length) {
  byte(tag);
  if (length < 0x80) return byte(static_cast<uint8_t>(length));
  const size_t count = headerSize(length) - 2;
  byte(static_cast<uint8_t>(0x80 | count));
  for (size_t i = count; i > 0; i--) byte(static_cast<uint8_t>(length >> (8 * (i - 1))));
  return *this;
}

Writer& Writer::bytes(const uint8_t* data, size_t n) {
  if (!ok_ || n > size_ - n_) {
    ok_ = false;
    return *this;
  }
  for (size_t i = 0; i < n; i++) out_[n_ + i] = data[i];
  n_ += n;
  return *this;
}

}  // namespace der

namespace {

// The RFC 4648 alphabet, computed: no table in RAM.
char base64Digit(uint32_t v) {
  if (v < 26) return static_cast<char>('A' + v);
  if (v < 52) return static_cast<char>('a' + (v - 26));
  if (v < 62) return static_cast<char>('0' + (v - 52));
  return v == 62 ? '+' : '/';
}

int base64Value(char c) {
  if (c >= 'A' && c <= 'Z') return c - 'A';
  if (c >= 'a' && c <= 'z') return c - 'a' + 26;
  if (c >= '0' && c <= '9') return c - '0' + 52;
  if (c == '+') return 62;
  if (c == '/') return 63;
  return -1;
}

}  // namespace

size_t base64Encode(const uint8_t* data, size_t length, char* out, size_t size) {
  const size_t needed = (length + 2) / 3 * 4;
  if (size == 0 || needed > size - 1) return 0;
  size_t o = 0;
  for (size_t i = 0; i < length; i += 3) {
    const size_t n = length - i < 3 ? length - i : 3;
    const uint32_t v = static_cast<uint32_t>(data[i]) << 16 | (n > 1 ? static_cast<uint32_t>(data[i + 1]) << 8 : 0) | (n > 2 ? data[i + 2] : 0);
    out[o++] = base64Digit(v >> 18 & 63);
    out[o++] = base64Digit(v >> 12 & 63);
    out[o++] = n > 1 ? base64Digit(v >> 6 & 63) : '=';
    out[o++] = n > 2 ? base64Digit(v & 63) : '=';
  }
  out[o] = '\0';
  return o;
}

bool base64Decode(const char* text, size_t length, uint8_t* out, size_t size, size_t& written) {
  written = 0;
  uint32_t group = 0;
  size_t digits = 0, padding = 0, o = 0;
  for (size_t i = 0; i < length; i++) {
    const char c = text[i];
    if (text::isBlank(c)) continue;
    if (padding == 0 && c != '=') {
      const int v = base64Value(c);
      if (v < 0) return false;
      group = group << 6 | static_cast<uint32_t>(v);
      if (++digits < 4) continue;
      if (size - o < 3) return false;
      out[o++] = static_cast<uint8_t>(group >> 16);
      out[o++] = static_cast<uint8_t>(group >> 8);
      out[o++] = static_cast<uint8_t>(group);
      digits = 0;
      group = 0;
      continue;
    }
    // Padding: one '=' after 3 digits of a group, two after 2; then nothing but blanks.
    if (c != '=' || digits < 2 || digits + padding >= 4) return false;
    padding++;
  }
  if (padding == 0) {
    if (digits != 0) return false;
  } else {
    if (digits + padding != 4 || size - o < digits - 1) return false;
    // The bits the padding stands for must be zero (RFC 4648 §3.5): one canonical text per input.
    if (digits == 2) {
      if (group & 0x0f) return false;
      out[o++] = static_cast<uint8_t>(group >> 4);
    } else {
      if (group & 0x03) return false;
      out[o++] = static_cast<uint8_t>(group >> 10);
      out[o++] = static_cast<uint8_t>(group >> 2);
    }
  }
  written = o;
  return true;
}

size_t pemEncode(const char* label, const uint8_t* der, size_t length, char* out, size_t size) {
  text::Writer w(out, size);
  w.put("-----BEGIN ").put(label).put("-----\n");
  char line[65];
  for (size_t i = 0; i < length && w.ok(); i += 48) {  // 48 bytes: one 64-character line
    const size_t n = length - i < 48 ? length - i : 48;
    base64Encode(der + i, n, line, sizeof line);
    w.put(line).put('\n');
  }
  w.put("-----END ").put(label).put("-----\n");
  return w.ok() ? w.length() + 1 : 0;
}

}  // namespace fleet
