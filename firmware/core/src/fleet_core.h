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

enum class Command : uint8_t { None, Firmware, Reboot, Flash, Ca, Cert, Key, Wifi };
constexpr size_t kCommandCount = 7;
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
  // The one command with a payload (docs/wire-contract.md, MQTT topics: wifi). It only starts
  // the switch (WifiSwitch); a later failure is reported with setError("wifi", ...).
  const char* (*wifi)(void* context, const char* payload, size_t length);
};

// Runs commands and keeps the status field `errormessage`: cleared when a command starts,
// "<command>: <reason>" when it fails, so each failure is seen as a change by the backend.
class CommandRunner {
 public:
  explicit CommandRunner(const CommandHandlers& handlers) : handlers_(handlers) {}
  // Returns true when the command succeeded. `payload` is passed to the wifi handler only.
  bool run(Command command, const char* payload = nullptr, size_t length = 0);
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
  uint16_t enrollport;      // the enrollment listener on downloadserver (docs/enrollment.md); 0: none
};

// Parses and validates a whole config.json: all ten keys present with the right JSON type,
// host names of [A-Za-z0-9.-], ports 1..65535, times within kConfigLimits; unknown keys are
// ignored (a newer server may add some). `enrollport` is optional (0 when absent) and, when
// present, a port 1..65535. On failure `out` is unspecified and `reason` says why.
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

// ---- timing: watchdog, reconnect/reboot, LED (docs/wire-contract.md: Device timing) ---------
// All times are millis() values; differences are taken modulo 2^32 so the 49-day wrap is harmless.

// maxmillis for the status: the longest loop() pass so far.
class LoopWatch {
 public:
  void enter(uint32_t now);
  void leave(uint32_t now);
  uint32_t maxMillis() const { return max_; }

 private:
  uint32_t entered_ = 0;
  uint32_t max_ = 0;
  bool inside_ = false;
};

// The steps the watchdog tells apart, each with its budget (WatchStep order = the vector's keys).
enum class WatchStep : uint8_t { Loop, Dns, Tls, Mqtt, Download, Verify };
constexpr size_t kWatchStepCount = 6;
constexpr uint32_t kWatchdogTickMs = 500;  // how often the sketch's Ticker asks overdue()
uint32_t watchdogBudgetMs(WatchStep step);  // loop 6 s, dns 12 s, tls 20 s, mqtt 10 s, download 6 s, verify 10 s
const char* watchStepName(WatchStep step);  // "loop", "dns", ...

// The software watchdog (lib/device/progress-watchdog.ts): the chip is reset when the current
// step has made no progress for longer than its budget. Fed by progress only (a loop pass, a
// received block, a flash write, the start of a step), never by time passing, so a slow
// download that keeps moving never resets and a stalled one does.
class ProgressWatchdog {
 public:
  void begin(WatchStep step, uint32_t now) {  // a new step starts: that is progress too
    step_ = step;
    last_ = now;
  }
  void progress(uint32_t now) { last_ = now; }
  bool overdue(uint32_t now) const { return now - last_ > watchdogBudgetMs(step_); }
  WatchStep step() const { return step_; }

 private:
  WatchStep step_ = WatchStep::Loop;
  uint32_t last_ = 0;
};

// FNV-1a, 32 bits, over `length` bytes (offset basis 2166136261, prime 16777619).
uint32_t fnv1a32(const char* text, size_t length);

// The jitter generator (lib/device/jitter.ts): xorshift32 (Marsaglia 2003, shifts 13/17/5).
class Jitter {
 public:
  explicit Jitter(uint32_t seed) : state_(seed ? seed : 1) {}  // 0 is xorshift's fixed point
  // Seeded with FNV-1a of the device id XOR `mix` (the sketch mixes in ESP.random()).
  static Jitter forDevice(const char* id, uint32_t mix = 0);
  uint32_t next();
  uint32_t upTo(uint32_t max);  // 0..max, both included: next() % (max + 1); 0 (no draw) for max 0

 private:
  uint32_t state_;
};

constexpr uint32_t kMaxBackoffFactor = 8;

