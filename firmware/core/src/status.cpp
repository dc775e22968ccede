// The ten-field status JSON (docs/wire-contract.md: Status JSON fields; lib/fleet/telemetry.ts parses it).
// The output is byte for byte what JavaScript's JSON.stringify gives for the same object.
#include "fleet_core.h"
#include "text.h"

namespace fleet {

namespace {

// Length of the valid UTF-8 sequence at s[0..n), 0 when it is not one (overlong forms,
// surrogates and code points above U+10FFFF are not).
size_t utf8Length(const unsigned char* s, size_t n) {
  const unsigned char c = s[0];
  size_t len;
  uint32_t cp;
  if (c < 0x80) return 1;
  if (c >= 0xc2 && c <= 0xdf) len = 2, cp = c & 0x1f;
  else if (c >= 0xe0 && c <= 0xef) len = 3, cp = c & 0x0f;
  else if (c >= 0xf0 && c <= 0xf4) len = 4, cp = c & 0x07;
  else return 0;
  if (n < len) return 0;
  for (size_t i = 1; i < len; i++) {
    if ((s[i] & 0xc0) != 0x80) return 0;
    cp = (cp << 6) | (s[i] & 0x3f);
  }
  if ((len == 3 && (cp < 0x800 || (cp >= 0xd800 && cp <= 0xdfff))) || (len == 4 && (cp < 0x10000 || cp > 0x10ffff))) return 0;
  return len;
}

void putString(text::Writer& w, const char* value) {
  static const char kHex[] = "0123456789abcdef";
  const unsigned char* s = reinterpret_cast<const unsigned char*>(value ? value : "");
  const size_t n = text::length(value);
  size_t units = 0;  // UTF-16 code units, as the backend counts string length
  w.put('"');
  for (size_t i = 0; i < n;) {
    const size_t len = utf8Length(s + i, n - i);
    const size_t width = len == 4 ? 2 : 1;
    if (units + width > kMaxStatusString) break;
    units += width;
    const char c = static_cast<char>(s[i]);
    if (len == 0) {
      w.put('?');
      i++;
      continue;
    }
    if (len > 1) w.put(value + i, len);
    else if (c == '"' || c == '\\') w.put('\\').put(c);
    else if (c == '\n') w.put("\\n");
    else if (c == '\r') w.put("\\r");
    else if (c == '\t') w.put("\\t");
    else if (c == '\b') w.put("\\b");
    else if (c == '\f') w.put("\\f");
    else if (s[i] < 0x20) w.put("\\u00").put(kHex[s[i] >> 4]).put(kHex[s[i] & 0x0f]);
    else w.put(c);
    i += len;
  }
  w.put('"');
}

}  // namespace

size_t buildStatusJson(const StatusFields& f, char* out, size_t size) {
  const int32_t rssi = f.rssi > 0 ? 0 : f.rssi < -150 ? -150 : f.rssi;
  text::Writer w(out, size);
  w.put("{\"uptimemillis\":").number(f.uptimemillis);
  w.put(",\"maxmillis\":").number(static_cast<uint64_t>(f.maxmillis));
  w.put(",\"mqttmillis\":").number(f.mqttmillis);
  w.put(",\"espname\":");
  putString(w, f.espname);
  w.put(",\"espimage\":");
  putString(w, f.espimage);
  w.put(",\"espbuild\":");
  putString(w, f.espbuild);
  w.put(",\"espip\":");
  putString(w, f.espip);
  w.put(",\"rssi\":").number(static_cast<int64_t>(rssi));
  w.put(",\"espfreeheap\":").number(static_cast<uint64_t>(f.espfreeheap));
  w.put(",\"errormessage\":");
  putString(w, f.errormessage);
  w.put('}');
  if (!w.ok()) {
    if (size) out[0] = '\0';
    return 0;
  }
  return w.length();
}

}  // namespace fleet
