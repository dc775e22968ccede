import { promises as fs } from 'node:fs';
import { X509Certificate } from 'node:crypto';
import { CaStore } from '../pki/ca-store';
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
  const files = store.identityFiles('backend', backendName);
  const read = async (): Promise<{ cert: string; key: string } | undefined> => {
    try {
      const [cert, key] = await Promise.all([fs.readFile(files.certificate, 'utf8'), fs.readFile(files.privateKey, 'utf8')]);
      return { cert, key };
    } catch {
      return undefined;
    }
  };
  const onDisk = await read();
  if (onDisk && isStillValid(store, onDisk.cert)) return { ca: store.caCertificatePem, ...onDisk, issued: false };
  const issued = await store.issueBackend({ commonName: backendName });
  return { ca: store.caCertificatePem, cert: issued.certificatePem, key: issued.privateKeyPem!, issued: true };
}

function isStillValid(store: CaStore, pem: string): boolean {
  try {
    const record = store.findBySerial(normalizeSerial(new X509Certificate(pem).serialNumber));
    return !record.revokedAt && Date.parse(record.notAfter) > Date.now() + 86_400_000;
  } catch {
    return false;
  }
}
