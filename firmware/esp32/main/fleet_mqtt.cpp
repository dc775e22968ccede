// esp-mqtt (ESP-IDF v5.5 components/mqtt, esp-mqtt include/mqtt_client.h).
#include "fleet_mqtt.h"

#include <stdio.h>
#include <string.h>

#include "esp_log.h"
#include "esp_random.h"
#include "esp_system.h"
#include "freertos/FreeRTOS.h"
#include "freertos/queue.h"
#include "mqtt_client.h"
#include "net_up.h"

namespace link {

namespace {

const char* const TAG = "mqtt";
constexpr char kWill[] = "offline";
constexpr char kBirth[] = "online";
constexpr size_t kLogMax = 256;

esp_mqtt_client_handle_t gClient;
QueueHandle_t gCommands;
fleet::ReconnectPolicy* gPolicy;
char gUri[fleet::kHostSize + 16];
bool gStarted = false;
volatile bool gConnected = false;
volatile bool gConnectedEvent = false;
// Outcomes from esp-mqtt's task, applied to the policy in the main task (the core is not thread-safe).
volatile bool gFailed = false;
volatile bool gReachedBroker = false;
volatile bool gJustConnected = false;
bool gAttempting = false;  // main task only
uint32_t gAttemptAt = 0;
// DNS, TCP + TLS and CONNECT each have their own time-outs in esp-mqtt/esp-tls; past this an
// attempt that posted no event at all counts as failed.
constexpr uint32_t kAttemptLimitMs = 45000;

void subscribeAll() {
  for (const auto& topic : gApp.topics.commands) esp_mqtt_client_subscribe_single(gClient, topic, 1);
}

void onData(const esp_mqtt_event_t& e) {
  char topic[fleet::kEsp32TopicSize];
  if (e.topic_len <= 0 || static_cast<size_t>(e.topic_len) >= sizeof topic || e.current_data_offset != 0) return;
  memcpy(topic, e.topic, static_cast<size_t>(e.topic_len));
  topic[e.topic_len] = '\0';
  Command c = {};
  c.command = fleet::parseEsp32CommandTopic(topic, static_cast<size_t>(e.topic_len), gApp.id);
  if (c.command == fleet::Esp32Command::None) return;  // not ours: another device, our own status
  c.tooLong = e.total_data_len < 0 || static_cast<size_t>(e.total_data_len) > fleet::kEsp32UrlMax || e.data_len != e.total_data_len;
  if (!c.tooLong) {
    c.length = static_cast<size_t>(e.data_len);
    memcpy(c.payload, e.data, c.length);
  }
  if (xQueueSend(gCommands, &c, 0) != pdTRUE) ESP_LOGW(TAG, "command queue full: %s dropped", topic);
}

void onEvent(void*, esp_event_base_t, int32_t id, void* data) {
  const esp_mqtt_event_t& e = *static_cast<esp_mqtt_event_handle_t>(data);
  switch (static_cast<esp_mqtt_event_id_t>(id)) {
    case MQTT_EVENT_CONNECTED:
      gConnected = true;
      gJustConnected = true;
      gConnectedEvent = true;
      subscribeAll();
      esp_mqtt_client_publish(gClient, gApp.topics.will, kBirth, 0, 1, 1);
      break;
    case MQTT_EVENT_DISCONNECTED:
      gConnected = false;
      gFailed = true;
      break;
    case MQTT_EVENT_ERROR:
      // A CONNACK refusal or a TLS-level error means TCP reached the broker (the device's own
      // network works): the core then starts the give-up clock over (docs/wire-contract.md, Device timing).
      if (e.error_handle) {
        gReachedBroker = e.error_handle->error_type == MQTT_ERROR_TYPE_CONNECTION_REFUSED || e.error_handle->esp_tls_stack_err != 0;
      }
      break;
    case MQTT_EVENT_DATA:
      onData(e);
      break;
    default:
      break;
  }
}

}  // namespace

bool begin() {
  const fleet::DeviceConfig& c = gApp.provisioning.config;
  snprintf(gUri, sizeof gUri, "%s://%s:%u", c.mqtttls ? "mqtts" : "mqtt", c.mqttserver, static_cast<unsigned>(c.mqttport));
  gCommands = xQueueCreate(4, sizeof(Command));
  static fleet::ReconnectPolicy policy(c.retrytimeout, c.waittimeout, fleet::Jitter::forDevice(gApp.id, esp_random()));
  gPolicy = &policy;
  esp_mqtt_client_config_t cfg = {};
  cfg.broker.address.uri = gUri;
  cfg.broker.verification.certificate = gApp.provisioning.ca;  // the only trust anchor
  cfg.credentials.client_id = gApp.id;
  cfg.credentials.authentication.certificate = gApp.provisioning.cert;
  cfg.credentials.authentication.key = gApp.provisioning.key;
  cfg.session.last_will.topic = gApp.topics.will;
  cfg.session.last_will.msg = kWill;
  cfg.session.last_will.qos = 1;
  cfg.session.last_will.retain = 1;
  cfg.session.keepalive = 30;
  cfg.network.disable_auto_reconnect = true;  // the core's ReconnectPolicy decides when
  cfg.network.timeout_ms = 10000;             // the MQTT CONNECT budget (docs/wire-contract.md, Device timing)
  gClient = esp_mqtt_client_init(&cfg);
  if (!gClient || !gCommands) return false;
  esp_mqtt_client_register_event(gClient, MQTT_EVENT_ANY, onEvent, nullptr);
  gPolicy->start(nowMs());
  return true;
}

bool poll(uint32_t now) {
  if (gJustConnected) {
    gJustConnected = false;
    gAttempting = false;
    gPolicy->connected(now);
  }
  if (gFailed) {
    // The attempt failed or the connection dropped (esp-mqtt posts DISCONNECTED for both).
    gFailed = false;
    gAttempting = false;
    gPolicy->failed(now, gReachedBroker);
    gReachedBroker = false;
  }
  if (gAttempting && now - gAttemptAt > kAttemptLimitMs) {
    gAttempting = false;  // no event at all: count it as an attempt that did not reach the broker
    gPolicy->failed(now, false);
  }
  if (!gAttempting && gPolicy->attemptDue(now)) {
    if (!net::hasIp()) {
      gPolicy->failed(now, false);  // an attempt without a network cannot reach the broker
    } else {
      gAttempting = true;
      gAttemptAt = now;
      esp_err_t err = ESP_OK;
      if (!gStarted) {
        gStarted = true;
        err = esp_mqtt_client_start(gClient);
      } else {
        err = esp_mqtt_client_reconnect(gClient);  // ESP_FAIL: the client is not waiting to reconnect
      }
      if (err != ESP_OK) {
        gAttempting = false;
        gPolicy->failed(now, false);
      }
    }
  }
  return gPolicy->rebootDue();
}

bool connected() { return gConnected; }
uint32_t connectedSince() { return gPolicy->connectedSince(); }

bool nextCommand(Command& out) { return xQueueReceive(gCommands, &out, 0) == pdTRUE; }

bool publishStatus() {
  if (!gConnected) return false;
  char ip[16];
  int32_t rssi = 0;
  net::stationInfo(ip, sizeof ip, rssi);
  const uint32_t now = nowMs();
  const fleet::StatusFields fields{nowMs64(), gApp.loopWatch.maxMillis(), static_cast<uint64_t>(now - gPolicy->connectedSince()),
                                   gApp.name, gApp.image, gApp.build, ip, rssi, esp_get_free_heap_size(), gApp.runner.errorMessage()};
  static char json[fleet::kStatusSize];
  const size_t n = fleet::buildStatusJson(fields, json, sizeof json);
  return n && esp_mqtt_client_publish(gClient, gApp.topics.status, json, static_cast<int>(n), 0, 0) >= 0;
}

void log(const char* what, const char* text) {
  char line[kLogMax + 1];
  snprintf(line, sizeof line, "%s: %s", what, text);
  ESP_LOGI(TAG, "log %s", line);
  if (gConnected) esp_mqtt_client_publish(gClient, gApp.topics.log, line, 0, 1, 0);
}

bool takeConnected() {
  const bool connectedNow = gConnectedEvent;
  gConnectedEvent = false;
  return connectedNow;
}

}  // namespace link
