import type { ImageKind } from './types';
import type { NoImageCode } from './next-image';

// What the update server asks the domain, and the domain's answers as values: which image a
// device may get next, or why none. No HTTP here: what a device is told for each answer is the
// transport's (lib/firmware/http/status-codes.ts).

/** One update check: the device, what it runs and what it asks for. */
export interface ImageRequest {
  currentImage: string;
  deviceId?: string;
  kind: ImageKind;
  /** Bytes the device can take, when it says (`x-ESP8266-free-space`). */
  freeSpace?: number;
}

/** The image a device may install: what it is, and where its signed bytes are. */
export interface ImageOffer {
  name: string;
  size: number;
  sha256: string;
  md5: string;
  /** Absolute path of the signed image file: the serving process loads it (the catalogue's own file). */
  path: string;
}

/**
 * Why a device gets nothing: the catalogue's reasons (lib/firmware/next-image.ts), or
 * `held-back` when a download policy (lib/firmware/download-policy.ts) keeps an offer back.
 */
export type NoImageReason = NoImageCode | 'held-back';

export type ImageAnswer =
  | { kind: 'offer'; image: ImageOffer }
  /** `detail` says why in words, for the log and the device's body (never a path of this machine). */
  | { kind: 'none'; reason: NoImageReason; detail: string };

/** The domain's side of an update check (FirmwareService.imageSource(), or a test's own). */
export interface ImageSource {
  next(request: ImageRequest): ImageAnswer | Promise<ImageAnswer>;
}

export const offer = (image: ImageOffer): ImageAnswer => ({ kind: 'offer', image });
export const noImage = (reason: NoImageReason, detail: string): ImageAnswer => ({ kind: 'none', reason, detail });
