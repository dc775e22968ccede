import { createPrivateKey } from 'node:crypto';
import { CaStore, IssuedCertificate, IssuedRecord, CertificateKind, REVOCATION_REASONS } from '../pki/ca-store';
import { normalizeDeviceId } from '../device-id';
import { mosquittoApplyHint } from '../mosquitto/mosquitto-config';
import { writeMosquittoConfig } from '../mosquitto/folders';
import { BackupActionResult, BackupContext, runBackupAction, takePassphrase } from '../backup/backup-actions';
import { shownInput } from '../input-text';
import { exportP12, P12Result } from '../pki/p12-export';

/** What `esp-cert-issuer` does for each `msg.topic`; the node only moves msgs. */
export const ISSUER_ACTIONS = ['device', 'server', 'backend', 'csr', 'renew', 'renew-expiring', 'revoke', 'revoke-device', 'list', 'expiring', 'mosquitto', 'crl', 'backup', 'restore', 'p12'] as const;
export type IssuerAction = (typeof ISSUER_ACTIONS)[number];

export interface IssuerDefaults {
  validityDays?: number;
  /** Put the private key into the output msg (off: a Debug node would show it in the editor). */
  includePrivateKey?: boolean;
  serverName?: string;
  backendName?: string;
  mosquittoDir?: string;
  mosquittoPort?: number;
}

export interface IssuedOutput {
  action: IssuerAction;
  kind: CertificateKind;
  commonName: string;
  serial: string;
  notBefore: string;
  notAfter: string;
  fingerprints: { sha1: string; sha256: string };
  certificate: { pem: string; der: Buffer };
  ca: { pem: string };
  privateKey?: { pem: string; der: Buffer };
  files: IssuedCertificate['files'];
  warnings: string[];
  renewedFrom?: string;
}

export type IssuerResult =
  | IssuedOutput
  | { action: 'revoke'; revoked: IssuedRecord; crlFile: string; crlNextUpdate?: string }
  | { action: 'revoke-device'; device: string; revoked: IssuedRecord[]; crlFile: string; crlNextUpdate?: string }
  | { action: 'renew-expiring'; days: number; renewed: IssuedOutput[]; count: number }
  | { action: 'list' | 'expiring'; certificates: IssuedRecord[]; count: number; days?: number }
  | { action: 'mosquitto'; dir: string; confFile: string; aclFile: string; crlFile: string; serverSerial: string; backendSerial: string; hint: string }
  | { action: 'crl'; pem: string; nextUpdate?: string; revokedCount: number }
  | BackupActionResult
  | P12Result;

/** What `backup` and `restore` need beyond the store; the node supplies it. */
export interface IssuerContext {
  backup?: BackupContext;
  /** The backup passphrase, already taken out of msg.payload (takePassphrase) so no output or Catch node sees it. */
  passphrase?: unknown;
  /** The .p12 password, taken out of msg.payload the same way (takeSecrets). */
  password?: unknown;
  /** The Node-RED user directory: a .p12 `file` is named relative to it. */
  userDir?: string;
}

/**
 * The secrets of a msg (backup `passphrase`, .p12 `password`) taken out of its payload, so that
 * neither the output, nor a Catch node, nor an error text ever carries them.
 */
export function takeSecrets(payload: unknown): { passphrase: unknown; password: unknown; rest: unknown } {
  const { passphrase, rest: withoutPassphrase } = takePassphrase(payload);
  if (!withoutPassphrase || typeof withoutPassphrase !== 'object' || Array.isArray(withoutPassphrase) || Buffer.isBuffer(withoutPassphrase)) return { passphrase, password: undefined, rest: withoutPassphrase };
  const { password, ...rest } = withoutPassphrase as Args;
  return { passphrase, password, rest };
}

type Args = Record<string, unknown>;

export function parseAction(value: unknown): IssuerAction {
  if (typeof value === 'string' && (ISSUER_ACTIONS as readonly string[]).includes(value)) return value as IssuerAction;
  throw new Error(`unknown action ${shownInput(value)}: set msg.topic to one of ${ISSUER_ACTIONS.join(', ')}`);
}

