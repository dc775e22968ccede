// The fleet's ESP32 firmware (README.md): boot, then one loop that runs the MQTT link, the
// commands, the status and the update schedule. Every decision that is logic rather than radio
// comes from firmware/core (fleet_core.h), host-tested against test/vectors.
#include <stdio.h>
#include <string.h>

#include "app_state.h"
#include "esp_app_desc.h"
#include "esp_log.h"
#include "esp_mac.h"
#include "esp_random.h"
#include "esp_system.h"
#include "esp_timer.h"
#include "fleet_mqtt.h"
#include "fleet_ota.h"
#include "freertos/FreeRTOS.h"
#include "freertos/task.h"
#include "net_up.h"
#include "settings_store.h"

AppState gApp;

uint64_t nowMs64() { return static_cast<uint64_t>(esp_timer_get_time()) / 1000; }

namespace {

const char* const TAG = "fleet";
constexpr uint32_t kLoopPauseMs = 50;

// The core's progress watchdog, asked every 500 ms (docs/wire-contract.md, Device timing). A
// restart of an image still on probation makes the bootloader roll back to the previous one.
void watchdogTick(void*) {
  if (gApp.watchdog.overdue(nowMs())) {
    ESP_LOGE(TAG, "no progress in step %s: restarting", fleet::watchStepName(gApp.watchdog.step()));
    esp_restart();
  }
}

void startWatchdog() {
  esp_timer_create_args_t args = {};
  args.callback = watchdogTick;
  args.name = "fleet_wdt";
  esp_timer_handle_t timer;
  ESP_ERROR_CHECK(esp_timer_create(&args, &timer));
  ESP_ERROR_CHECK(esp_timer_start_periodic(timer, static_cast<uint64_t>(fleet::kWatchdogTickMs) * 1000));
}

// Without its identity the device can do nothing useful: say why every 10 s, never reformat.
[[noreturn]] void halt(const char* what, const char* reason) {
  for (;;) {
    ESP_LOGE(TAG, "%s: %s", what, reason);
    vTaskDelay(pdMS_TO_TICKS(10000));
  }
}

void identify() {
  uint8_t mac[6];
  ESP_ERROR_CHECK(esp_read_mac(mac, ESP_MAC_WIFI_STA));
  fleet::deviceIdFromMac(mac, gApp.id);
  snprintf(gApp.name, sizeof gApp.name, "esp32-%s", gApp.id);
  const esp_app_desc_t* desc = esp_app_get_description();
  if (!fleet::esp32ImageName(desc->project_name, desc->version, gApp.image, sizeof gApp.image)) {
    halt("image", "project name and version do not make an image name (<PRODUCT>-<VERSION>): fix PROJECT_VER");
  }
  snprintf(gApp.build, sizeof gApp.build, "%s %s", desc->date, desc->time);
  fleet::buildEsp32Topics(gApp.id, gApp.topics);
  ESP_LOGI(TAG, "CLIENTNAME: %s, image %s, secure_version %u", gApp.id, gApp.image, static_cast<unsigned>(desc->secure_version));
}

void runUpdate(bool onCommand) {
  const ota::Outcome o = ota::run();
  gApp.watchdog.begin(fleet::WatchStep::Loop, nowMs());
  link::log("update", o.text);
  // A check that finds nothing is a failure only when asked for: update/run then reports why,
  // as the ESP8266's firmware command does (esp-command sees the errormessage change).
  if (o.kind != ota::Kind::Installed && (onCommand || o.kind != ota::Kind::UpToDate)) gApp.runner.setError(onCommand ? "update/run" : "update", o.text);
  link::publishStatus();
  if (o.kind == ota::Kind::Installed) {
    vTaskDelay(pdMS_TO_TICKS(1000));  // let the log and status leave
    esp_restart();
  }
}

void handle(const link::Command& c, fleet::UpdateSchedule& schedule) {
  const char* name = fleet::esp32CommandName(c.command);
  if (c.tooLong) {
    gApp.runner.setError(name, "payload too long");
    link::log(name, gApp.runner.errorMessage());
    link::publishStatus();
    return;
  }
  const fleet::Esp32Action action = gApp.runner.run(c.command, c.payload, c.length, gApp.settings);
  switch (action) {
    case fleet::Esp32Action::Store: {
      if (store::saveSettings(gApp.settings) != ESP_OK) {
        gApp.runner.setError(name, "cannot store the setting in NVS");
        link::log(name, gApp.runner.errorMessage());
        break;
      }
      if (c.command == fleet::Esp32Command::UpdateInterval) schedule.setInterval(gApp.settings.intervalS);
      char text[fleet::kEsp32UrlMax + 32];
      if (c.command == fleet::Esp32Command::UpdateUrl) snprintf(text, sizeof text, "stored %s", gApp.settings.url);
      else if (c.command == fleet::Esp32Command::UpdateUseUrl) snprintf(text, sizeof text, "stored %d: updates from %s", gApp.settings.useUrl ? 1 : 0, gApp.settings.useUrl && gApp.settings.url[0] ? gApp.settings.url : gApp.builtInUpdateUrl);
      else snprintf(text, sizeof text, "stored %u s", static_cast<unsigned>(gApp.settings.intervalS));
      link::log(name, text);
      break;
    }
    case fleet::Esp32Action::RunUpdate:
      runUpdate(true);
      schedule.ran(nowMs64());
      return;  // runUpdate published the status
    case fleet::Esp32Action::Restart:
      link::log("restart", "restarting on command");
      link::publishStatus();
      vTaskDelay(pdMS_TO_TICKS(500));
      esp_restart();
    case fleet::Esp32Action::None:
      link::log(name, gApp.runner.errorMessage());  // refused: the reason, never the payload's secrets (it has none)
      break;
  }
  link::publishStatus();  // right after each command, as the ESP8266 does
}

}  // namespace

