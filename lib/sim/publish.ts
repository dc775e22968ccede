import type { FirmwareService, PublishResult } from '../firmware/firmware-service';
import { buildSimImage } from './sim-image';

/**
 * Publishes a simulator build of `<product>-<version>`: signed like a real ESP8266 sketch,
 * carrying the same trusted keys in its manifest as the catalogue records for it.
 */
export async function publishSimImage(
  service: FirmwareService,
  image: { product: string; version: string; signWith?: string; trusts?: string[]; channel?: string; size?: number; build?: string },
): Promise<PublishResult> {
  const signWith = image.signWith ?? (await service.keyring.current('esp8266-rsa')).id;
  const trusts = image.trusts?.length ? image.trusts : [signWith];
  const manifest = {
    image: `${image.product}-${image.version}`,
    build: image.build ?? new Date().toUTCString(),
    trusts: trusts.map((id) => service.keyring.exportPublic(id).pem),
  };
  return service.publish({ data: buildSimImage(manifest, image.size), platform: 'esp8266', product: image.product, version: image.version, signWith, trusts, channel: image.channel });
}
