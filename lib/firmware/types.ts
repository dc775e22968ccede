/**
 * Shared vocabulary of the firmware side (docs/wire-contract.md, Signed images and Update server).
 * Signing formats live in signing.ts/keyring.ts, version order and the catalogue in
 * version.ts/catalogue.ts, what the update server asks in image-source.ts, the HTTPS server in http/.
 */

export type Platform = 'esp8266' | 'esp32';

/** The byte layouts devices verify. */
export type SignatureScheme =
  /** ESP8266 Arduino signing.py: image || RSA PKCS#1 v1.5 SHA-256 signature || uint32_le(len). */
  | 'esp8266-rsa'
  /** ESP32 signed apps (secure boot v1 scheme): image || uint32_le(0) || r || s. */
  | 'esp32-ecdsa-v1'
  /** ESP32 secure boot v2: image padded to 4096 || 4096-byte sector with the RSA-3072 PSS block. */
  | 'esp32-sbv2-rsa';

/** `app` is the sketch/application; `spiffs` a filesystem image (x-ESP8266-mode: spiffs). */
export type ImageKind = 'app' | 'spiffs';

/** A signing key as images refer to it: its id is derived from the public key alone. */
export interface SigningKeyInfo {
  /** First 16 hex digits of the SHA-256 of the SubjectPublicKeyInfo DER. */
  id: string;
  scheme: SignatureScheme;
  publicKeyPem: string;
  createdAt: string;
}

/** One image in the catalogue. */
export interface CatalogueEntry {
  /** `<PRODUCT>-<version>`, e.g. ESP8266_WEMOS_D1MINIPRO-00.00.08.f — what devices send as curimage. */
  name: string;
  product: string;
  version: string;
  platform: Platform;
  kind: ImageKind;
  /** File name inside the catalogue folder (never a path from outside). */
  file: string;
  /** Bytes of the signed image as served. */
  size: number;
  sha256: string;
  md5: string;
  /** The key this image is signed with: a device verifies it with a key it trusts. */
  signedWith: string;
  /** Keys this image trusts for the NEXT update (the public key compiled into it). */
  trusts: string[];
  /** Optional release channel (e.g. beta); none = stable. */
  channel?: string;
  addedAt: string;
}

/**
 * Who gets what. `target` is a device id (12 hex digits), `group:<name>` or `product:<name>`;
 * the most specific assignment that applies to a device is used as a whole (device beats
 * group beats product; assignments are not merged across levels).
 * Exactly one of `pin`, `rollback`, `channel` is set.
 */
export interface Assignment {
  target: string;
  /** Offer exactly this image when it is higher than the device's (never lower). */
  pin?: string;
  /** Offer exactly this image, also when it is lower: an operator's explicit rollback. */
  rollback?: string;
  /** Offer the newest image of this channel or stable (`stable` = stable only). */
  channel?: string;
  updatedAt: string;
}
