// Host tests of the secure-esp32 part of the core (src/esp32.cpp, src/esp32_image.cpp): the shared
// vectors of test/vectors/esp32-device.json (lib/fleet and lib/firmware are tested against the same
// file in test/firmware/shared-vectors.test.ts) and unit tests of what only the device decides.
#include <cstring>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "check.h"
#include "esp32_tests.h"
#include "fleet_core.h"

using nlohmann::json;
using namespace fleet;

namespace {

std::vector<uint8_t> bytesOfHex(const std::string& hex) {
  std::vector<uint8_t> out;
  for (size_t i = 0; i + 1 < hex.size(); i += 2) out.push_back(static_cast<uint8_t>(std::stoi(hex.substr(i, 2), nullptr, 16)));
  return out;
}

std::string hexOf(const uint8_t* p, size_t n) {
  static const char kHex[] = "0123456789abcdef";
  std::string out;
  for (size_t i = 0; i < n; i++) out += std::string{kHex[p[i] >> 4], kHex[p[i] & 15]};
  return out;
}

Esp32Command commandNamed(const std::string& name) {
  for (size_t c = 1; c <= kEsp32CommandCount; c++) {
    if (name == esp32CommandName(static_cast<Esp32Command>(c))) return static_cast<Esp32Command>(c);
  }
  return Esp32Command::None;
}

}  // namespace

void esp32TopicVectors(const json& v) {
  CHECK_EQ(v["commands"].size(), kEsp32CommandCount, "number of ESP32 commands");
  for (size_t k = 1; k <= kEsp32CommandCount; k++) {
    CHECK_EQ(std::string(esp32CommandName(static_cast<Esp32Command>(k))), v["commands"][k - 1].get<std::string>(), "ESP32 command name");
  }
  CHECK_EQ(std::string(esp32CommandName(Esp32Command::None)), std::string(""), "None has no name");
  for (const json& d : v["devices"]) {
    const std::string id = d["id"];
    Esp32Topics t;
    CHECK(buildEsp32Topics(id.c_str(), t), "ESP32 topics of " + id);
    CHECK_EQ(std::string(t.status), d["status"].get<std::string>(), "ESP32 status topic");
    CHECK_EQ(std::string(t.will), d["will"].get<std::string>(), "ESP32 will topic");
    CHECK_EQ(std::string(t.log), d["log"].get<std::string>(), "ESP32 log topic");
    CHECK_EQ(d["commands"].size(), kEsp32CommandCount, "a topic for each command");
    for (size_t k = 1; k <= kEsp32CommandCount; k++) {
      const Esp32Command c = static_cast<Esp32Command>(k);
      const std::string expected = d["commands"][esp32CommandName(c)];
      CHECK_EQ(std::string(t.commands[k - 1]), expected, std::string("topic of ") + esp32CommandName(c));
      CHECK(parseEsp32CommandTopic(expected.data(), expected.size(), id.c_str()) == c, "the device acts on " + expected);
    }
    // Everything it subscribes to is under the filter its ACL grants (lib/fleet deviceCommandFilter).
    const std::string filter = d["commandFilter"];
    for (const auto& topic : t.commands) CHECK(std::string(topic).rfind(filter.substr(0, filter.size() - 1), 0) == 0, "under " + filter);
  }
  const std::string id = v["id"];
  for (const json& c : v["commandTopics"]) {
    const std::string topic = c["topic"];
    const std::string expected = c["command"].is_null() ? "" : c["command"].get<std::string>();
    const Esp32Command parsed = parseEsp32CommandTopic(topic.data(), topic.size(), id.c_str());
    CHECK_EQ(std::string(esp32CommandName(parsed)), expected, "ESP32 command of " + topic + " (" + c["why"].get<std::string>() + ")");
  }
  Esp32Topics t;
  CHECK(!buildEsp32Topics("84:f3:eb:01:23:45", t), "ESP32 topics need a normalized id");
  CHECK(parseEsp32CommandTopic("/esp/84f3eb012345/restart", 25, "84F3EB012345") == Esp32Command::None, "no command for an invalid own id");
  CHECK(parseEsp32CommandTopic(nullptr, 0, "84f3eb012345") == Esp32Command::None, "no topic");
}

