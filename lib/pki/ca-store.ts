import { promises as fs } from 'node:fs';
import * as path from 'node:path';
import { KeyObject, X509Certificate as NodeX509 } from 'node:crypto';
import { AsnConvert } from '@peculiar/asn1-schema';
import { CRLNumber, id_ce_cRLNumber } from '@peculiar/asn1-x509';
import { x509, RSA_SHA256, toPem, fingerprint, CryptoKey } from './x509';
import {
  RsaKeySize,
  assertKeySize,
  generateRsaKey,
  readRsaPrivateKey,
  keyBelongsTo,
  exportPrivateKeyPem,
  toSigningKey,
} from './keys';
import { assertBackendName, assertDnsName, assertIpAddress, assertValidityDays, normalizeSerial } from './names';
import { normalizeDeviceId } from '../device-id';
import { writeFileAtomic, readFileIfExists, PRIVATE_FILE_MODE } from '../fs/atomic-file';
import { CoalescingTask } from '../coalescing-task';
import { KeyedLock } from '../concurrency/keyed-lock';
import { AppendLog } from '../fs/append-log';
import { buildTbsCertificate, signCertificate, subjectNameOf, keyIdentifier } from './leaf-certificate';
import { readVerifiedCsr, VerifiedCsr } from './csr';
import { identity } from './identity';
import { TopicScheme, BUILTIN_SCHEMES } from '../fleet/topic-scheme';
import { MOSQUITTO_FILE_NAMES, MosquittoListener, mosquittoFilesIn, renderMosquittoAcl, renderMosquittoConf, renderMosquittoReadme } from './mosquitto-config';
import { shownInput } from '../input-text';

export type CertificateKind = 'device' | 'server' | 'backend';
type BuiltinSchemeName = keyof typeof BUILTIN_SCHEMES;

/** RFC 5280 reasons that make sense for a fleet (no CA compromise, no reversible hold). */
export const REVOCATION_REASONS = {
  unspecified: x509.X509CrlReason.unspecified,
  keyCompromise: x509.X509CrlReason.keyCompromise,
  affiliationChanged: x509.X509CrlReason.affiliationChanged,
  superseded: x509.X509CrlReason.superseded,
  cessationOfOperation: x509.X509CrlReason.cessationOfOperation,
  privilegeWithdrawn: x509.X509CrlReason.privilegeWithdrawn,
} as const;
export type RevocationReason = keyof typeof REVOCATION_REASONS;

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

interface MosquittoEntry {
  dir: string;
  listener: MosquittoListener;
  serverName?: string;
  scheme?: BuiltinSchemeName;
}

/** The store's state, rebuilt at open by replaying the journal. */
interface StoreIndex {
  nextSerial: number;
  crlNumber: number;
  certificates: IssuedRecord[];
  /** The same records by serial and by common name: brokers look them up on every connection. */
  bySerial: Map<string, IssuedRecord>;
  byName: Map<string, IssuedRecord[]>;
  /** Mosquitto config folders written by us, kept current on issue and revoke. */
  mosquitto: MosquittoEntry[];
}

function addRecord(index: StoreIndex, r: IssuedRecord): void {
  index.certificates.push(r);
  index.bySerial.set(r.serial, r);
  const named = index.byName.get(r.commonName);
  if (named) named.push(r);
  else index.byName.set(r.commonName, [r]);
}

/** One line of `journal.jsonl`: every change to the store, appended and synced before it counts. */
type JournalEntry =
  | { t: 'cert'; r: IssuedRecord; der: string }
  | { t: 'revoke'; serial: string; at: string; reason: RevocationReason }
  | { t: 'mosquitto'; m: MosquittoEntry }
  | { t: 'crl'; n: number };

export interface IssuedCertificate {
  record: IssuedRecord;
  certificatePem: string;
  certificateDer: Buffer;
  /** Present only when the key was generated here. */
  privateKeyPem?: string;
  caCertificatePem: string;
  fingerprints: { sha1: string; sha256: string };
  files: { certificate: string; privateKey?: string; ca?: string };
  warnings: string[];
}

export interface CaStoreOptions {
  /** The store folder; created with mode 0700. */
  dir: string;
  commonName?: string;
  organization?: string;
  keySize?: RsaKeySize;
  validityDays?: number;
  /** Encrypts the CA key at rest (PKCS#8, AES-256-CBC) when set. */
  passphrase?: string;
  /** Use this CA instead of creating one (only when the store holds no CA yet). */
  importPem?: { certificate: string; privateKey: string; passphrase?: string };
  /** How long each CRL is valid; it is re-signed when a third of that remains. */
  crlValidityDays?: number;
  /** Leaf defaults. */
  leafKeySize?: RsaKeySize;
  leafValidityDays?: number;
}

