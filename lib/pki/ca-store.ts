import { promises as fs } from 'node:fs';
import * as path from 'node:path';
import type { KeyObject } from 'node:crypto';
import { x509, toPem } from './x509';
import { RsaKeySize, assertKeySize, toSigningKey } from './keys';
import { assertValidityDays } from './names';
import { Clock, systemClock } from './clock';
import { CaFileOptions, openCaFiles } from './ca-files';
import { Journal, MosquittoFolderEntry, openJournal, withFolder } from './journal';
import { CertificateKind, IssuedRecord, RecordIndex } from './records';
import { CrlSigner } from './crl';
import { IssuedCertificate, LeafIssuer } from './issuing';
import { revoke } from './revocation';
import { CaChange, CaListener, ChangeStream } from './change-stream';
import { FILES, identityFile } from './store-layout';

export { REVOCATION_REASONS } from './records';
export type { CertificateKind, IssuedRecord, RevocationReason } from './records';
export type { IssuedCertificate } from './issuing';
export type { CaChange, CaListener } from './change-stream';
export type { MosquittoFolderEntry } from './journal';

export interface CaStoreOptions extends CaFileOptions {
  /** The store folder; created with mode 0700. */
  dir: string;
  /** How long each CRL is valid, in days (default 180); it is re-signed when a third of that remains. */
  crlValidityDays?: number;
  /** Key size of leaves made here: 2048 (default), 3072 or 4096. */
  leafKeySize?: RsaKeySize;
  /** Validity of leaves in days unless a call says otherwise; default 825. */
  leafValidityDays?: number;
  /**
   * The CA's clock: validity periods, revocation dates, CRL thisUpdate/nextUpdate, what counts
   * as expired or expiring. Default: the system clock.
   */
  now?: Clock;
  /**
   * Called with the store before `open` re-signs a due CRL, so that a keeper subscribing to
   * the change stream (lib/mosquitto's keepMosquittoFolders) misses no change. None by default.
   */
  keepers?: ReadonlyArray<(store: CaStore) => unknown>;
}

/**
 * A private CA kept in one folder: a thin front over its parts (lib/pki: ca-files, journal,
 * records, issuing, revocation, crl, change-stream). Everything that changes is written
 * atomically; each certificate is in the journal before it leaves the store.
 */
export class CaStore {
  private readonly changes = new ChangeStream();
  private readonly issuer: LeafIssuer;
  private crl!: CrlSigner;
  /** Reads the CA's clock: the one time source of everything the CA decides. */
  readonly now: Clock;

  private constructor(
    readonly dir: string,
    private readonly caCert: x509.X509Certificate,
    private readonly index: RecordIndex,
    private folders: MosquittoFolderEntry[],
    private readonly journal: Journal,
    settings: { leafKeySize: RsaKeySize; leafValidityDays: number; now: Clock },
    caKey: KeyObject,
  ) {
    this.now = settings.now;
    this.issuer = new LeafIssuer({
      dir,
      caCert,
      caCertificatePem: this.caCertificatePem,
      caKey,
      index,
      journal,
      now: settings.now,
      leafKeySize: settings.leafKeySize,
      leafValidityDays: settings.leafValidityDays,
      published: (record) => this.changes.emit({ type: 'issued', record }),
      revoke: (serial, reason) => this.revoke(serial, reason),
    });
  }

  /** Opens the store in `options.dir`, creating (or importing) the CA only when none is there. */
  static async open(options: CaStoreOptions): Promise<CaStore> {
    const dir = path.resolve(options.dir);
    await fs.mkdir(dir, { recursive: true, mode: 0o700 });
    const now = options.now ?? systemClock;
    const crlValidityDays = assertValidityDays(options.crlValidityDays, 180);
    const settings = {
      leafKeySize: assertKeySize(options.leafKeySize ?? 2048),
      leafValidityDays: assertValidityDays(options.leafValidityDays, 825),
      now,
    };
    const { caKey, caPem } = await openCaFiles(dir, options, now);
    const { journal, index, folders } = await openJournal(dir);
    const caCert = new x509.X509Certificate(caPem);
    const store = new CaStore(dir, caCert, index, folders, journal, settings, caKey);
    store.crl = await CrlSigner.open({
      file: store.crlFile,
      caCert,
      // Native key for leaves; the WebCrypto one signs CRLs through @peculiar/x509.
      signingKey: await toSigningKey(caKey),
      index,
      journal,
      validityDays: crlValidityDays,
      now,
      published: (crl) => store.changes.emit({ type: 'crl', ...crl }),
    });
    for (const keep of options.keepers ?? []) keep(store);
    await store.refreshCrlIfDue();
    return store;
  }

  /** Settles once every pending journal, CRL and subscriber (Mosquitto folder) write is on disk; call it before dropping the store. */
  async idle(): Promise<void> {
    await this.crl.idle();
    await this.changes.idle();
    await this.journal.idle();
  }

  // ---- the CA --------------------------------------------------------------------------

  get caCertificatePem(): string {
    return toPem('CERTIFICATE', this.caCert.rawData);
  }

  get caSubject(): string {
    return this.caCert.subject;
  }

  get caNotAfter(): Date {
    return this.caCert.notAfter;
  }

  get crlFile(): string {
    return path.join(this.dir, FILES.crl);
  }

  /** The files devices download over the update server: `ca.crt`, `<id>.crt`, `<id>.key`. */
  get deviceFilesDir(): string {
    return this.issuer.deviceFilesDir;
  }

  get crlNextUpdateAt(): Date | undefined {
    return this.crl.nextUpdate;
  }

  // ---- the change stream -----------------------------------------------------------------

