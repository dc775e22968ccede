import { createHash } from 'node:crypto';

/**
 * What a real build has compiled in and a simulated device must learn from the image it
 * installs: its own name and the public key(s) it trusts for the next update (the secure ESP8266 framework:
 * the signing key travels inside the image).
 */
export interface SimImageManifest {
  image: string;
  build: string;
  /** PEM public keys (SPKI) the image trusts for the next update. */
  trusts: string[];
}

const MARKER = Buffer.from('ESP-FLEET-SIMULATOR-IMAGE\n', 'latin1');
/** Where the manifest starts: after an ESP8266 image header and its first segment header. */
const MANIFEST_OFFSET = 16;
const MAX_MANIFEST = 64 * 1024;

/**
 * A stand-in firmware image for simulated devices: the ESP8266 header (magic 0xE9) so the
 * update server accepts it, the manifest, then deterministic filler up to `size` bytes so
 * downloads cost what a real sketch costs.
 */
export function buildSimImage(manifest: SimImageManifest, size = 320 * 1024): Buffer {
  const json = Buffer.from(JSON.stringify(manifest), 'utf8');
  const length = Buffer.alloc(4);
  length.writeUInt32LE(json.length);
  // Magic, segment count, flash mode DIO, 4 MB / 40 MHz; entry point 0x40100000 (as esptool writes).
  const header = Buffer.from([0xe9, 0x01, 0x02, 0x40, 0x00, 0x00, 0x10, 0x40, 0, 0, 0, 0, 0, 0, 0, 0]);
  const head = Buffer.concat([header, MARKER, length, json]);
  const out = Buffer.alloc(Math.max(size, head.length));
  head.copy(out);
  // Filler derived from the name: distinct images differ everywhere, equal names give equal bytes.
  let block = createHash('sha256').update(manifest.image).digest();
  for (let at = head.length; at < out.length; at += block.length) {
    block.copy(out, at);
    block = createHash('sha256').update(block).digest();
  }
  return out;
}

/** The manifest of a (verified) image payload, or undefined when it is not a simulator image. */
export function readSimManifest(payload: Buffer): SimImageManifest | undefined {
  const markerEnd = MANIFEST_OFFSET + MARKER.length;
  if (payload.length < markerEnd + 4 || payload[0] !== 0xe9 || !payload.subarray(MANIFEST_OFFSET, markerEnd).equals(MARKER)) return undefined;
  const length = payload.readUInt32LE(markerEnd);
  if (length > MAX_MANIFEST || markerEnd + 4 + length > payload.length) return undefined;
  try {
    const m = JSON.parse(payload.subarray(markerEnd + 4, markerEnd + 4 + length).toString('utf8')) as Partial<SimImageManifest>;
    if (typeof m.image !== 'string' || typeof m.build !== 'string' || !Array.isArray(m.trusts) || !m.trusts.every((k) => typeof k === 'string')) return undefined;
    return { image: m.image, build: m.build, trusts: m.trusts };
  } catch {
    return undefined;
  }
}
