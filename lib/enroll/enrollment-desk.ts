import { createHash, X509Certificate } from 'node:crypto';
import { promises as fs } from 'node:fs';
import * as path from 'node:path';
import type { CaStore } from '../pki/ca-store';
import { readVerifiedCsr, VerifiedCsr } from '../pki/csr';
import { toPem } from '../pki/x509';
import { CaStoreError } from '../pki/ca-error';
import { leafKeyTypeOf, KeyType } from '../pki/keys';
import { isDeviceId } from '../device-id';
import { AppendLog } from '../fs/append-log';
import { KeyedLock } from '../concurrency/keyed-lock';
import { TokenBuckets } from '../net/token-buckets';
import { shownInput } from '../input-text';
import { BootstrapCredential, BootstrapSecret } from './bootstrap-credential';
import { approvedAtOnce, EnrollPolicy } from './enroll-policy';
import { EnrollKeyType, EnrollmentRequest, RequestBook } from './request-book';

/** Why a request was refused; the EST listener turns each into a status (lib/enroll/http/est-status.ts). */
export type EnrollRefusal =
  | 'no-credential'
  | 'bad-credential'
  | 'no-bootstrap'
  | 'bad-csr'
  | 'not-a-device'
  | 'key-refused'
  | 'held'
  | 'rejected'
  | 'pending-other-key'
  | 'too-many-pending'
  | 'rate-limited'
  | 'no-certificate'
  | 'certificate-refused'
  | 'not-yours'
  | 'policy';

/** What the desk answers, as a value: the transport decides how it travels. */
export type EnrollAnswer =
  | { kind: 'issued'; certificateDer: Buffer; serial: string }
  | { kind: 'pending'; retryAfterS: number }
  | { kind: 'refused'; reason: EnrollRefusal; text: string; retryAfterS?: number };

export interface AuditEntry {
  at: string;
  event: 'request' | 'approved' | 'rejected' | 'issued' | 'refused' | 'bootstrap-rotated' | 'bootstrap-revoked';
  id?: string;
  address?: string;
  keyType?: EnrollKeyType;
  /** For a request: what happened to it now. */
  decision?: 'pending' | 'approved' | 'refused';
  reason?: string;
  serial?: string;
  via?: 'simpleenroll' | 'simplereenroll' | 'node';
  /** A request repeated while it waits (the device polls): audited, not news. */
  repeat?: boolean;
}

/** What a request hook sees; it may only refuse (docs/architecture.md, Policy hooks). */
export interface EnrollCandidate {
  id: string;
  address: string;
  keyType: EnrollKeyType;
}

export interface EnrollmentDeskOptions {
  store: CaStore;
  policy: EnrollPolicy;
  /** Asked after the built-in rules allowed a new request; false, a reason text, or a throw refuses. */
  mayEnroll?: (candidate: EnrollCandidate) => boolean | string | Promise<boolean | string>;
  /** Seconds a pending device is told to wait (Retry-After); default 60. */
  retryAfterS?: number;
  /** Requests per source address: `burst` at once, one more every `refillMs` (default 30, 1 s). */
  rate?: { burst: number; refillMs: number };
  /** Wrong credentials per source address (default 5, one more a minute). */
  failureRate?: { burst: number; refillMs: number };
  /** Requests waiting for approval at once (default 1,000). */
  maxPending?: number;
}

/**
 * Who may get a first certificate, and when (docs/enrollment.md). The bootstrap credential
 * proves a board is one of ours; the policy (or a person, through approve / reject) decides
 * what it may become; an id that holds a valid certificate only renews with it. Every request
 * and decision is a line in the audit log before the answer leaves.
 */
export class EnrollmentDesk {
  /** One decision per device id at a time: a poll, an approval and a rejection never interleave. */
  private readonly perId = new KeyedLock();
  private readonly listeners = new Set<(entry: AuditEntry) => void>();
  private readonly requests: TokenBuckets;
  private readonly failures: TokenBuckets;

  private constructor(
    private readonly o: EnrollmentDeskOptions,
    private readonly bootstrap: BootstrapCredential,
    private readonly book: RequestBook,
    private readonly audit: AppendLog<AuditEntry>,
  ) {
    this.requests = new TokenBuckets(o.rate?.burst ?? 30, o.rate?.refillMs ?? 1_000);
    this.failures = new TokenBuckets(o.failureRate?.burst ?? 5, o.failureRate?.refillMs ?? 60_000);
  }

