import { promises as fs } from 'node:fs';
import * as path from 'node:path';
import type { CaStore, CaChange, IssuedRecord, MosquittoFolderEntry } from '../pki/ca-store';
import { identity } from '../pki/identity';
import { assertBackendName, assertDnsName, assertIpAddress } from '../pki/names';
import { FleetTopics, TOPIC_CHOICES, TopicChoiceName } from '../fleet/fleet-topics';
import { CoalescingTask } from '../coalescing-task';
import { writeFileAtomic, PRIVATE_FILE_MODE } from '../fs/atomic-file';
import { shownInput } from '../input-text';
import { MOSQUITTO_FILE_NAMES, MosquittoListener, mosquittoFilesIn, renderMosquittoAcl, renderMosquittoConf, renderMosquittoReadme } from './mosquitto-config';

type BuiltinSchemeName = TopicChoiceName;

export interface MosquittoConfigRequest {
  /** The folder to write; default `<CA folder>/mosquitto`. */
  dir?: unknown;
  /** The broker's host name: its server certificate's CN and DNS name; default localhost. */
  serverName?: unknown;
  /** The backend identity (Node-RED's client certificate) to issue if missing; default node-red. */
  backendName?: unknown;
  /** The TLS listener's port; default 8883 (IANA's secure-mqtt). */
  port?: unknown;
  /** The address to bind; all interfaces when not given. */
  bindAddress?: unknown;
  /** The topic scheme of the ACL: secure-esp8266 (default), secure-esp32 or mixed (both side by side). */
  scheme?: unknown;
}

export interface MosquittoSetup {
  dir: string;
  confFile: string;
  aclFile: string;
  crlFile: string;
  server: IssuedRecord;
  backend: IssuedRecord;
}

const kept = new WeakMap<CaStore, MosquittoFolders>();

/**
 * The keeper of a store's Mosquitto folders, made and subscribed once per store. Pass it as a
 * keeper when opening the store (`CaStore.open({ ..., keepers: [keepMosquittoFolders] })`) so
 * folders written before a restart stay current too.
 */
export function keepMosquittoFolders(store: CaStore): MosquittoFolders {
  let keeper = kept.get(store);
  if (!keeper) {
    keeper = new MosquittoFolders(store);
    kept.set(store, keeper);
  }
  return keeper;
}

/**
 * Writes a Mosquitto config folder for the store's CA: TLS listener with client certificates
 * required, the CRL, and a per-identity ACL. Issues the broker's server identity and the
 * backend identity if they do not exist yet. The folder is kept current on every later issue
 * and revoke (keepMosquittoFolders).
 */
export function writeMosquittoConfig(store: CaStore, request: MosquittoConfigRequest): Promise<MosquittoSetup> {
  return keepMosquittoFolders(store).write(request);
}

/**
 * Keeps every Mosquitto folder this CA wrote current, from the CA's change stream: the CRL on
 * each `crl`, the ACL on each `issued` and `revoked`, and the broker's own certificate and key
 * when a server certificate of the folder's name is issued. Writes coalesce: a burst of
 * issuances rewrites each folder once. The CA's operation settles after the write.
 */
export class MosquittoFolders {
  private readonly identityWriter = new CoalescingTask(() => this.writeIdentities());
  private readonly crlWriter = new CoalescingTask(() => this.writeCrls());
  private readonly renewedServers = new Set<string>();
  private latestCrl: string | undefined;
  private readonly unsubscribe: () => void;

  constructor(private readonly store: CaStore) {
    this.unsubscribe = store.subscribe((c) => this.changed(c));
  }

  /** Stops keeping the folders (the record of them stays in the CA's journal). */
  stop(): void {
    this.unsubscribe();
    if (kept.get(this.store) === this) kept.delete(this.store);
  }