// When to try the backend (MQTT) again and when to give up and reboot
// (lib/device/reconnect-policy.ts):
// - the first attempt after boot waits 0..retry; the n-th retry after a drop 0..min(retry*2^n, 8*retry);
// - reboot only after an attempt that fails once the device has been disconnected for
//   waittimeout + 0..waittimeout/2 (drawn per outage): an outage shorter than waittimeout never
//   reboots, and a long one does not reboot the fleet in step.
class ReconnectPolicy {
 public:
  ReconnectPolicy(uint32_t retryMs, uint32_t giveUpMs, Jitter jitter) : retry_(retryMs), giveUp_(giveUpMs), jitter_(jitter) {}
  void start(uint32_t now);      // at boot: not connected, first attempt after 0..retry
  void connected(uint32_t now);
  // An attempt failed or the connection dropped. reachedBroker: the attempt got a TCP connection
  // to the broker (it failed in TLS or MQTT), so the device's network works: the give-up clock
  // starts over, and only attempts that cannot reach the broker can end in a reboot.
  void failed(uint32_t now, bool reachedBroker = false);
  bool attemptDue(uint32_t now) const { return !up_ && now - lastTry_ >= delay_; }
  bool rebootDue() const { return !up_ && failedPastGiveUp_; }
  bool isConnected() const { return up_; }
  uint32_t connectedSince() const { return since_; }
  uint32_t currentDelayMs() const { return delay_; }  // the wait drawn at the last start/failure

 private:
  void drawGiveUp();
  uint32_t retry_, giveUp_;
  Jitter jitter_;
  uint32_t since_ = 0;  // connected at, or disconnected since
  uint32_t lastTry_ = 0;
  uint32_t delay_ = 0;
  uint32_t giveUpAfter_ = 0;
  uint8_t attempts_ = 0;
  bool up_ = false;
  bool failedPastGiveUp_ = false;
};

enum class LedMode : uint8_t { Setup, Connected, Off, NoFilesystem, Pending };
// Setup: 10 flashes a second (50 ms on, 50 ms off); Connected: a 50 ms flash every 2 s;
// NoFilesystem (LittleFS does not mount): three 100 ms flashes, 200 ms apart, every 2 s;
// Pending (enrollment waits for approval, docs/enrollment.md): a slow blink, 1 s on, 1 s off.
bool ledOn(LedMode mode, uint32_t now);

// ---- the wifi command (docs/wire-contract.md, MQTT topics: wifi) ----------------------------

constexpr size_t kSsidMax = 32;          // octets (IEEE 802.11)
constexpr size_t kPasswordMax = 64;      // 8..63 printable ASCII, or 64 hex digits (IEEE 802.11i)
constexpr size_t kWifiPayloadMax = 512;  // longer payloads are refused unread
constexpr uint32_t kWifiJoinTimeoutMs = 30000;

struct WifiCredentials {
  char ssid[kSsidMax + 1];
  char password[kPasswordMax + 1];
};

// Parses {"ssid": ..., "password": ...}: exactly these two string keys, each once; ssid 1..32
// bytes of valid UTF-8 without control characters (C0, DEL, C1); password empty, 8..63
// printable ASCII or 64 hex digits. On failure `out` is wiped and `reason` says why without
// quoting the payload (it may hold the password).
bool parseWifiPayload(const char* text, size_t length, WifiCredentials& out, const char** reason);
// Overwrites the password (and the SSID) so it does not linger in RAM.
void wipe(WifiCredentials& credentials);

// What the sketch does for the switch, as WifiSwitch::poll answers it.
enum class WifiAction : uint8_t {
  None,       // nothing to do (idle, or still waiting for the new network)
  JoinNew,    // join target() without storing it (WiFi.persistent(false)); the old one stays stored
  Store,      // joined: store target() as the station's credentials, reconnect MQTT, then finish()
  RejoinOld,  // not joined within 30 s: rejoin the stored (old) network, report error(), then finish()
};

