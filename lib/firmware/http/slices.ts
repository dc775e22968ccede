/**
 * What one write hands TLS: 16 to 64 KiB. Each write costs a trip through Node's stream and
 * TLS layers, so bigger slices cost less CPU per MB; but a download whose device reads slowly
 * holds its last slice (encrypted) until the device has taken it. So slices shrink as the
 * downloads under way in this process grow: together they hold about SLICE_BUDGET, and never
 * less than one 16 KiB TLS record each (bench/firmware-server, bench/README.md).
 */
const SLICE_MIN = 16 * 1024;
const SLICE_MAX = 64 * 1024;
const SLICE_BUDGET = 4 * 1024 * 1024;
export function sliceBytes(downloadsUnderWay: number): number {
  const share = Math.floor(SLICE_BUDGET / Math.max(1, downloadsUnderWay) / SLICE_MIN) * SLICE_MIN;
  return Math.max(SLICE_MIN, Math.min(SLICE_MAX, share));
}
