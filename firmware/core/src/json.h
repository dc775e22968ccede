// A reader for flat JSON objects such as config.json (internal to the core).
//
// Why not ArduinoJson here: the core must build unchanged for the host tests and for
// xtensa-lx106 with picolibc, without Arduino headers, and config.json needs only a flat
// object of strings, whole numbers and booleans. This reader checks the full JSON grammar of
// the top level (nested values of unknown keys are skipped, their brackets and strings
// checked), decodes string escapes, and keeps nothing on the heap. Characters outside ASCII
// (raw or \u-escaped) decode to the byte 0x80 in values: nothing in config.json may use them,
// so the validators reject them.
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
  ObjectReader(const char* s, size_t n) : s_(s), n_(n) {}
  // The next member; false at the end of the object or on an error (see error()).
  bool next(Member& m);
  const char* error() const { return error_; }

 private:
  bool fail(const char* reason);
  void blanks();
  bool string(char* out, size_t size, bool* tooLong);
  bool number(Member& m);
  bool literal(const char* word);
  bool skipNested();
  const char* s_;
  size_t n_;
  size_t i_ = 0;
  bool started_ = false;
  bool done_ = false;
  const char* error_ = nullptr;
};

}  // namespace json
}  // namespace fleet
