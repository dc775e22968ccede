// The portable core of the ESP8266 fleet firmware (see ../README.md and docs/wire-contract.md).
//
// Plain C++17 without Arduino headers, exceptions, RTTI or heap: every function works on
// caller-owned fixed buffers and reports failure by its return value plus a short static
// reason text. The same sources are built by g++ for the host tests and by
// xtensa-lx106-elf-g++ for the device (`make -C firmware/core test lx106`).
#pragma once

#include <stddef.h>
#include <stdint.h>

namespace fleet {

// ---- device id and topics (docs/wire-contract.md: Identities, MQTT topics "secure-esp8266") ----------

constexpr size_t kDeviceIdLength = 12;  // 12 lowercase hex digits
constexpr size_t kTopicSize = 64;       // longest: "/command/<id>/firmware" + NUL

// The device id of a station MAC: 12 lowercase hex digits, NUL-terminated.
void deviceIdFromMac(const uint8_t mac[6], char id[kDeviceIdLength + 1]);
// Accepts `84f3eb012345`, `84:F3:EB:01:23:45`, `84-f3-eb-01-23-45` (any case, surrounding
// blanks ignored; one kind of separator throughout), like lib/device-id.ts normalizeDeviceId.
bool normalizeDeviceId(const char* text, size_t length, char id[kDeviceIdLength + 1]);
bool isDeviceId(const char* text, size_t length);

struct Topics {
  char status[kTopicSize];         // /status/<id>
  char will[kTopicSize];           // /will/<id>/will
  char commandFilter[kTopicSize];  // /command/<id>/#   (what the device subscribes to)
};
bool buildTopics(const char* id, Topics& out);

enum class Command : uint8_t { None, Firmware, Reboot, Flash, Ca, Cert, Key };
constexpr size_t kCommandCount = 6;
const char* commandName(Command command);  // "firmware", ... ("" for None)
// The command a topic carries for device `id`, or Command::None when it is not
// `/command/<id>/<known command>` (another device, unknown command, extra levels).
Command parseCommandTopic(const char* topic, size_t length, const char* id);
bool commandTopic(const char* id, Command command, char* out, size_t size);

// ---- commands: dispatch and errormessage ----------------------------------------------------

constexpr size_t kErrorSize = 128;

// What the sketch does for each command; each returns nullptr on success or why it failed.
struct CommandHandlers {
  const char* (*firmware)(void* context);  // download, verify and stage the next image (or 304)
  const char* (*reboot)(void* context);
  const char* (*flash)(void* context);     // boot the staged image
  const char* (*ca)(void* context);
  const char* (*cert)(void* context);
  const char* (*key)(void* context);
  void* context;
};

// Runs commands and keeps the status field `errormessage`: cleared when a command starts,
// "<command>: <reason>" when it fails, so each failure is seen as a change by the backend.
class CommandRunner {
 public:
  explicit CommandRunner(const CommandHandlers& handlers) : handlers_(handlers) {}
  // Returns true when the command succeeded.
  bool run(Command command);
  // For failures outside a command (e.g. config download at boot); "" clears.
  void setError(const char* where, const char* reason);
  const char* errorMessage() const { return error_; }

