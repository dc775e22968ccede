// config.json (docs/wire-contract.md: config.json keys; the data/config.json of the secure ESP8266 framework).
#include "fleet_core.h"
#include "json.h"
#include "text.h"

namespace fleet {

namespace {

enum class Type : uint8_t { Host, Path, Port, Bool, Interval, Retry };

struct Key {
  const char* name;
  Type type;
  const char* missing;
  const char* bad;
};

// The same ten keys as DEVICE_CONFIG_KEYS in lib/firmware/firmware-service.ts.
const Key kKeys[] = {
    {"downloadserver", Type::Host, "downloadserver missing", "downloadserver must be a host name of 1..64 letters, digits, '.' or '-'"},
    {"downloadport", Type::Port, "downloadport missing", "downloadport must be a whole number 1..65535"},
    {"downloadpath", Type::Path, "downloadpath missing", "downloadpath must be at most 64 of letters, digits and / . _ ~ - without . or .. levels"},
    {"mqttserver", Type::Host, "mqttserver missing", "mqttserver must be a host name of 1..64 letters, digits, '.' or '-'"},
    {"mqtttls", Type::Bool, "mqtttls missing", "mqtttls must be true or false"},
    {"mqttport", Type::Port, "mqttport missing", "mqttport must be a whole number 1..65535"},
    {"ntpserver", Type::Host, "ntpserver missing", "ntpserver must be a host name of 1..64 letters, digits, '.' or '-'"},
    {"statusinterval", Type::Interval, "statusinterval missing", "statusinterval must be whole milliseconds 1000..86400000"},
    {"waittimeout", Type::Interval, "waittimeout missing", "waittimeout must be whole milliseconds 1000..86400000"},
    {"retrytimeout", Type::Retry, "retrytimeout missing", "retrytimeout must be whole milliseconds 100..86400000"},
};
constexpr size_t kKeyCount = sizeof kKeys / sizeof kKeys[0];
// Optional: only a device that enrolls itself needs it (docs/enrollment.md, The device).
const Key kEnrollPort = {"enrollport", Type::Port, "", "enrollport must be a whole number 1..65535"};

bool isHost(const char* s) {
  const size_t n = text::length(s);
  if (n == 0 || n > kHostSize - 1) return false;
  for (size_t i = 0; i < n; i++) {
    if (!text::isAlpha(s[i]) && !text::isDigit(s[i]) && s[i] != '.' && s[i] != '-') return false;
  }
  return true;
}

// What lib/firmware/update-server.ts normalizeDownloadPath accepts, stored without the outer '/'.
bool normalizePath(const char* s, char* out, size_t size) {
  size_t start = 0, end = text::length(s);
  while (start < end && s[start] == '/') start++;
  while (end > start && s[end - 1] == '/') end--;
  size_t segment = start;
  for (size_t i = start; i <= end; i++) {
    if (i == end || s[i] == '/') {
      const size_t len = i - segment;
      if ((len == 1 && s[segment] == '.') || (len == 2 && s[segment] == '.' && s[segment + 1] == '.')) return false;
      segment = i + 1;
      continue;
    }
    const char c = s[i];
    if (!text::isAlpha(c) && !text::isDigit(c) && c != '.' && c != '_' && c != '~' && c != '-') return false;
  }
  return text::copy(out, size, s + start, end - start);
}

bool inRange(const json::Member& m, int64_t low, int64_t high) {
  return m.kind == json::Kind::Integer && m.integer >= low && m.integer <= high;
}

bool apply(const Key& key, const json::Member& m, DeviceConfig& c) {
  const bool isString = m.kind == json::Kind::String && !m.textTooLong;
  switch (key.type) {
    case Type::Host: {
      char* field = key.name[0] == 'd' ? c.downloadserver : key.name[0] == 'm' ? c.mqttserver : c.ntpserver;
      return isString && isHost(m.text) && text::copy(field, kHostSize, m.text, text::length(m.text));
    }
    case Type::Path:
      return isString && normalizePath(m.text, c.downloadpath, sizeof c.downloadpath);
    case Type::Port:
      if (!inRange(m, 1, 65535)) return false;
      (key.name[0] == 'd' ? c.downloadport : key.name[0] == 'e' ? c.enrollport : c.mqttport) = static_cast<uint16_t>(m.integer);
      return true;
    case Type::Bool:
      c.mqtttls = m.boolean;
      return m.kind == json::Kind::Bool;
    case Type::Interval:
      if (!inRange(m, 1000, 86400000)) return false;
      (key.name[0] == 's' ? c.statusinterval : c.waittimeout) = static_cast<uint32_t>(m.integer);
      return true;
    case Type::Retry:
      c.retrytimeout = static_cast<uint32_t>(m.integer);
      return inRange(m, 100, 86400000);
  }
  return false;
}

}  // namespace

bool parseConfig(const char* s, size_t n, DeviceConfig& out, const char** reason) {
  const char* ignored;
  if (!reason) reason = &ignored;
  bool seen[kKeyCount] = {};
  const char* bad = nullptr;  // the first bad value; a syntax error anywhere takes precedence
  json::ObjectReader reader(s, n);
  json::Member m;
  out.enrollport = 0;
  while (reader.next(m)) {
    if (text::equal(m.key, text::length(m.key), kEnrollPort.name) && !apply(kEnrollPort, m, out) && !bad) bad = kEnrollPort.bad;
    for (size_t k = 0; k < kKeyCount; k++) {
      if (!text::equal(m.key, text::length(m.key), kKeys[k].name)) continue;
      if (!apply(kKeys[k], m, out) && !bad) bad = kKeys[k].bad;
      seen[k] = true;
    }
  }
  *reason = reader.error() ? reader.error() : bad;
  if (*reason) return false;
  for (size_t k = 0; k < kKeyCount; k++) {
    if (!seen[k]) {
      *reason = kKeys[k].missing;
      return false;
    }
  }
  *reason = nullptr;
  return true;
}

bool downloadUrl(const DeviceConfig& c, const char* file, char* out, size_t size) {
  text::Writer w(out, size);
  w.put("https://").put(c.downloadserver).put(':').number(static_cast<uint64_t>(c.downloadport)).put('/');
  if (c.downloadpath[0]) w.put(c.downloadpath).put('/');
  return w.put(file).ok();
}

bool firmwareUrl(const DeviceConfig& c, const char* currentImage, char* out, size_t size) {
  // Image names are [A-Za-z0-9_.-] only: nothing to escape in the query.
  ImageName parsed;
  if (!parseImageName(currentImage, text::length(currentImage), parsed)) return false;
  if (!downloadUrl(c, "firmware.bin?curimage=", out, size)) return false;
  const size_t used = text::length(out);
  text::Writer w(out + used, size - used);
  return w.put(currentImage).ok();
}

bool enrollUrl(const DeviceConfig& c, const char* operation, char* out, size_t size) {
  if (c.enrollport == 0) return false;
  text::Writer w(out, size);
  w.put("https://").put(c.downloadserver).put(':').number(static_cast<uint64_t>(c.enrollport));
  return w.put("/.well-known/est/").put(operation).ok();
}

}  // namespace fleet