void esp32PayloadVectors(const json& v) {
  for (const json& c : v["payloads"]) {
    const std::string command = c["command"], why = c["why"].get<std::string>();
    const Esp32Command cmd = commandNamed(command);
    CHECK(cmd != Esp32Command::None, "vector command " + command);
    // What reaches the device: the published payload, or the refused argument sent by hand.
    std::string payload;
    if (!c["payload"].is_null()) payload = c["payload"].get<std::string>();
    else if (c["arg"].is_string()) payload = c["arg"].get<std::string>();
    else if (!c["arg"].is_null()) payload = c["arg"].dump();
    Esp32Settings before, settings;
    defaultEsp32Settings(before);
    std::strcpy(before.url, "https://old.example.org/fw/firmware.bin");
    before.useUrl = true;
    before.intervalS = 1234;
    settings = before;
    Esp32CommandRunner runner;
    runner.setError("update/run", "an earlier failure");
    const Esp32Action action = runner.run(cmd, payload.data(), payload.size(), settings);
    const bool accepted = action != Esp32Action::None;
    CHECK_EQ(accepted, c["device"].get<bool>(), command + " " + payload + " (" + why + ")");
    if (!accepted) {
      const std::string error = runner.errorMessage();
      CHECK(error.rfind(command + ": ", 0) == 0 && error.size() > command.size() + 2, "errormessage names " + command + ": " + error);
      CHECK(std::strcmp(settings.url, before.url) == 0 && settings.useUrl == before.useUrl && settings.intervalS == before.intervalS,
            "a refused payload changes no setting (" + why + ")");
      CHECK(c["payload"].is_null() || c.value("deviceOnly", false), "the backend refuses it too, or the vector says deviceOnly (" + why + ")");
      continue;
    }
    CHECK_EQ(std::string(runner.errorMessage()), std::string(""), "an accepted command clears errormessage");
    if (cmd == Esp32Command::UpdateUrl) CHECK_EQ(std::string(settings.url), c["value"].get<std::string>(), "stored url (" + why + ")");
    if (cmd == Esp32Command::UpdateUseUrl) CHECK_EQ(settings.useUrl ? 1 : 0, c["value"].get<int>(), "stored use_url (" + why + ")");
    if (cmd == Esp32Command::UpdateInterval) CHECK_EQ(settings.intervalS, c["value"].get<uint32_t>(), "stored interval (" + why + ")");
    const Esp32Action expected = cmd == Esp32Command::UpdateRun ? Esp32Action::RunUpdate
                                 : cmd == Esp32Command::Restart ? Esp32Action::Restart
                                                                : Esp32Action::Store;
    CHECK(action == expected, "action of " + command);
  }
}

void esp32DescriptorVectors(const json& v) {
  for (const json& c : v["appDescriptors"]["valid"]) {
    const std::vector<uint8_t> image = bytesOfHex(c["hex"]);
    const json& e = c["descriptor"];
    const std::string why = c["why"];
    AppDescriptor d;
    const char* reason = nullptr;
    CHECK(readAppDescriptor(image.data(), image.size(), d, &reason), "descriptor: " + why);
    CHECK_EQ(std::string(d.projectName), e["projectName"].get<std::string>(), "project name: " + why);
    CHECK_EQ(std::string(d.version), e["version"].get<std::string>(), "version: " + why);
    CHECK_EQ(d.secureVersion, e["secureVersion"].get<uint32_t>(), "secure_version: " + why);
    CHECK_EQ(std::string(d.time), e["time"].get<std::string>(), "time: " + why);
    CHECK_EQ(std::string(d.date), e["date"].get<std::string>(), "date: " + why);
    CHECK_EQ(std::string(d.idfVersion), e["idfVersion"].get<std::string>(), "idf version: " + why);
    CHECK_EQ(hexOf(d.appElfSha256, sizeof d.appElfSha256), e["appElfSha256"].get<std::string>(), "ELF SHA-256: " + why);
    char name[kMaxProduct + kMaxVersion + 2];
    CHECK(esp32ImageName(d.projectName, d.version, name, sizeof name), "image name: " + why);
    CHECK_EQ(std::string(name), c["image"].get<std::string>(), "image name: " + why);
    // Any shorter read of the same bytes is refused, never read past.
    bool allRefused = true;
    for (size_t cut = 0; cut < image.size(); cut++) {
      std::vector<uint8_t> part(image.begin(), image.begin() + static_cast<long>(cut));
      allRefused = allRefused && !readAppDescriptor(part.data(), part.size(), d, &reason);
    }
    CHECK(allRefused, "every truncation refused: " + why);
  }
  for (const json& c : v["appDescriptors"]["invalid"]) {
    const std::vector<uint8_t> image = bytesOfHex(c["hex"]);
    AppDescriptor d;
    const char* reason = nullptr;
    CHECK(!readAppDescriptor(image.data(), image.size(), d, &reason) && reason && *reason, "refused descriptor: " + c["why"].get<std::string>());
  }
}

