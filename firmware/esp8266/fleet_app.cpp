// The Arduino glue of the fleet firmware (see fleet_app.h and README.md). Everything that is a
// decision (config validation, topics, command parsing, status JSON, timing, file checks) is
// made by the portable core; this file only talks to the ESP8266 Arduino core and libraries.
#include "fleet_app.h"

#include <Arduino.h>
#include <ESP8266HTTPClient.h>
#include <ESP8266WiFi.h>
#include <ESP8266httpUpdate.h>
#include <LittleFS.h>
#include <PubSubClient.h>
#include <Ticker.h>
#include <WiFiClientSecure.h>
#include <fleet_core.h>
#include <time.h>

// The public key that signed images must verify with: generated from public.key beside the
// sketch by embed_public_key.py (PlatformIO runs it before each build). No key, no build:
// a fleet device never installs unsigned images.
#if __has_include("signing_key.h")
#include "signing_key.h"
#else
#error "signing_key.h is missing: put public.key (from esp-firmware-server) beside the sketch and run python3 embed_public_key.py (see README.md)"
#endif

using namespace fleet;

namespace {

constexpr uint32_t kWifiWaitMs = 20000;        // stored credentials, before SmartConfig starts
constexpr uint32_t kSetupGiveUpMs = 300000;    // reboot when setup cannot finish in 5 minutes
constexpr size_t kMaxFileBytes = 8192;         // config.json, certificates and keys
constexpr time_t kPlausibleTime = 1700000000;  // NTP has answered once the clock is past this

const char* gImage = "";
const char* gBuild = "";
char gId[kDeviceIdLength + 1];
char gName[32];
Topics gTopics;
DeviceConfig gConfig;
char gReason[112];  // the text of the last failure, returned to the CommandRunner

BearSSL::X509List* gCa = nullptr;
BearSSL::X509List* gCert = nullptr;
BearSSL::PrivateKey* gKey = nullptr;
BearSSL::PublicKey gSigningKey(kSigningPublicKey);
BearSSL::HashSHA256 gSigningHash;
BearSSL::SigningVerifier gSigningVerifier(&gSigningKey);

BearSSL::WiFiClientSecure gMqttTls;
WiFiClient gMqttPlain;
PubSubClient gMqtt;

LoopWatch gLoopWatch;
ReconnectPolicy gReconnect(3000, 20000);
volatile bool gWatchdogArmed = false;
volatile LedMode gLed = LedMode::Setup;
Ticker gWatchdogTicker;
Ticker gLedTicker;

Command gPending = Command::None;
bool gStaged = false;  // a verified image waits in flash; the next restart installs it
uint32_t gLastStatus = 0;

const char* fail(const char* format, const char* detail = "") {
  snprintf(gReason, sizeof gReason, format, detail);
  return gReason;
}

void restart(const char* why) {
  Serial.printf("restart: %s\n", why);
  Serial.flush();
  ESP.restart();
}

// ---- files --------------------------------------------------------------------------------

bool readFile(const char* path, String& out) {
  File f = LittleFS.open(path, "r");
  if (!f || f.size() > kMaxFileBytes) return false;
  out = f.readString();
  return true;
}

// Temp file + rename: a power cut leaves the old file or the new one, never half of one.
bool writeFileAtomically(const char* path, const String& body) {
  String temp = String(path) + ".tmp";
  File f = LittleFS.open(temp, "w");
  if (!f) return false;
  const bool written = f.print(body) == body.length();
  f.close();
  return written && LittleFS.rename(temp, path);
}

void listFiles() {
  Dir dir = LittleFS.openDir("/");
  while (dir.next()) Serial.printf("  %s (%u bytes)\n", dir.fileName().c_str(), static_cast<unsigned>(dir.fileSize()));
}

// ---- TLS ----------------------------------------------------------------------------------

void loadTlsMaterial() {
  String ca, cert, key;
  const String certPath = String("/") + gId + ".crt", keyPath = String("/") + gId + ".key";
  if (!readFile("/ca.crt", ca)) Serial.println("ca.crt missing in data/");
  if (!readFile(certPath.c_str(), cert)) Serial.printf("%s missing in data/\n", certPath.c_str());
  if (!readFile(keyPath.c_str(), key)) Serial.printf("%s missing in data/\n", keyPath.c_str());
  gCa = new BearSSL::X509List(ca.c_str());
  gCert = new BearSSL::X509List(cert.c_str());
  gKey = new BearSSL::PrivateKey(key.c_str());
}

// CA as the only trust anchor, the device's own certificate and key, the NTP time, and
// 512-byte fragments when the server agrees (MFLN): small buffers leave heap for the rest.
void secure(BearSSL::WiFiClientSecure& client, const char* host, uint16_t port) {
  client.setTrustAnchors(gCa);
  client.setX509Time(time(nullptr));
  // Device keys are RSA (docs/wire-contract.md: RSA-2048 by default), what BearSSL on the ESP8266 handles well.
  if (gKey->isRSA()) client.setClientRSACert(gCert, gKey);
  else Serial.println("the device key is not RSA: issue an RSA-2048 device certificate");
  const bool mfln = client.probeMaxFragmentLength(host, port, 512);
  Serial.printf("%s:%u MFLN 512: %s\n", host, port, mfln ? "yes" : "no");
  if (mfln) client.setBufferSizes(512, 512);
}

// GET <base>/<file> into `body`; nullptr or why not.
const char* httpsGet(const char* file, String& body) {
  char url[kUrlSize];
  if (!downloadUrl(gConfig, file, url, sizeof url)) return fail("URL for %s too long", file);
  BearSSL::WiFiClientSecure client;
  secure(client, gConfig.downloadserver, gConfig.downloadport);
  HTTPClient http;
  if (!http.begin(client, url)) return fail("cannot request %s", url);
  const int code = http.GET();
  if (code != HTTP_CODE_OK) {
    const String text = code < 0 ? http.errorToString(code) : String("HTTP ") + code;
    http.end();
    char last[64] = "";
    client.getLastSSLError(last, sizeof last);
    snprintf(gReason, sizeof gReason, "%s: %s %s", file, text.c_str(), last);
    return gReason;
  }
  const int size = http.getSize();
  if (size < 0 || size > static_cast<int>(kMaxFileBytes)) {
    http.end();
    return fail("%s: missing or too large Content-Length", file);
  }
  body = http.getString();
  http.end();
  return nullptr;
}

// ---- commands -----------------------------------------------------------------------------

const char* downloadFile(const char* remote, const char* local, PemKind kind) {
  String body;
  if (const char* reason = httpsGet(remote, body)) return reason;
  if (!looksLikePem(body.c_str(), body.length(), kind)) return fail("%s is not a PEM file", remote);
  if (kind == PemKind::Certificate && BearSSL::X509List(body.c_str()).getCount() == 0) return fail("%s: no certificate in it", remote);
  if (kind == PemKind::PrivateKey) {
    BearSSL::PrivateKey key(body.c_str());
    if (!key.isRSA() && !key.isEC()) return fail("%s: not a usable private key", remote);
  }
  if (!writeFileAtomically(local, body)) return fail("cannot write %s", local);
  Serial.printf("%s saved as %s: used after the next reboot\n", remote, local);
  return nullptr;
}

const char* commandFirmware(void*) {
  char url[kUrlSize];
  if (!firmwareUrl(gConfig, gImage, url, sizeof url)) return fail("bad image name %s", gImage);
  BearSSL::WiFiClientSecure client;
  secure(client, gConfig.downloadserver, gConfig.downloadport);
  ESPhttpUpdate.rebootOnUpdate(false);  // `flash` (or any restart) installs it
  Update.installSignature(&gSigningHash, &gSigningVerifier);
  switch (ESPhttpUpdate.update(client, url, gImage)) {
    case HTTP_UPDATE_OK:
      gStaged = true;
      Serial.println("firmware: signed image downloaded and verified; send flash to install it");
      return nullptr;
    case HTTP_UPDATE_NO_UPDATES:
      return fail("no newer image for %s (304)", gImage);
    case HTTP_UPDATE_FAILED:
    default:
      return fail("%s", ESPhttpUpdate.getLastErrorString().c_str());
  }
}

const char* commandFlash(void*) {
  if (!gStaged) return "no verified download to install: send firmware first";
  restart("installing the downloaded image");
  return nullptr;
}

const char* commandReboot(void*) {
  restart("reboot command");
  return nullptr;
}

const char* commandCa(void*) { return downloadFile("ca.crt", "/ca.crt", PemKind::Certificate); }

const char* commandCert(void*) {
  const String name = String(gId) + ".crt";
  return downloadFile(name.c_str(), ("/" + name).c_str(), PemKind::Certificate);
}

const char* commandKey(void*) {
  const String name = String(gId) + ".key";
  return downloadFile(name.c_str(), ("/" + name).c_str(), PemKind::PrivateKey);
}

CommandRunner gRunner(CommandHandlers{commandFirmware, commandReboot, commandFlash, commandCa, commandCert, commandKey, nullptr});

// ---- MQTT ---------------------------------------------------------------------------------

void onMessage(char* topic, uint8_t*, unsigned int) {
  // Only noted here: commands run from loop(), outside PubSubClient's callback.
  const Command c = parseCommandTopic(topic, strlen(topic), gId);
  if (c == Command::None) Serial.printf("ignored %s\n", topic);
  else gPending = c;
}

bool connectMqtt() {
  Serial.printf("MQTT %s:%u (%s)\n", gConfig.mqttserver, gConfig.mqttport, gConfig.mqtttls ? "TLS" : "plain, insecure");
  if (gConfig.mqtttls) secure(gMqttTls, gConfig.mqttserver, gConfig.mqttport);
  gMqtt.setClient(gConfig.mqtttls ? static_cast<Client&>(gMqttTls) : static_cast<Client&>(gMqttPlain));
  gMqtt.setServer(gConfig.mqttserver, gConfig.mqttport);
  // The broker publishes "offline" (retained) on /will/<id>/will when the device drops away.
  if (!gMqtt.connect(gId, nullptr, nullptr, gTopics.will, 1, true, "offline")) {
    char last[64] = "";
    if (gConfig.mqtttls) gMqttTls.getLastSSLError(last, sizeof last);
    Serial.printf("MQTT connect failed: state %d %s\n", gMqtt.state(), last);
    return false;
  }
  gMqtt.publish(gTopics.will, "online", true);
  gMqtt.subscribe(gTopics.commandFilter, 1);
  return true;
}

void publishStatus(uint32_t now) {
  const String ip = WiFi.localIP().toString();
  const StatusFields fields{micros64() / 1000, gLoopWatch.maxMillis(), gReconnect.isConnected() ? now - gReconnect.connectedSince() : 0,
                            gName, gImage, gBuild, ip.c_str(), WiFi.RSSI(), ESP.getFreeHeap(), gRunner.errorMessage()};
  char json[kStatusSize];
  const size_t n = buildStatusJson(fields, json, sizeof json);
  if (n && gMqtt.publish(gTopics.status, reinterpret_cast<const uint8_t*>(json), n, false)) gLastStatus = now;
}

// ---- setup steps --------------------------------------------------------------------------

void updateLed() { digitalWrite(LED_BUILTIN, ledOn(gLed, millis()) ? LOW : HIGH); }  // D1 mini: LED on at LOW

void watchdog() {
  // Runs from a timer: when loop() has not come back for ~6 s, reset the chip.
  if (gWatchdogArmed && gLoopWatch.overdue(millis())) ESP.reset();
}

bool waitFor(bool (*done)(), uint32_t ms) {
  const uint32_t start = millis();
  while (!done()) {
    if (millis() - start > ms) return false;
    delay(100);
  }
  return true;
}

void joinWifi() {
  WiFi.mode(WIFI_STA);
  WiFi.begin();  // the credentials SmartConfig stored earlier
  if (waitFor([] { return WiFi.status() == WL_CONNECTED; }, kWifiWaitMs)) return;
  Serial.println("no Wi-Fi: waiting for SmartConfig (ESP-Touch app, 2.4 GHz)");
  WiFi.beginSmartConfig();
  if (!waitFor([] { return WiFi.smartConfigDone(); }, kSetupGiveUpMs)) restart("SmartConfig timed out");
  if (!waitFor([] { return WiFi.status() == WL_CONNECTED; }, kWifiWaitMs)) restart("Wi-Fi from SmartConfig does not connect");
  WiFi.stopSmartConfig();
}

bool loadConfig(const String& text, const char* origin) {
  DeviceConfig next;
  const char* reason = nullptr;
  if (!parseConfig(text.c_str(), text.length(), next, &reason)) {
    Serial.printf("%s: %s\n", origin, reason);
    gRunner.setError("config", reason);
    return false;
  }
  gConfig = next;
  return true;
}

}  // namespace

