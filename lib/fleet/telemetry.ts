/** The ten-field status JSON of the secure ESP8266 framework (docs/wire-contract.md, Status JSON fields). */
export interface StatusReport {
  uptimemillis: number;
  maxmillis: number;
  mqttmillis: number;
  espname: string;
  espimage: string;
  espbuild: string;
  espip: string;
  rssi: number;
  espfreeheap: number;
  errormessage: string;
}

/** Larger payloads are refused before parsing: a status report is a few hundred bytes. */
export const MAX_STATUS_BYTES = 16 * 1024;

const NUMBER_FIELDS = ['uptimemillis', 'maxmillis', 'mqttmillis', 'rssi', 'espfreeheap'] as const;
const STRING_FIELDS = ['espname', 'espimage', 'espbuild', 'espip', 'errormessage'] as const;
const MAX_STRING = 256;

export type ParseResult<T> = { ok: true; value: T } | { ok: false; reason: string };

export function parseStatus(payload: Uint8Array | string): ParseResult<StatusReport> {
  const size = typeof payload === 'string' ? Buffer.byteLength(payload) : payload.byteLength;
  if (size > MAX_STATUS_BYTES) return { ok: false, reason: `payload of ${size} bytes exceeds ${MAX_STATUS_BYTES}` };
  let data: unknown;
  try {
    data = JSON.parse(typeof payload === 'string' ? payload : Buffer.from(payload.buffer, payload.byteOffset, payload.byteLength).toString('utf8'));
  } catch {
    return { ok: false, reason: 'payload is not JSON' };
  }
  if (typeof data !== 'object' || data === null || Array.isArray(data)) return { ok: false, reason: 'payload is not a JSON object' };
  const obj = data as Record<string, unknown>;
  const problems: string[] = [];
  for (const f of NUMBER_FIELDS) {
    const v = obj[f];
    if (v === undefined) problems.push(`${f} missing`);
    else if (typeof v !== 'number' || !Number.isFinite(v)) problems.push(`${f} is not a number`);
  }
  for (const f of STRING_FIELDS) {
    const v = obj[f];
    if (v === undefined) problems.push(`${f} missing`);
    else if (typeof v !== 'string') problems.push(`${f} is not a string`);
    else if (v.length > MAX_STRING) problems.push(`${f} is longer than ${MAX_STRING} characters`);
  }
  if (problems.length === 0) {
    if ((obj.uptimemillis as number) < 0 || (obj.espfreeheap as number) < 0) problems.push('uptimemillis and espfreeheap cannot be negative');
    if ((obj.rssi as number) > 0 || (obj.rssi as number) < -150) problems.push('rssi must be dBm between -150 and 0');
  }
  if (problems.length) return { ok: false, reason: problems.join('; ') };
  // Only the contract's fields go on: nothing a device adds reaches flows unchecked.
  const value = {} as Record<string, number | string>;
  for (const f of NUMBER_FIELDS) value[f] = obj[f] as number;
  for (const f of STRING_FIELDS) value[f] = obj[f] as string;
  return { ok: true, value: value as unknown as StatusReport };
}

/** A will topic carries either a retained birth message or the broker's LWT. */
export function isBirthMessage(payload: Uint8Array | string): boolean {
  const text = (typeof payload === 'string' ? payload : Buffer.from(payload).toString('utf8')).trim();
  if (/^(online|connected|1|true)$/i.test(text)) return true;
  if (!text.startsWith('{')) return false;
  try {
    const obj = JSON.parse(text) as Record<string, unknown>;
    return obj.online === true || obj.status === 'online' || obj.state === 'online';
  } catch {
    return false;
  }
}
