/**
 * A device id is the station MAC as 12 lowercase hex digits (docs/wire-contract.md, Identities).
 * Accepted spellings: `84f3eb012345`, `84:F3:EB:01:23:45`, `84-f3-eb-01-23-45`.
 */
const COMPACT = /^[0-9a-f]{12}$/;
const SEPARATED = /^[0-9a-f]{2}([:-])[0-9a-f]{2}(?:\1[0-9a-f]{2}){4}$/;
/** The spellings a user may type (any case): what the editor forms check a MAC field against. */
export const DEVICE_ID_SPELLINGS: readonly RegExp[] = [new RegExp(COMPACT.source, 'i'), new RegExp(SEPARATED.source, 'i')];

export class InvalidDeviceIdError extends Error {
  constructor(input: unknown) {
    const shown = typeof input === 'string' ? JSON.stringify(input.slice(0, 40)) : typeof input;
    super(`invalid device id ${shown}: expected a MAC address such as 84f3eb012345 or 84:F3:EB:01:23:45`);
    this.name = 'InvalidDeviceIdError';
  }
}

export function normalizeDeviceId(input: unknown): string {
  if (typeof input !== 'string') throw new InvalidDeviceIdError(input);
  const lower = input.trim().toLowerCase();
  if (COMPACT.test(lower)) return lower;
  if (SEPARATED.test(lower)) return lower.replace(/[:-]/g, '');
  throw new InvalidDeviceIdError(input);
}

export function isDeviceId(input: unknown): input is string {
  return typeof input === 'string' && COMPACT.test(input);
}