void esp32Settings() {
  Esp32Settings s;
  std::memset(&s, 0x55, sizeof s);
  defaultEsp32Settings(s);
  CHECK(s.url[0] == '\0' && !s.useUrl && s.intervalS == kUpdateIntervalDefaultS, "defaults: no url, built-in server, a day");
  CHECK(kUpdateIntervalDefaultS >= kUpdateIntervalMinS && kUpdateIntervalDefaultS <= kUpdateIntervalMaxS, "the default interval is in range");

  // The update check URL: built-in until use_url 1 with a url, curimage appended with ? or &.
  const char* image = "fleet_esp32-1.2.3";
  const char* builtIn = "https://fleet.example.org:8070/fw/firmware.bin";
  char url[400];
  CHECK(esp32UpdateUrl(s, builtIn, image, url, sizeof url), "built-in URL");
  CHECK_EQ(std::string(url), std::string("https://fleet.example.org:8070/fw/firmware.bin?curimage=fleet_esp32-1.2.3"), "built-in URL with curimage");
  s.useUrl = true;
  CHECK(esp32UpdateUrl(s, builtIn, image, url, sizeof url) && std::strstr(url, "fleet.example.org:8070"), "use_url 1 without a url keeps the built-in server");
  std::strcpy(s.url, "https://other.example.org/fw/firmware.bin?group=a");
  CHECK(esp32UpdateUrl(s, builtIn, image, url, sizeof url), "update/url");
  CHECK_EQ(std::string(url), std::string("https://other.example.org/fw/firmware.bin?group=a&curimage=fleet_esp32-1.2.3"), "a query gets &curimage=");
  s.useUrl = false;
  CHECK(esp32UpdateUrl(s, builtIn, image, url, sizeof url) && std::strstr(url, "fleet.example.org:8070"), "use_url 0 goes back to the built-in server");
  CHECK(!esp32UpdateUrl(s, builtIn, "no version", url, sizeof url), "curimage must be an image name");
  CHECK(!esp32UpdateUrl(s, builtIn, "a&b-1.0", url, sizeof url), "an image name that would need encoding is refused");
  CHECK(!esp32UpdateUrl(s, "", image, url, sizeof url), "no built-in URL");
  CHECK(!esp32UpdateUrl(s, builtIn, image, url, 20), "does not fit");

  // The parsers alone, with their reasons.
  const char* reason = nullptr;
  bool use = true;
  CHECK(parseUseUrl("0", 1, use, &reason) && !use, "use_url 0");
  CHECK(!parseUseUrl("01", 2, use, &reason) && reason && std::strstr(reason, "0 or 1"), "use_url 01");
  uint32_t seconds = 0;
  CHECK(!parseUpdateInterval("0300", 4, seconds, &reason), "a leading zero is not how the backend writes it");
  CHECK(!parseUpdateInterval("600 ", 4, seconds, &reason), "a trailing blank");
  CHECK(!parseUpdateInterval(nullptr, 0, seconds, &reason), "no payload");
  char stored[kEsp32UrlMax + 1];
  CHECK(!parseUpdateUrl("https://-bad.example.org/", 25, stored, &reason), "host starting with '-'");
  CHECK(!parseUpdateUrl("https://:8070/", 14, stored, &reason), "no host");
  CHECK(!parseUpdateUrl("https://fleet.example.org:/", 27, stored, &reason), "':' without a port");
  CHECK(!parseUpdateUrl("https://fleet.example.org:0/", 28, stored, &reason), "port 0");
  CHECK(!parseUpdateUrl("https://fleet.example.org/x?a=1&curimage", 40, stored, &reason), "curimage without a value");
  CHECK(parseUpdateUrl("https://fleet.example.org/x?notcurimage=1", 41, stored, &reason), "a parameter that only ends in curimage");
  CHECK(!parseUpdateUrl("HTTPS://fleet.example.org/", 26, stored, &reason), "the backend writes the scheme in lowercase; so must a hand-made one");
  const std::string longest = "https://fleet.example.org/" + std::string(kEsp32UrlMax - 26, 'a');
  CHECK(parseUpdateUrl(longest.data(), longest.size(), stored, &reason) && std::strlen(stored) == kEsp32UrlMax, "255 bytes fit");
  const std::string tooLong = longest + "a";
  CHECK(!parseUpdateUrl(tooLong.data(), tooLong.size(), stored, &reason), "256 bytes do not");

  // The runner: an unknown command, and a refusal that keeps the settings.
  Esp32CommandRunner runner;
  Esp32Settings t;
  defaultEsp32Settings(t);
  CHECK(runner.run(Esp32Command::None, "", 0, t) == Esp32Action::None, "None is refused");
  CHECK_EQ(std::string(runner.errorMessage()), std::string("command: unknown command"), "unknown ESP32 command");
  CHECK(runner.run(Esp32Command::UpdateInterval, "299", 3, t) == Esp32Action::None, "interval below the range");
  CHECK_EQ(std::string(runner.errorMessage()), std::string("update/interval: takes whole seconds from 300 to 9999999"), "interval reason");
  CHECK_EQ(t.intervalS, kUpdateIntervalDefaultS, "refused interval not stored");
  CHECK(runner.run(Esp32Command::UpdateRun, "ignored", 7, t) == Esp32Action::RunUpdate, "update/run ignores its payload");
  CHECK_EQ(std::string(runner.errorMessage()), std::string(""), "and clears errormessage");
  runner.setError("update/run", "HTTP 403");
  CHECK_EQ(std::string(runner.errorMessage()), std::string("update/run: HTTP 403"), "a later failure of the update routine");
}

