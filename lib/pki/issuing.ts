import { promises as fs } from 'node:fs';
import * as path from 'node:path';
import { KeyObject, X509Certificate as NodeX509 } from 'node:crypto';
import { x509, toPem, fingerprint } from './x509';
import { KeyType, RsaKeySize, assertKeyType, generateLeafKey, generateRsaKey, keyTypeName, leafKeyTypeOf } from './keys';
import { assertBackendName, assertDnsName, assertIpAddress, assertValidityDays, normalizeSerial } from './names';
import { buildTbsCertificate, signCertificate, subjectNameOf, keyIdentifier } from './leaf-certificate';
import { readVerifiedCsr, isVerifiedCsr, VerifiedCsr } from './csr';
import { CaStoreError } from './ca-error';
import { BACKDATE_MS, Clock, DAY_MS } from './clock';
import { CertificateKind, IssuedRecord, RecordIndex, RevocationReason } from './records';
import { Journal, certificateDerFromJournal } from './journal';
import { FILES, identityFile } from './store-layout';
import { normalizeDeviceId } from '../device-id';
import { writeFileAtomic, PRIVATE_FILE_MODE } from '../fs/atomic-file';
import { KeyedLock } from '../concurrency/keyed-lock';
import { shownInput } from '../input-text';

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

export interface IssuerOptions {
  dir: string;
  caCert: x509.X509Certificate;
  caCertificatePem: string;
  /** Native key: leaves are signed with node:crypto, not WebCrypto. */
  caKey: KeyObject;
  index: RecordIndex;
  journal: Journal;
  now: Clock;
  leafKeySize: RsaKeySize;
  leafValidityDays: number;
  /** Told of each certificate once it is in the journal and its files are written; issuing settles after it. */
  published: (record: IssuedRecord) => Promise<void>;
  /** The store's revocation (a replaced or renewed certificate is revoked as superseded). */
  revoke: (serial: string, reason: RevocationReason) => Promise<IssuedRecord>;
}

/** What one leaf is made of, before it has a serial. */
interface LeafRequest {
  kind: CertificateKind;
  commonName: string;
  spki: Buffer;
  validityDays: number;
  keySource: IssuedRecord['keySource'];
  dnsNames?: string[];
  ipAddresses?: string[];
  renewedFrom?: string;
}

/**
 * Issuing leaves: devices (fresh key or CSR), servers, backends, renewals. Every certificate is
 * in the journal before anyone sees it, so a serial that was ever handed out is never used
 * again, even after a crash.
 */
export class LeafIssuer {
  /** Get-or-issue and issue-unless-held run one at a time per identity (lib/pki/identity.ts). */
  private readonly identityLocks = new KeyedLock();
  /** Fixed for the CA's life, so computed once instead of per certificate. */
  private readonly issuerName: Buffer;
  private readonly authorityKeyId: Buffer;
  private caFileWritten = false;

  constructor(private readonly o: IssuerOptions) {
    this.issuerName = subjectNameOf(Buffer.from(o.caCert.rawData));
    const ski = o.caCert.getExtension(x509.SubjectKeyIdentifierExtension)?.keyId;
    this.authorityKeyId = ski ? Buffer.from(ski, 'hex') : keyIdentifier(Buffer.from(o.caCert.publicKey.rawData));
  }

  get deviceFilesDir(): string {
    return path.join(this.o.dir, FILES.devices);
  }

  /** Runs `job` for one identity at a time: the same (kind, name) never has two get-or-issue or issue steps at once. */
  serialized<T>(kind: CertificateKind, name: string, job: () => Promise<T>): Promise<T> {
    return this.identityLocks.run(`${kind}:${name}`, job);
  }