void fleetSetup(const char* image, const char* build, void (*custom)()) {
  Serial.begin(115200);
  Serial.println();
  gImage = image;
  gBuild = build;
  pinMode(LED_BUILTIN, OUTPUT);
  gLedTicker.attach_ms(25, updateLed);
  gWatchdogTicker.attach_ms(500, watchdog);

  uint8_t mac[6];
  WiFi.macAddress(mac);
  deviceIdFromMac(mac, gId);
  buildTopics(gId, gTopics);
  snprintf(gName, sizeof gName, "measure-%s", gId);
  ImageName parsed;
  Serial.printf("%s%s\nMAC: %s\nCLIENTNAME: %s\n", gImage, parseImageName(gImage, strlen(gImage), parsed) ? "" : " (not a valid image name!)",
                WiFi.macAddress().c_str(), gId);

  if (!LittleFS.begin()) restart("LittleFS cannot be mounted: upload the filesystem (data/)");
  listFiles();
  String text;
  if (!readFile("/config.json", text) || !loadConfig(text, "data/config.json")) restart("data/config.json missing or invalid");

  joinWifi();
  Serial.printf("Wi-Fi: %s, IP %s\n", WiFi.SSID().c_str(), WiFi.localIP().toString().c_str());

  // Certificates are checked against the clock: no TLS before NTP has answered.
  configTime(0, 0, gConfig.ntpserver);
  if (!waitFor([] { return time(nullptr) > kPlausibleTime; }, gConfig.waittimeout)) restart("no time from NTP");

  loadTlsMaterial();
  // The server's config.json wins over the stored one from now on (takes effect at once).
  String served;
  if (const char* reason = httpsGet("config.json", served)) {
    Serial.printf("config.json download failed: %s\n", reason);
    gRunner.setError("config", reason);
  } else if (served != text && loadConfig(served, "served config.json")) {
    writeFileAtomically("/config.json", served);
  }

  gMqtt.setCallback(onMessage);
  gMqtt.setBufferSize(kStatusSize + 64);
  gReconnect = ReconnectPolicy(gConfig.retrytimeout, gConfig.waittimeout);
  gReconnect.start(millis());
  custom();
  gLoopWatch.enter(millis());
  gLoopWatch.leave(millis());
  gWatchdogArmed = true;
}

