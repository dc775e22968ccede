import * as path from 'node:path';
import { KeyObject, X509Certificate as NodeX509 } from 'node:crypto';
import { x509, RSA_SHA256, toPem } from './x509';
import { RsaKeySize, assertKeySize, generateRsaKey, readRsaPrivateKey, keyBelongsTo, exportPrivateKeyPem, toSigningKey } from './keys';
import { assertValidityDays } from './names';
import { CaStoreError } from './ca-error';
import { BACKDATE_MS, Clock, DAY_MS } from './clock';
import { FILES } from './store-layout';
import { writeFileAtomic, readFileIfExists, PRIVATE_FILE_MODE } from '../fs/atomic-file';

/** How the CA itself is made when a store folder holds none yet. */
export interface CaFileOptions {
  /** Subject CN of a new CA; default "ESP Fleet CA". */
  commonName?: string;
  /** Subject O of a new CA; none by default. */
  organization?: string;
  /** RSA key size of a new CA: 2048 (default), 3072 or 4096. */
  keySize?: RsaKeySize;
  /** Validity of a new CA in days; default 3650. */
  validityDays?: number;
  /** Encrypts the CA key at rest (PKCS#8, AES-256-CBC) when set. */
  passphrase?: string;
  /** Use this CA instead of creating one (only when the store holds no CA yet). */
  importPem?: { certificate: string; privateKey: string; passphrase?: string };
}

export interface CaMaterial {
  caKey: KeyObject;
  caPem: string;
}

/** The CA of the store in `dir`: loaded when ca.crt is there, else imported or created (never regenerated). */
export async function openCaFiles(dir: string, options: CaFileOptions, now: Clock): Promise<CaMaterial> {
  const certPem = await readFileIfExists(path.join(dir, FILES.caCert));
  if (certPem !== undefined) return loadExistingCa(dir, certPem, options);
  if (options.importPem) return importCa(dir, options.importPem, options.passphrase);
  return createCa(dir, options, now());
}

async function createCa(dir: string, options: CaFileOptions, now: Date): Promise<CaMaterial> {
  const keySize = assertKeySize(options.keySize ?? 2048);
  const validityDays = assertValidityDays(options.validityDays, 3650);
  const commonName = options.commonName?.trim() || 'ESP Fleet CA';
  // One attribute per RDN (O, then CN), as openssl writes names.
  const subject: Record<string, string[]>[] = [{ CN: [commonName] }];
  if (options.organization?.trim()) subject.unshift({ O: [options.organization.trim()] });

  const material = await generateRsaKey(keySize);
  const caKey = readRsaPrivateKey(material.privateKeyPem);
  const t = now.getTime();
  const publicKey = await x509.PublicKey.create(Uint8Array.from(material.publicKeySpki));
  const cert = await x509.X509CertificateGenerator.create({
    serialNumber: '01',
    subject,
    issuer: subject,
    notBefore: new Date(t - BACKDATE_MS),
    notAfter: new Date(t + validityDays * DAY_MS),
    publicKey,
    signingKey: await toSigningKey(caKey),
    signingAlgorithm: RSA_SHA256,
    extensions: [
      // RFC 5280 §4.2.1.9 (a CA that signs leaves only), §4.2.1.3, §4.2.1.2.
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

async function importCa(dir: string, imported: NonNullable<CaFileOptions['importPem']>, passphrase: string | undefined): Promise<CaMaterial> {
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

async function loadExistingCa(dir: string, caPem: string, options: CaFileOptions): Promise<CaMaterial> {
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
