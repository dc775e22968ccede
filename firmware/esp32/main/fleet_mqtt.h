// MQTT over mutual TLS with esp-mqtt: the secure-esp32 topics, the last will and the birth
// message, the status JSON and the log (docs/wire-contract.md, MQTT topics and Status JSON fields).
// Reconnects follow the core's ReconnectPolicy, not esp-mqtt's fixed delay.
#pragma once

#include "app_state.h"

namespace link {

struct Command {
  fleet::Esp32Command command;
  char payload[fleet::kEsp32UrlMax + 1];
  size_t length;
  bool tooLong;  // a payload the device does not read (longer than any command takes)
};

// Builds the client (nothing is sent yet): broker from config.json, CA pinned, the device's
// certificate and key, will "offline" retained on /esp/<id>/will.
bool begin();
// Each pass of the main loop: starts an attempt when the policy says so; true when the policy
// says to restart (the broker was unreachable for waittimeout plus its jitter).
bool poll(uint32_t now);
bool connected();
uint32_t connectedSince();
// The next command that arrived, if any (esp-mqtt's task queues them; the main task runs them).
bool nextCommand(Command& out);
bool publishStatus();
// One line on /esp/<id>/log (QoS 1, not retained): "<what>: <text>", cut to 256 bytes.
void log(const char* what, const char* text);
// True once after each CONNACK: the app then publishes its status and confirms a pending-verify image.
bool takeConnected();

}  // namespace link