export interface MosquittoSetup {
  dir: string;
  confFile: string;
  aclFile: string;
  crlFile: string;
  server: IssuedRecord;
  backend: IssuedRecord;
}

const DAY_MS = 86_400_000;
/** Leaves start a little in the past: a device's NTP clock may lag the server's. */
const BACKDATE_MS = 10 * 60_000;
const FIRST_LEAF_SERIAL = 0x1000;

const FILES = {
  caCert: 'ca.crt',
  caKey: 'ca.key',
  journal: 'journal.jsonl',
  crl: 'crl.pem',
  devices: 'devices',
  servers: 'servers',
  backends: 'backends',
} as const;

class CaStoreError extends Error {}

/**
 * A private CA kept in one folder. Everything that changes is written atomically; the index
 * (with the serial counter) is written before any certificate leaves the store, so a serial
 * that was ever handed out is never used again, even after a crash.
 */
export class CaStore {
  private readonly crlWriter = new CoalescingTask(() => this.writeCrl());
  private readonly mosquittoWriter = new CoalescingTask(() => this.writeMosquittoDirs());
  private readonly renewedServers = new Set<string>();
  private crlNextUpdate: Date | undefined;
  private caFileWritten = false;
  private readonly crlListeners = new Set<(crlPem: string) => void>();
  /** Get-or-issue and issue-unless-held run one at a time per identity (lib/pki/identity.ts). */
  private readonly identityLocks = new KeyedLock();
  /** Fixed for the CA's life, so computed once instead of per certificate. */
  private readonly issuerName: Buffer;
  private readonly authorityKeyId: Buffer;

  private constructor(
    readonly dir: string,
    private readonly caCert: x509.X509Certificate,
    /** Native key for leaf certificates; the WebCrypto one signs CRLs through @peculiar/x509. */
    private readonly caKey: KeyObject,
    private readonly signingKey: CryptoKey,
    private readonly index: StoreIndex,
    private readonly journal: AppendLog<JournalEntry>,
    private readonly options: Required<Pick<CaStoreOptions, 'crlValidityDays' | 'leafKeySize' | 'leafValidityDays'>>,
  ) {
    const der = Buffer.from(caCert.rawData);
    this.issuerName = subjectNameOf(der);
    const ski = caCert.getExtension(x509.SubjectKeyIdentifierExtension)?.keyId;
    this.authorityKeyId = ski ? Buffer.from(ski, 'hex') : keyIdentifier(Buffer.from(caCert.publicKey.rawData));
  }

  /** Opens the store in `options.dir`, creating (or importing) the CA only when none is there. */
  static async open(options: CaStoreOptions): Promise<CaStore> {
    const dir = path.resolve(options.dir);
    await fs.mkdir(dir, { recursive: true, mode: 0o700 });
    const settings = {
      crlValidityDays: assertValidityDays(options.crlValidityDays, 180),
      leafKeySize: assertKeySize(options.leafKeySize ?? 2048),
      leafValidityDays: assertValidityDays(options.leafValidityDays, 825),
    };
    const certPem = await readFileIfExists(path.join(dir, FILES.caCert));
    let caKey: KeyObject;
    let caPem: string;
    if (certPem !== undefined) {
      ({ caKey, caPem } = await loadExistingCa(dir, certPem, options));
    } else if (options.importPem) {
      ({ caKey, caPem } = await importCa(dir, options.importPem, options.passphrase));
    } else {
      ({ caKey, caPem } = await createCa(dir, options));
    }
    const opened = await AppendLog.open<JournalEntry>(path.join(dir, FILES.journal));
    let entries = opened.entries;
    if (entries.length === 0) {
      // A journal lost after certificates were issued: rebuild what the identity folders show.
      entries = await rebuildJournal(dir);
      if (entries.length) await opened.log.rewrite(entries);
    }
    const store = new CaStore(dir, new x509.X509Certificate(caPem), caKey, await toSigningKey(caKey), replay(entries), opened.log, settings);
    store.crlNextUpdate = await readCrlNextUpdate(path.join(dir, FILES.crl));
    await store.refreshCrlIfDue();
    return store;
  }

