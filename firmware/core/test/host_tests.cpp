// Host tests of the firmware core: the shared vectors in test/vectors/ (the same files the
// TypeScript tests check lib/ against) and unit tests of what has no TypeScript twin.
// Usage: host_tests <dir of the vectors>
#include <cstring>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>

#include "check.h"
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
    for (size_t k = 1; k <= kCommandCount; k++) {
      const Command command = static_cast<Command>(k);
      char topic[kTopicSize];
      CHECK(commandTopic(id.c_str(), command, topic, sizeof topic), "command topic");
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
    CHECK_EQ(std::string(commandName(parseCommandTopic(topic.data(), topic.size(), id.c_str()))), expected, "command of " + topic + " (" + c["why"].get<std::string>() + ")");
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
  CHECK(!w.overdue(1110 + kLoopWatchdogMs), "6 s after the last pass: not yet");
  CHECK(w.overdue(1110 + kLoopWatchdogMs + 1), "past 6 s: overdue");
  w.enter(1200);
  CHECK(w.overdue(1200 + kLoopWatchdogMs + 1), "a pass that never ends is overdue too");
  LoopWatch wrap;
  wrap.enter(0xfffff000u);
  wrap.leave(0x00000010u);
  CHECK_EQ(wrap.maxMillis(), 0x1010u, "loop time across the millis() wrap");
  CHECK(!wrap.overdue(0x00000020u), "no false alarm across the wrap");

  ReconnectPolicy p(3000, 20000);
  p.start(0);
  CHECK(p.attemptDue(0), "first attempt at once");
  p.failed(100);
  CHECK(!p.attemptDue(3099) && p.attemptDue(3100), "retry after retrytimeout");
  p.failed(3100);
  CHECK(!p.attemptDue(9099) && p.attemptDue(9100), "then twice as long");
  uint32_t now = 9100;
  for (int i = 0; i < 6; i++) {
    p.failed(now);
    now += 100000;
  }
  p.failed(now);
  CHECK(!p.attemptDue(now + 23999) && p.attemptDue(now + 24000), "backoff capped at 8x retrytimeout");
  ReconnectPolicy q(3000, 20000);
  q.start(0);
  q.failed(10);
  CHECK(!q.rebootDue(20000) && q.rebootDue(20001), "reboot past waittimeout without a connection since boot");
  q.connected(25000);
  CHECK(!q.rebootDue(1000000) && q.isConnected() && q.connectedSince() == 25000, "connected: no reboot");
  q.failed(30000);
  CHECK(q.attemptDue(33000) && !q.rebootDue(50000) && q.rebootDue(50001), "a drop starts the clock again, retry from the start");
  ReconnectPolicy r(3000, 20000);
  r.start(0xffffff00u);
  CHECK(!r.rebootDue(0x00001000u) && r.rebootDue(0xffffff00u + 20001u), "reboot clock across the millis() wrap");

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
                {"command runner", commandRunner}, {"timing", timing}, {"PEM files", pemFiles}};
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
