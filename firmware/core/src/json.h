// A reader for flat JSON objects such as config.json (internal to the core).
//
// Why not ArduinoJson here: the core must build unchanged for the host tests and for
// xtensa-lx106 with picolibc, without Arduino headers, and config.json needs only a flat
// object of strings, whole numbers and booleans. This reader checks the full JSON grammar of
// the top level (nested values of unknown keys are skipped, their brackets and strings
// checked), decodes string escapes, and keeps nothing on the heap. By default characters outside
// ASCII (raw or \u-escaped) decode to the byte 0x80 in values: nothing in config.json may use
// them, so the validators reject them. With `utf8` (the wifi payload: an SSID may be any UTF-8)
// raw bytes are kept as they are and \u escapes are encoded as UTF-8; a lone surrogate becomes
// the byte 0xFF and \u0000 the byte 0x01 (a C string cannot hold NUL), both of which the
// caller's UTF-8 and control-character checks refuse.
#pragma once

#include <stddef.h>
#include <stdint.h>

namespace fleet {
namespace json {

enum class Kind : uint8_t { String, Integer, Number, Bool, Null, Nested };

struct Member {
  char key[24];        // "" when the key is longer (no known key is)
  Kind kind;
  char text[72];       // Kind::String, decoded
  bool textTooLong;
  int64_t integer;     // Kind::Integer
  bool boolean;        // Kind::Bool
};

class ObjectReader {
 public:
  ObjectReader(const char* s, size_t n, bool utf8 = false) : s_(s), n_(n), utf8_(utf8) {}
  // The next member; false at the end of the object or on an error (see error()).
  bool next(Member& m);
  const char* error() const { return error_; }

 private:
  bool fail(const char* reason);
  void blanks();
  bool string(char* out, size_t size, bool* tooLong);
  bool hex4(uint32_t& value);
  bool number(Member& m);
  bool literal(const char* word);
  bool skipNested();
  const char* s_;
  size_t n_;
  bool utf8_;
  size_t i_ = 0;
  bool started_ = false;
  bool done_ = false;
  const char* error_ = nullptr;
};

}  // namespace json
}  // namespace fleet
