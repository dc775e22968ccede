// Device id, topics and commands (docs/wire-contract.md: Identities, MQTT topics, Commands).
#include "fleet_core.h"
#include "text.h"

namespace fleet {

namespace {

const char kHex[] = "0123456789abcdef";
const char* const kCommandNames[kCommandCount + 1] = {"", "firmware", "reboot", "flash", "ca", "cert", "key", "wifi"};

int hexValue(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

bool withId(const char* head, const char* id, const char* tail, char* out, size_t size) {
  if (!isDeviceId(id, text::length(id))) return false;
  text::Writer w(out, size);
  return w.put(head).put(id).put(tail).ok();
}

}  // namespace

void deviceIdFromMac(const uint8_t mac[6], char id[kDeviceIdLength + 1]) {
  for (int i = 0; i < 6; i++) {
    id[2 * i] = kHex[mac[i] >> 4];
    id[2 * i + 1] = kHex[mac[i] & 0x0f];
  }
  id[kDeviceIdLength] = '\0';
}

bool isDeviceId(const char* s, size_t n) {
  if (n != kDeviceIdLength) return false;
  for (size_t i = 0; i < n; i++) {
    if (!text::isDigit(s[i]) && !(s[i] >= 'a' && s[i] <= 'f')) return false;
  }
  return true;
}

bool normalizeDeviceId(const char* s, size_t n, char id[kDeviceIdLength + 1]) {
  while (n && text::isBlank(*s)) s++, n--;
  while (n && text::isBlank(s[n - 1])) n--;
  // Compact (12 digits) or separated (17 characters: pairs joined by one kind of ':' or '-').
  const bool separated = n == 17;
  if (n != kDeviceIdLength && !separated) return false;
  const char sep = separated ? s[2] : 0;
  if (separated && sep != ':' && sep != '-') return false;
  size_t out = 0;
  for (size_t i = 0; i < n; i++) {
    if (separated && i % 3 == 2) {
      if (s[i] != sep) return false;
      continue;
    }
    const int v = hexValue(s[i]);
    if (v < 0) return false;
    id[out++] = kHex[v];
  }
  id[out] = '\0';
  return true;
}

bool buildTopics(const char* id, Topics& t) {
  return withId("/status/", id, "", t.status, sizeof t.status) && withId("/will/", id, "/will", t.will, sizeof t.will) &&
         withId("/command/", id, "/#", t.commandFilter, sizeof t.commandFilter);
}

const char* commandName(Command c) {
  const size_t i = static_cast<size_t>(c);
  return i <= kCommandCount ? kCommandNames[i] : "";
}

bool commandTopic(const char* id, Command c, char* out, size_t size) {
  if (c == Command::None || static_cast<size_t>(c) > kCommandCount) return false;
  text::Writer w(out, size);
  return isDeviceId(id, text::length(id)) && w.put("/command/").put(id).put('/').put(commandName(c)).ok();
}

Command parseCommandTopic(const char* topic, size_t n, const char* id) {
  char head[kTopicSize];
  if (!withId("/command/", id, "/", head, sizeof head)) return Command::None;
  const size_t h = text::length(head);
  if (n <= h) return Command::None;
  for (size_t i = 0; i < h; i++) {
    if (topic[i] != head[i]) return Command::None;
  }
  for (size_t c = 1; c <= kCommandCount; c++) {
    if (text::equal(topic + h, n - h, kCommandNames[c])) return static_cast<Command>(c);
  }
  return Command::None;
}

bool CommandRunner::run(Command command, const char* payload, size_t length) {
  const char* (*handler)(void*) = nullptr;
  switch (command) {
    case Command::Firmware: handler = handlers_.firmware; break;
    case Command::Reboot: handler = handlers_.reboot; break;
    case Command::Flash: handler = handlers_.flash; break;
    case Command::Ca: handler = handlers_.ca; break;
    case Command::Cert: handler = handlers_.cert; break;
    case Command::Key: handler = handlers_.key; break;
    case Command::Wifi:
    case Command::None: break;
  }
  if (command == Command::None) {
    setError("command", "unknown command");
    return false;
  }
  setError("", "");
  const char* reason = "not supported by this firmware";
  if (command == Command::Wifi) {
    if (handlers_.wifi) reason = handlers_.wifi(handlers_.context, payload, length);
  } else if (handler) {
    reason = handler(handlers_.context);
  }
  if (reason) setError(commandName(command), reason);
  return reason == nullptr;
}

void CommandRunner::setError(const char* where, const char* reason) {
  text::Writer w(error_, sizeof error_);
  if (!reason || !*reason) return;
  // A reason longer than the buffer is cut (the Writer keeps what fits), not dropped.
  w.put(where).put(": ").put(reason);
}

}  // namespace fleet
