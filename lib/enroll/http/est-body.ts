
/** The largest request body: a P-256 CSR is ~300 bytes of DER, an RSA-4096 one ~1.2 KB, base64 adds a third. */
export const MAX_EST_BODY = 8 * 1024;

/**
 * The DER of a CSR as an EST client sends it: base64 DER (RFC 7030 §4.2.1, line breaks allowed),
 * or PEM, or plain DER from a client that skips the base64. Undefined when it is none of them.
 */
export function csrDerOf(body: unknown): Buffer | undefined {
  // express.raw leaves {} when there was no body at all.
  if (!Buffer.isBuffer(body) || body.length === 0) return undefined;
  // DER starts with 0x30 (a SEQUENCE), the base64 of a DER SEQUENCE with 'M': the two never mix.
  if (body[0] === 0x30) return body;
  const text = body.toString('latin1');
  const pem = /-----BEGIN (?:NEW )?CERTIFICATE REQUEST-----([\s\S]*?)-----END (?:NEW )?CERTIFICATE REQUEST-----/.exec(text);
  const b64 = (pem ? pem[1] : text).replace(/[\r\n\t ]+/g, '');
  if (!/^[A-Za-z0-9+/]+={0,2}$/.test(b64) || b64.length % 4 !== 0) return undefined;
  return Buffer.from(b64, 'base64');
}

/** Base64 in lines of 64 characters (RFC 2045 §6.8 allows up to 76), as EST answers are sent. */
export function base64Lines(der: Buffer): string {
  return `${der.toString('base64').replace(/(.{64})/g, '$1\r\n').replace(/\r\n$/, '')}\r\n`;
}

/** `user:password` of an HTTP Basic header (RFC 7617), or undefined. */
export function basicCredential(header: string | undefined): { user: string; password: string } | undefined {
  const m = header && /^Basic\s+([A-Za-z0-9+/=]{1,512})\s*$/i.exec(header);
  if (!m) return undefined;
  const text = Buffer.from(m[1], 'base64').toString('utf8');
  const colon = text.indexOf(':');
  return colon < 0 ? undefined : { user: text.slice(0, colon), password: text.slice(colon + 1) };
}
