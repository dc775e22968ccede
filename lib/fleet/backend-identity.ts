import type { CaStore } from '../pki/ca-store';
import { identity } from '../pki/identity';

export interface TlsMaterial {
  ca: string;
  cert: string;
  key: string;
}

/**
 * Node-RED's own MQTT client identity from the CA (the "one click" path of the fleet node):
 * the one get-or-issue step of lib/pki/identity.ts, with the CA certificate beside it.
 */
export async function backendIdentity(store: CaStore, backendName: string): Promise<TlsMaterial & { issued: boolean }> {
  const id = await identity(store, { kind: 'backend', commonName: backendName });
  return { ca: store.caCertificatePem, cert: id.cert, key: id.key, issued: id.issued };
}
