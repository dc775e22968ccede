import { x509 } from './x509';
import { CaStoreError } from './ca-error';
import { DAY_MS } from './clock';
import { normalizeSerial } from './names';
import { shownInput } from '../input-text';

export type CertificateKind = 'device' | 'server' | 'backend';

/** RFC 5280 §5.3.1 reasons that make sense for a fleet (no CA compromise, no reversible hold). */
export const REVOCATION_REASONS = {
  unspecified: x509.X509CrlReason.unspecified,
  keyCompromise: x509.X509CrlReason.keyCompromise,
  affiliationChanged: x509.X509CrlReason.affiliationChanged,
  superseded: x509.X509CrlReason.superseded,
  cessationOfOperation: x509.X509CrlReason.cessationOfOperation,
  privilegeWithdrawn: x509.X509CrlReason.privilegeWithdrawn,
} as const;
export type RevocationReason = keyof typeof REVOCATION_REASONS;

/** What the CA remembers of each certificate it issued (one `cert` line of the journal). */
export interface IssuedRecord {
  serial: string;
  commonName: string;
  kind: CertificateKind;
  notBefore: string;
  notAfter: string;
  sha256: string;
  dnsNames?: string[];
  ipAddresses?: string[];
  /** Where the key came from: made here, or the holder's own (CSR). */
  keySource: 'generated' | 'csr';
  renewedFrom?: string;
  revokedAt?: string;
  revocationReason?: RevocationReason;
}

/** Leaf serials start here; 01 is the CA's own. */
export const FIRST_LEAF_SERIAL = 0x1000;

/**
 * The CA's records in memory, rebuilt at open by replaying the journal, with the lookups the
 * rest of the store asks for. Brokers look records up on every connection, so they are also
 * kept by serial and by common name. Queries return copies; time-dependent ones take `now`.
 */
export class RecordIndex {
  nextSerial = FIRST_LEAF_SERIAL;
  crlNumber = 0;
  private readonly certificates: IssuedRecord[] = [];
  private readonly bySerial = new Map<string, IssuedRecord>();
  private readonly byName = new Map<string, IssuedRecord[]>();

  add(r: IssuedRecord): void {
    this.certificates.push(r);
    this.bySerial.set(r.serial, r);
    const named = this.byName.get(r.commonName);
    if (named) named.push(r);
    else this.byName.set(r.commonName, [r]);
    this.nextSerial = Math.max(this.nextSerial, parseInt(r.serial, 16) + 1);
  }

  /** Taken synchronously: concurrent issuances can never draw the same number. */
  allocateSerial(): string {
    return normalizeSerial((this.nextSerial++).toString(16));
  }

  get size(): number {
    return this.certificates.length;
  }

  /** The live record (not a copy): only the store's own revocation changes it. */
  get(serial: string): IssuedRecord | undefined {
    return this.bySerial.get(serial);
  }

  findBySerial(serial: string): IssuedRecord {
    const record = this.bySerial.get(serial);
    if (!record) throw new CaStoreError(`no certificate with serial ${serial} was issued by this CA`);
    return record;
  }

  /** Every record of a common name, of any kind, revoked or not (live records). */
  named(commonName: string): readonly IssuedRecord[] {
    return this.byName.get(commonName) ?? [];
  }

  revoked(): readonly IssuedRecord[] {
    return this.certificates.filter((r) => r.revokedAt);
  }

  list(filter: { kind?: CertificateKind; includeRevoked?: boolean } = {}): IssuedRecord[] {
    return this.certificates
      .filter((r) => (filter.kind ? r.kind === filter.kind : true) && (filter.includeRevoked ? true : !r.revokedAt))
      .map((r) => ({ ...r }));
  }

  /** Valid (not revoked, not yet expired at `now`) certificates that expire within `days`. */
  expiring(days: unknown, now: Date): IssuedRecord[] {
    const n = Number(days);
    if (!Number.isFinite(n) || n < 0) throw new CaStoreError(`invalid number of days ${shownInput(days)}`);
    const until = now.getTime() + n * DAY_MS;
    return this.list()
      .filter((r) => {
        const t = Date.parse(r.notAfter);
        return t > now.getTime() && t <= until;
      })
      .sort((a, b) => a.notAfter.localeCompare(b.notAfter));
  }

  /** The newest certificate of an identity that is neither revoked nor expired at `now` (live record). */
  latestValid(kind: CertificateKind, commonName: string, now: Date): IssuedRecord | undefined {
    const at = now.toISOString();
    return this.named(commonName)
      .filter((r) => r.kind === kind && !r.revokedAt && r.notAfter > at)
      .sort((a, b) => b.notAfter.localeCompare(a.notAfter))[0];
  }

  /** Whether the CA ever issued a certificate for the identity, revoked or not. */
  everIssued(kind: CertificateKind, commonName: string): boolean {
    return this.named(commonName).some((r) => r.kind === kind);
  }
}
