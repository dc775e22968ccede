// The Arduino glue of the fleet firmware (see fleet_app.h and README.md). Everything that is a
// decision (config validation, topics, command parsing, status JSON, timing, the watchdog, the
// Wi-Fi change, file checks) is made by the portable core; this file only talks to the ESP8266
// Arduino core and libraries. Written against esp8266/Arduino 3.1.2 and PubSubClient 2.8.
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
#include <new>
#include <time.h>
#include <user_interface.h>

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
constexpr uint32_t kMountRetryMs = 5000;       // LittleFS does not mount: try again this often
constexpr size_t kMaxFileBytes = 8192;         // config.json, certificates and keys
constexpr time_t kPlausibleTime = 1700000000;  // NTP has answered once the clock is past this

// Time-outs shorter than the watchdog budgets (docs/wire-contract.md, Device timing), so that a
// slow network ends in a reported failure and only a real hang in a reset. esp8266/Arduino 3.1.2:
// - DNS: ESP8266WiFiGenericClass::hostByName(host, ip, timeout_ms), the 3-argument form; the
//   2-argument form waits DNSDefaultTimeoutMs (10 s) and is what probeMaxFragmentLength(host, ...)
//   and WiFiClient::connect(host, ...) would use, so the sketch resolves first (step dns) and
//   then works with the address; the TLS connect by name finds it in lwIP's DNS cache.
// - TCP: WiFiClient::setTimeout (Stream::setTimeout) is what ClientContext::connect waits for a
//   plain WiFiClient. It does NOT reach BearSSL::WiFiClientSecure in 3.1.2: Stream::setTimeout is
//   not virtual and WiFiClientSecureCtx keeps its own 15 s for the TCP connect and the handshake
//   (esp8266/Arduino issues #8203, #9273). So reachability is checked first with a plain
//   WiFiClient (5 s) and the TLS connect only starts on a server that answered just now.
// - HTTP: HTTPClient::setTimeout / ESPhttpUpdate.setClientTimeout bound the wait for the answer's
//   headers and each read of the body (Stream::readBytes waits that long per byte).
// - MQTT: PubSubClient::setSocketTimeout (seconds, default 15) bounds the wait for CONNACK and
//   each byte of a packet: 8 s while connecting (budget 10 s), 4 s afterwards (loop budget 6 s).
constexpr uint32_t kDnsTimeoutMs = 5000;
constexpr uint32_t kTcpTimeoutMs = 5000;
constexpr uint16_t kHttpTimeoutMs = 5000;
constexpr uint16_t kMqttConnackS = 8;
constexpr uint16_t kMqttReadS = 4;

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

LoopWatch gLoopWatch;  // maxmillis
// The watchdog (core: ProgressWatchdog). The Ticker's callback runs from the SDK's timer task,
// which only runs while the sketch yields (delay, esp_delay, optimistic_yield inside network
// waits), never in the middle of begin()/progress(): no torn reads.
ProgressWatchdog gDog;
ReconnectPolicy gReconnect(3000, 20000, Jitter(1));  // replaced in setup from config.json
volatile bool gWatchdogArmed = false;
volatile LedMode gLed = LedMode::Setup;
Ticker gWatchdogTicker;
Ticker gLedTicker;

Command gPending = Command::None;
// The wifi payload, copied out of PubSubClient's buffer; wiped once parsed (it holds a password).
char gPayload[kWifiPayloadMax + 1];
size_t gPayloadLength = 0;
WifiSwitch gWifi;
bool gStaged = false;  // a verified image waits in flash; the next restart installs it
uint32_t gLastStatus = 0;

// Progress for the watchdog: the start of a step, and anything that moved within one.
void step(WatchStep s) { gDog.begin(s, millis()); }
void progress() { gDog.progress(millis()); }

void zero(volatile char* p, size_t n) {
  for (size_t i = 0; i < n; i++) p[i] = 0;
}

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
  // Checked allocation: String::reserve answers false when the heap has no room.
  if (!out.reserve(f.size())) {
    Serial.printf("out of memory reading %s\n", path);
    return false;
  }
  out = "";
  char block[128];
  for (size_t left = f.size(); left;) {
    const size_t n = f.readBytes(block, left < sizeof block ? left : sizeof block);
    if (n == 0 || !out.concat(block, n)) return false;
    left -= n;
  }
  return true;
}

// Temp file + rename: a power cut leaves the old file or the new one, never half of one.
bool writeFileAtomically(const char* path, const String& body) {
  char temp[48];
  if (snprintf(temp, sizeof temp, "%s.tmp", path) >= static_cast<int>(sizeof temp)) return false;
  File f = LittleFS.open(temp, "w");
  if (!f) return false;
  const bool written = f.write(reinterpret_cast<const uint8_t*>(body.c_str()), body.length()) == body.length();
  f.close();
  return written && LittleFS.rename(temp, path);
}

