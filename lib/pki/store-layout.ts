import * as path from 'node:path';
import type { CertificateKind } from './records';

/** The files of a CA store folder (docs/wire-contract.md names the ones devices download). */
export const FILES = {
  caCert: 'ca.crt',
  caKey: 'ca.key',
  journal: 'journal.jsonl',
  crl: 'crl.pem',
  devices: 'devices',
  servers: 'servers',
  backends: 'backends',
} as const;

/** The folder that holds the current certificate and key of each identity of a kind. */
export const KIND_FOLDERS: Record<CertificateKind, string> = {
  device: FILES.devices,
  server: FILES.servers,
  backend: FILES.backends,
};

/** `<store>/<kind folder>/<common name>.crt|key`. */
export function identityFile(dir: string, kind: CertificateKind, commonName: string, ext: 'crt' | 'key'): string {
  return path.join(dir, KIND_FOLDERS[kind], `${commonName}.${ext}`);
}