// The Wi-Fi change: keep the old network stored, try the new one for up to 30 s, then store it
// or go back. Decides only; the sketch does the radio work.
class WifiSwitch {
 public:
  // A wifi payload arrived while on `currentSsid`. False (with a reason) when the payload is
  // refused or a switch is already under way.
  bool start(const char* payload, size_t length, const char* currentSsid, const char** reason);
  // Each loop pass; `onNew` = the station is connected to the new network.
  WifiAction poll(bool onNew, uint32_t now);
  // Ends a switch (after Store or RejoinOld): wipes the credentials.
  void finish();
  bool busy() const { return state_ != State::Idle; }
  const WifiCredentials& target() const { return target_; }
  const char* oldSsid() const { return old_; }
  // After RejoinOld: "cannot join <ssid> within 30 s; back on <old ssid>" (the runner adds "wifi: ").
  const char* error() const { return error_; }

 private:
  enum class State : uint8_t { Idle, Starting, Trying, Done };
  State state_ = State::Idle;
  uint32_t since_ = 0;
  WifiCredentials target_ = {};
  char old_[kSsidMax + 1] = {0};
  char error_[kErrorSize] = {0};
};

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

// ---- enrollment (docs/enrollment.md, The device; RFC 7030 EST) ------------------------------

// https://<downloadserver>:<enrollport>/.well-known/est/<operation> ("simpleenroll", "simplereenroll").
bool enrollUrl(const DeviceConfig& config, const char* operation, char* out, size_t size);

// Base64 (RFC 4648 §4) of `length` bytes, NUL-terminated, no line breaks. Returns the length,
// 0 when `size` is too small.
size_t base64Encode(const uint8_t* data, size_t length, char* out, size_t size);
// Decodes base64 with line breaks and blanks anywhere (RFC 2045 §6.8, what RFC 7030 §4.1.3
// allows); padding is required and only at the end. `out` may be `text` itself (decoding in
// place: the output never overtakes the input). False on any other character or a short buffer.
bool base64Decode(const char* text, size_t length, uint8_t* out, size_t size, size_t& written);
// PEM (RFC 7468): "-----BEGIN <label>-----", 64-character lines, "-----END <label>-----\n".
// Returns the length written with its NUL, 0 when `size` is too small.
size_t pemEncode(const char* label, const uint8_t* der, size_t length, char* out, size_t size);

constexpr size_t kBootstrapMax = 160;  // user:password, one line of bootstrap.txt
constexpr size_t kAuthorizationSize = sizeof("Basic ") + (kBootstrapMax + 2) / 3 * 4;

// The HTTP Basic `Authorization` value (RFC 7617 §2) of bootstrap.txt: one line `user:password`
// (a final line break is allowed, nothing after it). The user must be non-empty and hold no ':';
// no control characters. `reason` never quotes the line (it holds the password).
bool basicAuthorization(const char* line, size_t length, char* out, size_t size, const char** reason);

constexpr size_t kEcP256PointSize = 65;  // uncompressed: 0x04 || X || Y (SEC 1 §2.3.3)
constexpr size_t kEcdsaDerMax = 72;      // SEQUENCE of two INTEGERs of up to 33 bytes
constexpr size_t kCsrMax = 320;          // a P-256 CSR with a 12-digit CN is about 230 bytes

// Signs `data` (the DER of the CertificationRequestInfo) with the device key: SHA-256, then
// ECDSA, the signature as ASN.1 DER (as br_ecdsa_*_sign_asn1 writes it). Returns its length,
// 0 on failure. The core stays free of crypto: BearSSL does this on the device and on the host.
using CsrSigner = size_t (*)(void* context, const uint8_t* data, size_t length, uint8_t* signature, size_t capacity);

// A PKCS#10 CertificationRequest (RFC 2986 §4) for a P-256 key: version 0, subject CN = `id`
// (UTF8String; a device id), the key as id-ecPublicKey with prime256v1 (RFC 5480 §2), empty
// attributes, signed with ecdsa-with-SHA256 (RFC 5758 §3.2). Returns the DER length, 0 when the
// id or key is invalid, the signer fails or returns no DER signature, or `size` is too small.
size_t buildCsr(const char* id, const uint8_t publicKey[kEcP256PointSize], CsrSigner sign, void* context, uint8_t* out,
                size_t size, const char** reason);

