// Wi-Fi station with the provisioned network, and the clock by SNTP (certificate dates are
// checked: CONFIG_MBEDTLS_HAVE_TIME_DATE).
#pragma once

#include "app_state.h"
#include "esp_err.h"

namespace net {

esp_err_t startWifi(const Provisioning& p);  // connects, and again after every drop
bool waitForIp(uint32_t timeoutMs);
bool hasIp();
// Starts SNTP with config.json's ntpserver and waits up to `timeoutMs` for the first sync.
bool syncClock(const char* server, uint32_t timeoutMs);
// espip and rssi for the status.
void stationInfo(char* ip, size_t size, int32_t& rssi);

}  // namespace net
