import { promises as fs } from 'node:fs';
import { AsnConvert } from '@peculiar/asn1-schema';
import { CRLNumber, id_ce_cRLNumber } from '@peculiar/asn1-x509';
import { x509, RSA_SHA256, toPem, CryptoKey } from './x509';
import { BACKDATE_MS, Clock, DAY_MS } from './clock';
import { REVOCATION_REASONS, RecordIndex } from './records';
import type { Journal } from './journal';
import { CoalescingTask } from '../coalescing-task';
import { writeFileAtomic, readFileIfExists } from '../fs/atomic-file';

export interface SignedCrl {
  pem: string;
  der: Buffer;
  nextUpdate: Date;
}

export interface CrlOptions {
  /** `<store>/crl.pem`. */
  file: string;
  caCert: x509.X509Certificate;
  signingKey: CryptoKey;
  index: RecordIndex;
  journal: Journal;
  /** How long each CRL is valid; it is re-signed when a third of that remains. */
  validityDays: number;
  now: Clock;
  /** Told of each CRL once it is on disk; the signing settles after it. */
  published: (crl: SignedCrl) => Promise<void>;
}

/**
 * The CA's CRL (RFC 5280 §5): signed from the revoked records, numbered (§5.2.3), written to
 * crl.pem. Requests coalesce: a burst of revocations signs once.
 */
export class CrlSigner {
  private readonly writer = new CoalescingTask(() => this.sign());
  private next: Date | undefined;

  private constructor(private readonly o: CrlOptions) {}

  /** Picks up the CRL already on disk, so a restart does not re-sign a CRL that is still fresh. */
  static async open(o: CrlOptions): Promise<CrlSigner> {
    const signer = new CrlSigner(o);
    signer.next = await readNextUpdate(o.file);
    return signer;
  }

  get nextUpdate(): Date | undefined {
    return this.next;
  }

  /** Re-signs now (after any signing already running); settles once it is on disk and published. */
  request(): Promise<void> {
    return this.writer.request();
  }

  idle(): Promise<void> {
    return this.writer.idle();
  }

  /** Re-signs when the CRL is missing or has less than a third of its validity left at `now`. */
  async refreshIfDue(now: Date): Promise<boolean> {
    const due = !this.next || this.next.getTime() - now.getTime() < (this.o.validityDays * DAY_MS) / 3;
    if (!due) {
      const onDisk = await readFileIfExists(this.o.file);
      if (onDisk !== undefined) return false;
    }
    await this.request();
    return true;
  }

  async pem(): Promise<string> {
    await this.writer.idle();
    return fs.readFile(this.o.file, 'utf8');
  }

  private async sign(): Promise<void> {
    const { index, caCert } = this.o;
    index.crlNumber += 1;
    const now = this.o.now().getTime();
    const thisUpdate = new Date(now - BACKDATE_MS);
    // Whole seconds: what the CRL can hold, so the time read back after a restart is the same.
    const nextUpdate = new Date(Math.floor((now + this.o.validityDays * DAY_MS) / 1000) * 1000);
    const crl = await x509.X509CrlGenerator.create({
      issuer: caCert.subjectName,
      thisUpdate,
      nextUpdate,
      signingKey: this.o.signingKey,
      signingAlgorithm: RSA_SHA256,
      entries: index.revoked().map((r) => ({
        serialNumber: r.serial,
        revocationDate: new Date(r.revokedAt!),
        reason: REVOCATION_REASONS[r.revocationReason ?? 'unspecified'],
      })),
      extensions: [
        await x509.AuthorityKeyIdentifierExtension.create(caCert.publicKey, false),
        new x509.Extension(id_ce_cRLNumber, false, AsnConvert.serialize(new CRLNumber(index.crlNumber))),
      ],
    });
    await this.o.journal.append({ t: 'crl', n: index.crlNumber });
    const der = Buffer.from(crl.rawData);
    const pem = toPem('X509 CRL', der);
    await writeFileAtomic(this.o.file, pem);
    this.next = nextUpdate;
    await this.o.published({ pem, der, nextUpdate });
  }
}

async function readNextUpdate(file: string): Promise<Date | undefined> {
  const pem = await readFileIfExists(file);
  if (pem === undefined) return undefined;
  try {
    return new x509.X509Crl(pem.replace(/X509 CRL/g, 'CRL')).nextUpdate;
  } catch {
    return undefined; // unreadable: treat as missing and re-sign
  }
}