  /**
   * A certificate and a fresh key for a device. One device, one valid certificate: an id that
   * holds one is refused unless `replace` is set, which revokes the old one (superseded) once
   * the new one is stored. Renewal keeps the old one valid instead (renew).
   */
  async issueDevice(idInput: unknown, opts: { validityDays?: unknown; replace?: unknown; keyType?: unknown } = {}): Promise<IssuedCertificate> {
    const id = normalizeDeviceId(idInput);
    const validityDays = assertValidityDays(opts.validityDays, this.o.leafValidityDays);
    const keyType = assertKeyType(opts.keyType);
    return this.issueUnlessHeld(id, opts.replace, async () => {
      const key = await generateLeafKey(keyType, this.o.leafKeySize);
      return this.issueAndSave({ kind: 'device', commonName: id, spki: key.publicKeySpki, validityDays, keySource: 'generated' }, key.privateKeyPem);
    });
  }

  async issueServer(opts: { commonName: unknown; dnsNames?: unknown; ipAddresses?: unknown; validityDays?: unknown }): Promise<IssuedCertificate> {
    const commonName = assertDnsName(opts.commonName);
    const dnsNames = [commonName, ...asList(opts.dnsNames, 'dnsNames').map(assertDnsName)];
    const ipAddresses = asList(opts.ipAddresses, 'ipAddresses').map(assertIpAddress);
    const validityDays = assertValidityDays(opts.validityDays, this.o.leafValidityDays);
    const key = await generateRsaKey(this.o.leafKeySize);
    return this.issueAndSave(
      { kind: 'server', commonName, spki: key.publicKeySpki, validityDays, keySource: 'generated', dnsNames: [...new Set(dnsNames)], ipAddresses },
      key.privateKeyPem,
    );
  }

  async issueBackend(opts: { commonName?: unknown; validityDays?: unknown } = {}): Promise<IssuedCertificate> {
    const commonName = assertBackendName(opts.commonName ?? 'node-red');
    const validityDays = assertValidityDays(opts.validityDays, this.o.leafValidityDays);
    const key = await generateRsaKey(this.o.leafKeySize);
    return this.issueAndSave({ kind: 'backend', commonName, spki: key.publicKeySpki, validityDays, keySource: 'generated' }, key.privateKeyPem);
  }

  /**
   * Signs a device's CSR after checking its self-signature, that its CN is the expected id and
   * that its key is EC P-256 or RSA 2048..4096 (and of `keyType`, when given).
   */
  async signCsr(csrPem: unknown, opts: { deviceId: unknown; validityDays?: unknown; replace?: unknown; keyType?: unknown }): Promise<IssuedCertificate> {
    const expected = normalizeDeviceId(opts.deviceId);
    const validityDays = assertValidityDays(opts.validityDays, this.o.leafValidityDays);
    const wanted = opts.keyType === undefined || opts.keyType === '' ? undefined : assertKeyType(opts.keyType);
    const csr = verifiedCsr(csrPem, wanted);
    if (csr.commonName !== expected) throw new CaStoreError(`the CSR is for CN ${shownInput(csr.commonName ?? '')}, expected device ${expected}`);
    const spki = csr.spki;
    return this.issueUnlessHeld(expected, opts.replace, () => this.issueAndSave({ kind: 'device', commonName: expected, spki, validityDays, keySource: 'csr' }));
  }

