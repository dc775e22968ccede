import type { FirmwareService, PublishResult } from '../firmware/firmware-service';
import { buildSimImage } from './sim-image';
import { buildEsp32SimImage } from './esp32-sim-image';

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

/**
 * Publishes a simulator ESP32 app `<projectName>-<version>`: a valid app image (lib/sim/esp32-sim-image.ts)
 * whose descriptor names it, signed by the service in `scheme` (`esp32-ecdsa-v1` by default, or
 * `esp32-sbv2-rsa`), carrying the trusted keys the catalogue records for it. The update server
 * reads product and version from the descriptor, as it does for a real build.
 */
export async function publishEsp32SimImage(
  service: FirmwareService,
  image: { projectName: string; version: string; secureVersion?: number; scheme?: 'esp32-ecdsa-v1' | 'esp32-sbv2-rsa'; signWith?: string; trusts?: string[]; channel?: string; size?: number },
): Promise<PublishResult> {
  const scheme = image.scheme ?? 'esp32-ecdsa-v1';
  const signWith = image.signWith ?? (await service.keyring.current(scheme)).id;
  const trusts = image.trusts?.length ? image.trusts : [signWith];
  const data = buildEsp32SimImage({
    projectName: image.projectName,
    version: image.version,
    secureVersion: image.secureVersion,
    trusts: trusts.map((id) => service.keyring.exportPublic(id).pem),
    size: image.size,
  });
  return service.publish({ data, platform: 'esp32', scheme, signWith, trusts, channel: image.channel });
}