// Mount without formatting: LittleFSConfig formats a filesystem that does not mount unless told
// otherwise (autoFormat defaults to true), which would wipe a corrupt or never-uploaded data/.
// Reports on Serial and with LedMode::NoFilesystem, and tries again every few seconds.
void mountFilesystem() {
  LittleFSConfig config;
  config.setAutoFormat(false);
  LittleFS.setConfig(config);
  for (uint32_t attempt = 1; !LittleFS.begin(); attempt++) {
    gLed = LedMode::NoFilesystem;
    Serial.printf("LittleFS does not mount (attempt %u): upload the filesystem (data/); not formatting, retrying in %u s\n",
                  static_cast<unsigned>(attempt), static_cast<unsigned>(kMountRetryMs / 1000));
    delay(kMountRetryMs);
  }
  gLed = LedMode::Setup;
}

void listFiles() {
  Dir dir = LittleFS.openDir("/");
  while (dir.next()) Serial.printf("  %s (%u bytes)\n", dir.fileName().c_str(), static_cast<unsigned>(dir.fileSize()));
}

// ---- TLS ----------------------------------------------------------------------------------

void loadTlsMaterial() {
  String ca, cert, key;
  char certPath[kDeviceIdLength + 6], keyPath[kDeviceIdLength + 6];
  snprintf(certPath, sizeof certPath, "/%s.crt", gId);
  snprintf(keyPath, sizeof keyPath, "/%s.key", gId);
  if (!readFile("/ca.crt", ca)) Serial.println("ca.crt missing in data/");
  if (!readFile(certPath, cert)) Serial.printf("%s missing in data/\n", certPath);
  if (!readFile(keyPath, key)) Serial.printf("%s missing in data/\n", keyPath);
  // Checked allocations: without them no TLS connection can work, so say so and start over.
  gCa = new (std::nothrow) BearSSL::X509List(ca.c_str());
  gCert = new (std::nothrow) BearSSL::X509List(cert.c_str());
  gKey = new (std::nothrow) BearSSL::PrivateKey(key.c_str());
  zero(const_cast<char*>(key.c_str()), key.length());  // the PEM text of the key is not needed any more
  if (!gCa || !gCert || !gKey) restart("out of memory for the TLS certificates and key");
  if (gCa->getCount() == 0) Serial.println("ca.crt holds no usable certificate: TLS connections will fail");
  if (gCert->getCount() == 0) Serial.printf("%s holds no usable certificate\n", certPath);
}

// The server's address, with the core's DNS time-out (step dns). See kDnsTimeoutMs.
bool resolve(const char* host, IPAddress& ip) {
  step(WatchStep::Dns);
  const bool ok = WiFi.hostByName(host, ip, kDnsTimeoutMs) == 1;
  step(WatchStep::Tls);  // the end of a step is progress; TCP and TLS come next
  return ok;
}

// A TCP connection with WiFiClient's own, settable time-out. See kTcpTimeoutMs.
bool reachable(const IPAddress& ip, uint16_t port) {
  WiFiClient tcp;
  tcp.setTimeout(kTcpTimeoutMs);
  const bool ok = tcp.connect(ip, port) == 1;
  tcp.stop();
  step(WatchStep::Tls);
  return ok;
}

// Resolves the server, checks it answers, and sets up TLS: the CA as the only trust anchor, the
// device's own certificate and key, the NTP time, and 512-byte fragments when the server agrees
// (MFLN): small buffers leave heap for the rest. nullptr, or why the server cannot be used.
const char* secure(BearSSL::WiFiClientSecure& client, const char* host, uint16_t port, bool clientCert = true) {
  IPAddress ip;
  if (!resolve(host, ip)) return fail("cannot resolve %s", host);
  // The probe connects with a plain WiFiClient (5 s) and needs no name: the address will do.
  const bool mfln = BearSSL::WiFiClientSecure::probeMaxFragmentLength(ip, port, 512);
  step(WatchStep::Tls);
  Serial.printf("%s:%u MFLN 512: %s\n", host, port, mfln ? "yes" : "no");
  if (!mfln && !reachable(ip, port)) return fail("%s: no TCP connection", host);
  client.setTrustAnchors(gCa);
  client.setX509Time(time(nullptr));
  // A server-made key is RSA (docs/wire-contract.md); an enrolled one is P-256 (docs/enrollment.md),
  // its certificate signed by the fleet's RSA CA: the issuer key type BearSSL needs for ECDH suites.
  // simpleenroll goes without a client certificate (the bootstrap credential stands for it).
  if (!clientCert || !gKey || !gCert || gCert->getCount() == 0) {
    if (clientCert) Serial.println("no device certificate yet");
  } else if (gKey->isRSA()) {
    client.setClientRSACert(gCert, gKey);
  } else if (gKey->isEC()) {
    client.setClientECCert(gCert, gKey, BR_KEYTYPE_SIGN, BR_KEYTYPE_RSA);
  } else {
    Serial.println("the device key is neither RSA nor EC");
  }
  if (mfln) client.setBufferSizes(512, 512);
  return nullptr;
}

