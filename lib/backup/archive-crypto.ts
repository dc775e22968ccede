import { createCipheriv, createDecipheriv, randomBytes, scrypt, ScryptOptions } from 'node:crypto';

/**
 * The container of a backup file: a clear header, then the payload encrypted and authenticated
 * with AES-256-GCM under a key derived from a passphrase with scrypt (RFC 7914).
 *
 *   magic      8 bytes  "ESPFLBAK"
 *   version    u16 BE   FORMAT_VERSION
 *   kdf        u8       1 = scrypt
 *   N, r, p    3 × u32 BE  scrypt cost, block size, parallelism
 *   salt       u8 length (16), then the salt
 *   iv         u8 length (12), then the GCM nonce
 *   ciphertext ...
 *   tag        16 bytes (GCM authentication tag)
 *
 * The whole header is GCM additional data (NIST SP 800-38D, 7.1): a header changed in any bit
 * fails the tag check like a changed ciphertext does. Only the KDF parameters are used before
 * the tag can be checked (the key comes from them), so they are bounded first.
 */

export const MAGIC = Buffer.from('ESPFLBAK', 'ascii');
export const FORMAT_VERSION = 1;
const KDF_SCRYPT = 1;
const SALT_BYTES = 16;
/** 96-bit nonces are GCM's native size (SP 800-38D, 8.2); a fresh random one per file. */
const IV_BYTES = 12;
const TAG_BYTES = 16;
const HEADER_BYTES = MAGIC.length + 2 + 1 + 12 + 1 + SALT_BYTES + 1 + IV_BYTES;

export interface KdfParams {
  N: number;
  r: number;
  p: number;
}

/**
 * N = 2^17, r = 8, p = 1: 128 MiB and a fraction of a second per derivation, the OWASP
 * Password Storage Cheat Sheet's scrypt setting. The backup holds the CA key: guessing must cost.
 */
export const DEFAULT_KDF: KdfParams = { N: 2 ** 17, r: 8, p: 1 };

/** What a header may ask for: enough range for stronger settings, never an absurd allocation. */
const KDF_LIMITS = { minLog2N: 14, maxLog2N: 20, maxR: 32, maxP: 16, maxMemory: 1024 * 1024 * 1024 };

export class BackupError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'BackupError';
  }
}

/** One message for every failed check of the tag: GCM cannot tell a wrong key from changed bytes. */
export const WRONG_PASSPHRASE = 'wrong passphrase or damaged archive (the authentication check failed; nothing was written)';

export function checkKdf(params: KdfParams): KdfParams {
  const { N, r, p } = params;
  const log2N = Math.log2(N);
  const ok =
    Number.isInteger(log2N) &&
    log2N >= KDF_LIMITS.minLog2N &&
    log2N <= KDF_LIMITS.maxLog2N &&
    Number.isInteger(r) &&
    r >= 1 &&
    r <= KDF_LIMITS.maxR &&
    Number.isInteger(p) &&
    p >= 1 &&
    p <= KDF_LIMITS.maxP &&
    scryptMemory(params) <= KDF_LIMITS.maxMemory;
  if (!ok) {
    throw new BackupError(
      `unsupported scrypt parameters N=${N} r=${r} p=${p}: N a power of two from 2^${KDF_LIMITS.minLog2N} to 2^${KDF_LIMITS.maxLog2N}, r 1 to ${KDF_LIMITS.maxR}, p 1 to ${KDF_LIMITS.maxP}, at most 1 GiB (damaged archive header?)`,
    );
  }
  return { N, r, p };
}

/** RFC 7914, 2: scrypt's working memory is 128 · N · r bytes (the p lanes run one after another). */
function scryptMemory({ N, r }: KdfParams): number {
  return 128 * N * r;
}

export const MIN_PASSPHRASE_CHARS = 12;

export function checkPassphrase(passphrase: unknown): string {
  if (typeof passphrase !== 'string' || [...passphrase].length < MIN_PASSPHRASE_CHARS) {
    throw new BackupError(`a backup needs a passphrase of at least ${MIN_PASSPHRASE_CHARS} characters (msg.payload.passphrase)`);
  }
  // The same passphrase typed on another system may arrive in another Unicode form.
  return passphrase.normalize('NFC');
}