/** A bare string or number payload stands for the action's main argument. */
function argsOf(payload: unknown, mainArg: string): Args {
  if (payload === undefined || payload === null || payload === '') return {};
  if (typeof payload === 'string' || typeof payload === 'number') return { [mainArg]: payload };
  if (typeof payload === 'object' && !Array.isArray(payload) && !Buffer.isBuffer(payload)) return payload as Args;
  throw new Error('msg.payload must be an object with the action arguments (or a string for the main one)');
}

export async function runIssuerAction(store: CaStore, action: IssuerAction, payload: unknown, defaults: IssuerDefaults = {}, context: IssuerContext = {}): Promise<IssuerResult> {
  const validity = (a: Args): unknown => a.validityDays ?? defaults.validityDays;
  switch (action) {
    case 'device': {
      const a = argsOf(payload, 'id');
      return shape(action, await store.issueDevice(a.id ?? a.mac ?? a.deviceId, { validityDays: validity(a), replace: a.replace, keyType: a.keyType }), defaults);
    }
    case 'server': {
      const a = argsOf(payload, 'commonName');
      const commonName = a.commonName ?? defaults.serverName;
      return shape(action, await store.issueServer({ commonName, dnsNames: a.dnsNames, ipAddresses: a.ipAddresses, validityDays: validity(a) }), defaults);
    }
    case 'backend': {
      const a = argsOf(payload, 'commonName');
      return shape(action, await store.issueBackend({ commonName: a.commonName ?? defaults.backendName, validityDays: validity(a) }), defaults);
    }
    case 'csr': {
      const a = argsOf(payload, 'csr');
      return shape(action, await store.signCsr(a.csr, { deviceId: a.deviceId ?? a.id ?? a.mac, validityDays: validity(a), replace: a.replace, keyType: a.keyType }), defaults);
    }
    case 'renew': {
      // A bare device id names the identity; any other bare string is a serial.
      const a = typeof payload === 'string' && isDeviceIdLike(payload) ? { commonName: payload } : argsOf(payload, 'serial');
      const issued = await store.renew({
        serial: a.serial,
        commonName: a.commonName ?? a.id,
        newKey: a.newKey === true,
        keyType: a.keyType,
        revokeOld: a.revokeOld === true,
        validityDays: validity(a),
      });
      return shape(action, issued, defaults);
    }
    case 'renew-expiring': {
      const days = daysOf(ignoreTrigger(payload), 'renew-expiring');
      const renewed: IssuedOutput[] = [];
      for (const commonName of devicesDue(store, days)) {
        renewed.push(shape('renew', await store.renew({ commonName, validityDays: defaults.validityDays }), defaults));
      }
      return { action, days, renewed, count: renewed.length };
    }
    case 'revoke-device': {
      // A lost or stolen board: every certificate it still holds, since a renewal leaves the older one valid.
      const a = argsOf(payload, 'device');
      const device = normalizeDeviceId(a.device ?? a.id ?? a.mac);
      const held = store.list({ kind: 'device' }).filter((r) => r.commonName === device);
      if (!held.length) throw new Error(`no valid certificate for ${device} to revoke`);
      const revoked: IssuedRecord[] = [];
      for (const r of held) revoked.push(await store.revoke(r.serial, a.reason ?? 'unspecified'));
      return { action, device, revoked, crlFile: store.crlFile, crlNextUpdate: store.crlNextUpdateAt?.toISOString() };
    }
    case 'revoke': {
      const a = argsOf(payload, 'serial');
      const revoked = await store.revoke(a.serial, a.reason ?? 'unspecified');
      return { action, revoked, crlFile: store.crlFile, crlNextUpdate: store.crlNextUpdateAt?.toISOString() };
    }
    case 'list': {
      const a = argsOf(ignoreTrigger(payload), 'kind');
      const kind = a.kind as CertificateKind | undefined;
      if (kind !== undefined && !['device', 'server', 'backend'].includes(kind)) throw new Error(`unknown kind ${shownInput(kind)}: device, server or backend`);
      const certificates = store.list({ kind, includeRevoked: a.includeRevoked === true });
      return { action, certificates, count: certificates.length };
    }
    case 'expiring': {
      const days = daysOf(payload, 'expiring');
      const certificates = store.expiring(days);
      return { action, certificates, count: certificates.length, days };
    }
    case 'mosquitto': {
      const a = argsOf(payload, 'dir');
      const setup = await writeMosquittoConfig(store, {
        dir: a.dir ?? defaults.mosquittoDir,
        serverName: a.serverName ?? defaults.serverName,
        backendName: a.backendName ?? defaults.backendName,
        port: a.port ?? defaults.mosquittoPort,
        bindAddress: a.bindAddress,
        scheme: a.scheme,
      });
      const serial = (x: IssuedCertificate | IssuedRecord): string => ('record' in x ? x.record.serial : x.serial);
      return {
        action,
        dir: setup.dir,
        confFile: setup.confFile,
        aclFile: setup.aclFile,
        crlFile: setup.crlFile,
        serverSerial: serial(setup.server),
        backendSerial: serial(setup.backend),
        hint: `start with: mosquitto -c ${setup.confFile} (as a user that can read ${setup.dir}). After issuing or revoking: ${mosquittoApplyHint('revoke', setup.confFile)}. After the broker's certificate is renewed: ${mosquittoApplyHint('serverCertificate', setup.confFile)}. ${setup.dir}/README.md has the whole table.`,
      };
    }
    case 'crl': {
      return {
        action,
        pem: await store.crlPem(),
        nextUpdate: store.crlNextUpdateAt?.toISOString(),
        revokedCount: store.list({ includeRevoked: true }).filter((r) => r.revokedAt).length,
      };
    }
    case 'backup':
    case 'restore': {
      const { passphrase, rest } = takePassphrase(payload);
      return runBackupAction(store, action, rest, context.passphrase ?? passphrase, context.backup);
    }
    case 'p12': {
      const { password, rest } = takeSecrets(payload);
      return exportP12(store, argsOf(rest, 'name'), context.password ?? password, context.userDir ?? context.backup?.userDir);
    }
  }
}

