// The enrollment steps of docs/enrollment.md (The device): what the device does after each event,
// and how long it waits. lib/device/enrollment.ts has the same for the simulator; both are tested
// against test/vectors/enrollment.json.
#include "fleet_core.h"
#include "text.h"

namespace fleet {

namespace {

using S = EnrollState;
using E = EnrollEvent;
using A = EnrollAction;

constexpr uint32_t kRetryAfterDefaultS = 60, kRetryAfterMinS = 10, kRetryAfterMaxS = 3600;
constexpr uint32_t kFailureFirstS = 30, kFailureMaxS = 3600;

}  // namespace

// The table of docs/enrollment.md as switches (the core keeps no static data).
EnrollStep enrollStep(EnrollState state, EnrollEvent event) {
  switch (state) {
    case S::Boot:
      if (event == E::NoKey) return {S::Key, A::MakeKey};
      if (event == E::NoCert || event == E::CertExpired) return {S::Enroll, A::SimpleEnroll};
      if (event == E::CertValid) return {S::Enrolled, A::Connect};
      break;
    case S::Key:
      if (event == E::KeyStored) return {S::Enroll, A::SimpleEnroll};
      break;
    case S::Enroll:
      if (event == E::Answer200) return {S::Enrolled, A::StoreAndConnect};
      if (event == E::Answer202) return {S::Pending, A::WaitRetryAfter};
      if (event == E::Refused) return {S::Backoff, A::WaitFailure};
      break;
    case S::Pending:
    case S::Backoff:
      if (event == E::Timer) return {S::Enroll, A::SimpleEnroll};
      break;
    case S::Enrolled:
      if (event == E::RenewDue || event == E::CertCommand) return {S::Renew, A::SimpleReenroll};
      if (event == E::CertExpired) return {S::Enroll, A::SimpleEnroll};
      break;
    case S::Renew:
      if (event == E::Answer200) return {S::Enrolled, A::StoreAndConnect};
      // A re-enrollment is not queued for approval: a 202 is a failure like a refusal.
      if (event == E::Answer202 || event == E::Refused) return {S::RenewBackoff, A::WaitFailure};
      if (event == E::CertExpired) return {S::Enroll, A::SimpleEnroll};
      break;
    case S::RenewBackoff:
      if (event == E::Timer) return {S::Renew, A::SimpleReenroll};
      if (event == E::CertExpired) return {S::Enroll, A::SimpleEnroll};
      break;
  }
  return {state, A::None};
}

const char* enrollStateName(EnrollState state) {
  switch (state) {
    case S::Boot: return "boot";
    case S::Key: return "key";
    case S::Enroll: return "enroll";
    case S::Pending: return "pending";
    case S::Backoff: return "backoff";
    case S::Enrolled: return "enrolled";
    case S::Renew: return "renew";
    case S::RenewBackoff: return "renew-backoff";
  }
  return "";
}

const char* enrollEventName(EnrollEvent event) {
  switch (event) {
    case E::NoKey: return "no-key";
    case E::NoCert: return "no-cert";
    case E::CertValid: return "cert-valid";
    case E::KeyStored: return "key-stored";
    case E::Answer200: return "answer-200";
    case E::Answer202: return "answer-202";
    case E::Refused: return "refused";
    case E::Timer: return "timer";
    case E::RenewDue: return "renew-due";
    case E::CertCommand: return "cert-command";
    case E::CertExpired: return "cert-expired";
  }
  return "";
}

const char* enrollActionName(EnrollAction action) {
  switch (action) {
    case A::None: return "none";
    case A::MakeKey: return "make-key";
    case A::SimpleEnroll: return "simpleenroll";
    case A::Connect: return "connect";
    case A::StoreAndConnect: return "store-and-connect";
    case A::WaitRetryAfter: return "wait-retry-after";
    case A::WaitFailure: return "wait-failure";
    case A::SimpleReenroll: return "simplereenroll";
  }
  return "";
}

uint32_t pendingDelayMs(const char* value, size_t length) {
  uint32_t seconds = kRetryAfterDefaultS;
  if (value) {
    size_t start = 0, end = length;
    while (start < end && text::isBlank(value[start])) start++;
    while (end > start && text::isBlank(value[end - 1])) end--;
    // delta-seconds = 1*DIGIT (RFC 9110 §10.2.3); up to 9 digits, as lib/device/enrollment.ts reads it.
    bool number = end > start && end - start <= 9;
    uint32_t parsed = 0;
    for (size_t i = start; number && i < end; i++) {
      number = text::isDigit(value[i]);
      parsed = parsed * 10 + static_cast<uint32_t>(value[i] - '0');
    }
    if (number) seconds = parsed;
  }
  if (seconds < kRetryAfterMinS) seconds = kRetryAfterMinS;
  if (seconds > kRetryAfterMaxS) seconds = kRetryAfterMaxS;
  return seconds * 1000;
}

uint32_t failureDelayMs(uint32_t failures) {
  const uint32_t n = failures < 1 ? 1 : failures;
  uint32_t seconds = kFailureFirstS;
  for (uint32_t i = 1; i < n && seconds < kFailureMaxS; i++) seconds *= 2;
  return (seconds < kFailureMaxS ? seconds : kFailureMaxS) * 1000;
}

int64_t renewAtS(int64_t notBefore, int64_t notAfter) {
  const int64_t twice = 2 * (notAfter - notBefore);
  // Rounded down, also for a (refused elsewhere) negative lifetime, as Math.floor does.
  const int64_t share = twice >= 0 ? twice / 3 : -((-twice + 2) / 3);
  return notBefore + share;
}

EnrollAction Enrollment::on(EnrollEvent event, uint32_t now, const char* retryAfter, size_t length) {
  const EnrollStep s = enrollStep(state_, event);
  state_ = s.next;
  switch (s.action) {
    case A::WaitRetryAfter:
      failures_ = 0;  // a 202 resets the failure delay
      wait_ = pendingDelayMs(retryAfter, length);
      since_ = now;
      break;
    case A::WaitFailure:
      if (failures_ < 1000) failures_++;
      wait_ = failureDelayMs(failures_);
      since_ = now;
      break;
    case A::StoreAndConnect:
      failures_ = 0;  // so does a 200
      wait_ = 0;
      break;
    default:
      break;
  }
  return s.action;
}

}  // namespace fleet