  /** Settles once every pending journal, CRL and Mosquitto-folder write is on disk; call it before dropping the store. */
  async idle(): Promise<void> {
    await this.crlWriter.idle();
    await this.mosquittoWriter.idle();
    await this.journal.idle();
  }


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
    return path.join(this.dir, FILES.devices);
  }

  get crlNextUpdateAt(): Date | undefined {
    return this.crlNextUpdate;
  }

  // ---- issuing -------------------------------------------------------------------------

  /**
   * A certificate and a fresh key for a device. One device, one valid certificate: an id that
   * holds one is refused unless `replace` is set, which revokes the old one (superseded) once
   * the new one is stored. Renewal keeps the old one valid instead (renew).
   */
  async issueDevice(idInput: unknown, opts: { validityDays?: unknown; replace?: unknown } = {}): Promise<IssuedCertificate> {
    const id = normalizeDeviceId(idInput);
    const validityDays = assertValidityDays(opts.validityDays, this.options.leafValidityDays);
    return this.issueUnlessHeld(id, opts.replace, async () => {
      const key = await generateRsaKey(this.options.leafKeySize);
      return this.issueAndSave({ kind: 'device', commonName: id, spki: key.publicKeySpki, validityDays, keySource: 'generated' }, key.privateKeyPem);
    });
  }

  /** Runs `job` for one identity at a time: the same (kind, name) never has two get-or-issue or issue steps at once. */
  serialized<T>(kind: CertificateKind, name: string, job: () => Promise<T>): Promise<T> {
    return this.identityLocks.run(`${kind}:${name}`, job);
  }

  private issueUnlessHeld(id: string, replace: unknown, issue: () => Promise<IssuedCertificate>): Promise<IssuedCertificate> {
    return this.serialized('device', id, async () => {
      const held = this.latestValid('device', id);
      if (held && replace !== true) {
        throw new CaStoreError(
          `device ${id} already holds a valid certificate (serial ${held.serial}, valid until ${held.notAfter.slice(0, 10)}): renew it, or set replace: true to revoke it and issue a new one`,
        );
      }
      const issued = await issue();
      if (held) await this.revoke(held.serial, 'superseded');
      return issued;
    });
  }

  async issueServer(opts: { commonName: unknown; dnsNames?: unknown; ipAddresses?: unknown; validityDays?: unknown }): Promise<IssuedCertificate> {
    const commonName = assertDnsName(opts.commonName);
    const dnsNames = [commonName, ...asList(opts.dnsNames, 'dnsNames').map(assertDnsName)];
    const ipAddresses = asList(opts.ipAddresses, 'ipAddresses').map(assertIpAddress);
    const validityDays = assertValidityDays(opts.validityDays, this.options.leafValidityDays);
    const key = await generateRsaKey(this.options.leafKeySize);
    return this.issueAndSave(
      { kind: 'server', commonName, spki: key.publicKeySpki, validityDays, keySource: 'generated', dnsNames: [...new Set(dnsNames)], ipAddresses },
      key.privateKeyPem,
    );
  }

  async issueBackend(opts: { commonName?: unknown; validityDays?: unknown } = {}): Promise<IssuedCertificate> {
    const commonName = assertBackendName(opts.commonName ?? 'node-red');
    const validityDays = assertValidityDays(opts.validityDays, this.options.leafValidityDays);
    const key = await generateRsaKey(this.options.leafKeySize);
    return this.issueAndSave({ kind: 'backend', commonName, spki: key.publicKeySpki, validityDays, keySource: 'generated' }, key.privateKeyPem);
  }

  /** Signs a device's CSR after checking its self-signature and that its CN is the expected id. */
  async signCsr(csrPem: unknown, opts: { deviceId: unknown; validityDays?: unknown; replace?: unknown }): Promise<IssuedCertificate> {
    const expected = normalizeDeviceId(opts.deviceId);
    const validityDays = assertValidityDays(opts.validityDays, this.options.leafValidityDays);
    if (typeof csrPem !== 'string') throw new CaStoreError('csr must be a PEM certificate request (-----BEGIN CERTIFICATE REQUEST-----)');
    let csr: VerifiedCsr;
    try {
      csr = readVerifiedCsr(csrPem);
    } catch (err) {
      throw new CaStoreError((err as Error).message);
    }
    if (csr.commonName !== expected) throw new CaStoreError(`the CSR is for CN ${shownInput(csr.commonName ?? '')}, expected device ${expected}`);
    assertRsaKey(csr.publicKey);
    const spki = csr.spki;
    return this.issueUnlessHeld(expected, opts.replace, () => this.issueAndSave({ kind: 'device', commonName: expected, spki, validityDays, keySource: 'csr' }));
  }

  /**
   * A new certificate for an identity we issued before: same key (taken from the old
   * certificate) or a fresh one. The old one stays valid unless `revokeOld` is set, so a
   * device can still fetch its new files with the old certificate.
   */
  async renew(opts: { serial?: unknown; commonName?: unknown; newKey?: boolean; validityDays?: unknown; revokeOld?: boolean }): Promise<IssuedCertificate> {
    const old = this.findForRenewal(opts);
    const validityDays = assertValidityDays(opts.validityDays, this.options.leafValidityDays);
    const base = { kind: old.kind, commonName: old.commonName, validityDays, dnsNames: old.dnsNames, ipAddresses: old.ipAddresses, renewedFrom: old.serial };
    let issued: IssuedCertificate;
    if (opts.newKey) {
      const key = await generateRsaKey(this.options.leafKeySize);
      issued = await this.issueAndSave({ ...base, spki: key.publicKeySpki, keySource: 'generated' }, key.privateKeyPem);
    } else {
      const spki = new NodeX509(await this.certificateDer(old.serial)).publicKey.export({ type: 'spki', format: 'der' });
      issued = await this.issueAndSave({ ...base, spki, keySource: old.keySource });
    }
    if (opts.revokeOld) await this.revoke(old.serial, 'superseded');
    return issued;
  }

  private findForRenewal(opts: { serial?: unknown; commonName?: unknown }): IssuedRecord {
    if (opts.serial !== undefined && opts.serial !== '') {
      const record = this.findBySerial(normalizeSerial(opts.serial));
      if (record.revokedAt) throw new CaStoreError(`certificate ${record.serial} is revoked; issue a new one instead of renewing`);
      return record;
    }
    if (typeof opts.commonName !== 'string' || !opts.commonName) throw new CaStoreError('renew needs a serial or a commonName');
    let cn = opts.commonName;
    try {
      cn = normalizeDeviceId(cn);
    } catch {
      // not a device: server and backend names are matched as given
    }
    const candidates = (this.index.byName.get(cn) ?? []).filter((r) => !r.revokedAt);
    if (candidates.length === 0) throw new CaStoreError(`no valid certificate for ${shownInput(cn)} to renew`);
    return candidates.reduce((a, b) => (a.notAfter >= b.notAfter ? a : b));
  }

  // ---- revocation ----------------------------------------------------------------------

  async revoke(serialInput: unknown, reasonInput: unknown = 'unspecified'): Promise<IssuedRecord> {
    const serial = normalizeSerial(serialInput);
    const reason = (reasonInput ?? 'unspecified') as RevocationReason;
    // Own keys only: `in` would also take constructor, toString, __proto__ from Object.prototype.
    if (typeof reason !== 'string' || !Object.hasOwn(REVOCATION_REASONS, reason)) {
      throw new CaStoreError(`unknown revocation reason ${shownInput(reasonInput)}: one of ${Object.keys(REVOCATION_REASONS).join(', ')}`);
    }
    const record = this.findBySerial(serial);
    if (record.revokedAt) throw new CaStoreError(`certificate ${serial} is already revoked (${record.revokedAt})`);
    // Marked at once so a concurrent revoke of the same serial is refused; undone if the journal fails.
    const at = new Date().toISOString();
    record.revokedAt = at;
    record.revocationReason = reason;
    try {
      await this.journal.append({ t: 'revoke', serial, at, reason });
    } catch (err) {
      delete record.revokedAt;
      delete record.revocationReason;
      throw err;
    }
    await this.crlWriter.request();
    await this.updateMosquittoDirs();
    return { ...record };
  }

  /** Re-signs the CRL when it is missing or has less than a third of its validity left. */
  async refreshCrlIfDue(now = new Date()): Promise<boolean> {
    const due = !this.crlNextUpdate || this.crlNextUpdate.getTime() - now.getTime() < (this.options.crlValidityDays * DAY_MS) / 3;
    if (!due) {
      const onDisk = await readFileIfExists(this.crlFile);
      if (onDisk !== undefined) return false;
    }
    await this.crlWriter.request();
    await this.updateMosquittoDirs();
    return true;
  }

  async crlPem(): Promise<string> {
    await this.crlWriter.idle();
    return fs.readFile(this.crlFile, 'utf8');
  }

  // ---- queries -------------------------------------------------------------------------

  list(filter: { kind?: CertificateKind; includeRevoked?: boolean } = {}): IssuedRecord[] {
    return this.index.certificates
      .filter((r) => (filter.kind ? r.kind === filter.kind : true) && (filter.includeRevoked ? true : !r.revokedAt))
      .map((r) => ({ ...r }));
  }

  /** Valid (not revoked, not yet expired) certificates that expire within `days`. */
  expiring(days: unknown, now = new Date()): IssuedRecord[] {
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

  get issuedCount(): number {
    return this.index.certificates.length;
  }

  findBySerial(serial: string): IssuedRecord {
    const record = this.index.bySerial.get(serial);
    if (!record) throw new CaStoreError(`no certificate with serial ${serial} was issued by this CA`);
    return record;
  }

  // ---- mosquitto -----------------------------------------------------------------------

  /**
   * Writes a Mosquitto config folder: TLS listener with client certificates required, the
   * CRL, and a per-identity ACL. Issues the broker's server identity and the backend identity
   * if they do not exist yet. The folder is kept current on every later issue and revoke.
   */
  async writeMosquittoConfig(opts: { dir?: unknown; serverName?: unknown; backendName?: unknown; port?: unknown; bindAddress?: unknown; scheme?: unknown }): Promise<MosquittoSetup> {
    const dir = path.resolve(typeof opts.dir === 'string' && opts.dir ? opts.dir : path.join(this.dir, 'mosquitto'));
    const serverName = assertDnsName(opts.serverName ?? 'localhost');
    const backendName = assertBackendName(opts.backendName ?? 'node-red');
    const port = Number(opts.port ?? 8883);
    if (!Number.isInteger(port) || port < 1 || port > 65535) throw new CaStoreError(`invalid port ${shownInput(opts.port)}`);
    const bindAddress = opts.bindAddress ? assertIpAddress(opts.bindAddress) : undefined;
    const scheme = (opts.scheme ?? 'secure-esp8266') as BuiltinSchemeName;
    if (typeof scheme !== 'string' || !Object.hasOwn(BUILTIN_SCHEMES, scheme)) throw new CaStoreError(`unknown topic scheme ${shownInput(opts.scheme)}: ${Object.keys(BUILTIN_SCHEMES).join(' or ')}`);

    const server = await identity(this, { kind: 'server', commonName: serverName });
    const backend = await identity(this, { kind: 'backend', commonName: backendName });
    const serverRecord = server.record;

    const listener: MosquittoListener = { port, bindAddress };
    const files = mosquittoFilesIn(dir);
    await fs.mkdir(dir, { recursive: true, mode: 0o700 });
    await writeFileAtomic(files.caFile, this.caCertificatePem);
    await writeFileAtomic(files.certFile, server.cert);
    await writeFileAtomic(files.keyFile, server.key, PRIVATE_FILE_MODE);
    await writeFileAtomic(files.crlFile, await this.crlPem());
    await writeFileAtomic(files.aclFile, this.renderAcl(scheme));
    const confFile = path.join(dir, MOSQUITTO_FILE_NAMES.conf);
    await writeFileAtomic(confFile, renderMosquittoConf(files, listener));
    await writeFileAtomic(path.join(dir, 'README.md'), renderMosquittoReadme(confFile));

    const entry: MosquittoEntry = { dir, listener, serverName: serverRecord.commonName, scheme };
    await this.journal.append({ t: 'mosquitto', m: entry });
    this.index.mosquitto = this.index.mosquitto.filter((m) => m.dir !== dir).concat(entry);
    return { dir, confFile, aclFile: files.aclFile, crlFile: files.crlFile, server: server.record, backend: backend.record };
  }

  /**
   * Calls `listener` with the new CRL whenever it is re-signed (a revoke, or the refresh before
   * it lapses): a TLS server must load it then, or revoked clients stay admitted and, once its
   * copy passes nextUpdate, every client is refused. Returns the function that unsubscribes.
   */
  onCrlChange(listener: (crlPem: string) => void): () => void {
    this.crlListeners.add(listener);
    return () => this.crlListeners.delete(listener);
  }

  /** Whether this CA ever issued a certificate for the identity, revoked or not: a revoked device is not issued again by accident. */
  everIssued(kind: CertificateKind, commonName: string): boolean {
    return (this.index.byName.get(commonName) ?? []).some((r) => r.kind === kind);
  }

  /** The newest certificate of an identity that is neither revoked nor expired. */
  currentIdentity(kind: CertificateKind, commonName: string): IssuedRecord | undefined {
    const r = this.latestValid(kind, commonName);
    return r && { ...r };
  }

  private latestValid(kind: CertificateKind, commonName: string): IssuedRecord | undefined {
    const now = new Date().toISOString();
    return (this.index.byName.get(commonName) ?? [])
      .filter((r) => r.kind === kind && !r.revokedAt && r.notAfter > now)
      .sort((a, b) => b.notAfter.localeCompare(a.notAfter))[0];
  }

  private renderAcl(scheme: BuiltinSchemeName = 'secure-esp8266'): string {
    const valid = this.list();
    return renderMosquittoAcl(
      valid.filter((r) => r.kind === 'device').map((r) => r.commonName),
      valid.filter((r) => r.kind === 'backend').map((r) => r.commonName),
      TopicScheme.named(scheme),
    );
  }

  /** Keeps every Mosquitto folder we wrote current: CRL, ACL and the broker's own identity. */
  private async updateMosquittoDirs(renewedServer?: string): Promise<void> {
    if (this.index.mosquitto.length === 0) return;
    if (renewedServer) this.renewedServers.add(renewedServer);
    // Coalesced: a burst of issuances rewrites each folder once, not once per certificate.
    await this.mosquittoWriter.request();
  }

  private async writeMosquittoDirs(): Promise<void> {
    const renewed = new Set(this.renewedServers);
    this.renewedServers.clear();
    const crl = await this.crlPem();
    for (const { dir, serverName, scheme } of this.index.mosquitto) {
      const files = mosquittoFilesIn(dir);
      await writeFileAtomic(files.crlFile, crl);
      await writeFileAtomic(files.aclFile, this.renderAcl(scheme));
      if (serverName && renewed.has(serverName)) {
        await writeFileAtomic(files.certFile, await fs.readFile(this.identityFile('server', serverName, 'crt')));
        await writeFileAtomic(files.keyFile, await fs.readFile(this.identityFile('server', serverName, 'key')), PRIVATE_FILE_MODE);
      }
    }
  }

  // ---- internals -----------------------------------------------------------------------

  /** A certificate issued earlier, from the journal (only renewal needs one, so it is not kept in memory). */
  private async certificateDer(serial: string): Promise<Buffer> {
    await this.journal.idle();
    const text = await fs.readFile(path.join(this.dir, FILES.journal), 'utf8');
    for (const line of text.split('\n')) {
      if (!line.includes(`"serial":"${serial}"`)) continue;
      const entry = JSON.parse(line) as JournalEntry;
      if (entry.t === 'cert' && entry.r.serial === serial) return Buffer.from(entry.der, 'base64');
    }
    throw new CaStoreError(`certificate ${serial} is not in the journal`);
  }

  /** Where the current certificate and key of an identity live in the store. */
  identityFiles(kind: CertificateKind, commonName: string): { certificate: string; privateKey: string } {
    return { certificate: this.identityFile(kind, commonName, 'crt'), privateKey: this.identityFile(kind, commonName, 'key') };
  }

  private identityFile(kind: CertificateKind, commonName: string, ext: 'crt' | 'key'): string {
    const folder = kind === 'device' ? FILES.devices : kind === 'server' ? FILES.servers : FILES.backends;
    return path.join(this.dir, folder, `${commonName}.${ext}`);
  }

  private async issueAndSave(
    spec: {
      kind: CertificateKind;
      commonName: string;
      spki: Buffer;
      validityDays: number;
      keySource: IssuedRecord['keySource'];
      dnsNames?: string[];
      ipAddresses?: string[];
      renewedFrom?: string;
    },
    privateKeyPem?: string,
  ): Promise<IssuedCertificate> {
    // Allocated synchronously: concurrent issuances can never draw the same number.
    const serial = normalizeSerial((this.index.nextSerial++).toString(16));
    const now = Date.now();
    const notBefore = new Date(now - BACKDATE_MS);
    const notAfter = new Date(Math.min(now + spec.validityDays * DAY_MS, this.caCert.notAfter.getTime()));
    const warnings: string[] = [];
    if (notAfter.getTime() < now + spec.validityDays * DAY_MS) warnings.push(`validity shortened to the CA's expiry (${this.caCert.notAfter.toISOString()})`);
    if (spec.ipAddresses?.length) warnings.push('ESP TLS stacks match DNS names, not IP addresses: devices should connect by host name');

    const tbs = buildTbsCertificate({
      serialHex: serial,
      issuerName: this.issuerName,
      authorityKeyId: this.authorityKeyId,
      notBefore,
      notAfter,
      commonName: spec.commonName,
      spki: spec.spki,
      usage: spec.kind === 'server' ? 'server' : 'client',
      dnsNames: spec.dnsNames,
      ipAddresses: spec.ipAddresses,
    });
    const der = await signCertificate(tbs, this.caKey);
    const certificatePem = toPem('CERTIFICATE', der);
    const record: IssuedRecord = {
      serial,
      commonName: spec.commonName,
      kind: spec.kind,
      notBefore: notBefore.toISOString(),
      notAfter: notAfter.toISOString(),
      sha256: fingerprint(der, 'sha256'),
      keySource: spec.keySource,
      ...(spec.dnsNames?.length ? { dnsNames: spec.dnsNames } : {}),
      ...(spec.ipAddresses?.length ? { ipAddresses: spec.ipAddresses } : {}),
      ...(spec.renewedFrom ? { renewedFrom: spec.renewedFrom } : {}),
    };

    // On disk before anyone sees it: a certificate that was handed out is never lost or re-numbered.
    await this.journal.append({ t: 'cert', r: record, der: der.toString('base64') });
    addRecord(this.index, record);

    const files: IssuedCertificate['files'] = { certificate: this.identityFile(spec.kind, spec.commonName, 'crt') };
    await writeFileAtomic(files.certificate, certificatePem);
    if (privateKeyPem) {
      files.privateKey = this.identityFile(spec.kind, spec.commonName, 'key');
      await writeFileAtomic(files.privateKey, privateKeyPem, PRIVATE_FILE_MODE);
    } else if (spec.keySource === 'csr') {
      // The holder keeps its own key: a key made here earlier no longer matches, so never serve it.
      await fs.rm(this.identityFile(spec.kind, spec.commonName, 'key'), { force: true });
    }
    if (spec.kind === 'device') {
      files.ca = path.join(this.deviceFilesDir, 'ca.crt');
      // The CA never changes while the store is open: write the device copy once.
      if (!this.caFileWritten) {
        await writeFileAtomic(files.ca, this.caCertificatePem);
        this.caFileWritten = true;
      }
    }
    await this.updateMosquittoDirs(spec.kind === 'server' ? spec.commonName : undefined);

    return {
      record: { ...record },
      certificatePem,
      certificateDer: der,
      privateKeyPem,
      caCertificatePem: this.caCertificatePem,
      fingerprints: { sha1: fingerprint(der, 'sha1'), sha256: record.sha256 },
      files,
      warnings,
    };
  }

  private async writeCrl(): Promise<void> {
    this.index.crlNumber += 1;
    const thisUpdate = new Date(Date.now() - BACKDATE_MS);
    // Whole seconds: what the CRL can hold, so the time read back after a restart is the same.
    const nextUpdate = new Date(Math.floor((Date.now() + this.options.crlValidityDays * DAY_MS) / 1000) * 1000);
    const crl = await x509.X509CrlGenerator.create({
      issuer: this.caCert.subjectName,
      thisUpdate,
      nextUpdate,
      signingKey: this.signingKey,
      signingAlgorithm: RSA_SHA256,
      entries: this.index.certificates
        .filter((r) => r.revokedAt)
        .map((r) => ({
          serialNumber: r.serial,
          revocationDate: new Date(r.revokedAt!),
          reason: REVOCATION_REASONS[r.revocationReason ?? 'unspecified'],
        })),
      extensions: [
        await x509.AuthorityKeyIdentifierExtension.create(this.caCert.publicKey, false),
        new x509.Extension(id_ce_cRLNumber, false, AsnConvert.serialize(new CRLNumber(this.index.crlNumber))),
      ],
    });
    await this.journal.append({ t: 'crl', n: this.index.crlNumber });
    const pem = toPem('X509 CRL', crl.rawData);
    await writeFileAtomic(this.crlFile, pem);
    this.crlNextUpdate = nextUpdate;
    for (const listener of this.crlListeners) listener(pem);
  }
}