void esp32Schedule() {
  // The first check after boot: within the 60 s spread, drawn from the device's jitter.
  Jitter j = Jitter::forDevice("84f3eb012345");
  Jitter same = Jitter::forDevice("84f3eb012345");
  UpdateSchedule s;
  const uint64_t boot = 5000;
  s.start(boot, 600, j);
  const uint64_t first = s.nextMs();
  CHECK(first >= boot && first <= boot + UpdateSchedule::kFirstCheckSpreadS * 1000, "first check within 60 s of boot");
  CHECK_EQ(first, boot + same.upTo(UpdateSchedule::kFirstCheckSpreadS * 1000), "drawn with upTo from the device's jitter");
  CHECK(!s.due(first - 1) && s.due(first), "due exactly then");
  s.setInterval(300);
  CHECK_EQ(s.nextMs(), first, "a new interval before the first check keeps the boot spread");
  s.ran(first + 2000);
  CHECK_EQ(s.nextMs(), first + 2000 + 300000ull, "then every interval after a check ends");
  s.setInterval(9999999);
  CHECK_EQ(s.nextMs(), first + 2000 + 9999999000ull, "the longest interval, beyond 32-bit milliseconds");
  CHECK(!s.due(first + 2000 + 9999998999ull) && s.due(first + 2000 + 9999999000ull), "no 32-bit wrap on the way");
  s.setInterval(300);
  CHECK(s.due(first + 2000 + 300000ull) && !s.due(first + 2000 + 299999ull), "a shorter interval counts from the last check");
  // Boot spread across a few devices: not all at the same moment.
  uint64_t firsts[3];
  const char* ids[3] = {"84f3eb012345", "84f3eb000001", "a4cf12fe00ff"};
  for (int i = 0; i < 3; i++) {
    Jitter k = Jitter::forDevice(ids[i]);
    UpdateSchedule u;
    u.start(0, 86400, k);
    firsts[i] = u.nextMs();
  }
  CHECK(firsts[0] != firsts[1] || firsts[1] != firsts[2], "devices draw different first checks");
}