  /**
   * A new certificate for an identity we issued before: same key (taken from the old
   * certificate) or a fresh one. The old one stays valid unless `revokeOld` is set, so a
   * device can still fetch its new files with the old certificate.
   */
  async renew(opts: { serial?: unknown; commonName?: unknown; newKey?: boolean; keyType?: unknown; validityDays?: unknown; revokeOld?: boolean }): Promise<IssuedCertificate> {
    const old = this.findForRenewal(opts);
    const validityDays = assertValidityDays(opts.validityDays, this.o.leafValidityDays);
    const keyType = assertKeyType(opts.keyType);
    // The old key is kept unless newKey: a keyType there would be silently ignored.
    if (!opts.newKey && opts.keyType !== undefined && opts.keyType !== '') throw new CaStoreError('keyType needs newKey: true (a renewal keeps the old key otherwise)');
    const base = { kind: old.kind, commonName: old.commonName, validityDays, dnsNames: old.dnsNames, ipAddresses: old.ipAddresses, renewedFrom: old.serial };
    let issued: IssuedCertificate;
    if (opts.newKey) {
      const key = await generateLeafKey(keyType, this.o.leafKeySize);
      issued = await this.issueAndSave({ ...base, spki: key.publicKeySpki, keySource: 'generated' }, key.privateKeyPem);
    } else {
      const spki = new NodeX509(await certificateDerFromJournal(this.o.journal, old.serial)).publicKey.export({ type: 'spki', format: 'der' });
      issued = await this.issueAndSave({ ...base, spki, keySource: old.keySource });
    }
    if (opts.revokeOld) await this.o.revoke(old.serial, 'superseded');
    return issued;
  }

  /**
   * A new certificate for the identity of `serial` with the key of a CSR the holder signed (EST
   * simplereenroll, RFC 7030 §4.2.2). The old certificate must be ours, unrevoked and not
   * expired, the CSR's CN must be its CN; the old one stays valid (the holder switches over).
   */
  async renewWithCsr(opts: { serial: unknown; csrPem: unknown; validityDays?: unknown }): Promise<IssuedCertificate> {
    const validityDays = assertValidityDays(opts.validityDays, this.o.leafValidityDays);
    const old = this.o.index.findBySerial(normalizeSerial(opts.serial));
    if (old.revokedAt) throw new CaStoreError(`certificate ${old.serial} is revoked; it cannot be renewed`);
    if (old.notAfter <= this.o.now().toISOString()) throw new CaStoreError(`certificate ${old.serial} has expired; it cannot be renewed`);
    const csr = verifiedCsr(opts.csrPem, undefined);
    if (csr.commonName !== old.commonName) throw new CaStoreError(`the CSR is for CN ${shownInput(csr.commonName ?? '')}, expected ${shownInput(old.commonName)}`);
    return this.issueAndSave({
      kind: old.kind,
      commonName: old.commonName,
      spki: csr.spki,
      validityDays,
      keySource: 'csr',
      dnsNames: old.dnsNames,
      ipAddresses: old.ipAddresses,
      renewedFrom: old.serial,
    });
  }

  private issueUnlessHeld(id: string, replace: unknown, issue: () => Promise<IssuedCertificate>): Promise<IssuedCertificate> {
    return this.serialized('device', id, async () => {
      const held = this.o.index.latestValid('device', id, this.o.now());
      if (held && replace !== true) {
        throw new CaStoreError(
          `device ${id} already holds a valid certificate (serial ${held.serial}, valid until ${held.notAfter.slice(0, 10)}): renew it, or set replace: true to revoke it and issue a new one`,
        );
      }
      const issued = await issue();
      if (held) await this.o.revoke(held.serial, 'superseded');
      return issued;
    });
  }