// ---- CA creation and loading -----------------------------------------------------------

async function createCa(dir: string, options: CaStoreOptions): Promise<{ caKey: KeyObject; caPem: string }> {
  const keySize = assertKeySize(options.keySize ?? 2048);
  const validityDays = assertValidityDays(options.validityDays, 3650);
  const commonName = options.commonName?.trim() || 'ESP Fleet CA';
  // One attribute per RDN (O, then CN), as openssl writes names.
  const subject: Record<string, string[]>[] = [{ CN: [commonName] }];
  if (options.organization?.trim()) subject.unshift({ O: [options.organization.trim()] });

  const material = await generateRsaKey(keySize);
  const caKey = readRsaPrivateKey(material.privateKeyPem);
  const now = Date.now();
  const publicKey = await x509.PublicKey.create(Uint8Array.from(material.publicKeySpki));
  const cert = await x509.X509CertificateGenerator.create({
    serialNumber: '01',
    subject,
    issuer: subject,
    notBefore: new Date(now - BACKDATE_MS),
    notAfter: new Date(now + validityDays * DAY_MS),
    publicKey,
    signingKey: await toSigningKey(caKey),
    signingAlgorithm: RSA_SHA256,
    extensions: [
      new x509.BasicConstraintsExtension(true, 0, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
      await x509.SubjectKeyIdentifierExtension.create(publicKey),
    ],
  });
  const caPem = toPem('CERTIFICATE', cert.rawData);
  // Key first, certificate last: a store counts as created only once ca.crt exists.
  await writeFileAtomic(path.join(dir, FILES.caKey), exportPrivateKeyPem(caKey, options.passphrase), PRIVATE_FILE_MODE);
  await writeFileAtomic(path.join(dir, FILES.caCert), caPem);
  return { caKey, caPem };
}

async function importCa(
  dir: string,
  imported: NonNullable<CaStoreOptions['importPem']>,
  passphrase: string | undefined,
): Promise<{ caKey: KeyObject; caPem: string }> {
  let cert: NodeX509;
  try {
    cert = new NodeX509(imported.certificate);
  } catch (err) {
    throw new CaStoreError(`cannot read the CA certificate to import: ${(err as Error).message}`);
  }
  if (!cert.ca) throw new CaStoreError('the certificate to import is not a CA certificate (basicConstraints CA:TRUE missing)');
  const caKey = readRsaPrivateKey(imported.privateKey, imported.passphrase ?? passphrase);
  if (!keyBelongsTo(caKey, cert)) {
    throw new CaStoreError('the private key does not belong to the CA certificate');
  }
  const caPem = cert.toString();
  await writeFileAtomic(path.join(dir, FILES.caKey), exportPrivateKeyPem(caKey, passphrase), PRIVATE_FILE_MODE);
  await writeFileAtomic(path.join(dir, FILES.caCert), caPem);
  return { caKey, caPem };
}

async function loadExistingCa(dir: string, caPem: string, options: CaStoreOptions): Promise<{ caKey: KeyObject; caPem: string }> {
  const keyPem = await readFileIfExists(path.join(dir, FILES.caKey));
  if (keyPem === undefined) throw new CaStoreError(`the CA in ${dir} has no ca.key; restore it from a backup (a CA is never regenerated)`);
  const caKey = readRsaPrivateKey(keyPem, options.passphrase);
  if (!keyBelongsTo(caKey, new NodeX509(caPem))) {
    throw new CaStoreError(`ca.key in ${dir} does not belong to ca.crt`);
  }
  if (options.importPem && new NodeX509(options.importPem.certificate).fingerprint256 !== new NodeX509(caPem).fingerprint256) {
    throw new CaStoreError(`${dir} already holds another CA; choose an empty folder to import into`);
  }
  // A passphrase set after the store was created: encrypt the key at rest from now on.
  if (options.passphrase && !keyPem.includes('ENCRYPTED')) {
    await writeFileAtomic(path.join(dir, FILES.caKey), exportPrivateKeyPem(caKey, options.passphrase), PRIVATE_FILE_MODE);
  }
  return { caKey, caPem };
}

/** The CRL already on disk, so a restart does not re-sign a CRL that is still fresh. */
async function readCrlNextUpdate(file: string): Promise<Date | undefined> {
  const pem = await readFileIfExists(file);
  if (pem === undefined) return undefined;
  try {
    return new x509.X509Crl(pem.replace(/X509 CRL/g, 'CRL')).nextUpdate;
  } catch {
    return undefined; // unreadable: treat as missing and re-sign
  }
}

function replay(entries: JournalEntry[]): StoreIndex {
  const index: StoreIndex = { nextSerial: FIRST_LEAF_SERIAL, crlNumber: 0, certificates: [], bySerial: new Map(), byName: new Map(), mosquitto: [] };
  for (const e of entries) {
    switch (e.t) {
      case 'cert':
        addRecord(index, e.r);
        index.nextSerial = Math.max(index.nextSerial, parseInt(e.r.serial, 16) + 1);
        break;
      case 'revoke': {
        const r = index.bySerial.get(e.serial);
        if (r) Object.assign(r, { revokedAt: e.at, revocationReason: e.reason });
        break;
      }
      case 'mosquitto':
        index.mosquitto = index.mosquitto.filter((m) => m.dir !== e.m.dir).concat(e.m);
        break;
      case 'crl':
        index.crlNumber = Math.max(index.crlNumber, e.n);
        break;
    }
  }
  return index;
}

/**
 * The journal is gone but certificates were issued: recover the latest certificate of each
 * identity from the folders devices download from, so their serials are never issued again.
 */
async function rebuildJournal(dir: string): Promise<JournalEntry[]> {
  const entries: JournalEntry[] = [];
  for (const folder of [FILES.devices, FILES.servers, FILES.backends]) {
    const names = await fs.readdir(path.join(dir, folder)).catch(() => [] as string[]);
    for (const name of names.filter((n) => n.endsWith('.crt') && n !== 'ca.crt')) {
      const der = new NodeX509(await fs.readFile(path.join(dir, folder, name))).raw;
      const cert = new NodeX509(der);
      const cn = /CN=([^\n,]+)/.exec(cert.subject)?.[1] ?? '';
      const kind: CertificateKind = folder === FILES.devices ? 'device' : folder === FILES.servers ? 'server' : 'backend';
      entries.push({
        t: 'cert',
        der: der.toString('base64'),
        r: {
          serial: normalizeSerial(cert.serialNumber),
          commonName: cn,
          kind,
          notBefore: new Date(cert.validFrom).toISOString(),
          notAfter: new Date(cert.validTo).toISOString(),
          sha256: cert.fingerprint256,
          keySource: 'generated',
        },
      });
    }
  }
  return entries;
}

function asList(value: unknown, name: string): string[] {
  if (value === undefined || value === null || value === '') return [];
  if (typeof value === 'string') return value.split(/[\s,]+/).filter(Boolean);
  if (Array.isArray(value) && value.every((v) => typeof v === 'string')) return value as string[];
  throw new CaStoreError(`${name} must be a list of strings or a comma-separated string`);
}

function assertRsaKey(key: KeyObject): void {
  const bits = key.asymmetricKeyDetails?.modulusLength ?? 0;
  if (key.asymmetricKeyType !== 'rsa') throw new CaStoreError(`the CSR key is ${key.asymmetricKeyType ?? 'unknown'}; ESP8266 devices use RSA keys`);
  if (bits < 2048 || bits > 4096) throw new CaStoreError(`the CSR key has ${bits} bits; use 2048 to 4096`);
}

