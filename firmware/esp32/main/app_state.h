// What the parts of the app share: the device's identity, its provisioning and settings, and the
// core objects that decide (firmware/core: fleet_core.h). One instance, owned by app_main.cpp.
#pragma once

#include "fleet_core.h"

struct Provisioning {
  // PEM texts from the read-only `fleet` NVS partition (settings_store.cpp), NUL-terminated.
  char* ca;    // the fleet CA: the only trust anchor, for the broker and the update server
  char* cert;  // <id>.crt, CN = the device id
  char* key;   // <id>.key
  fleet::DeviceConfig config;  // config.json, checked by the core's parseConfig
  char ssid[fleet::kSsidMax + 1];
  char password[fleet::kPasswordMax + 1];
};

struct AppState {
  char id[fleet::kDeviceIdLength + 1];
  char name[24];                                  // espname: esp32-<id>
  char image[fleet::kMaxProduct + fleet::kMaxVersion + 2];  // espimage: <project>-<version>
  char build[40];                                 // espbuild: date and time from esp_app_desc_t
  char builtInUpdateUrl[fleet::kUrlSize];         // https://<downloadserver>:<port>/<path>/firmware.bin
  Provisioning provisioning;
  fleet::Esp32Topics topics;
  fleet::Esp32Settings settings;                  // kept in NVS across reboots
  fleet::Esp32CommandRunner runner;               // errormessage
  fleet::LoopWatch loopWatch;                     // maxmillis
  fleet::ProgressWatchdog watchdog;
};

extern AppState gApp;

// Milliseconds since boot: 64 bits for the update schedule, the low 32 for the core's timing.
uint64_t nowMs64();
inline uint32_t nowMs() { return static_cast<uint32_t>(nowMs64()); }
