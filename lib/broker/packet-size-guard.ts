/**
 * Follows the MQTT fixed headers of one connection's byte stream and says when a packet
 * declares more than `maxBytes`: aedes' parser (mqtt-packet) has no size limit and buffers a
 * declared packet whole, so a client could otherwise make the broker hold up to 256 MiB.
 */
export class PacketSizeGuard {
  private state: 'header' | 'length' | 'body' = 'header';
  private length = 0;
  private multiplier = 1;
  private lengthBytes = 0;
  private remaining = 0;

  constructor(readonly maxBytes: number) {}

  /** Feeds the next chunk; returns a reason once a packet is too big or malformed, else undefined. */
  feed(chunk: Buffer): string | undefined {
    let i = 0;
    while (i < chunk.length) {
      if (this.state === 'body') {
        const take = Math.min(this.remaining, chunk.length - i);
        this.remaining -= take;
        i += take;
        if (this.remaining === 0) this.state = 'header';
      } else if (this.state === 'header') {
        i++; // packet type and flags: aedes checks those
        this.state = 'length';
        this.length = 0;
        this.multiplier = 1;
        this.lengthBytes = 0;
      } else {
        const byte = chunk[i++];
        this.length += (byte & 0x7f) * this.multiplier;
        this.multiplier *= 128;
        if (++this.lengthBytes > 4) return 'malformed remaining length';
        if (byte & 0x80) continue;
        if (this.length > this.maxBytes) return `packet of ${this.length} bytes exceeds the ${this.maxBytes}-byte limit`;
        this.remaining = this.length;
        this.state = this.remaining === 0 ? 'header' : 'body';
      }
    }
    return undefined;
  }
}