  /** Opens the desk of one CA: its files live in `enrollment/` of the CA folder. */
  static async open(options: EnrollmentDeskOptions): Promise<EnrollmentDesk> {
    const dir = path.join(options.store.dir, 'enrollment');
    const now = options.store.now();
    const bootstrap = await BootstrapCredential.open(path.join(dir, 'bootstrap.json'), () => options.store.now());
    const book = await RequestBook.open(path.join(dir, 'requests.log'), now);
    const { log } = await AppendLog.open<AuditEntry>(path.join(dir, 'audit.log'));
    return new EnrollmentDesk(options, bootstrap, book, log);
  }

  get policy(): EnrollPolicy {
    return { ...this.o.policy, allow: [...this.o.policy.allow] };
  }

  /** Why the stored bootstrap credential cannot be used, if it cannot (a damaged file). */
  get bootstrapProblem(): string | undefined {
    return this.bootstrap.problem;
  }

  subscribe(listener: (entry: AuditEntry) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /** `simpleenroll` (RFC 7030 §4.2.1): a first certificate for a board with the bootstrap credential. */
  async enroll(request: { csrDer: Buffer; credential?: { user: string; password: string }; address: string }): Promise<EnrollAnswer> {
    const { address } = request;
    const limited = this.rateLimited(address);
    if (limited) return limited;
    if (!request.credential) return this.refuse({ address, via: 'simpleenroll' }, 'no-credential', 'simpleenroll needs the fleet bootstrap credential (HTTP Basic)');
    if (!this.bootstrap.show()) return this.refuse({ address, via: 'simpleenroll' }, 'no-bootstrap', 'enrollment is closed: the bootstrap credential was revoked');
    if (!this.bootstrap.accepts(request.credential.user, request.credential.password)) {
      this.failures.take(address);
      return this.refuse({ address, via: 'simpleenroll' }, 'bad-credential', 'wrong bootstrap credential');
    }
    const csr = this.readCsr(request.csrDer, address, 'simpleenroll');
    if ('kind' in csr) return this.audited(csr);
    const { id, keyType, key, csrPem, verified } = csr;
    const who = { id, address, keyType, via: 'simpleenroll' as const };
    return this.perId.run(id, async () => {
      const held = this.o.store.currentIdentity('device', id);
      const earlier = this.book.get(id);
      if (held) {
        // The answer to an approved request may have been lost: the same key gets its certificate again.
        const mine = await this.heldCertificateWithKey(id, held.serial, key);
        if (mine) {
          await this.log({ ...who, event: 'request', decision: 'approved', serial: held.serial, repeat: true });
          return { kind: 'issued', certificateDer: mine, serial: held.serial };
        }
        return this.refuse(who, 'held', `device ${id} already holds a valid certificate: it renews with simplereenroll`);
      }
      if (earlier?.state === 'pending') {
        if (earlier.key !== key) return this.refuse(who, 'pending-other-key', `a request for ${id} with another key is waiting for approval`);
        await this.log({ ...who, event: 'request', decision: 'pending', repeat: true });
        return { kind: 'pending', retryAfterS: this.retryAfterS };
      }
      if (earlier?.state === 'rejected' && earlier.key === key) return this.refuse(who, 'rejected', `the request of ${id} was rejected`);
      const hook = await this.askHook({ id, address, keyType });
      if (hook) return this.refuse(who, 'policy', hook);
      const entry: EnrollmentRequest = { id, keyType, key, csrPem, address, requestedAt: this.o.store.now().toISOString(), state: 'pending' };
      if (approvedAtOnce(this.o.policy, id)) {
        try {
          const issued = await this.issue(entry, 'simpleenroll', verified);
          return { kind: 'issued', ...issued };
        } catch (err) {
          // The CA's own checks (key, CN) refuse with a reason the device's owner can act on.
          if (err instanceof CaStoreError) return this.refuse(who, 'key-refused', err.message);
          throw err;
        }
      }
      if (this.book.pendingCount >= (this.o.maxPending ?? 1_000)) {
        return this.refuse(who, 'too-many-pending', 'too many requests are waiting for approval: approve or reject some', this.retryAfterS);
      }
      await this.book.put(entry);
      await this.log({ ...who, event: 'request', decision: 'pending' });
      return { kind: 'pending', retryAfterS: this.retryAfterS };
    });
  }

  /**
   * `simplereenroll` (RFC 7030 §4.2.2): a new certificate for the holder of a valid one, the
   * same CN, the key of the CSR. `peer` is the certificate the TLS handshake verified, if any.
   */
  async reenroll(request: { csrDer: Buffer; peer?: { serial: string; commonName?: string }; address: string }): Promise<EnrollAnswer> {
    const { address, peer } = request;
    const limited = this.rateLimited(address);
    if (limited) return limited;
    const via = 'simplereenroll' as const;
    if (!peer) return this.refuse({ address, via }, 'no-certificate', "simplereenroll needs the device's current certificate");
    const record = this.recordOf(peer.serial);
    if (!record || record.revokedAt || record.kind !== 'device' || Date.parse(record.notAfter) <= this.o.store.now().getTime()) {
      return this.refuse({ address, via, id: record?.commonName }, 'certificate-refused', 'this certificate may not renew: it is revoked, expired or not a device certificate');
    }
    const csr = this.readCsr(request.csrDer, address, via);
    if ('kind' in csr) return this.audited(csr);
    const who = { id: csr.id, address, keyType: csr.keyType, via };
    if (csr.id !== record.commonName) return this.refuse(who, 'not-yours', `the CSR is for ${csr.id}, the certificate for ${record.commonName}`);
    return this.perId.run(csr.id, async () => {
      const issued = await this.o.store.renewWithCsr({ serial: record.serial, csrPem: csr.verified });
      await this.log({ ...who, event: 'issued', serial: issued.record.serial });
      return { kind: 'issued', certificateDer: issued.certificateDer, serial: issued.record.serial };
    });
  }

  /** The requests waiting for a person, oldest first (without their CSRs). */
  pending(): Omit<EnrollmentRequest, 'csrPem'>[] {
    return this.book
      .pending()
      .sort((a, b) => a.requestedAt.localeCompare(b.requestedAt))
      .map(({ csrPem: _c, ...rest }) => rest);
  }

  /** Approves a pending request: its certificate is issued now, the device gets it at its next poll. */
  approve(id: string): Promise<{ id: string; serial: string }> {
    return this.perId.run(id, async () => {
      const r = this.pendingRequest(id);
      const { serial } = await this.issue(r, 'node');
      return { id, serial };
    });
  }

  reject(id: string, reason?: string): Promise<{ id: string }> {
    return this.perId.run(id, async () => {
      const r = this.pendingRequest(id);
      await this.book.put({ ...r, state: 'rejected', decidedAt: this.o.store.now().toISOString() });
      await this.log({ event: 'rejected', id, address: r.address, keyType: r.keyType, via: 'node', ...(reason ? { reason: reason.slice(0, 200) } : {}) });
      return { id };
    });
  }

  showBootstrap(): BootstrapSecret | undefined {
    return this.bootstrap.show();
  }

  async rotateBootstrap(): Promise<BootstrapSecret> {
    const s = await this.bootstrap.rotate();
    await this.log({ event: 'bootstrap-rotated', via: 'node' });
    return s;
  }

  async revokeBootstrap(): Promise<void> {
    await this.bootstrap.revoke();
    await this.log({ event: 'bootstrap-revoked', via: 'node' });
  }

  async idle(): Promise<void> {
    await this.book.idle();
    await this.audit.idle();
  }

  private get retryAfterS(): number {
    return this.o.retryAfterS ?? 60;
  }

  private pendingRequest(id: string): EnrollmentRequest {
    const r = this.book.get(id);
    if (!r || r.state !== 'pending') throw new Error(`no request of ${shownInput(id)} is waiting for approval`);
    return r;
  }

  /**
   * Issues the request's certificate, marks it approved, audits both; throws when the CA refuses.
   * `verified`: the CSR as this request's check read it, so it is not verified twice.
   */
  private async issue(r: EnrollmentRequest, via: 'simpleenroll' | 'node', verified?: VerifiedCsr): Promise<{ serial: string; certificateDer: Buffer }> {
    const issued = await this.o.store.signCsr(verified ?? r.csrPem, { deviceId: r.id });
    const done: EnrollmentRequest = { ...r, state: 'approved', decidedAt: this.o.store.now().toISOString(), serial: issued.record.serial };
    const who = { id: r.id, address: r.address, keyType: r.keyType, via };
    // Written together, so they share one flush of each log. A request approved at once never
    // waited: the book (pending and rejected requests) has nothing to keep of it.
    await Promise.all([
      ...(via === 'node' ? [this.book.put(done)] : []),
      this.log({ ...who, event: via === 'node' ? 'approved' : 'request', ...(via === 'node' ? {} : { decision: 'approved' as const }), serial: done.serial }),
      this.log({ ...who, event: 'issued', serial: done.serial }),
    ]);
    return { serial: issued.record.serial, certificateDer: issued.certificateDer };
  }

  /** The DER of the id's current certificate when it certifies `key` (SHA-256 of the SPKI, hex), else undefined. */
  private async heldCertificateWithKey(id: string, serial: string, key: string): Promise<Buffer | undefined> {
    try {
      const cert = new X509Certificate(await fs.readFile(this.o.store.identityFiles('device', id).certificate));
      const spki = cert.publicKey.export({ type: 'spki', format: 'der' });
      return cert.serialNumber === serial && createHash('sha256').update(spki).digest('hex') === key ? Buffer.from(cert.raw) : undefined;
    } catch {
      return undefined;
    }
  }

  private readCsr(der: Buffer, address: string, via: 'simpleenroll' | 'simplereenroll'): { id: string; keyType: EnrollKeyType; key: string; csrPem: string; verified: VerifiedCsr } | EnrollAnswer & { kind: 'refused' } {
    const csrPem = toPem('CERTIFICATE REQUEST', der);
    let csr: VerifiedCsr;
    try {
      csr = readVerifiedCsr(csrPem);
    } catch (err) {
      return this.refuseNow({ address, via }, 'bad-csr', (err as Error).message);
    }
    const cn = csr.commonName ?? '';
    if (!isDeviceId(cn)) return this.refuseNow({ address, via }, 'not-a-device', `the CSR's CN ${shownInput(cn)} is not a device id (12 lower-case hex digits)`);
    let keyType: KeyType;
    try {
      keyType = leafKeyTypeOf(csr.publicKey, 'the CSR key');
    } catch (err) {
      return this.refuseNow({ address, via, id: cn }, 'key-refused', (err as Error).message);
    }
    return { id: cn, keyType, key: createHash('sha256').update(csr.spki).digest('hex'), csrPem, verified: csr };
  }

  private rateLimited(address: string): (EnrollAnswer & { kind: 'refused' }) | undefined {
    // Wrong credentials cost a token of their own bucket: guessing stops long before plain polling does.
    if (!this.failures.has(address)) return { kind: 'refused', reason: 'rate-limited', text: 'too many wrong credentials from this address: wait', retryAfterS: 60 };
    const r = this.requests.take(address);
    return r.ok ? undefined : { kind: 'refused', reason: 'rate-limited', text: 'too many requests from this address: wait', retryAfterS: Math.ceil(r.retryAfterMs / 1000) };
  }

  private async askHook(candidate: EnrollCandidate): Promise<string | undefined> {
    if (!this.o.mayEnroll) return undefined;
    try {
      const v = await this.o.mayEnroll(candidate);
      return v === true ? undefined : typeof v === 'string' && v ? v.slice(0, 200) : 'refused by the enrollment hook';
    } catch (err) {
      // A rule that throws refuses: a bug in a rule never lets a board in.
      return `the enrollment hook failed: ${String((err as Error)?.message ?? err).slice(0, 160)}`;
    }
  }

  private recordOf(serial: string): ReturnType<CaStore['findBySerial']> | undefined {
    try {
      return this.o.store.findBySerial(serial);
    } catch {
      return undefined;
    }
  }

  private refuseNow(who: Omit<AuditEntry, 'at' | 'event'>, reason: EnrollRefusal, text: string, retryAfterS?: number): EnrollAnswer & { kind: 'refused' } {
    // Awaited by refuse(); a refusal changes nothing, so a failed audit write never turns it into a crash.
    this.log({ ...who, event: 'refused', decision: 'refused', reason: `${reason}: ${text}`.slice(0, 240) }).catch(() => undefined);
    return { kind: 'refused', reason, text, ...(retryAfterS ? { retryAfterS } : {}) };
  }

  private async refuse(who: Omit<AuditEntry, 'at' | 'event'>, reason: EnrollRefusal, text: string, retryAfterS?: number): Promise<EnrollAnswer & { kind: 'refused' }> {
    return this.audited(this.refuseNow(who, reason, text, retryAfterS));
  }

  /** The answer once its audit line is on disk (or its write failed). */
  private async audited<T>(answer: T): Promise<T> {
    await this.audit.idle().catch(() => undefined);
    return answer;
  }

  private log(entry: Omit<AuditEntry, 'at'>): Promise<void> {
    const full: AuditEntry = { at: this.o.store.now().toISOString(), ...entry };
    for (const l of this.listeners) {
      try {
        l(full);
      } catch {
        // a listener's bug never stops an answer
      }
    }
    return this.audit.append(full);
  }
}