extern "C" void app_main() {
  identify();
  if (store::begin() != ESP_OK) halt("nvs", "cannot open the nvs and fleet partitions (see partitions.csv)");
  const char* reason = "unknown";
  if (store::loadProvisioning(gApp.provisioning, &reason) != ESP_OK) halt("provisioning", reason);
  const fleet::DeviceConfig& config = gApp.provisioning.config;
  if (!fleet::downloadUrl(config, "firmware.bin", gApp.builtInUpdateUrl, sizeof gApp.builtInUpdateUrl)) halt("config", "update URL too long");
  store::loadSettings(gApp.settings);
  gApp.watchdog.begin(fleet::WatchStep::Loop, nowMs());
  startWatchdog();

  bool probation = ota::pendingVerify();
  ESP_ERROR_CHECK(net::startWifi(gApp.provisioning));
  gApp.watchdog.begin(fleet::WatchStep::Dns, nowMs());
  net::waitForIp(fleet::watchdogBudgetMs(fleet::WatchStep::Dns) - 2000);
  gApp.watchdog.begin(fleet::WatchStep::Tls, nowMs());
  // Certificates are checked with their dates: no TLS before the clock is set (it keeps trying).
  net::syncClock(config.ntpserver, fleet::watchdogBudgetMs(fleet::WatchStep::Tls) - 5000);
  if (!link::begin()) halt("mqtt", "cannot create the MQTT client");

  fleet::Jitter jitter = fleet::Jitter::forDevice(gApp.id, esp_random());
  fleet::UpdateSchedule schedule;
  schedule.start(nowMs64(), gApp.settings.intervalS, jitter);
  uint32_t lastStatus = nowMs();

  for (;;) {
    const uint32_t now = nowMs();
    gApp.loopWatch.enter(now);
    gApp.watchdog.begin(fleet::WatchStep::Loop, now);
    if (link::poll(now)) {
      ESP_LOGW(TAG, "broker unreachable for longer than waittimeout: restarting");
      esp_restart();  // on probation this rolls back to the previous image
    }
    if (link::takeConnected()) {
      if (probation) {
        // The new image reached the broker with its certificate: keep it (rollback cancelled).
        link::log("update", ota::confirm() ? "running image confirmed" : "cannot confirm the running image");
        probation = false;
      }
      link::publishStatus();
      lastStatus = now;
    }
    link::Command command;
    while (link::nextCommand(command)) handle(command, schedule);
    if (link::connected() && nowMs() - lastStatus >= config.statusinterval) {
      link::publishStatus();
      lastStatus = nowMs();
    }
    if (schedule.due(nowMs64()) && link::connected()) {  // its outcome goes to the log
      runUpdate(false);
      schedule.ran(nowMs64());
    }
    gApp.loopWatch.leave(nowMs());
    vTaskDelay(pdMS_TO_TICKS(kLoopPauseMs));
  }
}