// GET <base>/<file> into `body`; nullptr or why not. Each block read is progress for the watchdog.
const char* httpsGet(const char* file, String& body) {
  char url[kUrlSize];
  if (!downloadUrl(gConfig, file, url, sizeof url)) return fail("URL for %s too long", file);
  BearSSL::WiFiClientSecure client;
  if (const char* reason = secure(client, gConfig.downloadserver, gConfig.downloadport)) return reason;
  HTTPClient http;
  http.setTimeout(kHttpTimeoutMs);
  if (!http.begin(client, url)) return fail("cannot request %s", url);
  step(WatchStep::Tls);  // TCP + TLS + the answer's headers
  const int code = http.GET();
  step(WatchStep::Download);
  if (code != HTTP_CODE_OK) {
    char text[40];
    if (code < 0) snprintf(text, sizeof text, "%s", http.errorToString(code).c_str());
    else snprintf(text, sizeof text, "HTTP %d", code);
    http.end();
    char last[64] = "";
    client.getLastSSLError(last, sizeof last);
    snprintf(gReason, sizeof gReason, "%s: %s %s", file, text, last);
    return gReason;
  }
  const int size = http.getSize();
  if (size < 0 || size > static_cast<int>(kMaxFileBytes)) {
    http.end();
    return fail("%s: missing or too large Content-Length", file);
  }
  body = "";
  if (!body.reserve(size)) {
    http.end();
    return fail("%s: out of memory", file);
  }
  WiFiClient* stream = http.getStreamPtr();
  char block[256];
  size_t left = static_cast<size_t>(size);
  while (stream && left) {
    // readBytes waits up to kHttpTimeoutMs for each byte: a stall ends here as an error.
    const size_t n = stream->readBytes(block, left < sizeof block ? left : sizeof block);
    if (n == 0 || !body.concat(block, n)) break;
    left -= n;
    progress();
  }
  http.end();
  zero(block, sizeof block);  // may hold a piece of <id>.key
  if (left) return fail("%s: the download stopped before its end", file);
  return nullptr;
}

// ---- enrollment (docs/enrollment.md, The device) ------------------------------------------------
// A device flashed without <id>.key enrolls itself: it makes device.key (P-256) on the board, asks
// the enrollment listener for a certificate with a CSR, waits while it is pending and renews it at
// two thirds of its life. The steps and waits are the core's Enrollment.

constexpr const char* kDeviceKeyPath = "/device.key";
constexpr const char* kBootstrapPath = "/bootstrap.txt";
constexpr size_t kMaxAnswerBytes = 4096;  // a PKCS#7 with one P-256 certificate is about 1 KB in base64

bool gEnrolling = false;  // this device's identity is its own P-256 key
Enrollment gEnroll;
EnrollEvent gBootEvent = EnrollEvent::NoKey;
bool gBootEventDue = false;
char gAuthorization[kAuthorizationSize];
int64_t gNotBefore = 0, gNotAfter = 0, gRenewAt = 0;

const char* reenrollNow();

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

// The update's progress is the watchdog's: ESPhttpUpdate calls onProgress(0, size) when the
// download starts, then (through Update.onProgress) after every buffer the Updater writes
// (4 KB, a flash sector, or 256 bytes when the heap is low), and (size, size) right before
// Update.end(), which hashes the image and checks its signature: step verify.
void onUpdateProgress(int done, int total) {
  if (done >= total) step(WatchStep::Verify);
  else if (done == 0) step(WatchStep::Download);
  else progress();
}

