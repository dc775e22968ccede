import { ImageAnswer, ImageOffer, ImageRequest, ImageSource, noImage } from './image-source';

/**
 * Your own rule on who may download what, on top of the next-image rule (version order, keys
 * the device trusts, pins, channels, groups): e.g. updates only at night, or only for devices
 * on a list. It runs only when the catalogue has an offer, and can only hold it back: a device
 * is never offered more than the rule allows. `true` lets the offer through; `false` or a reason
 * holds it back, answered as 304 (`held-back`), so the device, which is not at fault, checks
 * again later. A hook that throws holds back too.
 */
export type MayDownload = (request: ImageRequest, offer: ImageOffer) => boolean | string | Promise<boolean | string>;

/** The default: every offer of the next-image rule goes out. */
export const ALWAYS_DOWNLOAD: MayDownload = () => true;

export function withDownloadPolicy(source: ImageSource, mayDownload: MayDownload = ALWAYS_DOWNLOAD): ImageSource {
  return {
    async next(request: ImageRequest): Promise<ImageAnswer> {
      const answer = await source.next(request);
      if (answer.kind !== 'offer') return answer;
      let verdict: boolean | string;
      try {
        verdict = await mayDownload(request, answer.image);
      } catch (err) {
        return noImage('held-back', `the download policy failed: ${err instanceof Error ? err.message : String(err)}`.slice(0, 200));
      }
      if (verdict === true) return answer;
      return noImage('held-back', typeof verdict === 'string' && verdict ? verdict : `${answer.image.name} is held back by the download policy`);
    },
  };
}