struct CertificateInfo {
  const uint8_t* der;  // inside the caller's buffer
  size_t length;
  int64_t notBefore;   // Unix seconds
  int64_t notAfter;
};

// The first certificate of a PKCS#7 certs-only answer (RFC 5652 §5.1 SignedData, certificates in
// [0]; RFC 7030 §4.2.3) and its validity. Strict DER: definite minimal lengths, every element
// inside its parent, nothing after the ContentInfo. Never reads past `length`.
bool readCertsOnly(const uint8_t* der, size_t length, CertificateInfo& out, const char** reason);
// The same for a base64 answer (line breaks allowed), decoded into `buffer`.
bool readCertsOnlyBase64(const char* text, size_t length, uint8_t* buffer, size_t size, CertificateInfo& out, const char** reason);
// notBefore and notAfter of one DER X.509 certificate (RFC 5280 §4.1.2.5: UTCTime until 2049,
// GeneralizedTime after; both in Z form with seconds).
bool readCertificateValidity(const uint8_t* der, size_t length, int64_t& notBefore, int64_t& notAfter, const char** reason);

// The steps of docs/enrollment.md (lib/device/enrollment.ts; test/vectors/enrollment.json).
enum class EnrollState : uint8_t { Boot, Key, Enroll, Pending, Backoff, Enrolled, Renew, RenewBackoff };
enum class EnrollEvent : uint8_t { NoKey, NoCert, CertValid, KeyStored, Answer200, Answer202, Refused, Timer, RenewDue, CertCommand, CertExpired };
enum class EnrollAction : uint8_t { None, MakeKey, SimpleEnroll, Connect, StoreAndConnect, WaitRetryAfter, WaitFailure, SimpleReenroll };
constexpr size_t kEnrollStateCount = 8;
constexpr size_t kEnrollEventCount = 11;

struct EnrollStep {
  EnrollState next;
  EnrollAction action;
};
// A pair the table does not name changes nothing: {state, None}.
EnrollStep enrollStep(EnrollState state, EnrollEvent event);
const char* enrollStateName(EnrollState state);    // "boot", "renew-backoff", ...
const char* enrollEventName(EnrollEvent event);    // "no-key", "answer-200", ...
const char* enrollActionName(EnrollAction action); // "make-key", "none", ...

// The wait after a 202: Retry-After as delta-seconds (RFC 9110 §10.2.3), blanks around allowed,
// clamped to 10 s .. 3600 s; no header (nullptr) or anything else: 60 s.
uint32_t pendingDelayMs(const char* retryAfter, size_t length);
// The wait after the n-th failure in a row (n >= 1; 0 counts as 1): 30 s, doubling, at most 1 h.
uint32_t failureDelayMs(uint32_t failures);
// notBefore + floor(2/3 (notAfter - notBefore)), Unix seconds.
int64_t renewAtS(int64_t notBefore, int64_t notAfter);

// The steps with their waits: the sketch feeds events, does the action it gets back and asks
// timerDue() while in pending, backoff or renew-backoff.
class Enrollment {
 public:
  // `retryAfter` is the header of a 202 (nullptr: none). Returns what to do now.
  EnrollAction on(EnrollEvent event, uint32_t now, const char* retryAfter = nullptr, size_t length = 0);
  EnrollState state() const { return state_; }
  bool waiting() const { return state_ == EnrollState::Pending || state_ == EnrollState::Backoff || state_ == EnrollState::RenewBackoff; }
  bool timerDue(uint32_t now) const { return waiting() && now - since_ >= wait_; }
  uint32_t waitMs() const { return wait_; }
  uint32_t failures() const { return failures_; }

 private:
  EnrollState state_ = EnrollState::Boot;
  uint32_t failures_ = 0;
  uint32_t since_ = 0;
  uint32_t wait_ = 0;
};

// ---- scheme secure-esp32 (docs/wire-contract.md: MQTT topics; lib/fleet/topic-scheme.ts, commands.ts) ---------
// The ESP32 firmware (../esp32) under the per-device prefix /esp/<id>: status, will and log from the
// device, five commands to it. test/vectors/esp32-device.json is shared with lib/fleet.