 private:
  CommandHandlers handlers_;
  char error_[kErrorSize] = {0};
};

// ---- config.json (docs/wire-contract.md: config.json keys) ----------------------------------------------

constexpr size_t kHostSize = 65;  // up to 64 characters
constexpr size_t kPathSize = 65;
constexpr size_t kUrlSize = 200;

struct DeviceConfig {
  char downloadserver[kHostSize];
  uint16_t downloadport;
  char downloadpath[kPathSize];  // without leading/trailing '/', may be empty
  char mqttserver[kHostSize];
  bool mqtttls;
  uint16_t mqttport;
  char ntpserver[kHostSize];
  uint32_t statusinterval;  // ms
  uint32_t waittimeout;     // ms the backend may stay unreachable before the device reboots
  uint32_t retrytimeout;    // ms before the first reconnect attempt (then doubling)
};

// Parses and validates a whole config.json: all ten keys present with the right JSON type,
// host names of [A-Za-z0-9.-], ports 1..65535, times within kConfigLimits; unknown keys are
// ignored (a newer server may add some). On failure `out` is unspecified and `reason` says why.
bool parseConfig(const char* text, size_t length, DeviceConfig& out, const char** reason);
// https://<downloadserver>:<downloadport>/<downloadpath>/<file>
bool downloadUrl(const DeviceConfig& config, const char* file, char* out, size_t size);
// .../firmware.bin?curimage=<image>
bool firmwareUrl(const DeviceConfig& config, const char* currentImage, char* out, size_t size);

// ---- status JSON (docs/wire-contract.md: Status JSON fields) --------------------------------------------

constexpr size_t kStatusSize = 1400;     // ten fields, five strings of at most 256 characters escaped
constexpr size_t kMaxStatusString = 256; // lib/fleet/telemetry.ts refuses longer strings

struct StatusFields {
  uint64_t uptimemillis;
  uint32_t maxmillis;
  uint64_t mqttmillis;
  const char* espname;
  const char* espimage;
  const char* espbuild;
  const char* espip;
  int32_t rssi;  // WiFi.RSSI() answers 31 when it has no value: clamped into -150..0
  uint32_t espfreeheap;
  const char* errormessage;  // nullptr counts as ""
};

// Writes the status JSON; strings are escaped, cut to kMaxStatusString characters (UTF-16
// units, as the backend counts) and invalid UTF-8 replaced by '?'. Returns the length, 0 when
// `size` is too small.
size_t buildStatusJson(const StatusFields& fields, char* out, size_t size);

// ---- image names and version order (docs/wire-contract.md; lib/firmware/version.ts) ---------------------

constexpr size_t kMaxProduct = 64;
constexpr size_t kMaxVersion = 31;
constexpr size_t kMaxBuild = 16;
constexpr size_t kMaxParts = 4;

struct Version {
  uint32_t parts[kMaxParts];
  uint8_t count;
  char build[kMaxBuild + 1];
};
struct ImageName {
  char product[kMaxProduct + 1];
  Version version;
};

bool parseVersion(const char* text, size_t length, Version& out);
bool parseImageName(const char* text, size_t length, ImageName& out);
int compareVersions(const Version& a, const Version& b);  // -1, 0, 1
// false when the products differ (no order).
bool compareImageNames(const ImageName& a, const ImageName& b, int& order);

// ---- timing: watchdog, reconnect/reboot, LED ------------------------------------------------
// All times are millis() values; differences are taken modulo 2^32 so the 49-day wrap is harmless.

constexpr uint32_t kLoopWatchdogMs = 6000;

// loop() timing: maxmillis for the status, and the watchdog's decision.
class LoopWatch {
 public:
  void enter(uint32_t now);
  void leave(uint32_t now);
  // True when loop() has not been entered for more than `limit` ms (the sketch then resets).
  bool overdue(uint32_t now, uint32_t limit = kLoopWatchdogMs) const;
  uint32_t maxMillis() const { return max_; }

 private:
  uint32_t entered_ = 0;
  uint32_t max_ = 0;
  bool inside_ = false;
};

// When to try the backend (MQTT) again and when to give up and reboot: attempts start
// `retrytimeout` after a failure and double up to 8x; past `waittimeout` without a
// connection the device reboots.
class ReconnectPolicy {
 public:
  ReconnectPolicy(uint32_t retryMs, uint32_t giveUpMs) : retry_(retryMs), giveUp_(giveUpMs) {}
  void start(uint32_t now);      // at boot: nothing connected yet, attempt at once
  void connected(uint32_t now);
  void failed(uint32_t now);     // an attempt failed or the connection dropped
  bool attemptDue(uint32_t now) const;
  bool rebootDue(uint32_t now) const;
  bool isConnected() const { return connected_; }
  uint32_t connectedSince() const { return since_; }

 private:
  uint32_t retry_, giveUp_;
  uint32_t since_ = 0;      // connected at, or disconnected since
  uint32_t lastTry_ = 0;
  uint32_t delay_ = 0;
  bool connected_ = false;
};

enum class LedMode : uint8_t { Setup, Connected, Off };
// Setup: 10 flashes a second (50 ms on, 50 ms off); Connected: a 50 ms flash every 2 s.
bool ledOn(LedMode mode, uint32_t now);

// ---- signed images (docs/wire-contract.md: Signed images, ESP8266) -------------------------------------

// The Updater's layout check of `image || signature || uint32_le(siglen)`: the trailer
// equals the key's modulus length and the image has room for it and one byte of payload.
// On success `payloadLength` is the number of bytes that are hashed, kept and booted.
bool checkSignedLayout(size_t imageSize, const uint8_t trailer[4], size_t modulusLength,
                       size_t& payloadLength, const char** reason);

// ---- files ---------------------------------------------------------------------------------

enum class PemKind : uint8_t { Certificate, PrivateKey };
// A cheap sanity check before a downloaded ca.crt/<id>.crt/<id>.key replaces the old one.
bool looksLikePem(const char* text, size_t length, PemKind kind);

}  // namespace fleet
