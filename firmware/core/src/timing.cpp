// Timing decisions of the sketch (docs/wire-contract.md: Device timing): maxmillis, the progress
// watchdog, jitter, reconnect/reboot and LED patterns. lib/device/ holds the same rules for the
// simulator; both are tested against test/vectors/device-timing.json.
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
}

// A switch, not a table: the core keeps no static data (test/firmware/host-core.test.ts).
uint32_t watchdogBudgetMs(WatchStep step) {
  switch (step) {
    case WatchStep::Loop: return 6000;       // one pass of loop()
    case WatchStep::Dns: return 12000;       // lwIP's own DNS time-out is 10 s
    case WatchStep::Tls: return 20000;       // TCP + TLS: RSA-2048 client auth takes 1-3 s at 80 MHz; above the core's own 15 s so a slow handshake fails first
    case WatchStep::Mqtt: return 10000;      // CONNECT until CONNACK
    case WatchStep::Download: return 6000;   // between two received blocks
    case WatchStep::Verify: return 10000;    // Update.end(): hash and signature, once
  }
  return 6000;
}

const char* watchStepName(WatchStep step) {
  switch (step) {
    case WatchStep::Loop: return "loop";
    case WatchStep::Dns: return "dns";
    case WatchStep::Tls: return "tls";
    case WatchStep::Mqtt: return "mqtt";
    case WatchStep::Download: return "download";
    case WatchStep::Verify: return "verify";
  }
  return "";
}

uint32_t fnv1a32(const char* text, size_t length) {
  uint32_t h = 2166136261u;
  for (size_t i = 0; i < length; i++) {
    h ^= static_cast<uint8_t>(text[i]);
    h *= 16777619u;
  }
  return h;
}

Jitter Jitter::forDevice(const char* id, uint32_t mix) {
  size_t n = 0;
  while (id && id[n]) n++;
  return Jitter(fnv1a32(id, n) ^ mix);
}

uint32_t Jitter::next() {
  uint32_t x = state_;
  x ^= x << 13;
  x ^= x >> 17;
  x ^= x << 5;
  state_ = x;
  return x;
}

uint32_t Jitter::upTo(uint32_t max) {
  if (max == 0) return 0;  // as lib/device/jitter.ts: no draw
  return static_cast<uint32_t>(next() % (static_cast<uint64_t>(max) + 1));
}

namespace {
constexpr uint8_t kMaxAttempts = 30;  // 2^30 * retry is far past the 8x ceiling
}

// waittimeout + 0..waittimeout/2. lib/device draws upTo(w / 2) with a fractional w / 2, which
// draws for every w > 0: so does this (w / 2 rounded down is what upTo keeps of it).
void ReconnectPolicy::drawGiveUp() {
  const uint32_t extra = giveUp_ == 0 ? 0 : static_cast<uint32_t>(jitter_.next() % (static_cast<uint64_t>(giveUp_ / 2) + 1));
  giveUpAfter_ = giveUp_ + extra;
}

void ReconnectPolicy::start(uint32_t now) {
  up_ = false;
  since_ = now;
  lastTry_ = now;
  attempts_ = 0;
  failedPastGiveUp_ = false;
  delay_ = jitter_.upTo(retry_);
  drawGiveUp();
}

void ReconnectPolicy::connected(uint32_t now) {
  up_ = true;
  since_ = now;
  attempts_ = 0;
  failedPastGiveUp_ = false;
}

void ReconnectPolicy::failed(uint32_t now, bool reachedBroker) {
  if (up_) {
    up_ = false;
    since_ = now;
    attempts_ = 0;
    drawGiveUp();
  } else {
    if (attempts_ < kMaxAttempts) attempts_++;
    if (reachedBroker) since_ = now;
    else if (now - since_ >= giveUpAfter_) failedPastGiveUp_ = true;
  }
  lastTry_ = now;
  const uint64_t cap = static_cast<uint64_t>(retry_) * kMaxBackoffFactor;
  const uint64_t grown = static_cast<uint64_t>(retry_) << attempts_;
  delay_ = jitter_.upTo(static_cast<uint32_t>(grown < cap ? grown : cap));
}

bool ledOn(LedMode mode, uint32_t now) {
  switch (mode) {
    case LedMode::Setup: return now % 100 < 50;
    case LedMode::Connected: return now % 2000 < 50;
    case LedMode::NoFilesystem: {
      const uint32_t t = now % 2000;
      return t < 900 && t % 300 < 100;
    }
    case LedMode::Pending: return now % 2000 < 1000;
    case LedMode::Off: break;
  }
  return false;
}

}  // namespace fleet