constexpr size_t kEsp32TopicSize = 40;  // longest: "/esp/<id>/update/interval" (33) + NUL

enum class Esp32Command : uint8_t { None, UpdateUrl, UpdateUseUrl, UpdateInterval, UpdateRun, Restart };
constexpr size_t kEsp32CommandCount = 5;
const char* esp32CommandName(Esp32Command command);  // "update/url", ... ("" for None)

struct Esp32Topics {
  char status[kEsp32TopicSize];  // /esp/<id>/status
  char will[kEsp32TopicSize];    // /esp/<id>/will (the last will "offline", the birth "online", both retained)
  char log[kEsp32TopicSize];     // /esp/<id>/log
  // What the device subscribes to, one topic per command in Esp32Command order (from UpdateUrl):
  // not /esp/<id>/#, which would deliver its own status, will and log back to it.
  char commands[kEsp32CommandCount][kEsp32TopicSize];
};
bool buildEsp32Topics(const char* id, Esp32Topics& out);
// The command a topic carries for device `id`, None for anything else (another device, its own
// status/will/log, unknown or longer commands).
Esp32Command parseEsp32CommandTopic(const char* topic, size_t length, const char* id);

constexpr uint32_t kUpdateIntervalMinS = 300;      // lib/fleet/commands.ts intervalSeconds
constexpr uint32_t kUpdateIntervalMaxS = 9999999;
constexpr uint32_t kUpdateIntervalDefaultS = 86400;
constexpr size_t kEsp32UrlMax = 255;  // bytes of update/url the device keeps (NVS string)

// What the ESP32 keeps in NVS across reboots (the settings the three update/ commands set).
struct Esp32Settings {
  char url[kEsp32UrlMax + 1];  // "" until update/url sets one
  bool useUrl;                 // update/use_url 1: the update check goes to url, 0: the built-in server
  uint32_t intervalS;          // update/interval, 300..9999999
};
void defaultEsp32Settings(Esp32Settings& out);  // no url, useUrl false, a day

// update/url: what lib/fleet publishes (an https URL as WHATWG URL serializes it), narrowed to
// what the device can use: https://<host>[:<port>]<path>[?<query>] with a DNS host of
// [A-Za-z0-9.-] (the server certificate is checked by name), port 1..65535, path and query of
// printable ASCII without blanks, no userinfo, no fragment, no curimage (the device adds its own),
// at most kEsp32UrlMax bytes. `out` has kEsp32UrlMax + 1 bytes.
bool parseUpdateUrl(const char* text, size_t length, char* out, const char** reason);
// update/use_url: exactly "0" or "1".
bool parseUseUrl(const char* text, size_t length, bool& out, const char** reason);
// update/interval: decimal seconds as String(n) writes them (no sign, blank or leading zero),
// 300..9999999.
bool parseUpdateInterval(const char* text, size_t length, uint32_t& out, const char** reason);

// What the ESP32 app does after a command (Esp32CommandRunner::run).
enum class Esp32Action : uint8_t {
  None,       // refused (errorMessage() says why) or nothing to do
  Store,      // settings changed: write them to NVS (and reschedule when the interval changed)
  RunUpdate,  // run the update routine now
  Restart,    // esp_restart()
};

// Applies ESP32 commands to the settings and keeps `errormessage` as CommandRunner does: cleared
// when a command starts, "<command>: <reason>" when it is refused. The settings change only when the
// payload is accepted. update/run and restart ignore their payload (lib/fleet publishes none).
class Esp32CommandRunner {
 public:
  Esp32Action run(Esp32Command command, const char* payload, size_t length, Esp32Settings& settings);
  void setError(const char* where, const char* reason);  // "" clears
  const char* errorMessage() const { return error_; }

 private:
  char error_[kErrorSize] = {0};
};

