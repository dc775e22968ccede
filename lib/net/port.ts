/** A TCP port as the editor and the runtime both read it: a whole number from 1 to 65535. */
export const PORT_RANGE = { min: 1, max: 65535 } as const;

/** Blank means the caller's default; anything else must be a whole port number (RFC 6335 §6). */
export function parsePort(value: unknown, label = 'port'): number | undefined {
  if (value === undefined || value === null || (typeof value === 'string' && value.trim() === '')) return undefined;
  const n = typeof value === 'number' ? value : Number(String(value).trim());
  if (!Number.isInteger(n) || n < PORT_RANGE.min || n > PORT_RANGE.max) {
    throw new Error(`${label} must be a whole number from ${PORT_RANGE.min} to ${PORT_RANGE.max}, got ${JSON.stringify(String(value).slice(0, 20))}`);
  }
  return n;
}
