import { promises as fs } from 'node:fs';
import { X509Certificate } from 'node:crypto';
import type { CaStore, CertificateKind, IssuedRecord } from './ca-store';
import { keyBelongsTo, readRsaPrivateKey } from './keys';
import { normalizeSerial } from './names';

/** A TLS identity of this process (a server's, or Node-RED's own client identity). */
export interface IdentityRequest {
  kind: Exclude<CertificateKind, 'device'>;
  /** The CN; for a server also the first DNS name. */
  commonName: string;
  /** Server only: every DNS name the certificate must carry (the CN is added). */
  dnsNames?: string[];
}

export interface TlsIdentity {
  cert: string;
  key: string;
  record: IssuedRecord;
  /** True when this call issued it. */
  issued: boolean;
}

/** A stored certificate is reused only while it has more than this left; later it is replaced. */
export const IDENTITY_RENEW_MARGIN_MS = 86_400_000;

/**
 * One identity, one certificate (docs/architecture.md, Identities): the one get-or-issue step
 * every node uses for the TLS identities of this process. It runs serialized per identity
 * across every caller of the store (all server names share one queue, since names overlap), so
 * two nodes that start together never both issue, and never read a certificate and a key
 * written by two different issuances.
 *
 * A stored certificate is reused when the CA counts it valid (not revoked, more than a day
 * left), it carries every wanted name, and the key on disk belongs to it. Servers: any valid
 * server certificate that carries all the wanted DNS names is shared, whatever its CN, so a
 * broker and an update server on the same host name use one. When none fits, a new one is
 * issued for the wanted names together with those of the valid certificates it overlaps, and
 * those are revoked as superseded: each host name has exactly one valid server certificate.
 */
export function identity(store: CaStore, request: IdentityRequest): Promise<TlsIdentity> {
  const queue = request.kind === 'server' ? '*' : request.commonName;
  return store.serialized(request.kind, queue, () => (request.kind === 'server' ? serverIdentity(store, request) : backendIdentity(store, request.commonName)));
}

async function backendIdentity(store: CaStore, commonName: string): Promise<TlsIdentity> {
  const current = usable(store, store.currentIdentity('backend', commonName));
  const stored = current && (await readMatching(store, current));
  if (stored) return { ...stored, issued: false };
  const issued = await store.issueBackend({ commonName });
  return { cert: issued.certificatePem, key: issued.privateKeyPem!, record: issued.record, issued: true };
}

async function serverIdentity(store: CaStore, request: IdentityRequest): Promise<TlsIdentity> {
  const wanted = [...new Set([request.commonName, ...(request.dnsNames ?? [])].map((n) => n.toLowerCase()))];
  const valid = store.list({ kind: 'server' }).filter((r) => usable(store, r));
  // Prefer the certificate named after the first wanted name, then the one that lasts longest.
  const fitting = valid
    .filter((r) => wanted.every((n) => r.dnsNames?.includes(n)))
    .sort((a, b) => Number(b.commonName === wanted[0]) - Number(a.commonName === wanted[0]) || b.notAfter.localeCompare(a.notAfter));
  for (const record of fitting) {
    const stored = await readMatching(store, record);
    if (stored) return { ...stored, issued: false };
  }
  const overlapping = valid.filter((r) => r.dnsNames?.some((n) => wanted.includes(n)));
  const names = [...new Set([...wanted, ...overlapping.flatMap((r) => r.dnsNames ?? [])])];
  const issued = await store.issueServer({ commonName: wanted[0], dnsNames: names.slice(1) });
  for (const old of overlapping) await store.revoke(old.serial, 'superseded');
  return { cert: issued.certificatePem, key: issued.privateKeyPem!, record: issued.record, issued: true };
}

function usable(store: CaStore, record: IssuedRecord | undefined): IssuedRecord | undefined {
  return record && !record.revokedAt && Date.parse(record.notAfter) > store.now().getTime() + IDENTITY_RENEW_MARGIN_MS ? record : undefined;
}

/** The record's certificate and key from the store's files, when the files are that certificate and its key. */
async function readMatching(store: CaStore, record: IssuedRecord): Promise<Omit<TlsIdentity, 'issued'> | undefined> {
  const files = store.identityFiles(record.kind, record.commonName);
  try {
    const [cert, key] = await Promise.all([fs.readFile(files.certificate, 'utf8'), fs.readFile(files.privateKey, 'utf8')]);
    const x509 = new X509Certificate(cert);
    if (normalizeSerial(x509.serialNumber) !== record.serial || !keyBelongsTo(readRsaPrivateKey(key), x509)) return undefined;
    return { cert, key, record };
  } catch {
    return undefined; // missing or unreadable files: issue anew
  }
}