  /**
   * Calls `listener` with every change once it is on disk: `issued`, `revoked` (then `crl`),
   * `crl` (also the refresh before the CRL lapses). Returns the function that unsubscribes.
   */
  subscribe(listener: CaListener): () => void {
    return this.changes.subscribe(listener);
  }

  /**
   * Calls `listener` with the new CRL whenever it is re-signed (a revoke, or the refresh before
   * it lapses): a TLS server must load it then, or revoked clients stay admitted and, once its
   * copy passes nextUpdate, every client is refused. Returns the function that unsubscribes.
   */
  onCrlChange(listener: (crlPem: string) => void): () => void {
    return this.subscribe((c: CaChange) => {
      if (c.type === 'crl') listener(c.pem);
    });
  }

  // ---- issuing (lib/pki/issuing.ts) ----------------------------------------------------------

  /** A device certificate with a key made here: `keyType` 'rsa' (default, the store's leaf size) or 'ec' (P-256). */
  issueDevice(idInput: unknown, opts: { validityDays?: unknown; replace?: unknown; keyType?: unknown } = {}): Promise<IssuedCertificate> {
    return this.issuer.issueDevice(idInput, opts);
  }

  /** Runs `job` for one identity at a time: the same (kind, name) never has two get-or-issue or issue steps at once. */
  serialized<T>(kind: CertificateKind, name: string, job: () => Promise<T>): Promise<T> {
    return this.issuer.serialized(kind, name, job);
  }

  issueServer(opts: { commonName: unknown; dnsNames?: unknown; ipAddresses?: unknown; validityDays?: unknown }): Promise<IssuedCertificate> {
    return this.issuer.issueServer(opts);
  }

  issueBackend(opts: { commonName?: unknown; validityDays?: unknown } = {}): Promise<IssuedCertificate> {
    return this.issuer.issueBackend(opts);
  }

  /** Signs a device's CSR, PEM or as readVerifiedCsr read it (key EC P-256 or RSA 2048..4096; of `keyType` when given). */
  signCsr(csrPem: unknown, opts: { deviceId: unknown; validityDays?: unknown; replace?: unknown; keyType?: unknown }): Promise<IssuedCertificate> {
    return this.issuer.signCsr(csrPem, opts);
  }

  /** Same key, or with `newKey` a fresh one of `keyType` ('rsa' by default, or 'ec'). */
  renew(opts: { serial?: unknown; commonName?: unknown; newKey?: boolean; keyType?: unknown; validityDays?: unknown; revokeOld?: boolean }): Promise<IssuedCertificate> {
    return this.issuer.renew(opts);
  }

  /** A new certificate for the holder of a valid, unrevoked `serial`, with its CSR's key (EST simplereenroll); the old one stays valid. */
  renewWithCsr(opts: { serial: unknown; csrPem: unknown; validityDays?: unknown }): Promise<IssuedCertificate> {
    return this.issuer.renewWithCsr(opts);
  }

  // ---- revocation and the CRL (lib/pki/revocation.ts, crl.ts) -------------------------------

  revoke(serialInput: unknown, reasonInput: unknown = 'unspecified'): Promise<IssuedRecord> {
    return revoke(
      {
        index: this.index,
        journal: this.journal,
        now: this.now,
        published: (record) => this.changes.emit({ type: 'revoked', record }),
        resignCrl: () => this.crl.request(),
      },
      serialInput,
      reasonInput,
    );
  }

  /** Re-signs the CRL when it is missing or has less than a third of its validity left at `now` (default: the CA's clock). */
  refreshCrlIfDue(now: Date = this.now()): Promise<boolean> {
    return this.crl.refreshIfDue(now);
  }

  crlPem(): Promise<string> {
    return this.crl.pem();
  }

  // ---- queries (lib/pki/records.ts) ----------------------------------------------------------

  list(filter: { kind?: CertificateKind; includeRevoked?: boolean } = {}): IssuedRecord[] {
    return this.index.list(filter);
  }

  /** Valid (not revoked, not yet expired) certificates that expire within `days` of `now` (default: the CA's clock). */
  expiring(days: unknown, now: Date = this.now()): IssuedRecord[] {
    return this.index.expiring(days, now);
  }

  get issuedCount(): number {
    return this.index.size;
  }

  findBySerial(serial: string): IssuedRecord {
    return this.index.findBySerial(serial);
  }

  /** Whether this CA ever issued a certificate for the identity, revoked or not: a revoked device is not issued again by accident. */
  everIssued(kind: CertificateKind, commonName: string): boolean {
    return this.index.everIssued(kind, commonName);
  }

  /** The newest certificate of an identity that is neither revoked nor expired. */
  currentIdentity(kind: CertificateKind, commonName: string): IssuedRecord | undefined {
    const r = this.index.latestValid(kind, commonName, this.now());
    return r && { ...r };
  }

  /** Where the current certificate and key of an identity live in the store. */
  identityFiles(kind: CertificateKind, commonName: string): { certificate: string; privateKey: string } {
    return { certificate: identityFile(this.dir, kind, commonName, 'crt'), privateKey: identityFile(this.dir, kind, commonName, 'key') };
  }

  // ---- folders kept from the CA (lib/mosquitto) ----------------------------------------------

  /** The Mosquitto folders written for this CA, as recorded in its journal (lib/mosquitto keeps them current). */
  get mosquittoFolders(): readonly MosquittoFolderEntry[] {
    return this.folders;
  }

  /** Records a folder written for this CA (replacing an earlier record of the same folder), so it is found again after a restart. */
  async recordMosquittoFolder(entry: MosquittoFolderEntry): Promise<void> {
    await this.journal.append({ t: 'mosquitto', m: entry });
    this.folders = withFolder(this.folders, entry);
  }
}
