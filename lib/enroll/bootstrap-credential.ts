import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import { promises as fs } from 'node:fs';
import { readFileIfExists, writeFileAtomic, PRIVATE_FILE_MODE } from '../fs/atomic-file';

/** The user name of every fleet's bootstrap credential: what identifies a board is its CSR, not this. */
export const BOOTSTRAP_USER = 'fleet';

export interface BootstrapSecret {
  user: string;
  password: string;
  createdAt: string;
}

/**
 * The fleet's one shared enrollment secret (docs/enrollment.md, Who may enroll), sent by boards
 * as HTTP Basic over TLS (RFC 7030 §3.2.3). Kept in a 0600 file beside the CA key, in clear:
 * the node shows it so it can go into the devices' data folder. Rotating replaces it at once;
 * revoking leaves none, so no simpleenroll succeeds until the next rotation.
 */
export class BootstrapCredential {
  private constructor(
    private readonly file: string,
    private secret: BootstrapSecret | undefined,
    private readonly now: () => Date,
    /** Why the stored credential could not be read, until the next rotation. */
    public problem?: string,
  ) {}

  /** Opens the credential file; a CA without one gets a fresh credential (never after a revocation). */
  static async open(file: string, now: () => Date = () => new Date()): Promise<BootstrapCredential> {
    const text = await readFileIfExists(file);
    let secret: BootstrapSecret | undefined;
    let problem: string | undefined;
    try {
      secret = text === undefined ? undefined : parse(text);
    } catch (err) {
      // A damaged file works as a revoked one (nothing enrolls) and says so, instead of stopping the CA.
      problem = (err as Error).message;
    }
    const c = new BootstrapCredential(file, secret, now, problem);
    if (text === undefined) await c.rotate();
    return c;
  }

  /** The credential as the node shows it, or undefined after a revocation. */
  show(): BootstrapSecret | undefined {
    return this.secret && { ...this.secret };
  }

  /** True when `user:password` is the current credential (compared in constant time). */
  accepts(user: string, password: string): boolean {
    const s = this.secret;
    if (!s) return false;
    const digest = (text: string): Buffer => createHash('sha256').update(text, 'utf8').digest();
    // Both sides hashed first: equal lengths for timingSafeEqual whatever the input.
    return timingSafeEqual(digest(`${user}:${password}`), digest(`${s.user}:${s.password}`));
  }

  async rotate(): Promise<BootstrapSecret> {
    // 18 random bytes: 24 characters of base64url, 144 bits, easy to paste into bootstrap.txt.
    const next = { user: BOOTSTRAP_USER, password: randomBytes(18).toString('base64url'), createdAt: this.now().toISOString() };
    await writeFileAtomic(this.file, `${JSON.stringify({ ...next, revoked: false })}\n`, PRIVATE_FILE_MODE);
    this.secret = next;
    this.problem = undefined;
    return { ...next };
  }

  async revoke(): Promise<void> {
    await writeFileAtomic(this.file, `${JSON.stringify({ revoked: true, at: this.now().toISOString() })}\n`, PRIVATE_FILE_MODE);
    this.secret = undefined;
  }

  /** The file's mode, for the tests and the security page: it holds a secret. */
  async mode(): Promise<number> {
    return (await fs.stat(this.file)).mode & 0o777;
  }
}

function parse(text: string): BootstrapSecret | undefined {
  let o: Record<string, unknown>;
  try {
    o = JSON.parse(text) as Record<string, unknown>;
  } catch {
    throw new Error('the enrollment bootstrap credential file is not valid JSON: rotate it (bootstrap-rotate)');
  }
  if (o.revoked === true) return undefined;
  if (typeof o.user !== 'string' || typeof o.password !== 'string' || o.password.length < 16) {
    throw new Error('the enrollment bootstrap credential file is damaged: rotate it (bootstrap-rotate)');
  }
  return { user: o.user, password: o.password, createdAt: typeof o.createdAt === 'string' ? o.createdAt : '' };
}
