// Host tests of the firmware core: the shared vectors in test/vectors/ (the same files the
// TypeScript tests check lib/ against) and unit tests of what has no TypeScript twin.
// Usage: host_tests <dir of the vectors>
#include <algorithm>
#include <cstring>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <vector>

#include "check.h"
#include "esp32_tests.h"
#include "fleet_core.h"

using nlohmann::json;
using namespace fleet;

namespace {

std::string vectorDir;

json load(const std::string& name) {
  std::ifstream in(vectorDir + "/" + name);
  std::stringstream text;
  text << in.rdbuf();
  CHECK(in.good() || in.eof(), "read " + name);
  return json::parse(text.str());
}

std::string fromHex(const std::string& hex) {
  std::string out;
  for (size_t i = 0; i + 1 < hex.size(); i += 2) out.push_back(static_cast<char>(std::stoi(hex.substr(i, 2), nullptr, 16)));
  return out;
}

// ---- test/vectors/image-versions.json ------------------------------------------------------

void imageVersions() {
  const json v = load("image-versions.json");
  for (const json& c : v["valid"]) {
    const std::string name = c["name"];
    ImageName parsed;
    CHECK(parseImageName(name.data(), name.size(), parsed), "valid name " + name);
    CHECK_EQ(std::string(parsed.product), c["product"].get<std::string>(), "product of " + name);
    CHECK_EQ(std::string(parsed.version.build), c["build"].get<std::string>(), "build of " + name);
    CHECK_EQ(static_cast<size_t>(parsed.version.count), c["parts"].size(), "parts of " + name);
    for (size_t i = 0; i < c["parts"].size() && i < kMaxParts; i++) CHECK_EQ(parsed.version.parts[i], c["parts"][i].get<uint32_t>(), "part of " + name);
    const std::string version = c["version"];
    Version alone;
    CHECK(parseVersion(version.data(), version.size(), alone) && compareVersions(alone, parsed.version) == 0, "bare version " + version);
  }
  for (const json& c : v["invalidNames"]) {
    const std::string name = c["name"];
    ImageName parsed;
    CHECK(!parseImageName(name.data(), name.size(), parsed), "invalid name (" + c["why"].get<std::string>() + ") " + name);
  }
  for (const json& c : v["comparisons"]) {
    const std::string a = c["a"], b = c["b"];
    ImageName pa, pb;
    int order = 2, reverse = 2;
    CHECK(parseImageName(a.data(), a.size(), pa) && parseImageName(b.data(), b.size(), pb), "parse " + a + " and " + b);
    CHECK(compareImageNames(pa, pb, order) && compareImageNames(pb, pa, reverse), "same product " + a + " " + b);
    CHECK_EQ(order, c["order"].get<int>(), "order of " + a + " and " + b + ": " + c["why"].get<std::string>());
    CHECK_EQ(reverse, -c["order"].get<int>(), "antisymmetric " + b + " vs " + a);
  }
  for (const json& c : v["differentProducts"]) {
    const std::string a = c[0], b = c[1];
    ImageName pa, pb;
    int order;
    CHECK(parseImageName(a.data(), a.size(), pa) && parseImageName(b.data(), b.size(), pb), "parse " + a + " and " + b);
    CHECK(!compareImageNames(pa, pb, order), "no order between products: " + a + " " + b);
  }
}

// ---- test/vectors/device-topics.json and commands.json -------------------------------------

void deviceTopics() {
  const json v = load("device-topics.json");
  for (const json& c : v["devices"]) {
    const std::string input = c["input"], id = c["id"], mac = c["mac"];
    char normalized[kDeviceIdLength + 1] = "";
    CHECK(normalizeDeviceId(input.data(), input.size(), normalized), "normalize " + input);
    CHECK_EQ(std::string(normalized), id, "id of " + input);
    uint8_t bytes[6];
    for (int i = 0; i < 6; i++) bytes[i] = static_cast<uint8_t>(std::stoi(mac.substr(3 * i, 2), nullptr, 16));
    char fromMac[kDeviceIdLength + 1];
    deviceIdFromMac(bytes, fromMac);
    CHECK_EQ(std::string(fromMac), id, "id of MAC " + mac);
    CHECK(isDeviceId(id.data(), id.size()), "isDeviceId " + id);
    Topics t;
    CHECK(buildTopics(id.c_str(), t), "topics of " + id);
    CHECK_EQ(std::string(t.status), c["status"].get<std::string>(), "status topic");
    CHECK_EQ(std::string(t.will), c["will"].get<std::string>(), "will topic");
    CHECK_EQ(std::string(t.commandFilter), c["commandFilter"].get<std::string>(), "command filter");
    // Every command the vector lists (commands.json has the full list and the wifi topic).
    for (size_t k = 1; k <= kCommandCount; k++) {
      const Command command = static_cast<Command>(k);
      char topic[kTopicSize];
      CHECK(commandTopic(id.c_str(), command, topic, sizeof topic), "command topic");
      if (c["commands"].contains(commandName(command)))
        CHECK_EQ(std::string(topic), c["commands"][commandName(command)].get<std::string>(), std::string("topic of ") + commandName(command));
    }
  }
  for (const json& c : v["invalidIds"]) {
    const std::string input = c["input"];
    char id[kDeviceIdLength + 1];
    CHECK(!normalizeDeviceId(input.data(), input.size(), id), "invalid id (" + c["why"].get<std::string>() + ") " + input);
    CHECK(!isDeviceId(input.data(), input.size()), "not an id: " + input);
  }
  Topics t;
  CHECK(!buildTopics("84F3EB012345", t), "topics need a normalized id");
}

void commandTopics() {
  const json v = load("commands.json");
  CHECK_EQ(v["commands"].size(), kCommandCount, "number of commands");
  for (size_t k = 1; k <= kCommandCount; k++) CHECK_EQ(std::string(commandName(static_cast<Command>(k))), v["commands"][k - 1].get<std::string>(), "command name");
  const std::string id = v["id"];
  for (const json& c : v["topics"]) {
    const std::string topic = c["topic"];
    const std::string expected = c["command"].is_null() ? "" : c["command"].get<std::string>();
    const Command parsed = parseCommandTopic(topic.data(), topic.size(), id.c_str());
    CHECK_EQ(std::string(commandName(parsed)), expected, "command of " + topic + " (" + c["why"].get<std::string>() + ")");
    // A topic the device acts on is the one the backend builds for that command.
    char built[kTopicSize];
    if (parsed != Command::None) CHECK(commandTopic(id.c_str(), parsed, built, sizeof built) && topic == built, "built topic " + topic);
  }
}

// ---- commands.json wifiPayloads --------------------------------------------------------------

void wifiPayloads() {
  const json v = load("commands.json")["wifiPayloads"];
  CHECK(v["valid"].size() >= 5 && v["invalid"].size() >= 10, "wifi payload vectors present");
  for (const json& c : v["valid"]) {
    const std::string payload = c["payload"], why = c["why"];
    WifiCredentials w;
    const char* reason = "not run";
    CHECK(parseWifiPayload(payload.data(), payload.size(), w, &reason), "valid wifi payload (" + why + "): " + (reason ? reason : ""));
    CHECK_EQ(std::string(w.ssid), c["ssid"].get<std::string>(), "ssid: " + why);
    CHECK_EQ(std::string(w.password), c["password"].get<std::string>(), "password: " + why);
    CHECK(reason == nullptr, "no reason when valid: " + why);
  }
  for (const json& c : v["invalid"]) {
    const std::string payload = c["payload"], why = c["why"];
    WifiCredentials w;
    std::memset(&w, 'x', sizeof w);
    const char* reason = nullptr;
    CHECK(!parseWifiPayload(payload.data(), payload.size(), w, &reason), "invalid wifi payload refused (" + why + "): " + payload);
    CHECK(reason && *reason, "a reason for " + why);
    CHECK(w.ssid[0] == 0 && w.password[0] == 0, "nothing kept of a refused payload: " + why);
    // The reason never quotes the payload, so never the password.
    const json parsed = json::parse(payload, nullptr, false);
    if (parsed.is_object() && parsed.contains("password") && parsed["password"].is_string()) {
      const std::string password = parsed["password"];
      CHECK(password.size() < 4 || std::string(reason ? reason : "").find(password) == std::string::npos, "reason without the password: " + why);
    }
  }
  // What the vectors do not spell out: UTF-8 forms and escapes of the device's own reader.
  const struct {
    const char* payload;
    bool ok;
    const char* ssid;
    const char* why;
  } extra[] = {
      {"{\"ssid\":\"G\\u00e4ste\",\"password\":\"\"}", true, "G\xc3\xa4ste", "\\u escape to UTF-8"},
      {"{\"ssid\":\"\\ud83d\\ude00\",\"password\":\"\"}", true, "\xf0\x9f\x98\x80", "surrogate pair to 4 bytes"},
      {"{\"ssid\":\"a\\ud83d\",\"password\":\"\"}", false, "", "lone surrogate"},
      {"{\"ssid\":\"a\\u0000b\",\"password\":\"\"}", false, "", "escaped NUL"},
      {"{\"ssid\":\"a\x7f\",\"password\":\"\"}", false, "", "DEL"},
      {"{\"ssid\":\"a\xc2\x85\",\"password\":\"\"}", false, "", "C1 control (NEL)"},
      {"{\"ssid\":\"a\xc3\",\"password\":\"\"}", false, "", "cut UTF-8 sequence"},
      {"{\"ssid\":\"\xc0\xaf\",\"password\":\"\"}", false, "", "overlong UTF-8"},
      {"{\"ssid\":\"\xed\xa0\x80\",\"password\":\"\"}", false, "", "UTF-8 surrogate"},
      {" { \"ssid\" : \"home\" , \"password\" : \"12345678\" } ", true, "home", "blanks"},
      {"{\"ssid\":\"home\",\"password\":\"12345678\"} x", false, "", "text after the object"},
      {"{\"ssid\":\"home\",\"password\":null}", false, "", "null password"},
      {"{\"ssid\":\"home\",\"password\":\"12345678\",\"password\":\"87654321\"}", false, "", "password twice"},
      {"{\"ssid\":[\"home\"],\"password\":\"12345678\"}", false, "", "nested ssid"},
  };
  for (const auto& e : extra) {
    WifiCredentials w;
    const char* reason = nullptr;
    const bool ok = parseWifiPayload(e.payload, std::strlen(e.payload), w, &reason);
    CHECK_EQ(ok, e.ok, std::string("wifi payload: ") + e.why + (reason ? std::string(" (") + reason + ")" : ""));
    if (e.ok) CHECK_EQ(std::string(w.ssid), std::string(e.ssid), std::string("ssid: ") + e.why);
  }
  const std::string huge = "{\"ssid\":\"" + std::string(600, 'a') + "\",\"password\":\"\"}";
  WifiCredentials w;
  const char* reason = nullptr;
  CHECK(!parseWifiPayload(huge.data(), huge.size(), w, &reason) && std::string(reason) == "payload too long", "a payload past 512 bytes is refused unread");
  CHECK(!parseWifiPayload(nullptr, 0, w, nullptr), "no payload, no reason pointer");
}

// ---- WifiSwitch: the Wi-Fi change on timelines ---------------------------------------------

void wifiSwitch() {
  const std::string payload = R"({"ssid":"new-net","password":"s3cret-pass"})";
  const char* reason = nullptr;
  {  // joins after 12 s: store, no error
    WifiSwitch sw;
    CHECK(!sw.busy() && sw.poll(true, 0) == WifiAction::None, "idle: nothing to do");
    CHECK(sw.start(payload.data(), payload.size(), "old-net", &reason), "start");
    CHECK(sw.busy(), "busy once started");
    CHECK(!sw.start(payload.data(), payload.size(), "old-net", &reason) && std::string(reason) == "a Wi-Fi change is already under way", "one switch at a time");
    CHECK(sw.poll(false, 1000) == WifiAction::JoinNew, "first poll: join the new network");
    CHECK_EQ(std::string(sw.target().ssid), std::string("new-net"), "target ssid");
    CHECK_EQ(std::string(sw.target().password), std::string("s3cret-pass"), "target password");
    bool quiet = true;
    for (uint32_t t = 1500; t < 13000; t += 500) quiet = quiet && sw.poll(false, t) == WifiAction::None;
    CHECK(quiet, "waiting while not joined");
    CHECK(sw.poll(true, 13000) == WifiAction::Store, "joined: store");
    CHECK_EQ(std::string(sw.error()), std::string(""), "no error when joined");
    CHECK(sw.poll(true, 13500) == WifiAction::None, "store is answered once");
    sw.finish();
    CHECK(!sw.busy() && sw.target().password[0] == 0 && sw.target().ssid[0] == 0, "finish wipes the credentials");
  }
  {  // never joins: back to the old network at exactly 30 s
    WifiSwitch sw;
    CHECK(sw.start(payload.data(), payload.size(), "old-net", &reason), "start");
    CHECK(sw.poll(false, 0xfffff000u) == WifiAction::JoinNew, "join, 4 s before millis() wraps");
    CHECK(sw.poll(false, 0xfffff000u + kWifiJoinTimeoutMs - 1) == WifiAction::None, "1 ms before 30 s: still trying");
    CHECK(sw.poll(false, 0xfffff000u + kWifiJoinTimeoutMs) == WifiAction::RejoinOld, "30 s: back to the old network (across the wrap)");
    CHECK_EQ(std::string(sw.error()), std::string("cannot join new-net within 30 s; back on old-net"), "error text");
    CHECK(std::string(sw.error()).find("s3cret") == std::string::npos, "no password in the error");
    CHECK(sw.poll(true, 0x10000000u) == WifiAction::None, "a late join changes nothing");
    sw.finish();
    CHECK(!sw.busy(), "idle again");
  }
  {  // joined at the last millisecond still counts
    WifiSwitch sw;
    sw.start(payload.data(), payload.size(), "old-net", &reason);
    sw.poll(false, 100);
    CHECK(sw.poll(true, 100 + kWifiJoinTimeoutMs) == WifiAction::Store, "joined at 30 s: store");
  }
  {  // a refused payload starts nothing and says why without the password
    WifiSwitch sw;
    const std::string bad = R"({"ssid":"home","password":"1234567"})";
    CHECK(!sw.start(bad.data(), bad.size(), "old-net", &reason) && !sw.busy(), "refused payload");
    CHECK(reason && std::string(reason).find("1234567") == std::string::npos, "reason without the password");
    CHECK(sw.poll(false, 0) == WifiAction::None, "nothing to do");
  }
  {  // the runner: "wifi: <reason>" for a refused payload, "" for a started switch
    WifiSwitch sw;
    CommandHandlers h{};
    h.context = &sw;
    h.wifi = [](void* c, const char* p, size_t n) -> const char* {
      const char* why = nullptr;
      return static_cast<WifiSwitch*>(c)->start(p, n, "old-net", &why) ? nullptr : why;
    };
    CommandRunner runner(h);
    CHECK(!runner.run(Command::Wifi, "{}", 2), "empty object refused");
    CHECK_EQ(std::string(runner.errorMessage()), std::string("wifi: ssid missing"), "refusal named");
    CHECK(runner.run(Command::Wifi, payload.data(), payload.size()) && sw.busy(), "a valid payload starts the switch");
    CHECK_EQ(std::string(runner.errorMessage()), std::string(""), "started: errormessage cleared");
    sw.poll(false, 0);
    sw.poll(false, kWifiJoinTimeoutMs);
    runner.setError("wifi", sw.error());
    CHECK_EQ(std::string(runner.errorMessage()), std::string("wifi: cannot join new-net within 30 s; back on old-net"), "the status error of docs/wire-contract.md");
    CommandRunner none(CommandHandlers{});
    CHECK(!none.run(Command::Wifi, payload.data(), payload.size()) && std::string(none.errorMessage()) == "wifi: not supported by this firmware", "no wifi handler");
  }
  {  // the longest SSIDs still fit the error text whole
    WifiSwitch sw;
    const std::string ssid(32, 'n'), old(32, 'o');
    const std::string p = "{\"ssid\":\"" + ssid + "\",\"password\":\"\"}";
    CHECK(sw.start(p.data(), p.size(), old.c_str(), &reason), "32-byte ssid");
    sw.poll(false, 0);
    sw.poll(false, kWifiJoinTimeoutMs);
    CHECK_EQ(std::string(sw.error()), "cannot join " + ssid + " within 30 s; back on " + old, "long names not cut");
  }
}

// ---- test/vectors/status-payloads.json -----------------------------------------------------

void statusPayloads() {
  const json v = load("status-payloads.json");
  for (const json& c : v["built"]) {
    const json& f = c["fields"];
    std::string strings[5];
    const char* names[5] = {"espname", "espimage", "espbuild", "espip", "errormessage"};
    const char* pointers[5];
    for (int i = 0; i < 5; i++) {
      const bool raw = c.contains("hex") && c["hex"].contains(names[i]);
      if (raw) strings[i] = fromHex(c["hex"][names[i]]);
      else if (!f[names[i]].is_null()) strings[i] = f[names[i]];
      pointers[i] = raw || !f[names[i]].is_null() ? strings[i].c_str() : nullptr;
    }
    StatusFields s{f["uptimemillis"], f["maxmillis"], f["mqttmillis"], pointers[0], pointers[1], pointers[2], pointers[3],
                   f["rssi"], f["espfreeheap"], pointers[4]};
    char out[kStatusSize];
    const size_t n = buildStatusJson(s, out, sizeof out);
    const std::string expected = c["json"];
    CHECK_EQ(std::string(out, n), expected, "status JSON: " + c["why"].get<std::string>());
    // Every shorter buffer is refused whole, never cut into invalid JSON.
    char small[kStatusSize];
    CHECK_EQ(buildStatusJson(s, small, expected.size()), static_cast<size_t>(0), "too small a buffer");
    CHECK_EQ(buildStatusJson(s, small, expected.size() + 1), expected.size(), "exactly big enough");
  }
}

// ---- test/vectors/device-config.json -------------------------------------------------------

void deviceConfig() {
  const json v = load("device-config.json");
  const std::string image = v["firmwareImage"];
  for (const json& c : v["valid"]) {
    const std::string text = c["text"], why = c["why"];
    DeviceConfig config;
    const char* reason = "not run";
    CHECK(parseConfig(text.data(), text.size(), config, &reason), "valid config (" + why + "): " + (reason ? reason : ""));
    const json& e = c["expected"];
    CHECK_EQ(std::string(config.downloadserver), e["downloadserver"].get<std::string>(), "downloadserver: " + why);
    CHECK_EQ(config.downloadport, e["downloadport"].get<uint16_t>(), "downloadport: " + why);
    CHECK_EQ(std::string(config.downloadpath), e["downloadpath"].get<std::string>(), "downloadpath: " + why);
    CHECK_EQ(std::string(config.mqttserver), e["mqttserver"].get<std::string>(), "mqttserver: " + why);
    CHECK_EQ(config.mqtttls, e["mqtttls"].get<bool>(), "mqtttls: " + why);
    CHECK_EQ(config.mqttport, e["mqttport"].get<uint16_t>(), "mqttport: " + why);
    CHECK_EQ(std::string(config.ntpserver), e["ntpserver"].get<std::string>(), "ntpserver: " + why);
    CHECK_EQ(config.statusinterval, e["statusinterval"].get<uint32_t>(), "statusinterval: " + why);
    CHECK_EQ(config.waittimeout, e["waittimeout"].get<uint32_t>(), "waittimeout: " + why);
    CHECK_EQ(config.retrytimeout, e["retrytimeout"].get<uint32_t>(), "retrytimeout: " + why);
    char url[kUrlSize];
    const std::string configUrl = c["configUrl"];
    CHECK(downloadUrl(config, "config.json", url, sizeof url) && configUrl == url, "config URL: " + why);
    std::string firmware = configUrl.substr(0, configUrl.size() - strlen("config.json")) + "firmware.bin?curimage=" + image;
    CHECK(firmwareUrl(config, image.c_str(), url, sizeof url) && firmware == url, "firmware URL: " + why);
    CHECK(!firmwareUrl(config, "../x-1.0", url, sizeof url), "firmware URL refuses a bad image name");
    CHECK(!downloadUrl(config, "config.json", url, 20), "URL longer than its buffer");
  }
  for (const json& c : v["invalid"]) {
    const std::string text = c["text"], why = c["why"], expected = c["reason"];
    DeviceConfig config;
    const char* reason = nullptr;
    CHECK(!parseConfig(text.data(), text.size(), config, &reason), "invalid config: " + why);
    CHECK(reason && std::strstr(reason, expected.c_str()), "reason for " + why + " mentions \"" + expected + "\": " + (reason ? reason : "(none)"));
  }
}

// ---- test/vectors/signed-images.json (layouts; images are made by the TypeScript test) -------

void signedLayouts() {
  const json v = load("signed-images.json");
  for (const json& c : v["layouts"]) {
    const uint32_t t = c["trailer"];
    const uint8_t trailer[4] = {static_cast<uint8_t>(t), static_cast<uint8_t>(t >> 8), static_cast<uint8_t>(t >> 16), static_cast<uint8_t>(t >> 24)};
    size_t payload = 0;
    const char* reason = nullptr;
    const bool ok = checkSignedLayout(c["imageSize"], trailer, c["modulusLength"], payload, &reason);
    CHECK_EQ(ok, c["ok"].get<bool>(), "layout: " + c["why"].get<std::string>());
    if (ok) CHECK_EQ(payload, c["payloadLength"].get<size_t>(), "payload length: " + c["why"].get<std::string>());
    else CHECK(reason != nullptr, "a reason for " + c["why"].get<std::string>());
  }
}

// ---- unit tests without a TypeScript twin --------------------------------------------------

struct Calls {
  int firmware = 0, reboot = 0;
  const char* firmwareResult = nullptr;
};

void commandRunner() {
  Calls calls;
  CommandHandlers h{};
  h.context = &calls;
  h.firmware = [](void* c) { auto* k = static_cast<Calls*>(c); k->firmware++; return k->firmwareResult; };
  h.reboot = [](void* c) -> const char* { static_cast<Calls*>(c)->reboot++; return nullptr; };
  CommandRunner runner(h);
  CHECK_EQ(std::string(runner.errorMessage()), std::string(""), "no error at start");
  calls.firmwareResult = "no newer image (304)";
  CHECK(!runner.run(Command::Firmware), "failing command");
  CHECK_EQ(std::string(runner.errorMessage()), std::string("firmware: no newer image (304)"), "errormessage names the command");
  CHECK(runner.run(Command::Reboot), "succeeding command");
  CHECK_EQ(std::string(runner.errorMessage()), std::string(""), "a new command clears errormessage");
  CHECK_EQ(calls.firmware + calls.reboot, 2, "each handler ran once");
  CHECK(!runner.run(Command::Ca), "a command without handler fails");
  CHECK_EQ(std::string(runner.errorMessage()), std::string("ca: not supported by this firmware"), "missing handler");
  CHECK(!runner.run(Command::None), "None is refused");
  CHECK_EQ(std::string(runner.errorMessage()), std::string("command: unknown command"), "unknown command");
  const std::string longReason(300, 'r');
  runner.setError("cert", longReason.c_str());
  CHECK_EQ(std::strlen(runner.errorMessage()), kErrorSize - 1, "a long reason is cut to the buffer");
  runner.setError("", "");
  CHECK_EQ(std::string(runner.errorMessage()), std::string(""), "setError with no reason clears");
}

void timing() {
  LoopWatch w;
  w.enter(1000);
  w.leave(1074);
  CHECK_EQ(w.maxMillis(), 74u, "maxmillis");
  w.enter(1100);
  w.leave(1110);
  CHECK_EQ(w.maxMillis(), 74u, "maxmillis keeps the maximum");
  w.leave(5000);
  CHECK_EQ(w.maxMillis(), 74u, "leave without enter changes nothing");
  LoopWatch wrap;
  wrap.enter(0xfffff000u);
  wrap.leave(0x00000010u);
  CHECK_EQ(wrap.maxMillis(), 0x1010u, "loop time across the millis() wrap");

  int on = 0;
  for (uint32_t t = 0; t < 1000; t++) on += ledOn(LedMode::Setup, t);
  CHECK_EQ(on, 500, "setup: on half the time");
  int edges = 0;
  for (uint32_t t = 1; t < 1000; t++) edges += ledOn(LedMode::Setup, t) && !ledOn(LedMode::Setup, t - 1);
  CHECK_EQ(edges, 9, "setup: 10 flashes a second");
  on = 0;
  for (uint32_t t = 0; t < 4000; t++) on += ledOn(LedMode::Connected, t);
  CHECK_EQ(on, 100, "connected: a 50 ms flash every 2 s");
  CHECK(!ledOn(LedMode::Off, 0), "off");
  on = 0, edges = 0;
  for (uint32_t t = 0; t < 2000; t++) {
    on += ledOn(LedMode::NoFilesystem, t);
    if (t > 0) edges += ledOn(LedMode::NoFilesystem, t) && !ledOn(LedMode::NoFilesystem, t - 1);
  }
  CHECK_EQ(on, 300, "no filesystem: three 100 ms flashes per 2 s");
  CHECK_EQ(edges + ledOn(LedMode::NoFilesystem, 0), 3, "no filesystem: three flashes");
  CHECK(!ledOn(LedMode::NoFilesystem, 1000) && !ledOn(LedMode::NoFilesystem, 1999) && ledOn(LedMode::NoFilesystem, 2000), "then a pause of 1.1 s");
  bool distinct = false;
  for (uint32_t t = 0; t < 2000; t++) distinct = distinct || ledOn(LedMode::NoFilesystem, t) != ledOn(LedMode::Setup, t);
  CHECK(distinct, "a pattern of its own");
}

// ---- test/vectors/device-timing.json -------------------------------------------------------

void jitterVectors() {
  const json v = load("device-timing.json");
  CHECK(!v["jitter"].empty(), "jitter vectors present");
  for (const json& j : v["jitter"]) {
    const std::string id = j["id"];
    CHECK_EQ(fnv1a32(id.data(), id.size()), j["fnv1a32"].get<uint32_t>(), "FNV-1a of " + id);
    Jitter g = Jitter::forDevice(id.c_str());
    for (const json& n : j["next"]) CHECK_EQ(g.next(), n.get<uint32_t>(), "xorshift32 of " + id);
    Jitter mixed = Jitter::forDevice(id.c_str(), 0x5a5a5a5au);
    CHECK(mixed.next() != j["next"][0].get<uint32_t>(), "a mixed-in word changes the sequence: " + id);
  }
  Jitter zero(0);
  CHECK(zero.next() != 0, "seed 0 is no fixed point");
  bool inRange = true, sawMax = false, sawZero = false;
  for (int i = 0; i < 1000; i++) {
    const uint32_t x = zero.upTo(7);
    inRange = inRange && x <= 7;
    sawMax = sawMax || x == 7;
    sawZero = sawZero || x == 0;
  }
  CHECK(inRange && sawMax && sawZero, "upTo(7) is 0..7, both ends reached");
  Jitter a(12345), b(12345);
  CHECK_EQ(a.upTo(0), 0u, "upTo(0) is 0");
  CHECK_EQ(a.next(), b.next(), "upTo(0) draws nothing (as lib/device/jitter.ts)");
  Jitter c(99), d(99);
  CHECK_EQ(c.upTo(0xffffffffu), d.next(), "upTo(2^32 - 1) is next() itself, no overflow");
}

void reconnectVectors() {
  const json v = load("device-timing.json");
  CHECK(!v["reconnect"].empty(), "reconnect vectors present");
  for (const json& r : v["reconnect"]) {
    const std::string why = r["why"], id = r["id"];
    ReconnectPolicy p(r["retryMs"].get<uint32_t>(), r["giveUpMs"].get<uint32_t>(), Jitter::forDevice(id.c_str()));
    for (const json& s : r["steps"]) {
      const std::string op = s["op"];
      const uint32_t at = s["at"];
      const std::string where = why + ": " + op + " at " + std::to_string(at);
      if (op == "start") p.start(at);
      else if (op == "failed") p.failed(at, s.value("reached", false));
      else p.connected(at);
      if (op != "connected") {
        const uint32_t delay = s["delayMs"], due = s["attemptDueAt"];
        CHECK_EQ(p.currentDelayMs(), delay, "delay after " + where);
        CHECK_EQ(p.attemptDue(due - 1), delay == 0, "not due 1 ms early (" + where + ")");
        CHECK(p.attemptDue(due), "due at " + std::to_string(due) + " (" + where + ")");
      } else {
        CHECK(!p.attemptDue(at + 1000000u) && p.isConnected() && p.connectedSince() == at, "never due while connected (" + where + ")");
      }
      CHECK_EQ(p.rebootDue(), s["rebootDue"].get<bool>(), "reboot after " + where);
    }
  }
  // Waits never exceed 8 x retry, and a wrapping millis() clock changes nothing.
  ReconnectPolicy p(3000, 20000, Jitter::forDevice("84f3eb012345"));
  const uint32_t t0 = 0xfffff000u;  // 4 s before millis() wraps
  p.start(t0);
  p.connected(t0);
  p.failed(t0);
  uint32_t t = t0, longest = 0;
  bool capped = true, due = true, early = false;
  for (int i = 0; i < 50; i++) {
    capped = capped && p.currentDelayMs() <= 24000;
    if (p.currentDelayMs() > longest) longest = p.currentDelayMs();
    if (p.currentDelayMs() > 0) early = early || p.attemptDue(t + p.currentDelayMs() - 1);
    t += p.currentDelayMs();
    due = due && p.attemptDue(t);
    if (i < 3) CHECK(!p.rebootDue(), "no reboot in the first seconds of an outage");
    p.failed(t);
  }
  CHECK(capped && longest > 12000, "waits up to 8 x retrytimeout, and they do reach past 4 x");
  CHECK(due && !early, "each attempt due exactly after its wait, across the wrap");
  CHECK(t < t0, "the clock did wrap");
  CHECK(p.rebootDue(), "after ~50 failed attempts the device gives up");
  // Reboot only past waittimeout, and only after an attempt fails: never by time alone.
  ReconnectPolicy q(1000, 20000, Jitter::forDevice("84f3eb000001"));
  q.start(0xffffff00u);
  q.failed(0xffffff00u + 19999u);
  CHECK(!q.rebootDue(), "an attempt failing before waittimeout does not reboot (across the wrap)");
  q.failed(0xffffff00u + 30000u);
  CHECK(q.rebootDue(), "an attempt failing past 1.5 x waittimeout does");
  q.connected(0x10000u);
  CHECK(!q.rebootDue() && q.isConnected(), "connected: no reboot");
  q.failed(0x20000u);
  CHECK(!q.rebootDue() && !q.isConnected() && q.currentDelayMs() <= 1000, "a drop starts a new outage: first retry 0..retry");
  // The per-outage extra wait differs between devices: not the whole fleet reboots in step.
  uint32_t earliest = 0xffffffffu, latest = 0;
  for (int dev = 0; dev < 50; dev++) {
    char id[kDeviceIdLength + 1];
    const uint8_t mac[6] = {0x84, 0xf3, 0xeb, 0, 0, static_cast<uint8_t>(dev)};
    deviceIdFromMac(mac, id);
    ReconnectPolicy f(3000, 20000, Jitter::forDevice(id));
    f.start(0);
    f.connected(0);
    f.failed(0);
    uint32_t when = 0;
    for (uint32_t ms = 100; ms <= 90000 && !f.rebootDue(); ms += 100) {
      if (f.attemptDue(ms)) f.failed(ms);
      when = ms;
    }
    CHECK(f.rebootDue() && when >= 20000, "device " + std::string(id) + " reboots, not before waittimeout");
    if (when < earliest) earliest = when;
    if (when > latest) latest = when;
  }
  CHECK(latest - earliest >= 5000, "50 devices reboot spread over 5 s or more, not in step");
}

// The runner of lib/device/progress-watchdog.ts runTimeline(): ticks every 500 ms; events at or
// before a tick happen before its check; `every` is progress from `at` to `until`.
bool runTimeline(const json& events, uint32_t end, uint32_t& resetAt) {
  struct Point {
    uint32_t at;
    int begin;  // -1: progress
  };
  std::vector<Point> points;
  const char* names[kWatchStepCount];
  for (size_t k = 0; k < kWatchStepCount; k++) names[k] = watchStepName(static_cast<WatchStep>(k));
  for (const json& e : events) {
    const uint32_t at = e["at"];
    if (e.contains("begin")) {
      int step = -1;
      for (size_t k = 0; k < kWatchStepCount; k++)
        if (e["begin"].get<std::string>() == names[k]) step = static_cast<int>(k);
      CHECK(step >= 0, "known step " + e["begin"].get<std::string>());
      points.push_back({at, step < 0 ? 0 : step});
    } else if (e.contains("every")) {
      for (uint32_t t = at; t <= e["until"].get<uint32_t>(); t += e["every"].get<uint32_t>()) points.push_back({t, -1});
    } else {
      points.push_back({at, -1});
    }
  }
  std::stable_sort(points.begin(), points.end(), [](const Point& a, const Point& b) { return a.at < b.at; });
  ProgressWatchdog dog;
  dog.begin(WatchStep::Loop, 0);
  size_t i = 0;
  for (uint32_t tick = kWatchdogTickMs; tick <= end; tick += kWatchdogTickMs) {
    for (; i < points.size() && points[i].at <= tick; i++) {
      if (points[i].begin >= 0) dog.begin(static_cast<WatchStep>(points[i].begin), points[i].at);
      else dog.progress(points[i].at);
    }
    if (dog.overdue(tick)) {
      resetAt = tick;
      return true;
    }
  }
  return false;
}

void watchdogVectors() {
  const json v = load("device-timing.json");
  const json& wd = v["watchdog"];
  CHECK_EQ(wd["tickMs"].get<uint32_t>(), kWatchdogTickMs, "tick");
  CHECK_EQ(wd["budgetsMs"].size(), kWatchStepCount, "one budget per step");
  for (size_t k = 0; k < kWatchStepCount; k++) {
    const WatchStep step = static_cast<WatchStep>(k);
    CHECK(wd["budgetsMs"].contains(watchStepName(step)), std::string("budget of ") + watchStepName(step));
    if (wd["budgetsMs"].contains(watchStepName(step))) CHECK_EQ(watchdogBudgetMs(step), wd["budgetsMs"][watchStepName(step)].get<uint32_t>(), std::string("budget of ") + watchStepName(step));
  }
  CHECK(wd["timelines"].size() >= 5, "timelines present");
  for (const json& t : wd["timelines"]) {
    uint32_t resetAt = 0;
    const bool reset = runTimeline(t["events"], t["end"], resetAt);
    const std::string why = t["why"];
    if (t["resetAt"].is_null()) CHECK(!reset, "no reset: " + why + (reset ? " (reset at " + std::to_string(resetAt) + ")" : ""));
    else CHECK(reset && resetAt == t["resetAt"].get<uint32_t>(), "reset at " + std::to_string(t["resetAt"].get<uint32_t>()) + ": " + why + " (got " + (reset ? std::to_string(resetAt) : "none") + ")");
  }
  // Budgets are exclusive, on a clock that wraps.
  ProgressWatchdog dog;
  dog.begin(WatchStep::Dns, 0xffffd000u);
  CHECK(dog.step() == WatchStep::Dns, "current step");
  CHECK(!dog.overdue(0xffffd000u + 12000u), "12 s into DNS, across the wrap: not yet");
  CHECK(dog.overdue(0xffffd000u + 12001u), "past 12 s: overdue");
  dog.progress(0xffffd000u + 12001u);
  CHECK(!dog.overdue(0xffffd000u + 13000u), "progress feeds it");
  dog.begin(WatchStep::Loop, 100);
  CHECK(!dog.overdue(6100) && dog.overdue(6101), "a new step brings its own budget");
}

void pemFiles() {
  const std::string cert = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";
  const std::string key = "\n-----BEGIN PRIVATE KEY-----\nMIIE\n-----END PRIVATE KEY-----\n";
  const std::string rsa = "-----BEGIN RSA PRIVATE KEY-----\nMIIE\n-----END RSA PRIVATE KEY-----\n";
  CHECK(looksLikePem(cert.data(), cert.size(), PemKind::Certificate), "certificate");
  CHECK(!looksLikePem(cert.data(), cert.size(), PemKind::PrivateKey), "a certificate is no key");
  CHECK(looksLikePem(key.data(), key.size(), PemKind::PrivateKey), "PKCS#8 key");
  CHECK(looksLikePem(rsa.data(), rsa.size(), PemKind::PrivateKey), "PKCS#1 key");
  CHECK(!looksLikePem(key.data(), key.size(), PemKind::Certificate), "a key is no certificate");
  const std::string html = "<html>404</html>";
  CHECK(!looksLikePem(html.data(), html.size(), PemKind::Certificate), "an error page");
  const std::string cut = "-----BEGIN CERTIFICATE-----\nMIIB";
  CHECK(!looksLikePem(cut.data(), cut.size(), PemKind::Certificate), "a cut download");
  CHECK(!looksLikePem("", 0, PemKind::Certificate), "empty");
}

// ---- test/vectors/enrollment.json and the enrollment codecs ---------------------------------

EnrollState stateNamed(const std::string& name) {
  for (size_t k = 0; k < kEnrollStateCount; k++)
    if (name == enrollStateName(static_cast<EnrollState>(k))) return static_cast<EnrollState>(k);
  CHECK(false, "known state " + name);
  return EnrollState::Boot;
}

EnrollEvent eventNamed(const std::string& name) {
  for (size_t k = 0; k < kEnrollEventCount; k++)
    if (name == enrollEventName(static_cast<EnrollEvent>(k))) return static_cast<EnrollEvent>(k);
  CHECK(false, "known event " + name);
  return EnrollEvent::NoKey;
}

void enrollmentVectors() {
  const json v = load("enrollment.json");
  const json& t = v["timing"];
  CHECK_EQ(pendingDelayMs(nullptr, 0), t["retryAfterDefaultS"].get<uint32_t>() * 1000, "default Retry-After");
  CHECK_EQ(failureDelayMs(1), t["failureFirstS"].get<uint32_t>() * 1000, "first failure delay");
  CHECK_EQ(failureDelayMs(1000000), t["failureMaxS"].get<uint32_t>() * 1000, "longest failure delay");
  CHECK_EQ(pendingDelayMs("0", 1), t["retryAfterMinS"].get<uint32_t>() * 1000, "shortest Retry-After");
  CHECK_EQ(pendingDelayMs("999999999", 9), t["retryAfterMaxS"].get<uint32_t>() * 1000, "longest Retry-After");
  // Every state x event pair is in the vectors, and each one gives the vector's step.
  CHECK_EQ(v["steps"].size(), kEnrollStateCount * kEnrollEventCount, "the whole table");
  for (const json& c : v["steps"]) {
    const std::string what = c["state"].get<std::string>() + " x " + c["event"].get<std::string>();
    const EnrollStep s = enrollStep(stateNamed(c["state"]), eventNamed(c["event"]));
    CHECK_EQ(std::string(enrollStateName(s.next)), c["next"].get<std::string>(), "next of " + what);
    CHECK_EQ(std::string(enrollActionName(s.action)), c["action"].get<std::string>(), "action of " + what);
  }
  for (const json& c : v["retryAfter"]) {
    const bool none = c["retryAfter"].is_null();
    const std::string text = none ? "" : c["retryAfter"].get<std::string>();
    CHECK_EQ(pendingDelayMs(none ? nullptr : text.data(), text.size()), c["delayMs"].get<uint32_t>(), "Retry-After " + (none ? std::string("(none)") : text));
  }
  for (const json& c : v["failureDelay"])
    CHECK_EQ(failureDelayMs(c["failures"].get<uint32_t>()), c["delayMs"].get<uint32_t>(), "failure delay " + c["failures"].dump());
  for (const json& c : v["renewal"])
    CHECK_EQ(renewAtS(c["notBefore"].get<int64_t>(), c["notAfter"].get<int64_t>()), c["renewAt"].get<int64_t>(), "renewal of " + c.dump());
}

void enrollmentMachine() {
  Enrollment e;
  CHECK(e.on(EnrollEvent::NoKey, 0) == EnrollAction::MakeKey && e.state() == EnrollState::Key, "boot without a key: make one");
  CHECK(e.on(EnrollEvent::KeyStored, 900) == EnrollAction::SimpleEnroll, "key stored: enroll");
  CHECK(e.on(EnrollEvent::Refused, 1000) == EnrollAction::WaitFailure && e.waitMs() == 30000 && e.failures() == 1, "first failure: 30 s");
  CHECK(!e.timerDue(30999) && e.timerDue(31000), "backoff timer due after exactly 30 s");
  CHECK(e.on(EnrollEvent::Timer, 31000) == EnrollAction::SimpleEnroll && !e.waiting(), "timer: enroll again");
  e.on(EnrollEvent::Refused, 32000);
  CHECK_EQ(e.waitMs(), 60000u, "second failure: 60 s");
  e.on(EnrollEvent::Timer, 92000);
  const char retry[] = "120";
  CHECK(e.on(EnrollEvent::Answer202, 0xffffff00u, retry, 3) == EnrollAction::WaitRetryAfter && e.state() == EnrollState::Pending, "202: pending");
  CHECK(e.waitMs() == 120000 && e.failures() == 0, "202: Retry-After, failures reset");
  CHECK(!e.timerDue(0xffffff00u + 119999u) && e.timerDue(0xffffff00u + 120000u), "pending timer across the millis() wrap");
  CHECK(e.on(EnrollEvent::Answer200, 5) == EnrollAction::None && e.state() == EnrollState::Pending, "an answer while waiting changes nothing");
  e.on(EnrollEvent::Timer, 200000);
  CHECK(e.on(EnrollEvent::Answer200, 201000) == EnrollAction::StoreAndConnect && e.state() == EnrollState::Enrolled, "200: store and connect");
  CHECK(!e.waiting() && !e.timerDue(0xffffffffu), "enrolled: no timer");
  CHECK(e.on(EnrollEvent::CertCommand, 300000) == EnrollAction::SimpleReenroll, "cert command: re-enroll");
  CHECK(e.on(EnrollEvent::Answer202, 301000, "10", 2) == EnrollAction::WaitFailure && e.waitMs() == 30000, "202 on re-enroll: a failure");
  CHECK(e.on(EnrollEvent::CertExpired, 302000) == EnrollAction::SimpleEnroll && e.state() == EnrollState::Enroll, "expired while renewing: enroll");
  // Names are distinct and non-empty (the vectors read them).
  for (size_t a = 0; a < kEnrollEventCount; a++)
    for (size_t b = 0; b < a; b++) CHECK(std::string(enrollEventName(static_cast<EnrollEvent>(a))) != enrollEventName(static_cast<EnrollEvent>(b)), "event names distinct");
  int on = 0, edges = 0;
  for (uint32_t t = 0; t < 4000; t++) {
    on += ledOn(LedMode::Pending, t);
    if (t) edges += ledOn(LedMode::Pending, t) && !ledOn(LedMode::Pending, t - 1);
  }
  CHECK(on == 2000 && edges == 1, "pending LED: 1 s on, 1 s off");
  bool distinct[4] = {};
  const LedMode others[4] = {LedMode::Setup, LedMode::Connected, LedMode::Off, LedMode::NoFilesystem};
  for (uint32_t t = 0; t < 2000; t++)
    for (int k = 0; k < 4; k++) distinct[k] = distinct[k] || ledOn(LedMode::Pending, t) != ledOn(others[k], t);
  CHECK(distinct[0] && distinct[1] && distinct[2] && distinct[3], "pending LED: a pattern of its own");
}

std::string b64(const std::string& bytes) {
  char out[4096];
  const size_t n = base64Encode(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size(), out, sizeof out);
  return std::string(out, n);
}

void base64AndAuth() {
  // RFC 4648 §10 test vectors.
  const char* plain[] = {"", "f", "fo", "foo", "foob", "fooba", "foobar"};
  const char* coded[] = {"", "Zg==", "Zm8=", "Zm9v", "Zm9vYg==", "Zm9vYmE=", "Zm9vYmFy"};
  for (int i = 0; i < 7; i++) {
    CHECK_EQ(b64(plain[i]), std::string(coded[i]), std::string("base64 of ") + plain[i]);
    uint8_t out[16];
    size_t n = 99;
    CHECK(base64Decode(coded[i], std::strlen(coded[i]), out, sizeof out, n) && std::string(reinterpret_cast<char*>(out), n) == plain[i], std::string("decode ") + coded[i]);
  }
  char small[5];
  CHECK_EQ(base64Encode(reinterpret_cast<const uint8_t*>("foo"), 3, small, 4), static_cast<size_t>(0), "no room for the NUL");
  CHECK_EQ(base64Encode(reinterpret_cast<const uint8_t*>("foo"), 3, small, 5), static_cast<size_t>(4), "exactly enough");
  uint8_t out[64];
  size_t n = 0;
  const std::string broken = "Zm9v\r\nYmFy\n Zg= =\n";
  CHECK(base64Decode(broken.data(), broken.size(), out, sizeof out, n) && std::string(reinterpret_cast<char*>(out), n) == "foobarf", "line breaks and blanks anywhere");
  for (const char* bad : {"Zm9", "Zm9v=", "Z===", "Zg==Zg==", "Zh==", "Zm9=", "Zm-v", "Zg=", "=Zm9"})
    CHECK(!base64Decode(bad, std::strlen(bad), out, sizeof out, n), std::string("refused base64 ") + bad);
  CHECK(!base64Decode("Zm9vYmFy", 8, out, 5, n), "output buffer too small");
  char inPlace[] = "Zm9vYmFy";
  CHECK(base64Decode(inPlace, 8, reinterpret_cast<uint8_t*>(inPlace), 8, n) && std::string(inPlace, n) == "foobar", "decoding in place");
  // Every byte string up to 40 bytes round-trips.
  Jitter g(7);
  bool roundTrip = true;
  for (int len = 0; len <= 40; len++) {
    std::string bytes;
    for (int i = 0; i < len; i++) bytes.push_back(static_cast<char>(g.next()));
    const std::string text = b64(bytes);
    roundTrip = roundTrip && base64Decode(text.data(), text.size(), out, sizeof out, n) && std::string(reinterpret_cast<char*>(out), n) == bytes;
  }
  CHECK(roundTrip, "base64 round trip, 0..40 bytes");
  char pem[200];
  const uint8_t der[] = {0x30, 0x03, 0x02, 0x01, 0x00};
  CHECK_EQ(std::string(pem, pemEncode("CERTIFICATE", der, sizeof der, pem, sizeof pem) - 1), std::string("-----BEGIN CERTIFICATE-----\nMAMCAQA=\n-----END CERTIFICATE-----\n"), "PEM");
  std::string big(100, 'x');
  const size_t pemLength = pemEncode("X", reinterpret_cast<const uint8_t*>(big.data()), big.size(), pem, sizeof pem);
  CHECK(pemLength > 0 && std::string(pem).find(b64(big.substr(0, 48)) + "\n" + b64(big.substr(48, 48)) + "\n") != std::string::npos, "PEM lines of 64 characters");
  CHECK(looksLikePem(pem, pemLength - 1, PemKind::Certificate) == false, "label X is no certificate");
  CHECK_EQ(pemEncode("X", der, sizeof der, pem, 20), static_cast<size_t>(0), "PEM buffer too small");

  char auth[kAuthorizationSize];
  const char* reason = "not run";
  CHECK(basicAuthorization("fleet:s3cret pass", 17, auth, sizeof auth, &reason) && reason == nullptr, "bootstrap line");
  CHECK_EQ(std::string(auth), "Basic " + b64("fleet:s3cret pass"), "Authorization value (RFC 7617 §2)");
  CHECK(basicAuthorization("fleet:pw:with:colons\r\n", 22, auth, sizeof auth, &reason), "final CRLF and colons in the password");
  CHECK_EQ(std::string(auth), "Basic " + b64("fleet:pw:with:colons"), "only the line is encoded");
  const std::string longest = "fleet:" + std::string(kBootstrapMax - 6, 'p');
  CHECK(basicAuthorization(longest.data(), longest.size(), auth, sizeof auth, &reason), "160 characters fit");
  const struct {
    const char* line;
    const char* why;
  } refused[] = {{"", "empty"}, {"\n", "empty line"}, {"fleet", "no colon"}, {":secret", "no user"}, {"fleet:se\tcret", "tab"},
                 {"fleet:one\nfleet:two", "two lines"}, {"fleet:x\x7f", "DEL"}};
  for (const auto& r : refused) {
    reason = nullptr;
    CHECK(!basicAuthorization(r.line, std::strlen(r.line), auth, sizeof auth, &reason) && reason && *reason, std::string("refused bootstrap: ") + r.why);
    CHECK(std::string(reason ? reason : "").find("cret") == std::string::npos, "the reason quotes nothing");
  }
  const std::string tooLong = "fleet:" + std::string(kBootstrapMax, 'p');
  CHECK(!basicAuthorization(tooLong.data(), tooLong.size(), auth, sizeof auth, &reason), "longer than 160 characters");
  CHECK(!basicAuthorization("fleet:secret", 12, auth, 10, &reason), "Authorization buffer too small");
}

// A signer that returns a fixed DER signature, and one that returns junk.
size_t fixedSigner(void* context, const uint8_t* data, size_t length, uint8_t* sig, size_t capacity) {
  auto* seen = static_cast<std::string*>(context);
  seen->assign(reinterpret_cast<const char*>(data), length);
  const uint8_t fixed[] = {0x30, 0x06, 0x02, 0x01, 0x01, 0x02, 0x01, 0x02};
  if (capacity < sizeof fixed) return 0;
  std::memcpy(sig, fixed, sizeof fixed);
  return sizeof fixed;
}

void csrShape() {
  uint8_t point[kEcP256PointSize];
  point[0] = 0x04;
  for (size_t i = 1; i < sizeof point; i++) point[i] = static_cast<uint8_t>(i);
  std::string tbs;
  uint8_t csr[kCsrMax];
  const char* reason = "not run";
  const size_t n = buildCsr("84f3eb012345", point, fixedSigner, &tbs, csr, sizeof csr, &reason);
  CHECK(n > 0 && reason == nullptr, std::string("CSR built: ") + (reason ? reason : ""));
  const std::string der(reinterpret_cast<char*>(csr), n);
  // The parts in order, as RFC 2986 §4 and RFC 5480 spell them.
  const std::string info = fromHex("3079" "020100" "3017311530130603550403" "0c0c") + "84f3eb012345" +
                           fromHex("3059301306072a8648ce3d020106082a8648ce3d030107034200") + std::string(reinterpret_cast<char*>(point), sizeof point) + fromHex("a000");
  CHECK_EQ(tbs.size(), info.size(), "the signer gets the CertificationRequestInfo");
  CHECK(tbs == info, "CertificationRequestInfo bytes");
  const std::string tail = fromHex("300a06082a8648ce3d040302" "030900" "3006020101020102");
  CHECK(der.size() == 3 + info.size() + tail.size() && der.substr(0, 3) == fromHex("308192") && der.substr(3, info.size()) == info &&
            der.substr(3 + info.size()) == tail,
        "CertificationRequest: info, ecdsa-with-SHA256, signature");
  std::string ignored;
  CHECK(!buildCsr("84F3EB012345", point, fixedSigner, &ignored, csr, sizeof csr, &reason) && reason, "upper-case id refused");
  CHECK(!buildCsr("84f3eb01234", point, fixedSigner, &ignored, csr, sizeof csr, &reason), "short id refused");
  point[0] = 0x02;
  CHECK(!buildCsr("84f3eb012345", point, fixedSigner, &ignored, csr, sizeof csr, &reason), "compressed point refused");
  point[0] = 0x04;
  CHECK(!buildCsr("84f3eb012345", point, fixedSigner, &ignored, csr, n - 1, &reason), "buffer one byte short");
  auto junk = [](void*, const uint8_t*, size_t, uint8_t* sig, size_t) -> size_t {
    std::memset(sig, 0xab, 64);  // a raw r||s, not DER
    return 64;
  };
  CHECK(!buildCsr("84f3eb012345", point, junk, nullptr, csr, sizeof csr, &reason) && std::string(reason) == "the signer returned no DER ECDSA signature", "raw signature refused");
  auto failing = [](void*, const uint8_t*, size_t, uint8_t*, size_t) -> size_t { return 0; };
  CHECK(!buildCsr("84f3eb012345", point, failing, nullptr, csr, sizeof csr, &reason) && std::string(reason) == "the key could not sign the CSR", "failing signer");
  auto negative = [](void*, const uint8_t*, size_t, uint8_t* sig, size_t) -> size_t {
    const uint8_t s[] = {0x30, 0x06, 0x02, 0x01, 0x81, 0x02, 0x01, 0x02};
    std::memcpy(sig, s, sizeof s);
    return sizeof s;
  };
  CHECK(!buildCsr("84f3eb012345", point, negative, nullptr, csr, sizeof csr, &reason), "negative r refused");
}

// A tiny DER builder for hand-made PKCS#7 structures.
std::string tlv(uint8_t tag, const std::string& body) {
  std::string h(1, static_cast<char>(tag));
  const size_t n = body.size();
  if (n < 0x80) h.push_back(static_cast<char>(n));
  else if (n < 0x100) h += std::string(1, '\x81') + static_cast<char>(n);
  else h += std::string(1, '\x82') + static_cast<char>(n >> 8) + static_cast<char>(n & 0xff);
  return h + body;
}

std::string certificate(const std::string& from, const std::string& until) {
  const std::string alg = tlv(0x30, fromHex("06082a8648ce3d040302"));
  const std::string name = tlv(0x30, tlv(0x31, tlv(0x30, fromHex("0603550403") + tlv(0x0c, "ca"))));
  const std::string validity = tlv(0x30, from + until);
  const std::string tbs = tlv(0x30, tlv(0xa0, fromHex("020102")) + fromHex("020101") + alg + name + validity + name + tlv(0x30, alg + tlv(0x03, std::string(3, '\0'))));
  return tlv(0x30, tbs + alg + tlv(0x03, fromHex("00") + fromHex("3006020101020101")));
}

std::string certsOnly(const std::string& certs, const std::string& extra = "") {
  const std::string sd = tlv(0x30, fromHex("020101") + tlv(0x31, "") + tlv(0x30, fromHex("06092a864886f70d010701")) + tlv(0xa0, certs) + extra + tlv(0x31, ""));
  return tlv(0x30, fromHex("06092a864886f70d010702") + tlv(0xa0, sd));
}

// Reads from a heap copy of the exact size (ASan sees any over-read); `first` gets the certificate.
bool readP7(const std::string& der, CertificateInfo& info, const char** reason, std::string* first = nullptr) {
  std::vector<uint8_t> exact(der.begin(), der.end());
  const bool ok = readCertsOnly(exact.data(), exact.size(), info, reason);
  if (ok) CHECK(info.der >= exact.data() && info.der + info.length <= exact.data() + exact.size(), "certificate inside the buffer");
  if (ok && first) first->assign(reinterpret_cast<const char*>(info.der), info.length);
  info.der = nullptr;
  return ok;
}

void pkcs7Shapes() {
  const std::string utc = tlv(0x17, "251201000000Z"), gen = tlv(0x18, "20610101123456Z");
  const std::string leaf = certificate(utc, gen), other = certificate(tlv(0x17, "000101000000Z"), tlv(0x17, "491231235959Z"));
  CertificateInfo info;
  const char* reason = "not run";
  std::string first;
  CHECK(readP7(certsOnly(leaf + other), info, &reason, &first), std::string("hand-made certs-only: ") + (reason ? reason : ""));
  CHECK(first == leaf, "the first certificate");
  CHECK_EQ(info.notBefore, static_cast<int64_t>(1764547200), "UTCTime 2025-12-01");
  CHECK_EQ(info.notAfter, static_cast<int64_t>(2871808496), "GeneralizedTime 2061-01-01 12:34:56");
  CHECK(readP7(certsOnly(other, tlv(0xa1, "")), info, &reason), "with an empty crls [1]");
  CHECK(info.notBefore == 946684800 && info.notAfter == 2524607999, "UTCTime 2000 and 2049-12-31 23:59:59");
  int64_t from = 0, until = 0;
  const struct {
    const char* a;
    const char* b;
    int64_t until;
    bool ok;
    const char* why;
  } times[] = {{"500101000000Z", "20000229000000Z", 951782400, true, "UTCTime 50 is 1950; leap day 2000"},
               {"700101000000Z", "21000228235959Z", 4107542399, true, "2100 is no leap year"},
               {"700101000000Z", "21000229000000Z", 0, false, "2100-02-29 does not exist"},
               {"700101000000Z", "19000229000000Z", 0, false, "1900-02-29 does not exist"},
               {"700101000000Z", "99991231235959Z", 253402300799, true, "no well-defined expiration (RFC 5280 4.1.2.5)"},
               {"701301000000Z", "99991231235959Z", 0, false, "month 13"},
               {"700100000000Z", "99991231235959Z", 0, false, "day 0"},
               {"700431000000Z", "99991231235959Z", 0, false, "April 31"},
               {"700101240000Z", "99991231235959Z", 0, false, "hour 24"},
               {"700101006000Z", "99991231235959Z", 0, false, "minute 60"},
               {"700101000060Z", "99991231235959Z", 0, false, "second 60"},
               {"7001010000Z", "99991231235959Z", 0, false, "no seconds"},
               {"700101000000+0100", "99991231235959Z", 0, false, "not Z"},
               {"70010100000aZ", "99991231235959Z", 0, false, "a letter"},
               {"990101000000Z", "980101000000Z", 0, false, "ends before it starts"}};
  for (const auto& t : times) {
    const std::string a = tlv(0x17, t.a), b = std::strlen(t.b) == 15 ? tlv(0x18, t.b) : tlv(0x17, t.b);
    const std::string c = certificate(a, b);
    const bool ok = readCertificateValidity(reinterpret_cast<const uint8_t*>(c.data()), c.size(), from, until, &reason);
    CHECK_EQ(ok, t.ok, std::string("validity: ") + t.why);
    if (ok && t.ok) CHECK_EQ(until, t.until, std::string("notAfter: ") + t.why);
  }
  const std::string good = certsOnly(leaf);
  const struct {
    std::string der;
    const char* why;
  } bad[] = {{"", "empty"},
             {good + std::string(1, '\0'), "a byte after the ContentInfo"},
             {certsOnly(""), "an empty certificates [0]"},
             {tlv(0x30, fromHex("06092a864886f70d010702") + tlv(0xa0, tlv(0x30, fromHex("020101") + tlv(0x31, "") + tlv(0x30, fromHex("06092a864886f70d010701")) + tlv(0x31, "")))), "no certificates"},
             {tlv(0x30, fromHex("06092a864886f70d010701") + tlv(0xa0, "")), "id-data, not signedData"},
             {certsOnly(leaf + "\x02\x01\x00"), "an INTEGER among the certificates"},
             {certsOnly(leaf, tlv(0xa2, "")), "an unknown [2] before signerInfos"},
             {std::string("\x30\x80") + good.substr(2) + std::string(2, '\0'), "indefinite length (BER)"},
             {std::string("\x30\x81\x05") + good.substr(2, 5), "long form for a short length"},
             {std::string("\x30\x84\x00\x00\x00\x05\x02\x01\x00\x02\x00"), "four length bytes"},
             {certsOnly(certificate(utc, tlv(0x18, "2061010112345Z"))), "a malformed notAfter"}};
  for (const auto& b : bad) {
    reason = nullptr;
    CHECK(!readP7(b.der, info, &reason) && reason && *reason, std::string("refused PKCS#7: ") + b.why);
  }
  // Every truncation of a good answer is refused.
  bool allRefused = true;
  for (size_t cut = 0; cut < good.size(); cut++) allRefused = allRefused && !readP7(good.substr(0, cut), info, &reason);
  CHECK(allRefused, "every truncated PKCS#7 refused");
  const std::string text = b64(good);
  std::vector<uint8_t> buffer(good.size());
  std::string wrapped;
  for (size_t i = 0; i < text.size(); i += 64) wrapped += text.substr(i, 64) + "\r\n";
  CHECK(readCertsOnlyBase64(wrapped.data(), wrapped.size(), buffer.data(), buffer.size(), info, &reason), "base64 with CRLF every 64 characters");
  CHECK(!readCertsOnlyBase64(wrapped.data(), wrapped.size(), buffer.data(), buffer.size() - 1, info, &reason), "answer bigger than the buffer");
  CHECK(!readCertsOnlyBase64("-----BEGIN PKCS7-----", 21, buffer.data(), buffer.size(), info, &reason), "not base64");
}

void esp32Topics() { esp32TopicVectors(load("esp32-device.json")); }
void esp32Payloads() { esp32PayloadVectors(load("esp32-device.json")); }
void esp32Descriptors() { esp32DescriptorVectors(load("esp32-device.json")); }

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: %s <test/vectors directory>\n", argv[0]);
    return 2;
  }
  vectorDir = argv[1];
  const struct {
    const char* name;
    void (*run)();
  } groups[] = {{"image-versions.json", imageVersions}, {"device-topics.json", deviceTopics}, {"commands.json", commandTopics},
                {"status-payloads.json", statusPayloads}, {"device-config.json", deviceConfig}, {"signed-images.json (layouts)", signedLayouts},
                {"command runner", commandRunner}, {"timing", timing}, {"PEM files", pemFiles},
                {"device-timing.json (jitter)", jitterVectors}, {"device-timing.json (reconnect)", reconnectVectors},
                {"device-timing.json (watchdog)", watchdogVectors}, {"commands.json (wifiPayloads)", wifiPayloads},
                {"wifi switch", wifiSwitch}, {"enrollment.json", enrollmentVectors}, {"enrollment steps", enrollmentMachine},
                {"base64, PEM, bootstrap", base64AndAuth}, {"CSR shape", csrShape}, {"PKCS#7 certs-only", pkcs7Shapes},
                {"esp32-device.json (topics)", esp32Topics}, {"esp32-device.json (payloads)", esp32Payloads},
                {"esp32-device.json (descriptors)", esp32Descriptors}, {"esp32 settings", esp32Settings},
                {"esp32 update schedule", esp32Schedule}, {"esp32 candidates", esp32Candidates}, {"esp32 resume", esp32Resume}};
  for (const auto& g : groups) {
    const int before = check::checks, failedBefore = check::failures;
    try {
      g.run();
    } catch (const std::exception& e) {
      CHECK(false, std::string(g.name) + ": " + e.what());
    }
    std::printf("%-32s %4d checks%s\n", g.name, check::checks - before, check::failures > failedBefore ? "  FAILED" : "");
  }
  std::printf("host tests: %d checks, %d failed\n", check::checks, check::failures);
  return check::failures ? 1 : 0;
}
