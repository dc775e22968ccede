// DER (ITU-T X.690 §10) for the enrollment code: a bounded reader and a forward writer
// (internal to the core, not part of the API).
#pragma once

#include <stddef.h>
#include <stdint.h>

namespace fleet {
namespace der {

constexpr uint8_t kInteger = 0x02, kBitString = 0x03, kNull = 0x05, kOid = 0x06, kUtf8String = 0x0c,
                  kUtcTime = 0x17, kGeneralizedTime = 0x18, kSequence = 0x30, kSet = 0x31,
                  kContext0 = 0xa0, kContext1 = 0xa1;

// One element: its tag, its contents and where the next element starts.
struct Element {
  const uint8_t* start;  // the tag byte
  uint8_t tag;
  const uint8_t* value;
  size_t length;
  const uint8_t* end;  // just past the element
};

// Reads the elements of a constructed value, or of a whole buffer, one after another. Only the
// DER forms: one-byte tags, definite lengths in the fewest bytes (at most 3 length bytes here:
// nothing the device reads is 16 MB), every element inside what is left. Never reads past `end`.
class Reader {
 public:
  Reader(const uint8_t* p, size_t n) : p_(p), end_(p + n) {}
  explicit Reader(const Element& e) : p_(e.value), end_(e.value + e.length) {}
  bool next(Element& e);
  // The next element must have `tag`.
  bool expect(uint8_t tag, Element& e) { return next(e) && e.tag == tag; }
  bool atEnd() const { return p_ == end_; }

 private:
  const uint8_t* p_;
  const uint8_t* end_;
};

// Bytes of a tag-length header for `length` bytes of contents.
size_t headerSize(size_t length);
inline size_t elementSize(size_t length) { return headerSize(length) + length; }

// Writes forward into a fixed buffer; ok() is false once anything did not fit.
class Writer {
 public:
  Writer(uint8_t* out, size_t size) : out_(out), size_(size) {}
  Writer& header(uint8_t tag, size_t length);
  Writer& bytes(const uint8_t* data, size_t n);
  Writer& byte(uint8_t b) { return bytes(&b, 1); }
  bool ok() const { return ok_; }
  size_t length() const { return n_; }

 private:
  uint8_t* out_;
  size_t size_;
  size_t n_ = 0;
  bool ok_ = true;
};

}  // namespace der
}  // namespace fleet
