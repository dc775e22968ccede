// ESP-IDF v5.5 esp_https_ota.h (ota_resumption, ota_image_bytes_written, http_client_init_cb),
// esp_http_client.h, esp_ota_ops.h, esp_efuse.h, esp_app_desc.h.
#include "fleet_ota.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "esp_app_desc.h"
#include "esp_efuse.h"
#include "esp_http_client.h"
#include "esp_https_ota.h"
#include "esp_log.h"
#include "esp_ota_ops.h"
#include "settings_store.h"

namespace ota {

namespace {

const char* const TAG = "ota";
// Less than the watchdog's 6 s between two download blocks (docs/wire-contract.md, Device timing),
// so a stalled read fails and is retried before the chip resets.
constexpr int kHttpTimeoutMs = 5000;
constexpr uint32_t kSaveEveryBytes = 64 * 1024;  // progress to NVS: about 25 writes for a 1.5 MB image

#if CONFIG_BOOTLOADER_APP_ANTI_ROLLBACK
constexpr bool kAntiRollback = true;
#else
constexpr bool kAntiRollback = false;
#endif

// What the HTTP event handler saw of the last answer (esp_http_client runs it in this task).
char gEtag[fleet::kEtagMax + 1];
int gStatus;
const char* gIfRange;  // the stored ETag when resuming

esp_err_t onHttpEvent(esp_http_client_event_t* e) {
  if (e->event_id != HTTP_EVENT_ON_HEADER) return ESP_OK;
  gStatus = esp_http_client_get_status_code(e->client);
  if (strcasecmp(e->header_key, "ETag") == 0) {
    const size_t n = strlen(e->header_value);
    if (n < sizeof gEtag && fleet::isStrongEtag(e->header_value, n)) memcpy(gEtag, e->header_value, n + 1);
    else gEtag[0] = '\0';  // weak or too long: this download cannot be resumed safely
  }
  return ESP_OK;
}

// esp_https_ota adds `Range: bytes=<offset>-` itself; If-Range makes a server whose image changed
// answer 200 with the whole new one (RFC 9110 §13.1.5), which esp_https_ota then downloads from
// the start, instead of 206 with a tail that would splice two images.
esp_err_t onClientInit(esp_http_client_handle_t client) {
  if (gIfRange && gIfRange[0]) return esp_http_client_set_header(client, "If-Range", gIfRange);
  return ESP_OK;
}

Outcome outcome(Kind kind, const char* image, const char* text) {
  Outcome o = {};
  o.kind = kind;
  snprintf(o.image, sizeof o.image, "%s", image ? image : "");
  snprintf(o.text, sizeof o.text, "%s", text);
  return o;
}

Outcome httpFailure(esp_err_t err) {
  char text[96];
  if (gStatus >= 400) snprintf(text, sizeof text, "HTTP %d from the update server", gStatus);
  else snprintf(text, sizeof text, "cannot reach the update server (%s)", esp_err_to_name(err));
  return outcome(Kind::Failed, nullptr, text);
}

enum class Step : uint8_t { Done, StartOver };

Step download(const char* url, const fleet::OtaProgress& stored, uint32_t offset, Outcome& out) {
  const Provisioning& p = gApp.provisioning;
  esp_http_client_config_t http = {};
  http.url = url;
  http.cert_pem = p.ca;  // pinned: the fleet CA only (no certificate bundle)
  http.client_cert_pem = p.cert;
  http.client_key_pem = p.key;
  http.timeout_ms = kHttpTimeoutMs;
  http.keep_alive_enable = true;
  http.disable_auto_redirect = true;  // the update server never redirects (docs/wire-contract.md)
  http.buffer_size_tx = 1024;         // the request line carries the whole URL with curimage
  http.event_handler = onHttpEvent;
  esp_https_ota_config_t config = {};
  config.http_config = &http;
  config.http_client_init_cb = onClientInit;
  config.ota_resumption = true;  // ESP-IDF >= 5.5: sends Range, also bytes=0- on a fresh start
  config.ota_image_bytes_written = offset;
  gIfRange = offset ? stored.etag : nullptr;
  gEtag[0] = '\0';
  gStatus = 0;

  gApp.watchdog.begin(fleet::WatchStep::Tls, nowMs());
  esp_https_ota_handle_t h = nullptr;
  esp_err_t err = esp_https_ota_begin(&config, &h);
  if (err == ESP_ERR_HTTP_NOT_MODIFIED) {
    char text[fleet::kErrorSize];
    snprintf(text, sizeof text, "no newer image for %s (304)", gApp.image);
    out = outcome(Kind::UpToDate, nullptr, text);
    return Step::Done;
  }
  if (err != ESP_OK) {
    // 416 or a server that ignores Range: esp_https_ota already fell back to the whole image once.
    out = httpFailure(err);
    return Step::Done;
  }
  if (offset && static_cast<uint32_t>(esp_https_ota_get_image_len_read(h)) >= offset &&
      strcmp(gEtag, stored.etag) != 0) {
    // A 206 for another entity: never append it to what is in the partition.
    esp_https_ota_abort(h);
    ESP_LOGW(TAG, "resumed answer has ETag %s, not %s: starting over", gEtag, stored.etag);
    return Step::StartOver;
  }

  esp_app_desc_t desc = {};
  char image[sizeof out.image] = "";
  if (esp_https_ota_get_img_desc(h, &desc) != ESP_OK) {
    esp_https_ota_abort(h);
    store::clearProgress();
    out = outcome(Kind::Refused, nullptr, "the offered image has no app descriptor");
    return Step::Done;
  }
  if (!fleet::esp32ImageName(desc.project_name, desc.version, image, sizeof image)) {
    snprintf(image, sizeof image, "%.32s", desc.project_name);
  }
  const esp_app_desc_t* running = esp_app_get_description();
  const fleet::AppIdentity now{running->project_name, running->version, running->secure_version};
  const fleet::AppIdentity next{desc.project_name, desc.version, desc.secure_version};
  const char* reason = nullptr;
  if (!fleet::checkEsp32Candidate(now, next, esp_efuse_read_secure_version(), kAntiRollback, &reason)) {
    esp_https_ota_abort(h);
    store::clearProgress();
    char text[sizeof out.text];
    snprintf(text, sizeof text, "refused %s: %s", image, reason);
    out = outcome(Kind::Refused, image, text);
    return Step::Done;
  }

  fleet::OtaProgress progress = {};
  snprintf(progress.url, sizeof progress.url, "%s", url);
  snprintf(progress.etag, sizeof progress.etag, "%s", gEtag);  // "" when not strong: not resumable
  progress.bytes = static_cast<uint32_t>(esp_https_ota_get_image_len_read(h));
  gApp.watchdog.begin(fleet::WatchStep::Download, nowMs());
  while ((err = esp_https_ota_perform(h)) == ESP_ERR_HTTPS_OTA_IN_PROGRESS) {
    gApp.watchdog.progress(nowMs());
    const uint32_t read = static_cast<uint32_t>(esp_https_ota_get_image_len_read(h));
    if (progress.etag[0] && read - progress.bytes >= kSaveEveryBytes) {
      progress.bytes = read;
      store::saveProgress(progress);
    }
  }
  if (err != ESP_OK || !esp_https_ota_is_complete_data_received(h)) {
    const uint32_t read = static_cast<uint32_t>(esp_https_ota_get_image_len_read(h));
    if (progress.etag[0]) {
      progress.bytes = read;
      store::saveProgress(progress);
    }
    esp_https_ota_abort(h);
    char text[sizeof out.text];
    snprintf(text, sizeof text, "download of %s stopped after %u bytes (%s)%s", image, static_cast<unsigned>(read),
             esp_err_to_name(err), progress.etag[0] ? "; the next check resumes it" : "");
    out = outcome(Kind::Failed, image, text);
    return Step::Done;
  }
  // esp_ota_end inside: the whole image and its signature block are checked against the trusted
  // key (CONFIG_SECURE_SIGNED_ON_UPDATE_NO_SECURE_BOOT or secure boot v2); only then is the new
  // partition set to boot.
  gApp.watchdog.begin(fleet::WatchStep::Verify, nowMs());
  err = esp_https_ota_finish(h);
  store::clearProgress();
  if (err == ESP_ERR_OTA_VALIDATE_FAILED) {
    char text[sizeof out.text];
    snprintf(text, sizeof text, "refused %s: its signature or image check failed", image);
    out = outcome(Kind::Refused, image, text);
  } else if (err != ESP_OK) {
    char text[sizeof out.text];
    snprintf(text, sizeof text, "cannot install %s (%s)", image, esp_err_to_name(err));
    out = outcome(Kind::Failed, image, text);
  } else {
    char text[sizeof out.text];
    snprintf(text, sizeof text, "installed %s, restarting", image);
    out = outcome(Kind::Installed, image, text);
  }
  return Step::Done;
}

}  // namespace

Outcome run() {
  char url[sizeof(fleet::OtaProgress::url)];
  if (!fleet::esp32UpdateUrl(gApp.settings, gApp.builtInUpdateUrl, gApp.image, url, sizeof url)) {
    return outcome(Kind::Failed, nullptr, "no usable update URL");
  }
  fleet::OtaProgress stored;
  store::loadProgress(stored);
  uint32_t offset = fleet::resumeOffset(stored, url);
  if (offset == 0) store::clearProgress();
  Outcome out = {};
  for (int round = 0; round < 2; round++) {
    if (download(url, stored, offset, out) == Step::Done) return out;
    store::clearProgress();
    offset = 0;
  }
  return outcome(Kind::Failed, nullptr, "the update server answered a resumed download with another image twice");
}

bool pendingVerify() {
  esp_ota_img_states_t state;
  return esp_ota_get_state_partition(esp_ota_get_running_partition(), &state) == ESP_OK && state == ESP_OTA_IMG_PENDING_VERIFY;
}

bool confirm() { return esp_ota_mark_app_valid_cancel_rollback() == ESP_OK; }

}  // namespace ota