// The update check URL: `url` when useUrl is set and url is not empty, `builtIn` otherwise, with
// curimage=<image> appended ('?' or '&'), so the server answers with the next image for the
// running one or 304 (docs/wire-contract.md: Update server). False when it does not fit or
// `image` is not an image name.
bool esp32UpdateUrl(const Esp32Settings& settings, const char* builtIn, const char* image, char* out, size_t size);

// When the periodic update check is due. Times are a 64-bit millisecond clock
// (esp_timer_get_time() / 1000): 9999999 s is 115 days, beyond a 32-bit millis().
class UpdateSchedule {
 public:
  // At boot: the first check after a random 0..kFirstCheckSpreadS (a fleet that powers up together
  // does not ask at once), then every interval after each check ends.
  static constexpr uint32_t kFirstCheckSpreadS = 60;
  void start(uint64_t nowMs, uint32_t intervalS, Jitter& jitter);
  void ran(uint64_t nowMs);                 // a check ended (whatever its outcome)
  void setInterval(uint32_t intervalS);     // update/interval: counts from the last check
  bool due(uint64_t nowMs) const { return nowMs >= next_; }
  uint64_t nextMs() const { return next_; }

 private:
  uint64_t last_ = 0;
  uint64_t next_ = 0;
  uint32_t intervalS_ = kUpdateIntervalDefaultS;
  bool checked_ = false;
};

// ---- ESP32 app images: esp_app_desc_t and the version rule (docs/wire-contract.md: Signed images) ----

constexpr size_t kAppDescOffset = 32;  // after esp_image_header_t (24) and the first segment header (8)
constexpr size_t kAppDescSize = 256;   // sizeof(esp_app_desc_t)
constexpr uint32_t kAppDescMagic = 0xABCD5432;

struct AppDescriptor {
  uint32_t secureVersion;  // anti-rollback counter
  char version[33];
  char projectName[33];
  char time[17];
  char date[17];
  char idfVersion[33];
  uint8_t appElfSha256[32];
};
// The descriptor of an ESP32 app image from its first kAppDescOffset + kAppDescSize bytes, as
// lib/firmware/app-descriptor.ts reads it: 0xE9 first, the magic at offset 32, each string up to
// its NUL or the end of its field.
bool readAppDescriptor(const uint8_t* image, size_t length, AppDescriptor& out, const char** reason);
// <product>-<version>: the project name with every character outside [A-Za-z0-9_.] as '_' (how
// esp-firmware-server names a published ESP32 image), '-', the version. False when the result is
// not an image name (parseImageName) or does not fit.
bool esp32ImageName(const char* projectName, const char* version, char* out, size_t size);

struct AppIdentity {
  const char* projectName;
  const char* version;
  uint32_t secureVersion;
};
// Whether the app may switch to a downloaded image (before esp_ota_set_boot_partition): the same
// project, a higher version (never lower, never the same one again), and, with anti-rollback, a
// secure_version not below the one burnt in eFuse (the bootloader would refuse to boot it). The
// signature is checked by ESP-IDF itself (esp_ota_end with signed apps).
bool checkEsp32Candidate(const AppIdentity& running, const AppIdentity& candidate, uint32_t efuseSecureVersion,
                         bool antiRollback, const char** reason);

// ---- resuming an interrupted download (esp_https_ota, ESP-IDF >= 5.5 ota_resumption) ----------

constexpr size_t kEtagMax = 80;

// RFC 9110 §8.8.3: a strong entity tag, "<etagc*>" with no W/ prefix; only a strong one may go in
// If-Range (§13.1.5).
bool isStrongEtag(const char* text, size_t length);

// What the app keeps in NVS while a download is under way: from where, which image (its ETag),
// and how many bytes reached the OTA partition.
struct OtaProgress {
  char url[kEsp32UrlMax + 1 + 128];  // the update check URL with curimage
  char etag[kEtagMax + 1];
  uint32_t bytes;
};
// The offset to resume from: `stored.bytes` when the download goes to the same URL and the
// stored ETag is strong (the app sends it as If-Range, so a server with a newer image answers
// 200 with the whole of it instead of splicing two images), else 0 (start over).
uint32_t resumeOffset(const OtaProgress& stored, const char* url);

}  // namespace fleet