void fleetLoop(void (*custom)()) {
  const uint32_t now = millis();
  gLoopWatch.enter(now);
  if (gMqtt.connected()) {
    gMqtt.loop();
  } else {
    if (gReconnect.isConnected()) gReconnect.failed(now);
    if (gReconnect.rebootDue(now)) restart("backend unreachable for longer than waittimeout");
    if (gReconnect.attemptDue(now)) {
      if (connectMqtt()) {
        gReconnect.connected(now);
        publishStatus(now);
      } else {
        gReconnect.failed(now);
      }
    }
  }
  if (gPending != Command::None) {
    const Command c = gPending;
    gPending = Command::None;
    Serial.printf("command %s\n", commandName(c));
    // Downloads need the heap a second TLS session would take: MQTT reconnects afterwards.
    gMqtt.disconnect();
    gRunner.run(c);
    gReconnect.failed(millis());  // after the command: a long download does not count as backend time-out
    Serial.printf("command %s: %s\n", commandName(c), *gRunner.errorMessage() ? gRunner.errorMessage() : "done");
    gLastStatus = millis() - gConfig.statusinterval;  // report the outcome as soon as MQTT is back
  }
  if (gMqtt.connected() && millis() - gLastStatus >= gConfig.statusinterval) publishStatus(millis());
  gLed = gMqtt.connected() ? LedMode::Connected : LedMode::Setup;
  custom();
  gLoopWatch.leave(millis());
}