function deriveKey(passphrase: string, salt: Buffer, params: KdfParams): Promise<Buffer> {
  const options: ScryptOptions = { N: params.N, r: params.r, p: params.p, maxmem: scryptMemory(params) + 1024 * 1024 };
  return new Promise((resolve, reject) => scrypt(passphrase, salt, 32, options, (err, key) => (err ? reject(err) : resolve(key))));
}

function encodeHeader(params: KdfParams, salt: Buffer, iv: Buffer): Buffer {
  const header = Buffer.alloc(HEADER_BYTES);
  let at = MAGIC.copy(header, 0);
  at = header.writeUInt16BE(FORMAT_VERSION, at);
  at = header.writeUInt8(KDF_SCRYPT, at);
  at = header.writeUInt32BE(params.N, at);
  at = header.writeUInt32BE(params.r, at);
  at = header.writeUInt32BE(params.p, at);
  at = header.writeUInt8(salt.length, at);
  at += salt.copy(header, at);
  at = header.writeUInt8(iv.length, at);
  iv.copy(header, at);
  return header;
}

interface Header {
  params: KdfParams;
  salt: Buffer;
  iv: Buffer;
  bytes: Buffer;
}

function decodeHeader(file: Buffer): Header {
  if (file.length < MAGIC.length || !file.subarray(0, MAGIC.length).equals(MAGIC)) {
    throw new BackupError('not an esp-fleet backup (the file does not start with ESPFLBAK)');
  }
  if (file.length < HEADER_BYTES + TAG_BYTES) throw new BackupError('the backup is truncated (shorter than its header)');
  let at = MAGIC.length;
  const version = file.readUInt16BE(at);
  at += 2;
  if (version !== FORMAT_VERSION) throw new BackupError(`unsupported backup format version ${version} (this version reads ${FORMAT_VERSION})`);
  const kdf = file.readUInt8(at);
  at += 1;
  if (kdf !== KDF_SCRYPT) throw new BackupError(`unsupported key derivation ${kdf} (damaged archive header?)`);
  const params = checkKdf({ N: file.readUInt32BE(at), r: file.readUInt32BE(at + 4), p: file.readUInt32BE(at + 8) });
  at += 12;
  if (file.readUInt8(at) !== SALT_BYTES) throw new BackupError('damaged archive header (salt length)');
  const salt = file.subarray(at + 1, at + 1 + SALT_BYTES);
  at += 1 + SALT_BYTES;
  if (file.readUInt8(at) !== IV_BYTES) throw new BackupError('damaged archive header (nonce length)');
  const iv = file.subarray(at + 1, at + 1 + IV_BYTES);
  return { params, salt, iv, bytes: file.subarray(0, HEADER_BYTES) };
}

/** Encrypts and authenticates `payload`; the result is the whole backup file. */
export async function sealArchive(payload: Buffer, passphraseInput: unknown, kdf: KdfParams = DEFAULT_KDF): Promise<Buffer> {
  const passphrase = checkPassphrase(passphraseInput);
  const params = checkKdf(kdf);
  const salt = randomBytes(SALT_BYTES);
  const iv = randomBytes(IV_BYTES);
  const header = encodeHeader(params, salt, iv);
  const key = await deriveKey(passphrase, salt, params);
  const cipher = createCipheriv('aes-256-gcm', key, iv, { authTagLength: TAG_BYTES });
  cipher.setAAD(header);
  const body = Buffer.concat([cipher.update(payload), cipher.final()]);
  return Buffer.concat([header, body, cipher.getAuthTag()]);
}

/** Checks header and tag and returns the payload; throws BackupError, and only that, on any failure. */
export async function openArchive(file: Buffer, passphraseInput: unknown): Promise<Buffer> {
  const passphrase = checkPassphrase(passphraseInput);
  const header = decodeHeader(file);
  const key = await deriveKey(passphrase, header.salt, header.params);
  const tag = file.subarray(file.length - TAG_BYTES);
  const decipher = createDecipheriv('aes-256-gcm', key, header.iv, { authTagLength: TAG_BYTES });
  decipher.setAAD(header.bytes);
  decipher.setAuthTag(tag);
  try {
    return Buffer.concat([decipher.update(file.subarray(header.bytes.length, file.length - TAG_BYTES)), decipher.final()]);
  } catch {
    throw new BackupError(WRONG_PASSPHRASE);
  }
}
