import { isUtf8 } from 'node:buffer';
import { PAYLOAD_INSTALL } from './update-entity';
import { idOfInstallTopic } from './topics';

/**
 * What arrives on an install topic (`esp-fleet/ha/<id>/install`). Only HA's `payload_install`,
 * byte for byte, starts anything; the rest is refused with a short reason. A retained install is
 * refused too: it would be delivered again at every (re)subscribe and start the update again.
 * Accepting is not installing: the caller hands the id to the esp-rollout node, which applies
 * every rule of a rollout (docs/rollout.md).
 */
export const MAX_INSTALL_BYTES = 64;

export type InstallCommand = { ok: true; id: string } | { ok: false; reason: string };

export function parseInstallCommand(topic: string, payload: Uint8Array | string, options: { retain?: boolean } = {}): InstallCommand {
  const id = typeof topic === 'string' ? idOfInstallTopic(topic) : undefined;
  if (!id) return { ok: false, reason: 'not an install topic (esp-fleet/ha/<device id>/install)' };
  if (options.retain) return { ok: false, reason: 'a retained install is refused: publish it without retain' };
  const bytes = typeof payload === 'string' ? Buffer.from(payload, 'utf8') : payload;
  if (!(bytes instanceof Uint8Array)) return { ok: false, reason: 'payload is neither text nor bytes' };
  if (bytes.length > MAX_INSTALL_BYTES) return { ok: false, reason: `payload too large (${bytes.length} bytes, at most ${MAX_INSTALL_BYTES})` };
  const text = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.length);
  // Valid UTF-8 without control characters, or it is binary.
  // eslint-disable-next-line no-control-regex
  if (!isUtf8(text) || /[\u0000-\u001f\u007f]/.test(text.toString('utf8'))) return { ok: false, reason: 'payload is binary, not text' };
  if (text.toString('utf8') !== PAYLOAD_INSTALL) return { ok: false, reason: `payload is not "${PAYLOAD_INSTALL}"` };
  return { ok: true, id };
}

