// The `p12` action of esp-cert-issuer: one identity of the store as a .p12, for tools that take
// an identity as one file. Only reads the CA folder; the .p12 goes to the msg and, if asked, a file.
import { promises as fs } from 'node:fs';
import { fileInUserDir } from '../fs/user-file';
import { X509Certificate } from 'node:crypto';
import type { CaStore, CertificateKind } from './ca-store';
import { buildPkcs12, checkPkcs12Password, Pkcs12Error } from './pkcs12';
import { normalizeDeviceId } from '../device-id';
import { normalizeSerial } from './names';
import { writeFileAtomic, PRIVATE_FILE_MODE } from '../fs/atomic-file';
import { shownInput } from '../input-text';

export interface P12Result {
  action: 'p12';
  kind: CertificateKind;
  commonName: string;
  serial: string;
  notAfter: string;
  p12: Buffer;
  /** Absolute path of the written file, when one was asked for. */
  file?: string;
}

const KINDS: readonly CertificateKind[] = ['backend', 'device', 'server'];
/** What tools expect a PKCS#12 to be called; it also keeps a msg from overwriting flows.json or a key. */
const P12_EXTENSIONS = ['.p12', '.pfx'];

/** `file` of the msg: in the user directory or absolute, ending in .p12 or .pfx (lib/fs/user-file.ts). */
export function p12FilePath(userDir: string, file: unknown): string {
  return fileInUserDir(userDir, file, { extensions: P12_EXTENSIONS, what: '.p12 file', example: 'certs/node-red.p12', fail: (m) => new Pkcs12Error(m) });
}

export async function exportP12(store: CaStore, args: Record<string, unknown>, password: unknown, userDir: string | undefined): Promise<P12Result> {
  // Everything the msg got wrong is refused before a file is read.
  checkPkcs12Password(password);
  const kind = args.kind as CertificateKind;
  if (!KINDS.includes(kind)) throw new Pkcs12Error(`kind must be backend, device or server, got ${shownInput(args.kind)}`);
  const raw = args.name ?? args.commonName;
  if (typeof raw !== 'string' || raw.trim() === '') throw new Pkcs12Error(`p12 needs the name of the ${kind} (its common name${kind === 'device' ? ': the device id' : ''})`);
  const commonName = kind === 'device' ? normalizeDeviceId(raw) : raw.trim();
  let file: string | undefined;
  if (args.file !== undefined) {
    if (!userDir) throw new Pkcs12Error('writing a .p12 file needs the Node-RED user directory (run it from an esp-cert-issuer node)');
    file = p12FilePath(userDir, args.file);
  }

  // Only names the store issued reach a path: the index holds validated common names.
  const record = store.currentIdentity(kind, commonName);
  if (!record) {
    const why = store.everIssued(kind, commonName) ? 'its certificates are revoked or expired' : 'this CA never issued one';
    throw new Pkcs12Error(`no valid ${kind} certificate for ${JSON.stringify(commonName)}: ${why}`);
  }
  const files = store.identityFiles(kind, commonName);
  const certificatePem = await fs.readFile(files.certificate, 'utf8');
  if (normalizeSerial(new X509Certificate(certificatePem).serialNumber) !== record.serial) {
    throw new Pkcs12Error(`the ${kind} certificate on disk for ${JSON.stringify(commonName)} is not its current one (serial ${record.serial}): renew it`);
  }
  let privateKeyPem: string;
  try {
    privateKeyPem = await fs.readFile(files.privateKey, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
    throw new Pkcs12Error(`${JSON.stringify(commonName)} has no private key in the CA folder: its certificate was signed from a CSR and the key never left the ${kind}`);
  }
  const p12 = buildPkcs12({ certificatePem, privateKeyPem, caCertificatePem: store.caCertificatePem, friendlyName: commonName }, password);
  // The key inside is only as safe as the password: owner-only, as the store's own key files.
  if (file) await writeFileAtomic(file, p12, PRIVATE_FILE_MODE);
  return { action: 'p12', kind, commonName, serial: record.serial, notAfter: record.notAfter, p12, ...(file ? { file } : {}) };
}