const char* commandFirmware(void*) {
  char url[kUrlSize];
  if (!firmwareUrl(gConfig, gImage, url, sizeof url)) return fail("bad image name %s", gImage);
  BearSSL::WiFiClientSecure client;
  if (const char* reason = secure(client, gConfig.downloadserver, gConfig.downloadport)) return reason;
  ESPhttpUpdate.rebootOnUpdate(false);  // `flash` (or any restart) installs it
  ESPhttpUpdate.setClientTimeout(kHttpTimeoutMs);
  ESPhttpUpdate.onStart([] { step(WatchStep::Download); });
  ESPhttpUpdate.onProgress(onUpdateProgress);
  Update.installSignature(&gSigningHash, &gSigningVerifier);
  step(WatchStep::Tls);  // TCP + TLS + the answer's headers, until onStart
  const HTTPUpdateResult result = ESPhttpUpdate.update(client, url, gImage);
  step(WatchStep::Loop);
  switch (result) {
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
  if (gEnrolling) {
    // An enrolled device re-enrolls now (docs/enrollment.md); its key never leaves the board.
    return reenrollNow();
  }
  char path[kDeviceIdLength + 6];
  snprintf(path, sizeof path, "/%s.crt", gId);
  return downloadFile(path + 1, path, PemKind::Certificate);
}

const char* commandKey(void*) {
  char path[kDeviceIdLength + 6];
  snprintf(path, sizeof path, "/%s.key", gId);
  return downloadFile(path + 1, path, PemKind::PrivateKey);
}

// Starts the Wi-Fi change (the core's WifiSwitch); fleetLoop drives it. The reason of a refused
// payload is a static text of the core, never the payload.
const char* commandWifi(void*, const char* payload, size_t length) {
  const char* reason = nullptr;
  const String current = WiFi.SSID();
  return gWifi.start(payload, length, current.c_str(), &reason) ? nullptr : reason;
}

CommandRunner gRunner(CommandHandlers{commandFirmware, commandReboot, commandFlash, commandCa, commandCert, commandKey, nullptr, commandWifi});

// ---- enrollment: the steps ------------------------------------------------------------------

void certPath(char* out, size_t size) { snprintf(out, size, "/%s.crt", gId); }

// Hardware random words (ESP.random reads the chip's RNG register) seed BearSSL's HMAC-DRBG.
void seedRng(br_hmac_drbg_context& rng) {
  uint8_t seed[32];
  ESP.random(seed, sizeof seed);
  br_hmac_drbg_init(&rng, &br_sha256_vtable, seed, sizeof seed);
  zero(reinterpret_cast<char*>(seed), sizeof seed);
}

// Makes the P-256 key (about a second at 80 MHz) and stores it as SEC 1 DER in PEM.
bool makeDeviceKey() {
  step(WatchStep::Verify);  // one long computation: the budget of the one-off signature check
  br_hmac_drbg_context rng;
  seedRng(rng);
  uint8_t secret[BR_EC_KBUF_PRIV_MAX_SIZE], point[BR_EC_KBUF_PUB_MAX_SIZE], der[160];
  br_ec_private_key sk;
  br_ec_public_key pk;
  const br_ec_impl* curve = br_ec_get_default();
  bool ok = br_ec_keygen(&rng.vtable, curve, &sk, secret, BR_EC_secp256r1) != 0 && br_ec_compute_pub(curve, &pk, point, &sk) == kEcP256PointSize;
  const size_t n = ok ? br_encode_ec_raw_der(der, &sk, &pk) : 0;
  char pem[300];
  ok = n > 0 && n <= sizeof der && pemEncode("EC PRIVATE KEY", der, n, pem, sizeof pem) > 0;
  ok = ok && writeFileAtomically(kDeviceKeyPath, String(pem));
  zero(reinterpret_cast<char*>(secret), sizeof secret);
  zero(reinterpret_cast<char*>(der), sizeof der);
  zero(pem, sizeof pem);
  step(WatchStep::Loop);
  return ok;
}

bool loadDeviceKey() {
  String pem;
  if (!readFile(kDeviceKeyPath, pem)) return false;
  delete gKey;
  gKey = new (std::nothrow) BearSSL::PrivateKey(pem.c_str());
  zero(const_cast<char*>(pem.c_str()), pem.length());
  return gKey && gKey->isEC();
}

// Loads <id>.crt (if any) and its validity; false when there is none.
bool loadCertificate() {
  char path[kDeviceIdLength + 6];
  certPath(path, sizeof path);
  String pem;
  delete gCert;
  gCert = nullptr;
  if (!readFile(path, pem)) return false;
  gCert = new (std::nothrow) BearSSL::X509List(pem.c_str());
  if (!gCert) restart("out of memory for the certificate");
  if (gCert->getCount() == 0) return false;
  const br_x509_certificate& c = gCert->getX509Certs()[0];
  const char* reason = nullptr;
  if (!readCertificateValidity(c.data, c.data_len, gNotBefore, gNotAfter, &reason)) {
    Serial.printf("%s: %s\n", path, reason);
    return false;
  }
  gRenewAt = renewAtS(gNotBefore, gNotAfter);
  return true;
}

bool certificateExpired() { return static_cast<int64_t>(time(nullptr)) >= gNotAfter; }

// The CsrSigner of the core: SHA-256 and ECDSA with device.key, DER signature.
size_t signCsr(void* context, const uint8_t* data, size_t length, uint8_t* signature, size_t capacity) {
  const auto* key = static_cast<const br_ec_private_key*>(context);
  if (capacity < kEcdsaDerMax) return 0;
  br_sha256_context sha;
  uint8_t hash[32];
  br_sha256_init(&sha);
  br_sha256_update(&sha, data, length);
  br_sha256_out(&sha, hash);
  return br_ecdsa_sign_asn1_get_default()(br_ec_get_default(), &br_sha256_vtable, hash, key, signature);
}

// Builds the CSR of device.key and POSTs it; `code` is the HTTP status (or < 0), `answer` the body of a 200.
const char* postCsr(bool renew, int& code, String& answer, String& retryAfter) {
  code = -1;
  char url[kUrlSize];
  if (!enrollUrl(gConfig, renew ? "simplereenroll" : "simpleenroll", url, sizeof url)) return "config.json has no enrollport";
  if (!renew && !gAuthorization[0]) return "bootstrap.txt missing or invalid";
  if (!gKey || !gKey->isEC()) return "device.key missing or not EC";
  const br_ec_private_key* sk = gKey->getEC();
  uint8_t point[BR_EC_KBUF_PUB_MAX_SIZE];
  br_ec_public_key pk;
  step(WatchStep::Verify);  // public key and signature: one computation each
  if (br_ec_compute_pub(br_ec_get_default(), &pk, point, sk) != kEcP256PointSize) return "device.key is not a P-256 key";
  uint8_t der[kCsrMax];
  const char* reason = nullptr;
  const size_t n = buildCsr(gId, pk.q, signCsr, const_cast<br_ec_private_key*>(sk), der, sizeof der, &reason);
  if (n == 0) return fail("CSR: %s", reason);
  char body[2 * kCsrMax];
  if (base64Encode(der, n, body, sizeof body) == 0) return "CSR too long";

  BearSSL::WiFiClientSecure client;
  // simplereenroll is authenticated by the current certificate; simpleenroll by the credential.
  if (const char* why = secure(client, gConfig.downloadserver, gConfig.enrollport, renew)) return why;
  HTTPClient http;
  http.setTimeout(kHttpTimeoutMs);
  if (!http.begin(client, url)) return fail("cannot request %s", url);
  const char* headers[] = {"Retry-After"};
  http.collectHeaders(headers, 1);
  http.addHeader("Content-Type", "application/pkcs10");
  if (!renew) http.addHeader("Authorization", gAuthorization);
  step(WatchStep::Tls);  // TCP + TLS + the answer's headers
  code = http.POST(reinterpret_cast<uint8_t*>(body), strlen(body));
  step(WatchStep::Download);
  retryAfter = http.header("Retry-After");
  if (code != HTTP_CODE_OK) {
    http.end();
    if (code < 0) return fail("enroll: %s", HTTPClient::errorToString(code).c_str());
    return code == 202 ? nullptr : fail("enroll: HTTP %s", String(code).c_str());
  }
  const int size = http.getSize();
  if (size <= 0 || size > static_cast<int>(kMaxAnswerBytes)) {
    http.end();
    return "enroll: missing or too large Content-Length";
  }
  if (!answer.reserve(size)) {
    http.end();
    return "enroll: out of memory";
  }
  WiFiClient* stream = http.getStreamPtr();
  char block[256];
  size_t left = static_cast<size_t>(size);
  while (stream && left) {
    const size_t got = stream->readBytes(block, left < sizeof block ? left : sizeof block);
    if (got == 0 || !answer.concat(block, got)) break;
    left -= got;
    progress();
  }
  http.end();
  step(WatchStep::Loop);
  return left ? "enroll: the answer stopped before its end" : nullptr;
}

// The certificate of a 200: read by the core, checked by BearSSL, stored as <id>.crt (PEM).
const char* storeAnswer(const String& answer) {
  uint8_t* buffer = new (std::nothrow) uint8_t[answer.length() + 1];
  if (!buffer) return "enroll: out of memory";
  CertificateInfo info;
  const char* reason = nullptr;
  const char* result = nullptr;
  char path[kDeviceIdLength + 6];
  certPath(path, sizeof path);
  if (!readCertsOnlyBase64(answer.c_str(), answer.length(), buffer, answer.length() + 1, info, &reason)) {
    result = fail("enroll: %s", reason);
  } else if (BearSSL::X509List(info.der, info.length).getCount() != 1) {
    result = "enroll: BearSSL cannot read the certificate";
  } else {
    const size_t pemSize = info.length * 4 / 3 + info.length / 48 + 80;
    char* pem = new (std::nothrow) char[pemSize];
    if (!pem || pemEncode("CERTIFICATE", info.der, info.length, pem, pemSize) == 0) result = "enroll: out of memory";
    else if (!writeFileAtomically(path, String(pem))) result = fail("cannot write %s", path);
    delete[] pem;
  }
  delete[] buffer;
  if (!result && !loadCertificate()) result = "enroll: the stored certificate does not load";
  return result;
}

void enrollAction(EnrollAction action);

// One simpleenroll or simplereenroll, and the event its outcome is.
void enrollOnce(bool renew) {
  int code = -1;
  String answer, retryAfter;
  Serial.printf("%s to %s:%u\n", renew ? "simplereenroll" : "simpleenroll", gConfig.downloadserver, static_cast<unsigned>(gConfig.enrollport));
  const char* reason = postCsr(renew, code, answer, retryAfter);
  if (!reason && code == HTTP_CODE_OK) reason = storeAnswer(answer);
  EnrollEvent event = EnrollEvent::Refused;
  if (!reason) event = code == HTTP_CODE_OK ? EnrollEvent::Answer200 : EnrollEvent::Answer202;
  if (reason) {
    Serial.printf("enroll: %s\n", reason);
    gRunner.setError("cert", reason);
  }
  const bool header = retryAfter.length() > 0;
  enrollAction(gEnroll.on(event, millis(), header ? retryAfter.c_str() : nullptr, retryAfter.length()));
}

void enrollAction(EnrollAction action) {
  switch (action) {
    case EnrollAction::MakeKey:
      Serial.println("making the device key (P-256)");
      if (!makeDeviceKey() || !loadDeviceKey()) restart("cannot make or store device.key");
      enrollAction(gEnroll.on(EnrollEvent::KeyStored, millis()));
      return;
    case EnrollAction::SimpleEnroll:
    case EnrollAction::SimpleReenroll:
      gMqtt.disconnect();  // the heap of a second TLS session
      enrollOnce(action == EnrollAction::SimpleReenroll);
      return;
    case EnrollAction::Connect:
    case EnrollAction::StoreAndConnect:
      Serial.printf("certificate valid until %lld, renewal at %lld\n", static_cast<long long>(gNotAfter), static_cast<long long>(gRenewAt));
      if (action == EnrollAction::StoreAndConnect) gRunner.setError("", "");
      gMqtt.disconnect();  // MQTT (re)connects with the certificate
      gReconnect.failed(millis());
      return;
    case EnrollAction::WaitRetryAfter:
      Serial.printf("enrollment pending approval of %s: asking again in %u s\n", gId, static_cast<unsigned>(gEnroll.waitMs() / 1000));
      return;
    case EnrollAction::WaitFailure:
      Serial.printf("enrollment failed %u times: trying again in %u s\n", static_cast<unsigned>(gEnroll.failures()), static_cast<unsigned>(gEnroll.waitMs() / 1000));
      return;
    case EnrollAction::None:
      return;
  }
}

// At boot, after NTP: which identity, and the first event of the steps.
void beginEnrollment() {
  String line;
  const char* reason = nullptr;
  gAuthorization[0] = '\0';
  if (!readFile(kBootstrapPath, line)) Serial.println("bootstrap.txt missing: only simplereenroll can work");
  else if (!basicAuthorization(line.c_str(), line.length(), gAuthorization, sizeof gAuthorization, &reason)) Serial.printf("bootstrap.txt: %s\n", reason);
  zero(const_cast<char*>(line.c_str()), line.length());
  if (gConfig.enrollport == 0) Serial.println("config.json has no enrollport: the device cannot enroll");
  if (!LittleFS.exists(kDeviceKeyPath)) gBootEvent = EnrollEvent::NoKey;
  else if (!loadDeviceKey()) restart("device.key is not a usable EC key");
  else if (!loadCertificate()) gBootEvent = EnrollEvent::NoCert;
  else gBootEvent = certificateExpired() ? EnrollEvent::CertExpired : EnrollEvent::CertValid;
  gBootEventDue = true;
}

// Each loop pass: the boot event, the timers, renewal and expiry.
void driveEnrollment(uint32_t now) {
  if (gBootEventDue) {
    gBootEventDue = false;
    enrollAction(gEnroll.on(gBootEvent, now));
    return;
  }
  const EnrollState s = gEnroll.state();
  const bool holdsCertificate = s == EnrollState::Enrolled || s == EnrollState::Renew || s == EnrollState::RenewBackoff;
  if (holdsCertificate && certificateExpired()) enrollAction(gEnroll.on(EnrollEvent::CertExpired, now));
  else if (s == EnrollState::Enrolled && static_cast<int64_t>(time(nullptr)) >= gRenewAt) enrollAction(gEnroll.on(EnrollEvent::RenewDue, now));
  else if (gEnroll.timerDue(now)) enrollAction(gEnroll.on(EnrollEvent::Timer, now));
}

// MQTT runs while the device holds a certificate (also while a renewal retries).
bool mayConnect() {
  if (!gEnrolling) return true;
  const EnrollState s = gEnroll.state();
  return s == EnrollState::Enrolled || s == EnrollState::Renew || s == EnrollState::RenewBackoff;
}

const char* reenrollNow() {
  if (gEnroll.state() != EnrollState::Enrolled) return "not enrolled yet, or a renewal is under way";
  enrollAction(gEnroll.on(EnrollEvent::CertCommand, millis()));
  return gEnroll.state() == EnrollState::Enrolled ? nullptr : gReason[0] ? gReason : "re-enrollment failed";
}


// ---- Wi-Fi change ---------------------------------------------------------------------------
// The SDK keeps two station configs: the current one (RAM) and the default one (flash, what the
// next boot uses). WiFi.persistent(false) makes WiFi.begin() and WiFi.disconnect() touch only
// the current one, so the old network stays stored while the new one is tried (with persistent
// on, WiFi.disconnect() would even erase the stored credentials).

bool onNewNetwork() {
  return WiFi.status() == WL_CONNECTED && WiFi.SSID() == gWifi.target().ssid;
}

void driveWifiSwitch(uint32_t now) {
  switch (gWifi.poll(onNewNetwork(), now)) {
    case WifiAction::None: return;
    case WifiAction::JoinNew:
      Serial.printf("wifi: trying %s for up to %u s (still stored: %s)\n", gWifi.target().ssid,
                    static_cast<unsigned>(kWifiJoinTimeoutMs / 1000), gWifi.oldSsid());
      gMqtt.disconnect();
      WiFi.persistent(false);
      WiFi.disconnect();
      WiFi.begin(gWifi.target().ssid, gWifi.target().password);
      return;
    case WifiAction::Store: {
      // The current config (the new network, joined) becomes the stored one.
      station_config config;
      const bool stored = wifi_station_get_config(&config) && wifi_station_set_config(&config);
      zero(reinterpret_cast<char*>(config.password), sizeof config.password);
      WiFi.persistent(true);
      Serial.printf("wifi: joined %s%s\n", gWifi.target().ssid, stored ? ", stored" : ", but storing it failed: the next boot uses the old one");
      if (!stored) gRunner.setError("wifi", "joined, but the credentials could not be stored");
      break;
    }
    case WifiAction::RejoinOld: {
      // Back to the stored (old) network: it was never overwritten.
      station_config config;
      if (wifi_station_get_config_default(&config)) {
        wifi_station_disconnect();
        wifi_station_set_config_current(&config);
        wifi_station_connect();
      }
      zero(reinterpret_cast<char*>(config.password), sizeof config.password);
      WiFi.persistent(true);
      Serial.printf("wifi: %s\n", gWifi.error());
      gRunner.setError("wifi", gWifi.error());
      break;
    }
  }
  gWifi.finish();  // wipes the new password
  // A fresh outage from now: the switch's 30 s do not count towards waittimeout.
  if (gReconnect.isConnected()) gReconnect.failed(millis());
  gLastStatus = millis() - gConfig.statusinterval;  // report as soon as MQTT is back
}

// ---- MQTT ---------------------------------------------------------------------------------

void onMessage(char* topic, uint8_t* payload, unsigned int length) {
  // Only noted here: commands run from loop(), outside PubSubClient's callback. The wifi
  // payload is copied (a longer one is cut to one byte past the limit, which the core refuses).
  const Command c = parseCommandTopic(topic, strlen(topic), gId);
  if (c == Command::None) {
    Serial.printf("ignored %s\n", topic);
    return;
  }
  if (c == Command::Wifi) {
    gPayloadLength = length < sizeof gPayload ? length : sizeof gPayload;
    memcpy(gPayload, payload, gPayloadLength);
  }
  gPending = c;
}

// Each step of the connect is a watchdog step of its own: dns, then tls (TCP + handshake), then
// mqtt (CONNECT until CONNACK). The step's end is progress; time passing is not. `reached`: the
// broker accepted the TCP connection (a TLS error or a refused CONNECT means it did), which the
// reconnect rule uses to tell a busy broker from a network that is gone.
bool connectMqtt(bool& reached) {
  reached = false;
  Serial.printf("MQTT %s:%u (%s)\n", gConfig.mqttserver, gConfig.mqttport, gConfig.mqtttls ? "TLS" : "plain, insecure");
  bool tcp = false;
  if (gConfig.mqtttls) {
    if (const char* reason = secure(gMqttTls, gConfig.mqttserver, gConfig.mqttport)) {
      Serial.printf("MQTT: %s\n", reason);
      step(WatchStep::Loop);
      return false;
    }
    step(WatchStep::Tls);
    // By name, so that BearSSL checks the server certificate's name (the address is in lwIP's cache now).
    tcp = gMqttTls.connect(gConfig.mqttserver, gConfig.mqttport) == 1;
  } else {
    IPAddress ip;
    gMqttPlain.setTimeout(kTcpTimeoutMs);
    tcp = resolve(gConfig.mqttserver, ip) && gMqttPlain.connect(ip, gConfig.mqttport) == 1;
  }
  step(WatchStep::Mqtt);
  gMqtt.setClient(gConfig.mqtttls ? static_cast<Client&>(gMqttTls) : static_cast<Client&>(gMqttPlain));
  gMqtt.setServer(gConfig.mqttserver, gConfig.mqttport);
  gMqtt.setSocketTimeout(kMqttConnackS);
  // The client is connected already: PubSubClient::connect then only sends CONNECT.
  // The broker publishes "offline" (retained) on /will/<id>/will when the device drops away.
  if (!tcp || !gMqtt.connect(gId, nullptr, nullptr, gTopics.will, 1, true, "offline")) {
    char last[64] = "";
    const int sslError = gConfig.mqtttls ? gMqttTls.getLastSSLError(last, sizeof last) : 0;
    reached = tcp || sslError != 0;
    Serial.printf("MQTT connect failed: %s %d %s\n", tcp ? "state" : "no TLS connection,", gMqtt.state(), last);
    if (gConfig.mqtttls) gMqttTls.stop();
    else gMqttPlain.stop();
    step(WatchStep::Loop);
    return false;
  }
  gMqtt.publish(gTopics.will, "online", true);
  gMqtt.subscribe(gTopics.commandFilter, 1);
  gMqtt.setSocketTimeout(kMqttReadS);
  step(WatchStep::Loop);
  return true;
}

void publishStatus(uint32_t now) {
  const IPAddress address = WiFi.localIP();
  char ip[16];
  snprintf(ip, sizeof ip, "%u.%u.%u.%u", address[0], address[1], address[2], address[3]);
  const StatusFields fields{micros64() / 1000, gLoopWatch.maxMillis(), gReconnect.isConnected() ? now - gReconnect.connectedSince() : 0,
                            gName, gImage, gBuild, ip, WiFi.RSSI(), ESP.getFreeHeap(), gRunner.errorMessage()};
  char json[kStatusSize];
  const size_t n = buildStatusJson(fields, json, sizeof json);
  if (n && gMqtt.publish(gTopics.status, reinterpret_cast<const uint8_t*>(json), n, false)) gLastStatus = now;
}

// ---- setup steps --------------------------------------------------------------------------

void updateLed() { digitalWrite(LED_BUILTIN, ledOn(gLed, millis()) ? LOW : HIGH); }  // D1 mini: LED on at LOW

void watchdog() {
  // Runs from a timer every kWatchdogTickMs: the current step made no progress within its budget.
  if (gWatchdogArmed && gDog.overdue(millis())) {
    Serial.printf("\nwatchdog: no progress in step %s for %u ms: reset\n", watchStepName(gDog.step()),
                  static_cast<unsigned>(watchdogBudgetMs(gDog.step())));
    ESP.reset();
  }
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
  gWatchdogTicker.attach_ms(kWatchdogTickMs, watchdog);

  uint8_t mac[6];
  WiFi.macAddress(mac);
  deviceIdFromMac(mac, gId);
  buildTopics(gId, gTopics);
  snprintf(gName, sizeof gName, "measure-%s", gId);
  ImageName parsed;
  Serial.printf("%s%s\nMAC: %s\nCLIENTNAME: %s\n", gImage, parseImageName(gImage, strlen(gImage), parsed) ? "" : " (not a valid image name!)",
                WiFi.macAddress().c_str(), gId);

  mountFilesystem();
  listFiles();
  String text;
  if (!readFile("/config.json", text) || !loadConfig(text, "data/config.json")) restart("data/config.json missing or invalid");

  joinWifi();
  Serial.printf("Wi-Fi: %s, IP %s\n", WiFi.SSID().c_str(), WiFi.localIP().toString().c_str());

  // Certificates are checked against the clock: no TLS before NTP has answered.
  configTime(0, 0, gConfig.ntpserver);
  if (!waitFor([] { return time(nullptr) > kPlausibleTime; }, gConfig.waittimeout)) restart("no time from NTP");

  // No server-made <id>.key: the device has (or makes) its own key and enrolls (docs/enrollment.md).
  char serverKey[kDeviceIdLength + 6];
  snprintf(serverKey, sizeof serverKey, "/%s.key", gId);
  gEnrolling = !LittleFS.exists(serverKey);
  if (gEnrolling) {
    String ca;
    if (!readFile("/ca.crt", ca)) Serial.println("ca.crt missing in data/");
    gCa = new (std::nothrow) BearSSL::X509List(ca.c_str());
    if (!gCa) restart("out of memory for the CA certificate");
    beginEnrollment();
  } else {
    loadTlsMaterial();
  }
  // The server's config.json wins over the stored one from now on (takes effect at once). The
  // main listener wants a client certificate: a device still to enroll asks after enrolling.
  String served;
  const uint16_t enrollport = gConfig.enrollport;
  if (gEnrolling && gBootEvent != EnrollEvent::CertValid) {
    Serial.println("config.json download after enrollment");
  } else if (const char* reason = httpsGet("config.json", served)) {
    Serial.printf("config.json download failed: %s\n", reason);
    gRunner.setError("config", reason);
  } else if (served != text && loadConfig(served, "served config.json")) {
    if (gConfig.enrollport == 0) gConfig.enrollport = enrollport;  // a server that does not serve it yet
    writeFileAtomically("/config.json", served);
  }

  gMqtt.setCallback(onMessage);
  // PubSubClient 2.8: setBufferSize answers false when the allocation fails; every publish
  // would then fail silently, so say so and start over.
  if (!gMqtt.setBufferSize(kStatusSize + 64)) restart("out of memory for the MQTT buffer");
  // Jitter from the id and a hardware random word (docs/wire-contract.md, Device timing): devices
  // of one power cut do not draw the same waits.
  gReconnect = ReconnectPolicy(gConfig.retrytimeout, gConfig.waittimeout, Jitter::forDevice(gId, ESP.random()));
  gReconnect.start(millis());
  custom();
  step(WatchStep::Loop);
  gWatchdogArmed = true;
}

void fleetLoop(void (*custom)()) {
  const uint32_t now = millis();
  step(WatchStep::Loop);  // a loop pass is progress
  gLoopWatch.enter(now);
  if (gEnrolling && !gWifi.busy()) driveEnrollment(now);
  if (gWifi.busy()) {
    driveWifiSwitch(now);  // MQTT waits until the switch is over
  } else if (!mayConnect()) {
    // Enrolling: no certificate for MQTT yet.
  } else if (gMqtt.connected()) {
    gMqtt.loop();
  } else {
    if (gReconnect.isConnected()) gReconnect.failed(now);
    if (gReconnect.attemptDue(now)) {
      bool reached = false;
      if (connectMqtt(reached)) {
        gReconnect.connected(millis());
        publishStatus(millis());
      } else {
        gReconnect.failed(millis(), reached);
        // Only an attempt that failed can end in a reboot (the core decides when).
        if (gReconnect.rebootDue()) restart("backend unreachable for longer than waittimeout");
      }
    }
  }
  if (gPending != Command::None) {
    const Command c = gPending;
    gPending = Command::None;
    Serial.printf("command %s\n", commandName(c));
    if (c == Command::Wifi) {
      // Only parsed here; the switch runs over the next passes (and disconnects MQTT then).
      gRunner.run(c, gPayload, gPayloadLength);
      zero(gPayload, sizeof gPayload);
      gPayloadLength = 0;
    } else {
      // Downloads need the heap a second TLS session would take: MQTT reconnects afterwards.
      gMqtt.disconnect();
      gRunner.run(c);
      step(WatchStep::Loop);
      gReconnect.failed(millis());  // after the command: a long download does not count as backend time-out
    }
    Serial.printf("command %s: %s\n", commandName(c), *gRunner.errorMessage() ? gRunner.errorMessage() : gWifi.busy() ? "started" : "done");
    gLastStatus = millis() - gConfig.statusinterval;  // report the outcome as soon as MQTT is back
  }
  if (gMqtt.connected() && millis() - gLastStatus >= gConfig.statusinterval) publishStatus(millis());
  gLed = gMqtt.connected() ? LedMode::Connected : gEnrolling && gEnroll.state() == EnrollState::Pending ? LedMode::Pending : LedMode::Setup;
  custom();
  gLoopWatch.leave(millis());
}
