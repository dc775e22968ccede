import { isIP } from 'node:net';
import { isDeviceId } from '../device-id';
import { shownInput } from '../input-text';

const DNS_LABEL = '[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?';
const DNS_NAME = new RegExp(`^${DNS_LABEL}(?:\\.${DNS_LABEL})*$`, 'i');

/** A DNS host name (no wildcard, no trailing dot); ESP TLS stacks match these, not IP SANs. */
export function assertDnsName(name: unknown): string {
  if (typeof name !== 'string' || name.length > 253 || !DNS_NAME.test(name)) {
    throw new Error(`invalid DNS name ${shownInput(name)}: use a host name such as broker.local`);
  }
  return name.toLowerCase();
}

export function assertIpAddress(ip: unknown): string {
  if (typeof ip !== 'string' || isIP(ip) === 0) throw new Error(`invalid IP address ${shownInput(ip)}`);
  return ip;
}

/**
 * A backend identity becomes the MQTT user name (use_identity_as_username) and a file name,
 * so it may hold no topic wildcards, slashes or spaces; and it must not look like a device id.
 */
export const BACKEND_NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;

export function assertBackendName(name: unknown): string {
  if (typeof name !== 'string' || !BACKEND_NAME.test(name)) {
    throw new Error(`invalid backend name ${shownInput(name)}: use letters, digits, '.', '_' or '-' (e.g. node-red)`);
  }
  if (isDeviceId(name.toLowerCase())) throw new Error(`backend name ${name} looks like a device id; choose another`);
  return name;
}

export function assertValidityDays(days: unknown, fallback: number): number {
  if (days === undefined || days === null || days === '') return fallback;
  const n = Number(days);
  if (!Number.isInteger(n) || n < 1 || n > 36500) throw new Error(`invalid validity ${shownInput(days)}: whole days from 1 to 36500`);
  return n;
}

/** Serials are stored as even-length upper-case hex, the way openssl prints them. */
export function normalizeSerial(serial: unknown): string {
  if (typeof serial !== 'string' && typeof serial !== 'number') throw new Error('a serial number is required');
  const hex = String(serial).replace(/[:\s]/g, '').toUpperCase();
  if (!/^[0-9A-F]{1,40}$/.test(hex)) throw new Error(`invalid serial ${shownInput(serial)}: expected hex such as 1002`);
  const trimmed = hex.replace(/^0+(?=.)/, '');
  return trimmed.length % 2 ? `0${trimmed}` : trimmed;
}
