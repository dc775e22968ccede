import type { KeyObject } from 'node:crypto';
import { verifyEsp32V1, verifySecureBootV2 } from '../firmware/signing';
import { readAppDescriptor } from '../firmware/app-descriptor';
import { compareVersions } from '../firmware/version';

/** What the running app knows when it checks a download. */
export interface RunningApp {
  projectName: string;
  version: string;
  /** The chip's anti-rollback counter (eFuse on a real chip). */
  secureVersion: number;
  /** The keys it verifies with: EC P-256 (signed apps, v1 scheme) or RSA-3072 (secure boot v2). */
  trusts: KeyObject[];
}

export type Esp32Check =
  | { ok: true; name: string; version: string; secureVersion: number; payloadLength: number }
  | { ok: false; reason: string };

/**
 * The checks an ESP32 makes before it boots a download, all on the complete image (a resumed
 * download never had its first bytes in this session), the descriptor read from verified bytes only:
 * - the signature block against a trusted key, the scheme by the key's type: an EC P-256 key
 *   checks the signed-app block (ESP-IDF esp_image_format.c with CONFIG_SECURE_SIGNED_APPS_ECDSA_SCHEME,
 *   run by esp_ota_end), an RSA-3072 key the secure boot v2 sector (CONFIG_SECURE_SIGNED_APPS_RSA_SCHEME);
 * - `esp_app_desc_t` (ESP-IDF esp_app_desc.h) read from the verified bytes: the project name
 *   must be its own, the version never lower than the running one (the same one is no update),
 *   `secure_version` never below the chip's counter (ESP-IDF's advanced_https_ota example
 *   compares it with esp_efuse_read_secure_version before it writes; the bootloader refuses it too).
 */
export function checkEsp32Image(image: Buffer, running: RunningApp): Esp32Check {
  if (image[0] !== 0xe9) return { ok: false, reason: `not an ESP32 app image (first byte 0x${(image[0] ?? 0).toString(16)})` };
  const reasons: string[] = [];
  let payloadLength = -1;
  for (const key of running.trusts) {
    const r = key.asymmetricKeyType === 'ec' ? verifyEsp32V1(image, key) : verifySecureBootV2(image, key);
    if (r.ok) {
      payloadLength = r.payloadLength;
      break;
    }
    reasons.push(r.reason);
  }
  if (payloadLength < 0) return { ok: false, reason: `signature check failed: ${reasons.join('; ') || 'no trusted key'}` };
  const desc = readAppDescriptor(image.subarray(0, payloadLength));
  if (!desc) return { ok: false, reason: 'the image has no esp_app_desc_t (magic 0xABCD5432 at offset 32)' };
  const name = `${desc.projectName}-${desc.version}`;
  if (desc.projectName !== running.projectName) return { ok: false, reason: `${name} is project ${JSON.stringify(desc.projectName)}, not ${JSON.stringify(running.projectName)}` };
  let order: number;
  try {
    order = compareVersions(desc.version, running.version);
  } catch (err) {
    return { ok: false, reason: `${name}: ${(err as Error).message}` };
  }
  if (order < 0) return { ok: false, reason: `${name} is lower than the running ${running.version}` };
  if (order === 0) return { ok: false, reason: `${name} is the running version` };
  if (desc.secureVersion < running.secureVersion) return { ok: false, reason: `${name} has secure_version ${desc.secureVersion}, below the chip's ${running.secureVersion} (anti-rollback)` };
  return { ok: true, name, version: desc.version, secureVersion: desc.secureVersion, payloadLength };
}
