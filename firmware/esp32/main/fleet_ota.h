// The update routine: esp_https_ota against the update server with the CA pinned and the device
// certificate, resumable downloads guarded by If-Range, and the core's version rule before the
// new image may boot (docs/wire-contract.md: Update server, Signed images).
#pragma once

#include "app_state.h"

namespace ota {

enum class Kind : uint8_t { Installed, UpToDate, Refused, Failed };

struct Outcome {
  Kind kind;
  char image[fleet::kMaxProduct + fleet::kMaxVersion + 2];  // the offered image, when known
  char text[160];                                            // for the log and errormessage
};

// Asks for the next image of the running one (curimage) at the URL the settings choose,
// downloads it (resuming an interrupted download of the same image), checks it and sets it to
// boot. Installed: the caller restarts.
Outcome run();

// At boot: is the running image on probation (ESP_OTA_IMG_PENDING_VERIFY)?
bool pendingVerify();
// Confirms the running image (and, with anti-rollback, burns its secure_version into eFuse).
bool confirm();

}  // namespace ota
