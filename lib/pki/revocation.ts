import { CaStoreError } from './ca-error';
import type { Clock } from './clock';
import { normalizeSerial } from './names';
import { IssuedRecord, RecordIndex, REVOCATION_REASONS, RevocationReason } from './records';
import type { Journal } from './journal';
import { shownInput } from '../input-text';

export interface RevocationOptions {
  index: RecordIndex;
  journal: Journal;
  now: Clock;
  /** Told of the revocation once it is in the journal; returns when whoever listens is done. */
  published: (record: IssuedRecord) => Promise<void>;
  /** Re-signs the CRL (coalesced); settles once the new crl.pem is on disk. */
  resignCrl: () => Promise<void>;
}

/**
 * Revokes one certificate: journal first, then the CRL (RFC 5280 §5.3.1 reason codes). The
 * `revoked` change goes out before the CRL is re-signed, so a subscriber sees revoked, then crl.
 */
export async function revoke(o: RevocationOptions, serialInput: unknown, reasonInput: unknown = 'unspecified'): Promise<IssuedRecord> {
  const serial = normalizeSerial(serialInput);
  const reason = (reasonInput ?? 'unspecified') as RevocationReason;
  // Own keys only: `in` would also take constructor, toString, __proto__ from Object.prototype.
  if (typeof reason !== 'string' || !Object.hasOwn(REVOCATION_REASONS, reason)) {
    throw new CaStoreError(`unknown revocation reason ${shownInput(reasonInput)}: one of ${Object.keys(REVOCATION_REASONS).join(', ')}`);
  }
  const record = o.index.findBySerial(serial);
  if (record.revokedAt) throw new CaStoreError(`certificate ${serial} is already revoked (${record.revokedAt})`);
  // Marked at once so a concurrent revoke of the same serial is refused; undone if the journal fails.
  const at = o.now().toISOString();
  record.revokedAt = at;
  record.revocationReason = reason;
  try {
    await o.journal.append({ t: 'revoke', serial, at, reason });
  } catch (err) {
    delete record.revokedAt;
    delete record.revocationReason;
    throw err;
  }
  // Both started before either is awaited: one CRL for a burst, and subscribers hear revoked first.
  const told = o.published({ ...record });
  const signed = o.resignCrl();
  await Promise.all([told, signed]);
  return { ...record };
}
