/**
 * The device's random numbers for backoff jitter, the same on the firmware and in the simulator
 * (docs/wire-contract.md, Device timing): xorshift32 (G. Marsaglia, "Xorshift RNGs", J. Stat.
 * Softw. 8(14), 2003, shifts 13/17/5), seeded with FNV-1a 32 of the device id. The firmware
 * mixes a hardware random word into the seed; with the id alone, the vectors in
 * test/vectors/device-timing.json hold on both sides.
 */
export class Jitter {
  private state: number;

  constructor(seed: number) {
    this.state = seed >>> 0 || 1; // xorshift has one fixed point, 0
  }

  static forDevice(id: string, mix = 0): Jitter {
    return new Jitter((fnv1a32(id) ^ mix) >>> 0);
  }

  next(): number {
    let x = this.state;
    x = (x ^ (x << 13)) >>> 0;
    x = (x ^ (x >>> 17)) >>> 0;
    x = (x ^ (x << 5)) >>> 0;
    this.state = x;
    return x;
  }

  /** A whole number from 0 to `max`, both included. */
  upTo(max: number): number {
    return max <= 0 ? 0 : this.next() % (Math.floor(max) + 1);
  }
}

/** FNV-1a, 32 bits, over the ASCII of `text` (offset basis 2166136261, prime 16777619). */
export function fnv1a32(text: string): number {
  let h = 2166136261;
  for (let i = 0; i < text.length; i++) {
    h ^= text.charCodeAt(i) & 0xff;
    h = Math.imul(h, 16777619) >>> 0;
  }
  return h >>> 0;
}
