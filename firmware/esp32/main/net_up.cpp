// ESP-IDF v5.5 esp_wifi.h, esp_netif.h, esp_netif_sntp.h.
#include "net_up.h"

#include <stdio.h>
#include <string.h>

#include "esp_event.h"
#include "esp_log.h"
#include "esp_netif.h"
#include "esp_netif_sntp.h"
#include "esp_wifi.h"
#include "freertos/FreeRTOS.h"
#include "freertos/event_groups.h"

namespace net {

namespace {

const char* const TAG = "net";
constexpr EventBits_t kGotIp = BIT0;
EventGroupHandle_t gEvents;
esp_netif_t* gStation;

void onEvent(void*, esp_event_base_t base, int32_t id, void*) {
  if (base == WIFI_EVENT && id == WIFI_EVENT_STA_START) {
    esp_wifi_connect();
  } else if (base == WIFI_EVENT && id == WIFI_EVENT_STA_DISCONNECTED) {
    xEventGroupClearBits(gEvents, kGotIp);
    esp_wifi_connect();  // the driver retries at its own pace; MQTT's backoff is the core's
  } else if (base == IP_EVENT && id == IP_EVENT_STA_GOT_IP) {
    xEventGroupSetBits(gEvents, kGotIp);
  }
}

}  // namespace

esp_err_t startWifi(const Provisioning& p) {
  gEvents = xEventGroupCreate();
  ESP_ERROR_CHECK(esp_netif_init());
  ESP_ERROR_CHECK(esp_event_loop_create_default());
  gStation = esp_netif_create_default_wifi_sta();
  wifi_init_config_t init = WIFI_INIT_CONFIG_DEFAULT();
  ESP_ERROR_CHECK(esp_wifi_init(&init));
  // The credentials come from the provisioning partition each boot; the driver keeps no copy.
  ESP_ERROR_CHECK(esp_wifi_set_storage(WIFI_STORAGE_RAM));
  ESP_ERROR_CHECK(esp_event_handler_register(WIFI_EVENT, ESP_EVENT_ANY_ID, onEvent, nullptr));
  ESP_ERROR_CHECK(esp_event_handler_register(IP_EVENT, IP_EVENT_STA_GOT_IP, onEvent, nullptr));
  wifi_config_t config = {};
  memcpy(config.sta.ssid, p.ssid, strnlen(p.ssid, sizeof config.sta.ssid));
  memcpy(config.sta.password, p.password, strnlen(p.password, sizeof config.sta.password));
  // An open network when the password is empty (docs/wire-contract.md, wifi); WPA2 at least otherwise.
  config.sta.threshold.authmode = p.password[0] ? WIFI_AUTH_WPA2_PSK : WIFI_AUTH_OPEN;
  ESP_ERROR_CHECK(esp_wifi_set_mode(WIFI_MODE_STA));
  ESP_ERROR_CHECK(esp_wifi_set_config(WIFI_IF_STA, &config));
  return esp_wifi_start();
}

bool waitForIp(uint32_t timeoutMs) {
  return xEventGroupWaitBits(gEvents, kGotIp, pdFALSE, pdTRUE, pdMS_TO_TICKS(timeoutMs)) & kGotIp;
}

bool hasIp() { return xEventGroupGetBits(gEvents) & kGotIp; }

bool syncClock(const char* server, uint32_t timeoutMs) {
  esp_sntp_config_t config = ESP_NETIF_SNTP_DEFAULT_CONFIG(server);
  if (esp_netif_sntp_init(&config) != ESP_OK) return false;
  const bool synced = esp_netif_sntp_sync_wait(pdMS_TO_TICKS(timeoutMs)) == ESP_OK;
  if (!synced) ESP_LOGW(TAG, "no time from %s within %u ms", server, static_cast<unsigned>(timeoutMs));
  return synced;
}

void stationInfo(char* ip, size_t size, int32_t& rssi) {
  esp_netif_ip_info_t info = {};
  esp_netif_get_ip_info(gStation, &info);
  snprintf(ip, size, IPSTR, IP2STR(&info.ip));
  wifi_ap_record_t ap = {};
  rssi = esp_wifi_sta_get_ap_info(&ap) == ESP_OK ? ap.rssi : 0;
}

}  // namespace net
