import { promises as fs } from 'node:fs';
import { X509Certificate } from 'node:crypto';
import { CaStore, CertificateKind, IssuedRecord } from '../pki/ca-store';
import { normalizeSerial } from '../pki/names';

export interface TlsMaterial {
  ca: string;
  cert: string;
  key: string;
}

/**
 * Node-RED's own MQTT client identity from the CA: the certificate on disk for that name if
 * the CA still counts it valid (not revoked, not expiring within a day), otherwise a new one.
 * This is the "one click" path of the fleet node.
 */
export async function backendIdentity(store: CaStore, backendName: string): Promise<TlsMaterial & { issued: boolean }> {
  const onDisk = await storedIdentity(store, 'backend', backendName);
  if (onDisk) return { ca: store.caCertificatePem, cert: onDisk.cert, key: onDisk.key, issued: false };
  const issued = await store.issueBackend({ commonName: backendName });
  return { ca: store.caCertificatePem, cert: issued.certificatePem, key: issued.privateKeyPem!, issued: true };
}

/**
 * The certificate and key on disk for an identity, when the CA still counts that certificate
 * valid for more than a day and it passes `fits` (e.g. carries the wanted DNS names).
 */
export async function storedIdentity(
  store: CaStore,
  kind: CertificateKind,
  commonName: string,
  fits: (record: IssuedRecord) => boolean = () => true,
): Promise<{ cert: string; key: string; record: IssuedRecord } | undefined> {
  const files = store.identityFiles(kind, commonName);
  let cert: string;
  let key: string;
  try {
    [cert, key] = await Promise.all([fs.readFile(files.certificate, 'utf8'), fs.readFile(files.privateKey, 'utf8')]);
  } catch {
    return undefined;
  }
  const record = validRecord(store, cert);
  return record && fits(record) ? { cert, key, record } : undefined;
}

function validRecord(store: CaStore, pem: string): IssuedRecord | undefined {
  try {
    const record = store.findBySerial(normalizeSerial(new X509Certificate(pem).serialNumber));
    return !record.revokedAt && Date.parse(record.notAfter) > Date.now() + 86_400_000 ? record : undefined;
  } catch {
    return undefined;
  }
}
