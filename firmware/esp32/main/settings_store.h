// NVS: the provisioning written at the factory (partition `fleet`, read-only) and the device's own
// settings and download progress (partition `nvs`). README.md, "Provisioning", says what goes where.
#pragma once

#include "app_state.h"
#include "esp_err.h"

namespace store {

// Opens both partitions (encrypted when CONFIG_NVS_ENCRYPTION is set). Call once, first.
esp_err_t begin();
// ca, cert, key, config (config.json), wifi_ssid, wifi_pass from namespace "fleet". On failure
// `reason` says which entry is missing or refused.
esp_err_t loadProvisioning(Provisioning& out, const char** reason);
// update/url, update/use_url, update/interval: stored values are checked again with the core's
// parsers, so a damaged entry falls back to its default instead of being used.
void loadSettings(fleet::Esp32Settings& out);
esp_err_t saveSettings(const fleet::Esp32Settings& settings);
// The download under way (fleet::OtaProgress): URL, ETag, bytes written.
void loadProgress(fleet::OtaProgress& out);
esp_err_t saveProgress(const fleet::OtaProgress& progress);
void clearProgress();

}  // namespace store
