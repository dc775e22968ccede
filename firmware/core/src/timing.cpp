// Timing decisions of the sketch: watchdog, reconnect/reboot, LED patterns (the secure ESP8266 framework, docs/wire-contract.md).
#include "fleet_core.h"

namespace fleet {

void LoopWatch::enter(uint32_t now) {
  entered_ = now;
  inside_ = true;
}

void LoopWatch::leave(uint32_t now) {
  if (!inside_) return;
  inside_ = false;
  const uint32_t took = now - entered_;
  if (took > max_) max_ = took;
  entered_ = now;  // the watchdog counts from the end of the last pass
}

bool LoopWatch::overdue(uint32_t now, uint32_t limit) const { return now - entered_ > limit; }

namespace {
constexpr uint32_t kMaxBackoffFactor = 8;
}

void ReconnectPolicy::start(uint32_t now) {
  connected_ = false;
  since_ = now;
  lastTry_ = now;
  delay_ = 0;
}

void ReconnectPolicy::connected(uint32_t now) {
  connected_ = true;
  since_ = now;
  delay_ = 0;
}

void ReconnectPolicy::failed(uint32_t now) {
  if (connected_) {
    connected_ = false;
    since_ = now;
    delay_ = 0;
  }
  lastTry_ = now;
  const uint32_t cap = retry_ * kMaxBackoffFactor;
  delay_ = delay_ == 0 ? retry_ : (delay_ >= cap / 2 ? cap : delay_ * 2);
}

bool ReconnectPolicy::attemptDue(uint32_t now) const { return !connected_ && now - lastTry_ >= delay_; }

bool ReconnectPolicy::rebootDue(uint32_t now) const { return !connected_ && now - since_ > giveUp_; }

bool ledOn(LedMode mode, uint32_t now) {
  switch (mode) {
    case LedMode::Setup: return now % 100 < 50;
    case LedMode::Connected: return now % 2000 < 50;
    case LedMode::Off: break;
  }
  return false;
}

}  // namespace fleet
