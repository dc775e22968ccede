// The wifi command (docs/wire-contract.md, MQTT topics: wifi): its payload and the switch from
// one network to another. Nothing here quotes the password: reasons are static texts and the
// only formatted text, error(), holds the two SSIDs.
#include "fleet_core.h"
#include "json.h"
#include "text.h"

namespace fleet {

namespace {

// Valid UTF-8 (RFC 3629: no overlong forms, no surrogates, at most U+10FFFF) without control
// characters: C0, DEL and C1 (U+0080..U+009F, encoded C2 80..C2 9F).
bool isCleanUtf8(const char* s, size_t n) {
  for (size_t i = 0; i < n;) {
    const uint8_t c = static_cast<uint8_t>(s[i]);
    if (c < 0x20 || c == 0x7F) return false;
    if (c < 0x80) {
      i++;
      continue;
    }
    size_t extra;
    uint32_t v;
    if (c >= 0xC2 && c <= 0xDF) extra = 1, v = c & 0x1Fu;
    else if (c >= 0xE0 && c <= 0xEF) extra = 2, v = c & 0x0Fu;
    else if (c >= 0xF0 && c <= 0xF4) extra = 3, v = c & 0x07u;
    else return false;
    if (n - i <= extra) return false;
    for (size_t k = 1; k <= extra; k++) {
      const uint8_t d = static_cast<uint8_t>(s[i + k]);
      if ((d & 0xC0) != 0x80) return false;
      v = (v << 6) | (d & 0x3Fu);
    }
    const uint32_t lowest = extra == 1 ? 0x80 : extra == 2 ? 0x800 : 0x10000;
    if (v < lowest || (v >= 0xD800 && v <= 0xDFFF) || v > 0x10FFFF || (v >= 0x80 && v <= 0x9F)) return false;
    i += extra + 1;
  }
  return true;
}

bool isHex(char c) { return text::isDigit(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F'); }

// Empty (an open network), 8..63 printable ASCII (a WPA2 passphrase) or 64 hex digits (the PSK).
bool isPassword(const char* s, size_t n) {
  if (n == 0) return true;
  if (n == 64) {
    for (size_t i = 0; i < n; i++) {
      if (!isHex(s[i])) return false;
    }
    return true;
  }
  if (n < 8 || n > 63) return false;
  for (size_t i = 0; i < n; i++) {
    if (s[i] < 0x20 || s[i] > 0x7E) return false;
  }
  return true;
}

void zero(volatile char* p, size_t n) {
  // volatile: the compiler may not drop stores to memory it sees no later read of.
  for (size_t i = 0; i < n; i++) p[i] = 0;
}

}  // namespace

void wipe(WifiCredentials& c) {
  zero(c.ssid, sizeof c.ssid);
  zero(c.password, sizeof c.password);
}

bool parseWifiPayload(const char* s, size_t n, WifiCredentials& out, const char** reason) {
  const char* ignored;
  if (!reason) reason = &ignored;
  wipe(out);
  *reason = nullptr;
  if (n == 0) *reason = "empty payload";
  else if (n > kWifiPayloadMax) *reason = "payload too long";
  bool haveSsid = false, havePassword = false;
  json::ObjectReader reader(s, *reason ? 0 : n, true);
  json::Member m;
  while (!*reason && reader.next(m)) {
    const bool isSsid = text::equal(m.key, text::length(m.key), "ssid");
    const bool isPass = text::equal(m.key, text::length(m.key), "password");
    if (!isSsid && !isPass) *reason = "unknown key (only ssid and password)";
    else if ((isSsid && haveSsid) || (isPass && havePassword)) *reason = isSsid ? "ssid given twice" : "password given twice";
    else if (m.kind != json::Kind::String) *reason = isSsid ? "ssid must be a string" : "password must be a string";
    else if (isSsid) {
      const size_t len = text::length(m.text);
      if (m.textTooLong || len > kSsidMax) *reason = "ssid longer than 32 bytes";
      else if (len == 0) *reason = "ssid is empty";
      else if (!isCleanUtf8(m.text, len)) *reason = "ssid must be UTF-8 without control characters";
      else haveSsid = text::copy(out.ssid, sizeof out.ssid, m.text, len);
    } else {
      const size_t len = text::length(m.text);
      if (m.textTooLong || !isPassword(m.text, len)) *reason = "password must be empty, 8 to 63 printable ASCII characters or 64 hex digits";
      else havePassword = text::copy(out.password, sizeof out.password, m.text, len);
    }
  }
  zero(m.text, sizeof m.text);  // the member buffer held the password too
  if (!*reason && reader.error()) *reason = reader.error();
  if (!*reason && !haveSsid) *reason = "ssid missing";
  if (!*reason && !havePassword) *reason = "password missing (an open network has \"password\": \"\")";
  if (*reason) {
    wipe(out);
    return false;
  }
  return true;
}

bool WifiSwitch::start(const char* payload, size_t length, const char* currentSsid, const char** reason) {
  const char* ignored;
  if (!reason) reason = &ignored;
  if (busy()) {
    *reason = "a Wi-Fi change is already under way";
    return false;
  }
  if (!parseWifiPayload(payload, length, target_, reason)) return false;
  // The SSID we are on now, cut to 32 bytes: only named in the error text.
  const size_t n = text::length(currentSsid);
  text::copy(old_, sizeof old_, currentSsid ? currentSsid : "", n < kSsidMax ? n : kSsidMax);
  error_[0] = '\0';
  state_ = State::Starting;
  return true;
}

WifiAction WifiSwitch::poll(bool onNew, uint32_t now) {
  switch (state_) {
    case State::Idle:
    case State::Done: return WifiAction::None;
    case State::Starting:
      state_ = State::Trying;
      since_ = now;
      return WifiAction::JoinNew;
    case State::Trying:
      // Joined at the last millisecond still counts: "within 30 s".
      if (onNew) {
        state_ = State::Done;
        return WifiAction::Store;
      }
      if (now - since_ < kWifiJoinTimeoutMs) return WifiAction::None;
      state_ = State::Done;
      {
        text::Writer w(error_, sizeof error_);
        w.put("cannot join ").put(target_.ssid).put(" within 30 s; back on ").put(old_);
      }
      return WifiAction::RejoinOld;
  }
  return WifiAction::None;
}

void WifiSwitch::finish() {
  wipe(target_);
  state_ = State::Idle;
}

}  // namespace fleet
