/**
 * Input as an error message quotes it: JSON, cut short. A msg can carry a megabyte string or an
 * object JSON cannot write (a BigInt); the message that refuses it stays a line of the log.
 */
export function shownInput(value: unknown, max = 80): string {
  let text: string | undefined;
  try {
    text = JSON.stringify(typeof value === 'string' ? value.slice(0, max + 1) : value);
  } catch {
    text = undefined;
  }
  if (text === undefined) return typeof value;
  return text.length > max + 2 ? `${text.slice(0, max)}…` : text;
}