  private findForRenewal(opts: { serial?: unknown; commonName?: unknown }): IssuedRecord {
    if (opts.serial !== undefined && opts.serial !== '') {
      const record = this.o.index.findBySerial(normalizeSerial(opts.serial));
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
    const candidates = this.o.index.named(cn).filter((r) => !r.revokedAt);
    if (candidates.length === 0) throw new CaStoreError(`no valid certificate for ${shownInput(cn)} to renew`);
    return candidates.reduce((a, b) => (a.notAfter >= b.notAfter ? a : b));
  }

  private async issueAndSave(spec: LeafRequest, privateKeyPem?: string): Promise<IssuedCertificate> {
    const { index, caCert, dir } = this.o;
    const serial = index.allocateSerial();
    const now = this.o.now().getTime();
    const notBefore = new Date(now - BACKDATE_MS);
    const notAfter = new Date(Math.min(now + spec.validityDays * DAY_MS, caCert.notAfter.getTime()));
    const warnings: string[] = [];
    if (notAfter.getTime() < now + spec.validityDays * DAY_MS) warnings.push(`validity shortened to the CA's expiry (${caCert.notAfter.toISOString()})`);
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
    const der = await signCertificate(tbs, this.o.caKey);
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
    await this.o.journal.append({ t: 'cert', r: record, der: der.toString('base64') });
    index.add(record);

    const files: IssuedCertificate['files'] = { certificate: identityFile(dir, spec.kind, spec.commonName, 'crt') };
    // The certificate and its key (or the removal of a stale key) at once: two files, twice the waiting otherwise.
    const writes = [writeFileAtomic(files.certificate, certificatePem)];
    if (privateKeyPem) {
      files.privateKey = identityFile(dir, spec.kind, spec.commonName, 'key');
      writes.push(writeFileAtomic(files.privateKey, privateKeyPem, PRIVATE_FILE_MODE));
    } else if (spec.keySource === 'csr') {
      // The holder keeps its own key: a key made here earlier no longer matches, so never serve it.
      writes.push(fs.rm(identityFile(dir, spec.kind, spec.commonName, 'key'), { force: true }));
    }
    await settleAll(writes);
    if (spec.kind === 'device') {
      files.ca = path.join(this.deviceFilesDir, 'ca.crt');
      // The CA never changes while the store is open: write the device copy once.
      if (!this.caFileWritten) {
        await writeFileAtomic(files.ca, this.o.caCertificatePem);
        this.caFileWritten = true;
      }
    }
    await this.o.published({ ...record });

    return {
      record: { ...record },
      certificatePem,
      certificateDer: der,
      privateKeyPem,
      caCertificatePem: this.o.caCertificatePem,
      fingerprints: { sha1: fingerprint(der, 'sha1'), sha256: record.sha256 },
      files,
      warnings,
    };
  }
}

/** Waits for every write, then fails with the first failure (none left running behind a rejection). */
async function settleAll(writes: Promise<unknown>[]): Promise<void> {
  const results = await Promise.allSettled(writes);
  const failed = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
  if (failed) throw failed.reason;
}

function asList(value: unknown, name: string): string[] {
  if (value === undefined || value === null || value === '') return [];
  if (typeof value === 'string') return value.split(/[\s,]+/).filter(Boolean);
  if (Array.isArray(value) && value.every((v) => typeof v === 'string')) return value as string[];
  throw new CaStoreError(`${name} must be a list of strings or a comma-separated string`);
}

/** A CSR whose signature verifies and whose key we sign: EC P-256 or RSA 2048..4096 (and `wanted`, when given). */
function verifiedCsr(csrPem: unknown, wanted: KeyType | undefined): VerifiedCsr {
  // Verified already by the caller (the enrollment desk): only the key rule is left to check.
  if (isVerifiedCsr(csrPem)) {
    const keyType = leafKeyTypeOf(csrPem.publicKey, 'the CSR key');
    if (wanted && keyType !== wanted) throw new CaStoreError(`the CSR key is ${keyTypeName(keyType)}, not the ${keyTypeName(wanted)} asked for (keyType)`);
    return csrPem;
  }
  if (typeof csrPem !== 'string') throw new CaStoreError('csr must be a PEM certificate request (-----BEGIN CERTIFICATE REQUEST-----)');
  try {
    return readVerifiedCsr(csrPem, (key) => {
      const keyType = leafKeyTypeOf(key, 'the CSR key');
      if (wanted && keyType !== wanted) throw new CaStoreError(`the CSR key is ${keyTypeName(keyType)}, not the ${keyTypeName(wanted)} asked for (keyType)`);
    });
  } catch (err) {
    throw err instanceof CaStoreError ? err : new CaStoreError((err as Error).message);
  }
}