  async write(opts: MosquittoConfigRequest): Promise<MosquittoSetup> {
    const store = this.store;
    const dir = path.resolve(typeof opts.dir === 'string' && opts.dir ? opts.dir : path.join(store.dir, 'mosquitto'));
    const serverName = assertDnsName(opts.serverName ?? 'localhost');
    const backendName = assertBackendName(opts.backendName ?? 'node-red');
    const port = Number(opts.port ?? 8883);
    if (!Number.isInteger(port) || port < 1 || port > 65535) throw new Error(`invalid port ${shownInput(opts.port)}`);
    const bindAddress = opts.bindAddress ? assertIpAddress(opts.bindAddress) : undefined;
    const scheme = (opts.scheme ?? 'secure-esp8266') as BuiltinSchemeName;
    if (typeof scheme !== 'string' || !Object.hasOwn(TOPIC_CHOICES, scheme)) throw new Error(`unknown topic scheme ${shownInput(opts.scheme)}: ${Object.keys(TOPIC_CHOICES).join(', ')}`);

    const server = await identity(store, { kind: 'server', commonName: serverName });
    const backend = await identity(store, { kind: 'backend', commonName: backendName });

    const listener: MosquittoListener = { port, bindAddress };
    const files = mosquittoFilesIn(dir);
    await fs.mkdir(dir, { recursive: true, mode: 0o700 });
    await writeFileAtomic(files.caFile, store.caCertificatePem);
    await writeFileAtomic(files.certFile, server.cert);
    await writeFileAtomic(files.keyFile, server.key, PRIVATE_FILE_MODE);
    await writeFileAtomic(files.crlFile, await store.crlPem());
    await writeFileAtomic(files.aclFile, this.renderAcl(scheme));
    const confFile = path.join(dir, MOSQUITTO_FILE_NAMES.conf);
    await writeFileAtomic(confFile, renderMosquittoConf(files, listener));
    await writeFileAtomic(path.join(dir, 'README.md'), renderMosquittoReadme(confFile));

    const entry: MosquittoFolderEntry = { dir, listener, serverName: server.record.commonName, scheme };
    await store.recordMosquittoFolder(entry);
    return { dir, confFile, aclFile: files.aclFile, crlFile: files.crlFile, server: server.record, backend: backend.record };
  }

  private changed(change: CaChange): Promise<void> | undefined {
    if (this.store.mosquittoFolders.length === 0) return undefined;
    switch (change.type) {
      case 'issued':
        if (change.record.kind === 'server') this.renewedServers.add(change.record.commonName);
        return this.identityWriter.request();
      case 'revoked':
        return this.identityWriter.request();
      case 'crl':
        this.latestCrl = change.pem;
        return this.crlWriter.request();
    }
  }

  private renderAcl(scheme: string | undefined): string {
    const valid = this.store.list();
    return renderMosquittoAcl(
      valid.filter((r) => r.kind === 'device').map((r) => r.commonName),
      valid.filter((r) => r.kind === 'backend').map((r) => r.commonName),
      FleetTopics.named((scheme ?? 'secure-esp8266') as BuiltinSchemeName),
    );
  }

  /** The ACL of every folder, and the broker's certificate and key where its server certificate was renewed. */
  private async writeIdentities(): Promise<void> {
    const renewed = new Set(this.renewedServers);
    this.renewedServers.clear();
    for (const { dir, serverName, scheme } of this.store.mosquittoFolders) {
      const files = mosquittoFilesIn(dir);
      await writeFileAtomic(files.aclFile, this.renderAcl(scheme));
      if (serverName && renewed.has(serverName)) {
        const own = this.store.identityFiles('server', serverName);
        await writeFileAtomic(files.certFile, await fs.readFile(own.certificate));
        await writeFileAtomic(files.keyFile, await fs.readFile(own.privateKey), PRIVATE_FILE_MODE);
      }
    }
  }

  private async writeCrls(): Promise<void> {
    const crl = this.latestCrl;
    if (crl === undefined) return;
    for (const { dir } of this.store.mosquittoFolders) await writeFileAtomic(mosquittoFilesIn(dir).crlFile, crl);
  }
}
