/**
 * The `wifi` command's argument (docs/wire-contract.md, MQTT topics: wifi). An SSID is at most
 * 32 octets (IEEE 802.11-2020 9.4.2.2); a WPA2 passphrase is 8 to 63 printable ASCII characters,
 * or the PSK itself as 64 hex digits (IEEE 802.11i-2004 H.4.1); an empty password is an open
 * network. Error texts never repeat the password, nor any part of an argument that may hold it.
 */
export interface WifiCredentials {
  ssid: string;
  password: string;
}

const KEYS = ['ssid', 'password'];

/** `value`: the object, or its JSON text (what the MQTT payload looks like). */
export function checkWifiCredentials(value: unknown): WifiCredentials {
  if (typeof value === 'string') value = parsedOrUndefined(value);
  if (!value || typeof value !== 'object' || Array.isArray(value) || Buffer.isBuffer(value)) {
    throw new Error('wifi needs msg.argument = {ssid, password} (an object or its JSON text)');
  }
  const o = value as Record<string, unknown>;
  const extra = Object.keys(o).filter((k) => !KEYS.includes(k));
  if (extra.length) throw new Error(`wifi takes only ssid and password, not ${extra.slice(0, 3).map((k) => JSON.stringify(k.slice(0, 20))).join(', ')}`);
  const { ssid, password } = o;
  if (typeof ssid !== 'string') throw new Error('wifi: ssid must be a string');
  const bytes = Buffer.byteLength(ssid, 'utf8');
  if (bytes < 1 || bytes > 32) throw new Error(`wifi: ssid must be 1 to 32 bytes of UTF-8, got ${bytes}`);
  // \p{Cc}: C0, DEL and C1 controls; \p{Cs} in a u-regex: a lone surrogate, which is no UTF-8 at all.
  if (/[\p{Cc}\p{Cs}]/u.test(ssid)) throw new Error('wifi: ssid must not contain control characters');
  if (typeof password !== 'string') throw new Error('wifi: password must be a string ("" for an open network)');
  if (!passwordOk(password)) throw new Error(`wifi: password must be empty, 8 to 63 printable ASCII characters, or 64 hex digits (got ${password.length} characters${password.length === 64 ? ', not all hex' : ''})`);
  return { ssid, password };
}

function passwordOk(p: string): boolean {
  if (p === '') return true;
  if (p.length === 64) return /^[0-9a-fA-F]{64}$/.test(p);
  return p.length >= 8 && p.length <= 63 && /^[\x20-\x7e]+$/.test(p);
}

/** The MQTT payload: canonical JSON, ssid first (what the device's parser reads). */
export function wifiPayload(arg: unknown): string {
  const { ssid, password } = checkWifiCredentials(arg);
  return JSON.stringify({ ssid, password });
}

/**
 * Takes the password out of a msg's argument before anything else sees the msg: the argument as
 * an object or as JSON text of one. Returns the argument to use (with the password) and what the
 * msg keeps (without it); `undefined` password when there was none.
 */
export function takeWifiPassword(argument: unknown): { argument: unknown; kept: unknown; password: unknown } {
  const object = typeof argument === 'string' ? parsedOrUndefined(argument) : argument;
  if (!object || typeof object !== 'object' || Array.isArray(object) || Buffer.isBuffer(object) || !('password' in object)) {
    return { argument, kept: argument, password: undefined };
  }
  const { password, ...rest } = object as Record<string, unknown>;
  return { argument: object, kept: rest, password };
}

function parsedOrUndefined(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}