void esp32Candidates() {
  const AppIdentity running{"fleet_esp32", "1.2.3", 1};
  struct Case {
    AppIdentity candidate;
    uint32_t efuse;
    bool antiRollback;
    const char* reasonPart;  // nullptr: accepted
    const char* why;
  } cases[] = {
      {{"fleet_esp32", "1.2.4", 1}, 1, true, nullptr, "a higher version, the same secure_version"},
      {{"fleet_esp32", "1.3", 2}, 1, true, nullptr, "a higher version with a higher secure_version"},
      {{"fleet_esp32", "1.2.3.b", 1}, 1, true, nullptr, "a build suffix on the same numbers is higher"},
      {{"fleet_esp32", "1.2.3", 1}, 1, true, "same version", "the running version again"},
      {{"fleet_esp32", "01.02.03", 1}, 1, true, "same version", "the same numbers with leading zeros"},
      {{"fleet_esp32", "1.2.2", 1}, 1, true, "lower version", "a lower version"},
      {{"fleet_esp32", "1.2.2", 5}, 1, true, "lower version", "a lower version even with a higher secure_version"},
      {{"other_app", "9.0.0", 1}, 1, true, "another project", "another project"},
      {{"fleet_esp32 ", "1.2.4", 1}, 1, true, "another project", "project names compare exactly"},
      {{"fleet_esp32", "1.2.4", 0}, 1, true, "eFuse", "secure_version below the eFuse counter"},
      {{"fleet_esp32", "1.2.4", 0}, 1, false, nullptr, "without anti-rollback the eFuse counter does not count"},
      {{"fleet_esp32", "1.2.4", 0}, 0, true, nullptr, "secure_version equal to eFuse"},
      {{"fleet_esp32", "v1.2.4", 1}, 1, true, "does not parse", "a version that does not parse (git describe style)"},
      {{"fleet_esp32", nullptr, 1}, 1, true, "no app descriptor", "no version"},
  };
  for (const auto& c : cases) {
    const char* reason = nullptr;
    const bool ok = checkEsp32Candidate(running, c.candidate, c.efuse, c.antiRollback, &reason);
    CHECK_EQ(ok, c.reasonPart == nullptr, std::string("candidate: ") + c.why);
    if (c.reasonPart) CHECK(reason && std::strstr(reason, c.reasonPart), std::string("reason for: ") + c.why + " = " + (reason ? reason : "(none)"));
  }
  const char* reason = nullptr;
  CHECK(!checkEsp32Candidate({"fleet_esp32", "x", 0}, {"fleet_esp32", "1.0", 0}, 0, true, &reason) && std::strstr(reason, "running"),
        "a running version that does not parse refuses every update (cannot order it)");
  char name[16];
  CHECK(!esp32ImageName("fleet_esp32", "1.2.3", name, sizeof name), "an image name that does not fit");
  char big[128];
  CHECK(!esp32ImageName("fleet", "", big, sizeof big), "no version");
  CHECK(!esp32ImageName("", "1.0", big, sizeof big), "no project name");
  CHECK(!esp32ImageName(".hidden", "1.0", big, sizeof big), "a product must not start with '.'");
  CHECK(esp32ImageName("my app", "1.0", big, sizeof big) && std::string(big) == "my_app-1.0", "a blank becomes '_'");
}

void esp32Resume() {
  CHECK(isStrongEtag("\"abc\"", 5), "a strong ETag");
  CHECK(isStrongEtag("\"\"", 2), "an empty strong ETag is still one (RFC 9110 §8.8.3)");
  CHECK(!isStrongEtag("W/\"abc\"", 7), "a weak ETag");
  CHECK(!isStrongEtag("abc", 3), "no quotes");
  CHECK(!isStrongEtag("\"a\"b\"", 5), "a quote inside");
  CHECK(!isStrongEtag("\"a b\"", 5), "a blank inside");
  CHECK(!isStrongEtag("\"", 1), "one quote");
  const std::string longTag = "\"" + std::string(kEtagMax - 1, 'a') + "\"";
  CHECK(!isStrongEtag(longTag.data(), longTag.size()), "longer than the device keeps");
  const std::string longest = "\"" + std::string(kEtagMax - 2, 'a') + "\"";
  CHECK(isStrongEtag(longest.data(), longest.size()), "an ETag of kEtagMax bytes fits");

  OtaProgress p{};
  std::strcpy(p.url, "https://fleet.example.org/fw/firmware.bin?curimage=fleet_esp32-1.2.3");
  std::strcpy(p.etag, "\"sha256-0123\"");
  p.bytes = 65536;
  CHECK_EQ(resumeOffset(p, p.url), 65536u, "the same download resumes where it stopped");
  CHECK_EQ(resumeOffset(p, "https://fleet.example.org/fw/firmware.bin?curimage=fleet_esp32-1.2.4"), 0u, "another running image: start over");
  CHECK_EQ(resumeOffset(p, nullptr), 0u, "no URL");
  std::strcpy(p.etag, "W/\"sha256-0123\"");
  CHECK_EQ(resumeOffset(p, p.url), 0u, "a weak ETag cannot guard a resume (If-Range needs a strong one)");
  p.etag[0] = '\0';
  CHECK_EQ(resumeOffset(p, p.url), 0u, "no ETag: start over");
  std::strcpy(p.etag, "\"x\"");
  p.bytes = 0;
  CHECK_EQ(resumeOffset(p, p.url), 0u, "nothing written yet");
}
