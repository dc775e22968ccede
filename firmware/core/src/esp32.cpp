// Scheme secure-esp32: topics, the five commands and their payloads, the NVS settings, the update
// check URL and schedule (docs/wire-contract.md: MQTT topics; lib/fleet/topic-scheme.ts and
// lib/fleet/commands.ts are the backend's side of the same rules, test/vectors/esp32-device.json).
#include "fleet_core.h"
#include "text.h"

namespace fleet {

namespace {

const char* const kEsp32Names[kEsp32CommandCount + 1] = {"", "update/url", "update/use_url", "update/interval", "update/run", "restart"};

bool prefixed(const char* id, const char* tail, char* out, size_t size) {
  if (!isDeviceId(id, text::length(id))) return false;
  text::Writer w(out, size);
  return w.put("/esp/").put(id).put('/').put(tail).ok();
}

bool isHostChar(char c) { return text::isAlpha(c) || text::isDigit(c) || c == '.' || c == '-'; }

// Printable ASCII without the blank (WHATWG URL serialization percent-encodes everything else).
bool isUrlChar(char c) { return c > 0x20 && c < 0x7f; }

bool isImageChar(char c) { return text::isAlpha(c) || text::isDigit(c) || c == '_' || c == '.' || c == '-'; }

bool fail(const char** reason, const char* why) {
  if (reason) *reason = why;
  return false;
}

// Does `query` (without '?') hold a parameter named curimage?
bool hasCurimage(const char* q, size_t n) {
  size_t start = 0;
  for (size_t i = 0; i <= n; i++) {
    if (i == n || q[i] == '&') {
      if (text::startsWith(q + start, i - start, "curimage=") || text::equal(q + start, i - start, "curimage")) return true;
      start = i + 1;
    }
  }
  return false;
}

}  // namespace

const char* esp32CommandName(Esp32Command c) {
  const size_t i = static_cast<size_t>(c);
  return i <= kEsp32CommandCount ? kEsp32Names[i] : "";
}

bool buildEsp32Topics(const char* id, Esp32Topics& t) {
  if (!prefixed(id, "status", t.status, sizeof t.status) || !prefixed(id, "will", t.will, sizeof t.will) ||
      !prefixed(id, "log", t.log, sizeof t.log)) {
    return false;
  }
  for (size_t c = 1; c <= kEsp32CommandCount; c++) {
    if (!prefixed(id, kEsp32Names[c], t.commands[c - 1], sizeof t.commands[c - 1])) return false;
  }
  return true;
}

Esp32Command parseEsp32CommandTopic(const char* topic, size_t n, const char* id) {
  char head[kEsp32TopicSize];
  if (!topic || !prefixed(id, "", head, sizeof head)) return Esp32Command::None;
  const size_t h = text::length(head);
  if (n <= h) return Esp32Command::None;
  for (size_t i = 0; i < h; i++) {
    if (topic[i] != head[i]) return Esp32Command::None;
  }
  for (size_t c = 1; c <= kEsp32CommandCount; c++) {
    if (text::equal(topic + h, n - h, kEsp32Names[c])) return static_cast<Esp32Command>(c);
  }
  return Esp32Command::None;
}

void defaultEsp32Settings(Esp32Settings& out) {
  out.url[0] = '\0';
  out.useUrl = false;
  out.intervalS = kUpdateIntervalDefaultS;
}

bool parseUpdateUrl(const char* s, size_t n, char* out, const char** reason) {
  static const char kScheme[] = "https://";
  const size_t schemeLength = sizeof kScheme - 1;
  if (!s || !text::startsWith(s, n, kScheme)) return fail(reason, "needs an https:// URL");
  if (n > kEsp32UrlMax) return fail(reason, "URL longer than 255 bytes");
  size_t i = schemeLength;
  const size_t hostStart = i;
  while (i < n && s[i] != ':' && s[i] != '/' && s[i] != '?' && s[i] != '#') {
    if (s[i] == '@') return fail(reason, "no user or password in the URL: the device proves itself with its certificate");
    if (s[i] == '[') return fail(reason, "an IP literal: the server certificate is checked by host name");
    if (!isHostChar(s[i])) return fail(reason, "host name of letters, digits, '.' and '-' only");
    i++;
  }
  const size_t hostLength = i - hostStart;
  if (hostLength == 0 || hostLength > kHostSize - 1) return fail(reason, "host name of 1 to 64 characters");
  if (s[hostStart] == '.' || s[hostStart] == '-' || s[i - 1] == '.' || s[i - 1] == '-') return fail(reason, "host name starts or ends with '.' or '-'");
  if (i < n && s[i] == ':') {
    uint32_t port = 0;
    size_t digits = 0;
    for (i++; i < n && text::isDigit(s[i]); i++, digits++) {
      port = port * 10 + static_cast<uint32_t>(s[i] - '0');
      if (port > 65535) return fail(reason, "port out of 1..65535");
    }
    if (digits == 0 || port == 0) return fail(reason, "port out of 1..65535");
  }
  if (i < n && s[i] != '/' && s[i] != '?') {
    return fail(reason, s[i] == '#' ? "no fragment in the URL" : "malformed URL after the host");
  }
  size_t query = n;
  for (size_t j = i; j < n; j++) {
    if (s[j] == '#') return fail(reason, "no fragment in the URL");
    if (s[j] == '@' && query == n) return fail(reason, "no user or password in the URL: the device proves itself with its certificate");
    if (!isUrlChar(s[j])) return fail(reason, "blank or non-ASCII character in the URL");
    if (s[j] == '?' && query == n) query = j;
  }
  if (query < n && hasCurimage(s + query + 1, n - query - 1)) return fail(reason, "curimage is added by the device");
  return text::copy(out, kEsp32UrlMax + 1, s, n) || fail(reason, "URL longer than 255 bytes");
}

bool parseUseUrl(const char* s, size_t n, bool& out, const char** reason) {
  if (!s || n != 1 || (s[0] != '0' && s[0] != '1')) return fail(reason, "takes 0 or 1");
  out = s[0] == '1';
  return true;
}

bool parseUpdateInterval(const char* s, size_t n, uint32_t& out, const char** reason) {
  static const char kRange[] = "takes whole seconds from 300 to 9999999";
  if (!s || n == 0 || n > 7 || s[0] == '0') return fail(reason, kRange);
  uint32_t value = 0;
  for (size_t i = 0; i < n; i++) {
    if (!text::isDigit(s[i])) return fail(reason, kRange);
    value = value * 10 + static_cast<uint32_t>(s[i] - '0');
  }
  if (value < kUpdateIntervalMinS || value > kUpdateIntervalMaxS) return fail(reason, kRange);
  out = value;
  return true;
}

Esp32Action Esp32CommandRunner::run(Esp32Command command, const char* payload, size_t length, Esp32Settings& settings) {
  if (command == Esp32Command::None || static_cast<size_t>(command) > kEsp32CommandCount) {
    setError("command", "unknown command");
    return Esp32Action::None;
  }
  setError("", "");
  const char* reason = nullptr;
  switch (command) {
    case Esp32Command::UpdateUrl: {
      char url[kEsp32UrlMax + 1];
      if (!parseUpdateUrl(payload, length, url, &reason)) break;
      text::copy(settings.url, sizeof settings.url, url, text::length(url));
      return Esp32Action::Store;
    }
    case Esp32Command::UpdateUseUrl: {
      bool use = false;
      if (!parseUseUrl(payload, length, use, &reason)) break;
      settings.useUrl = use;
      return Esp32Action::Store;
    }
    case Esp32Command::UpdateInterval: {
      uint32_t seconds = 0;
      if (!parseUpdateInterval(payload, length, seconds, &reason)) break;
      settings.intervalS = seconds;
      return Esp32Action::Store;
    }
    case Esp32Command::UpdateRun: return Esp32Action::RunUpdate;
    case Esp32Command::Restart: return Esp32Action::Restart;
    case Esp32Command::None: break;
  }
  setError(esp32CommandName(command), reason ? reason : "refused");
  return Esp32Action::None;
}

void Esp32CommandRunner::setError(const char* where, const char* reason) {
  text::Writer w(error_, sizeof error_);
  if (!reason || !*reason) return;
  w.put(where).put(": ").put(reason);
}

bool esp32UpdateUrl(const Esp32Settings& settings, const char* builtIn, const char* image, char* out, size_t size) {
  const char* base = settings.useUrl && settings.url[0] ? settings.url : builtIn;
  const size_t n = text::length(image);
  ImageName parsed;
  if (!base || !*base || !parseImageName(image, n, parsed)) return false;
  for (size_t i = 0; i < n; i++) {
    if (!isImageChar(image[i])) return false;  // nothing in it needs percent-encoding
  }
  bool hasQuery = false;
  for (const char* p = base; *p; p++) hasQuery = hasQuery || *p == '?';
  text::Writer w(out, size);
  return w.put(base).put(hasQuery ? '&' : '?').put("curimage=").put(image).ok();
}

void UpdateSchedule::start(uint64_t nowMs, uint32_t intervalS, Jitter& jitter) {
  intervalS_ = intervalS;
  checked_ = false;
  last_ = nowMs;
  next_ = nowMs + static_cast<uint64_t>(jitter.upTo(kFirstCheckSpreadS * 1000));
}

void UpdateSchedule::ran(uint64_t nowMs) {
  checked_ = true;
  last_ = nowMs;
  next_ = nowMs + static_cast<uint64_t>(intervalS_) * 1000;
}

void UpdateSchedule::setInterval(uint32_t intervalS) {
  intervalS_ = intervalS;
  // Before the first check the boot spread stands; after one, the new interval counts from it.
  if (checked_) next_ = last_ + static_cast<uint64_t>(intervalS) * 1000;
}

}  // namespace fleet
