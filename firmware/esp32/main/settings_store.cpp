// NVS access (ESP-IDF v5.5 nvs_flash.h, nvs.h; nvs_sec_provider for the encrypted variant).
#include "settings_store.h"

#include <stdlib.h>
#include <string.h>

#include "nvs.h"
#include "nvs_flash.h"

namespace store {

namespace {

constexpr const char* kRuntimePartition = "nvs";     // also the Wi-Fi stack's (partitions.csv)
constexpr const char* kFleetPartition = "fleet";     // provisioning, written with nvs_partition_gen.py
constexpr const char* kFleetNamespace = "fleet";
constexpr const char* kSettingsNamespace = "settings";
constexpr const char* kProgressNamespace = "ota";

// An NVS string as a heap copy (PEM files are a few KB: too big for the stack); nullptr when absent.
char* readString(nvs_handle_t h, const char* key) {
  size_t length = 0;
  if (nvs_get_str(h, key, nullptr, &length) != ESP_OK || length == 0) return nullptr;
  char* text = static_cast<char*>(malloc(length));
  if (!text) return nullptr;
  if (nvs_get_str(h, key, text, &length) != ESP_OK) {
    free(text);
    return nullptr;
  }
  return text;
}

bool readInto(nvs_handle_t h, const char* key, char* out, size_t size) {
  size_t length = size;
  return nvs_get_str(h, key, out, &length) == ESP_OK;
}

esp_err_t initPartition(const char* label) {
#if CONFIG_NVS_ENCRYPTION
  // The XTS keys in the (flash-encrypted) nvs_keys partition; made on first boot when absent.
  nvs_sec_cfg_t keys = {};
  nvs_sec_scheme_t* scheme = nvs_flash_get_default_security_scheme();
  esp_err_t err = nvs_flash_read_security_cfg_v2(scheme, &keys);
  if (err != ESP_OK) err = nvs_flash_generate_keys_v2(scheme, &keys);
  if (err != ESP_OK) return err;
  return nvs_flash_secure_init_partition(label, &keys);
#else
  return nvs_flash_init_partition(label);
#endif
}

}  // namespace

esp_err_t begin() {
  esp_err_t err = initPartition(kRuntimePartition);
  if (err == ESP_ERR_NVS_NO_FREE_PAGES || err == ESP_ERR_NVS_NEW_VERSION_FOUND) {
    // Only the runtime partition may be erased: it holds nothing that cannot be set again.
    nvs_flash_erase_partition(kRuntimePartition);
    err = initPartition(kRuntimePartition);
  }
  if (err != ESP_OK) return err;
  // Never erased by the app: without it the device has no identity (README.md, Provisioning).
  return initPartition(kFleetPartition);
}

esp_err_t loadProvisioning(Provisioning& out, const char** reason) {
  memset(&out, 0, sizeof out);
  nvs_handle_t h;
  if (nvs_open_from_partition(kFleetPartition, kFleetNamespace, NVS_READONLY, &h) != ESP_OK) {
    *reason = "no namespace fleet in the fleet partition: flash the provisioning image";
    return ESP_ERR_NOT_FOUND;
  }
  esp_err_t result = ESP_OK;
  out.ca = readString(h, "ca");
  out.cert = readString(h, "cert");
  out.key = readString(h, "key");
  char* config = readString(h, "config");
  if (!out.ca || !fleet::looksLikePem(out.ca, strlen(out.ca), fleet::PemKind::Certificate)) {
    *reason = "ca is missing or not a PEM certificate", result = ESP_ERR_INVALID_STATE;
  } else if (!out.cert || !fleet::looksLikePem(out.cert, strlen(out.cert), fleet::PemKind::Certificate)) {
    *reason = "cert is missing or not a PEM certificate", result = ESP_ERR_INVALID_STATE;
  } else if (!out.key || !fleet::looksLikePem(out.key, strlen(out.key), fleet::PemKind::PrivateKey)) {
    *reason = "key is missing or not a PEM private key", result = ESP_ERR_INVALID_STATE;
  } else if (!config) {
    *reason = "config (config.json) is missing", result = ESP_ERR_INVALID_STATE;
  } else if (!fleet::parseConfig(config, strlen(config), out.config, reason)) {
    result = ESP_ERR_INVALID_STATE;
  } else if (!readInto(h, "wifi_ssid", out.ssid, sizeof out.ssid)) {
    *reason = "wifi_ssid is missing or longer than 32 bytes", result = ESP_ERR_INVALID_STATE;
  } else if (!readInto(h, "wifi_pass", out.password, sizeof out.password)) {
    *reason = "wifi_pass is missing or longer than 64 characters", result = ESP_ERR_INVALID_STATE;
  }
  free(config);
  nvs_close(h);
  return result;
}

void loadSettings(fleet::Esp32Settings& out) {
  fleet::defaultEsp32Settings(out);
  nvs_handle_t h;
  if (nvs_open_from_partition(kRuntimePartition, kSettingsNamespace, NVS_READONLY, &h) != ESP_OK) return;
  const char* reason = nullptr;
  char url[fleet::kEsp32UrlMax + 1];
  if (readInto(h, "url", url, sizeof url) && !fleet::parseUpdateUrl(url, strlen(url), out.url, &reason)) out.url[0] = '\0';
  uint8_t use = 0;
  if (nvs_get_u8(h, "use_url", &use) == ESP_OK) out.useUrl = use == 1;
  uint32_t seconds = 0;
  if (nvs_get_u32(h, "interval", &seconds) == ESP_OK && seconds >= fleet::kUpdateIntervalMinS && seconds <= fleet::kUpdateIntervalMaxS) {
    out.intervalS = seconds;
  }
  nvs_close(h);
}

esp_err_t saveSettings(const fleet::Esp32Settings& s) {
  nvs_handle_t h;
  esp_err_t err = nvs_open_from_partition(kRuntimePartition, kSettingsNamespace, NVS_READWRITE, &h);
  if (err != ESP_OK) return err;
  err = nvs_set_str(h, "url", s.url);
  if (err == ESP_OK) err = nvs_set_u8(h, "use_url", s.useUrl ? 1 : 0);
  if (err == ESP_OK) err = nvs_set_u32(h, "interval", s.intervalS);
  if (err == ESP_OK) err = nvs_commit(h);
  nvs_close(h);
  return err;
}

void loadProgress(fleet::OtaProgress& out) {
  memset(&out, 0, sizeof out);
  nvs_handle_t h;
  if (nvs_open_from_partition(kRuntimePartition, kProgressNamespace, NVS_READONLY, &h) != ESP_OK) return;
  if (!readInto(h, "url", out.url, sizeof out.url) || !readInto(h, "etag", out.etag, sizeof out.etag) ||
      nvs_get_u32(h, "bytes", &out.bytes) != ESP_OK) {
    memset(&out, 0, sizeof out);  // a partial record is no record
  }
  nvs_close(h);
}

esp_err_t saveProgress(const fleet::OtaProgress& p) {
  nvs_handle_t h;
  esp_err_t err = nvs_open_from_partition(kRuntimePartition, kProgressNamespace, NVS_READWRITE, &h);
  if (err != ESP_OK) return err;
  err = nvs_set_str(h, "url", p.url);
  if (err == ESP_OK) err = nvs_set_str(h, "etag", p.etag);
  if (err == ESP_OK) err = nvs_set_u32(h, "bytes", p.bytes);
  if (err == ESP_OK) err = nvs_commit(h);
  nvs_close(h);
  return err;
}

void clearProgress() {
  nvs_handle_t h;
  if (nvs_open_from_partition(kRuntimePartition, kProgressNamespace, NVS_READWRITE, &h) != ESP_OK) return;
  nvs_erase_all(h);
  nvs_commit(h);
  nvs_close(h);
}

}  // namespace store
