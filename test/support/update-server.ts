import { readFileSync } from 'node:fs';
import * as path from 'node:path';
import type { CaStore } from '../../lib/pki/ca-store';
import type { UpdateServerOptions } from '../../lib/firmware/update-server';
import type { ClientIdentity } from './raw-https';

/** A device's TLS identity as its files in the CA store's devices/ folder (none: no client certificate). */
export function deviceIdentity(store: CaStore, device?: string): ClientIdentity {
  return {
    ca: store.caCertificatePem,
    cert: device ? readFileSync(path.join(store.deviceFilesDir, `${device}.crt`), 'utf8') : undefined,
    key: device ? readFileSync(path.join(store.deviceFilesDir, `${device}.key`), 'utf8') : undefined,
  };
}

/** What every update server of the tests shares: 127.0.0.1, a free port, the store's `localhost` identity and CRL, /fw. */
export async function localServerOptions(store: CaStore): Promise<Pick<UpdateServerOptions, 'tls' | 'clientCertificates' | 'downloadPath' | 'deviceFilesDir'> & { port: number; host: string }> {
  const tlsId = store.identityFiles('server', 'localhost');
  return {
    port: 0,
    host: '127.0.0.1',
    tls: { key: readFileSync(tlsId.privateKey, 'utf8'), cert: readFileSync(tlsId.certificate, 'utf8'), ca: store.caCertificatePem, crl: await store.crlPem() },
    clientCertificates: 'required',
    downloadPath: '/fw',
    deviceFilesDir: store.deviceFilesDir,
  };
}