/** The window of `expiring` and `renew-expiring`: days from 0 to 3650, 30 when not given. */
function daysOf(payload: unknown, action: string): number {
  const a = argsOf(payload, 'days');
  const days = Number(a.days ?? 30);
  if (!Number.isFinite(days) || days < 0 || days > 3650) {
    throw new Error(`${action} needs a number of days from 0 to 3650, got ${shownInput(a.days)} (an inject's timestamp? set its payload to the days)`);
  }
  return days;
}

/**
 * Devices whose newest valid certificate expires within `days`. Judged by the newest one, so a
 * device renewed yesterday is not renewed again while its older certificate runs out.
 */
function devicesDue(store: CaStore, days: number): string[] {
  const newest = new Map<string, IssuedRecord>();
  for (const r of store.list({ kind: 'device' })) {
    const seen = newest.get(r.commonName);
    if (!seen || r.notAfter > seen.notAfter) newest.set(r.commonName, r);
  }
  const due = new Set(store.expiring(days).map((r) => r.serial));
  return [...newest.values()].filter((r) => due.has(r.serial)).map((r) => r.commonName).sort();
}

function isDeviceIdLike(value: string): boolean {
  try {
    normalizeDeviceId(value);
    return true;
  } catch {
    return false;
  }
}

/** An inject's default timestamp or an empty trigger carries no arguments. */
function ignoreTrigger(payload: unknown): unknown {
  return typeof payload === 'number' || typeof payload === 'boolean' ? undefined : payload;
}

function shape(action: IssuerAction, issued: IssuedCertificate, defaults: IssuerDefaults): IssuedOutput {
  const { record } = issued;
  const out: IssuedOutput = {
    action,
    kind: record.kind,
    commonName: record.commonName,
    serial: record.serial,
    notBefore: record.notBefore,
    notAfter: record.notAfter,
    fingerprints: issued.fingerprints,
    certificate: { pem: issued.certificatePem, der: issued.certificateDer },
    ca: { pem: issued.caCertificatePem },
    files: issued.files,
    warnings: issued.warnings,
    ...(record.renewedFrom ? { renewedFrom: record.renewedFrom } : {}),
  };
  if (defaults.includePrivateKey && issued.privateKeyPem) {
    const der = createPrivateKey(issued.privateKeyPem).export({ type: 'pkcs8', format: 'der' });
    out.privateKey = { pem: issued.privateKeyPem, der };
  }
  return out;
}

export { REVOCATION_REASONS, takePassphrase };
