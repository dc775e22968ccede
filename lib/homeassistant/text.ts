import { shownInput } from '../input-text';
import { HomeAssistantError } from './topics';

/** A short line of text for a HA payload: a string of 1..max characters with no control characters. */
export function checkText(what: string, value: unknown, max: number): string {
  // eslint-disable-next-line no-control-regex
  if (typeof value !== 'string' || value.length === 0 || value.length > max || /[\u0000-\u001f\u007f]/.test(value)) {
    throw new HomeAssistantError(`invalid ${what} ${shownInput(value)}: expected 1 to ${max} characters without control characters`);
  }
  return value;
}
