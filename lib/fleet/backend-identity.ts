import { promises as fs } from 'node:fs';
import { CaStore } from '../pki/ca-store';

export interface TlsMaterial {
  ca: string;
  cert: string;
  key: string;
}

/**
 * Node-RED's own MQTT client identity from the CA: the newest valid backend certificate of
 * that name, issued on first use. This is the "one click" path of the fleet node.
 */
export async function backendIdentity(store: CaStore, backendName: string): Promise<TlsMaterial & { issued: boolean }> {
  const now = new Date().toISOString();
  const existing = store.list({ kind: 'backend' }).find((r) => r.commonName === backendName && r.notAfter > now);
  const { certificate: certFile, privateKey: keyFile } = store.identityFiles('backend', backendName);
  let issued = false;
  const haveFiles = await Promise.all([fs.access(certFile), fs.access(keyFile)]).then(() => true, () => false);
  if (!existing || !haveFiles) {
    await store.issueBackend({ commonName: backendName });
    issued = true;
  }
  const [cert, key] = await Promise.all([fs.readFile(certFile, 'utf8'), fs.readFile(keyFile, 'utf8')]);
  return { ca: store.caCertificatePem, cert, key, issued };
}
