#include "json.h"
#include "text.h"

namespace fleet {
namespace json {

namespace {
int hexDigit(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}
}  // namespace

bool ObjectReader::fail(const char* reason) {
  if (!error_) error_ = reason;
  done_ = true;
  return false;
}

void ObjectReader::blanks() {
  while (i_ < n_ && (s_[i_] == ' ' || s_[i_] == '\t' || s_[i_] == '\n' || s_[i_] == '\r')) i_++;
}

// At the opening quote. Decodes into `out` when given; `tooLong` is set when it did not fit.
bool ObjectReader::string(char* out, size_t size, bool* tooLong) {
  size_t o = 0;
  if (tooLong) *tooLong = false;
  auto emit = [&](char c) {
    if (!out) return;
    if (o + 1 < size) out[o++] = c;
    else if (tooLong) *tooLong = true;
  };
  for (i_++; i_ < n_; i_++) {
    const unsigned char c = static_cast<unsigned char>(s_[i_]);
    if (c == '"') {
      i_++;
      if (out) out[o] = '\0';
      return true;
    }
    if (c < 0x20) return fail("control character inside a JSON string");
    if (c != '\\') {
      emit(c < 0x80 || utf8_ ? static_cast<char>(c) : '\x80');
      continue;
    }
    if (++i_ >= n_) break;
    switch (s_[i_]) {
      case '"': emit('"'); break;
      case '\\': emit('\\'); break;
      case '/': emit('/'); break;
      case 'b': emit('\b'); break;
      case 'f': emit('\f'); break;
      case 'n': emit('\n'); break;
      case 'r': emit('\r'); break;
      case 't': emit('\t'); break;
      case 'u': {
        uint32_t v = 0;
        if (!hex4(v)) return fail("bad \\u escape in a JSON string");
        if (!utf8_) {
          emit(v > 0 && v < 0x80 ? static_cast<char>(v) : '\x80');
          break;
        }
        // A high surrogate followed by \uDC00..\uDFFF is one code point (RFC 8259, section 7).
        if (v >= 0xD800 && v <= 0xDBFF && i_ + 2 < n_ && s_[i_ + 1] == '\\' && s_[i_ + 2] == 'u') {
          const size_t back = i_;
          uint32_t low = 0;
          i_ += 2;
          if (hex4(low) && low >= 0xDC00 && low <= 0xDFFF) v = 0x10000 + ((v - 0xD800) << 10) + (low - 0xDC00);
          else i_ = back;  // not a pair: the high surrogate stands alone
        }
        if (v == 0) emit('\x01');
        else if (v >= 0xD800 && v <= 0xDFFF) emit('\xff');
        else if (v < 0x80) emit(static_cast<char>(v));
        else if (v < 0x800) {
          emit(static_cast<char>(0xC0 | (v >> 6)));
          emit(static_cast<char>(0x80 | (v & 0x3F)));
        } else if (v < 0x10000) {
          emit(static_cast<char>(0xE0 | (v >> 12)));
          emit(static_cast<char>(0x80 | ((v >> 6) & 0x3F)));
          emit(static_cast<char>(0x80 | (v & 0x3F)));
        } else {
          emit(static_cast<char>(0xF0 | (v >> 18)));
          emit(static_cast<char>(0x80 | ((v >> 12) & 0x3F)));
          emit(static_cast<char>(0x80 | ((v >> 6) & 0x3F)));
          emit(static_cast<char>(0x80 | (v & 0x3F)));
        }
        break;
      }
      default: return fail("bad escape in a JSON string");
    }
  }
  return fail("unterminated JSON string");
}

// After the 'u' of a \u escape: four hex digits, `i_` left on the last one.
bool ObjectReader::hex4(uint32_t& value) {
  value = 0;
  for (int k = 0; k < 4; k++) {
    const int d = i_ + 1 < n_ ? hexDigit(s_[++i_]) : -1;
    if (d < 0) return false;
    value = value * 16 + static_cast<uint32_t>(d);
  }
  return true;
}

bool ObjectReader::number(Member& m) {
  const size_t start = i_;
  bool whole = true;
  if (i_ < n_ && s_[i_] == '-') i_++;
  if (i_ < n_ && s_[i_] == '0') {
    if (++i_ < n_ && text::isDigit(s_[i_])) return fail("malformed JSON number (leading zero)");
  } else if (i_ < n_ && s_[i_] >= '1' && s_[i_] <= '9') {
    while (i_ < n_ && text::isDigit(s_[i_])) i_++;
  } else {
    return fail("malformed JSON number");
  }
  if (i_ < n_ && s_[i_] == '.') {
    whole = false;
    if (++i_ >= n_ || !text::isDigit(s_[i_])) return fail("malformed JSON number");
    while (i_ < n_ && text::isDigit(s_[i_])) i_++;
  }
  if (i_ < n_ && (s_[i_] == 'e' || s_[i_] == 'E')) {
    whole = false;
    if (++i_ < n_ && (s_[i_] == '+' || s_[i_] == '-')) i_++;
    if (i_ >= n_ || !text::isDigit(s_[i_])) return fail("malformed JSON number");
    while (i_ < n_ && text::isDigit(s_[i_])) i_++;
  }
  const bool negative = s_[start] == '-';
  const size_t digits = i_ - start - (negative ? 1 : 0);
  m.kind = whole && digits <= 18 ? Kind::Integer : Kind::Number;
  if (m.kind == Kind::Integer) {
    int64_t v = 0;
    for (size_t k = start + (negative ? 1 : 0); k < i_; k++) v = v * 10 + (s_[k] - '0');
    m.integer = negative ? -v : v;
  }
  return true;
}

bool ObjectReader::literal(const char* word) {
  const size_t n = text::length(word);
  if (n_ - i_ < n) return fail("unexpected text in JSON");
  for (size_t k = 0; k < n; k++) {
    if (s_[i_ + k] != word[k]) return fail("unexpected text in JSON");
  }
  i_ += n;
  return true;
}

// Skips an array or object, checking that brackets pair up and strings are well formed.
bool ObjectReader::skipNested() {
  char stack[16];
  size_t depth = 0;
  while (i_ < n_) {
    const char c = s_[i_];
    if (c == '"') {
      if (!string(nullptr, 0, nullptr)) return false;
      continue;
    }
    if (c == '[' || c == '{') {
      if (depth == sizeof stack) return fail("JSON nested too deeply");
      stack[depth++] = c == '[' ? ']' : '}';
    } else if (c == ']' || c == '}') {
      if (depth == 0 || stack[--depth] != c) return fail("mismatched brackets in JSON");
      if (depth == 0) {
        i_++;
        return true;
      }
    }
    i_++;
  }
  return fail("unterminated JSON array or object");
}

bool ObjectReader::next(Member& m) {
  if (done_) return false;
  blanks();
  if (!started_) {
    started_ = true;
    if (i_ >= n_ || s_[i_] != '{') return fail("not a JSON object");
    i_++;
    blanks();
    if (i_ < n_ && s_[i_] == '}') {
      i_++;
      done_ = true;
    }
  } else if (i_ < n_ && s_[i_] == ',') {
    i_++;
    blanks();
  } else if (i_ < n_ && s_[i_] == '}') {
    i_++;
    done_ = true;
  } else {
    return fail("expected ',' or '}' in JSON object");
  }
  if (done_) {
    blanks();
    if (i_ != n_) return fail("text after the JSON object");
    return false;
  }
  bool keyTooLong = false;
  if (i_ >= n_ || s_[i_] != '"') return fail("expected a quoted key in JSON object");
  if (!string(m.key, sizeof m.key, &keyTooLong)) return false;
  if (keyTooLong) m.key[0] = '\0';
  blanks();
  if (i_ >= n_ || s_[i_] != ':') return fail("expected ':' after a JSON key");
  i_++;
  blanks();
  if (i_ >= n_) return fail("missing JSON value");
  m.textTooLong = false;
  const char c = s_[i_];
  if (c == '"') {
    m.kind = Kind::String;
    return string(m.text, sizeof m.text, &m.textTooLong);
  }
  if (c == '-' || text::isDigit(c)) return number(m);
  if (c == 't' || c == 'f') {
    m.kind = Kind::Bool;
    m.boolean = c == 't';
    return literal(c == 't' ? "true" : "false");
  }
  if (c == 'n') {
    m.kind = Kind::Null;
    return literal("null");
  }
  if (c == '[' || c == '{') {
    m.kind = Kind::Nested;
    return skipNested();
  }
  return fail("unexpected text in JSON");
}

}  // namespace json
}  // namespace fleet
