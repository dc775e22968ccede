import type { EventEmitter } from 'node:events';
import * as os from 'node:os';
import * as tls from 'node:tls';
import type { Socket } from 'node:net';
import type { AddressInfo } from 'node:net';
import { Aedes, AuthErrorCode, AuthenticateError, Client } from 'aedes';
import { CaStore } from '../pki/ca-store';
import { assertDnsName, normalizeSerial } from '../pki/names';
import { TopicScheme } from '../fleet/topic-scheme';
import { identity } from '../pki/identity';
import { aclEntries, Permissions } from './acl';
import { PacketSizeGuard } from './packet-size-guard';

export interface EmbeddedBrokerOptions {
  store: CaStore;
  /** 8883 by default; 0 picks a free port. */
  port?: number;
  /** Address to bind; all interfaces when empty. */
  host?: string;
  /** DNS names for the broker's server certificate; the first is its CN. Default: this host's name and localhost. */
  serverNames?: string[];
  scheme?: TopicScheme;
  /** TCP connections at once (handshakes included); more are dropped. */
  maxClients?: number;
  /** Largest MQTT packet a client may send. */
  maxPacketBytes?: number;
  onEvent?: (event: BrokerEvent) => void;
}

export type BrokerEvent =
  | { type: 'connected'; identity: string; kind: 'device' | 'backend' | 'unknown'; clientId: string; serial: string; address?: string }
  | { type: 'disconnected'; identity: string; kind: 'device' | 'backend' | 'unknown'; clientId: string; reason: string }
  /** Refused before MQTT traffic: a TLS handshake that failed (no, foreign or revoked certificate) or a CONNECT turned down. */
  | { type: 'refused'; identity?: string; address?: string; reason: string }
  /** A publish or subscription the ACL does not allow. A denied publish closes the connection (MQTT-3.3.5-2). */
  | { type: 'denied'; identity: string; clientId: string; action: 'publish' | 'subscribe'; topic: string }
  /** A fault of the broker itself (listening socket, message store); it keeps running. */
  | { type: 'error'; reason: string };

export const DEFAULT_MAX_PACKET_BYTES = 256 * 1024;

/** What the broker knows of one TLS connection from its verified client certificate. */
interface Peer {
  identity: string;
  serial: string;
  clientId?: string;
  permissions?: Permissions;
  /** Why we closed it, for the disconnected event. */
  closedBecause?: string;
}

/**
 * The embedded MQTT broker: aedes on a TLS server of our CA. Every client must present a
 * certificate of the CA that is not on its CRL; its CN is its identity (like Mosquitto's
 * `use_identity_as_username`, so MQTT user names and passwords are ignored) and the same ACL
 * entries as the generated Mosquitto config decide what it may publish and read.
 */
export class EmbeddedBroker {
  private readonly peers = new WeakMap<object, Peer>();
  private readonly sockets = new Set<Socket>();
  private readonly tlsSockets = new Set<tls.TLSSocket>();
  private readonly ready = new Set<Client>();
  private unsubscribeCrl: (() => void) | undefined;
  private closing: Promise<void> | undefined;

  private constructor(
    private readonly options: Required<Pick<EmbeddedBrokerOptions, 'store' | 'scheme' | 'maxPacketBytes'>> & EmbeddedBrokerOptions,
    private readonly server: tls.Server,
    private readonly aedes: Aedes,
    private readonly tlsOptions: (crl: string) => tls.SecureContextOptions,
    /** The DNS names on the server certificate. */
    readonly serverNames: string[],
  ) {}

  static async start(opts: EmbeddedBrokerOptions): Promise<EmbeddedBroker> {
    const options = { ...opts, scheme: opts.scheme ?? TopicScheme.named('secure-esp8266'), maxPacketBytes: opts.maxPacketBytes ?? DEFAULT_MAX_PACKET_BYTES };
    const { store } = options;
    const names = serverNamesOf(options.serverNames);
    const identity = await serverIdentity(store, names);
    const tlsOptions = (crl: string): tls.SecureContextOptions => ({ key: identity.key, cert: identity.cert, ca: store.caCertificatePem, crl, minVersion: 'TLSv1.2' });
    const server = tls.createServer({ ...tlsOptions(await store.crlPem()), requestCert: true, rejectUnauthorized: true, handshakeTimeout: 30_000 });
    // Hooks are bound after construction: they need the instance, aedes needs them at creation.
    let self: EmbeddedBroker | undefined;
    const aedes = await Aedes.createBroker({
      // MQTT 3.1 caps client ids at 23 characters; ours carry the identity in front.
      maxClientsIdLength: 23 + 65,
      preConnect: (client, packet, done) => self!.preConnect(client, packet, done),
      authenticate: (client, _username, _password, done) => self!.authenticate(client, done),
      authorizePublish: (client, packet, done) => done(self!.authorizePublish(client, packet.topic)),
      authorizeSubscribe: (client, sub, done) => done(null, self!.authorizeSubscribe(client, sub.topic) ? sub : null),
      authorizeForward: (client, packet) => (self!.peerOf(client)?.permissions?.canRead(packet.topic) ? packet : null),
    });
    const broker = new EmbeddedBroker(options, server, aedes, tlsOptions, names);
    self = broker;
    broker.wire();
    try {
      await new Promise<void>((resolve, reject) => {
        server.once('error', reject);
        server.listen(options.port ?? 8883, options.host || undefined, () => {
          server.off('error', reject);
          server.on('error', (err) => broker.emit({ type: 'error', reason: err.message }));
          resolve();
        });
      });
    } catch (err) {
      await new Promise<void>((resolve) => aedes.close(() => resolve()));
      broker.unsubscribeCrl?.();
      throw err;
    }
    return broker;
  }

  get port(): number {
    return (this.server.address() as AddressInfo).port;
  }

  /** MQTT clients past CONNACK. */
  get connectedCount(): number {
    return this.ready.size;
  }

  /** Connected clients by identity kind, for a status badge. */
  counts(): { devices: number; backends: number; unknown: number } {
    const counts = { devices: 0, backends: 0, unknown: 0 };
    for (const client of this.ready) {
      const kind = kindOf(this.peerOf(client)?.permissions);
      if (kind === 'device') counts.devices++;
      else if (kind === 'backend') counts.backends++;
      else counts.unknown++;
    }
    return counts;
  }

  /** Stops listening, drops every connection and frees the port. */
  close(): Promise<void> {
    this.closing ??= (async () => {
      this.unsubscribeCrl?.();
      const closed = new Promise<void>((resolve) => this.server.close(() => resolve()));
      for (const socket of this.sockets) socket.destroy();
      await new Promise<void>((resolve) => this.aedes.close(() => resolve()));
      await closed;
    })();
    return this.closing;
  }

  private wire(): void {
    const { server, aedes, options } = this;
    if (options.maxClients) server.maxConnections = options.maxClients;
    server.on('drop', (data) => this.emit({ type: 'refused', address: data?.remoteAddress, reason: `more than ${options.maxClients} connections` }));
    server.on('connection', (socket: Socket) => {
      this.sockets.add(socket);
      socket.once('close', () => this.sockets.delete(socket));
    });
    server.on('tlsClientError', (err, socket) => this.emit({ type: 'refused', address: socket.remoteAddress, reason: `TLS handshake: ${err.message}` }));
    server.on('secureConnection', (socket) => this.accept(socket));
    // Unhandled, an 'error' event would take the whole Node-RED process down.
    // aedes' typings omit the 'error' it emits (message store faults): listen through its EventEmitter base.
    (aedes as EventEmitter).on('error', (err: Error) => this.emit({ type: 'error', reason: err.message }));
    aedes.on('clientReady', (client) => {
      this.ready.add(client);
      const peer = this.peerOf(client);
      if (peer) this.emit({ type: 'connected', identity: peer.identity, kind: kindOf(peer.permissions), clientId: peer.clientId ?? client.id, serial: peer.serial, address: remoteAddress(client) });
    });
    aedes.on('clientDisconnect', (client) => {
      if (!this.ready.delete(client)) return;
      const peer = this.peerOf(client);
      if (peer) this.emit({ type: 'disconnected', identity: peer.identity, kind: kindOf(peer.permissions), clientId: peer.clientId ?? client.id, reason: peer.closedBecause ?? 'closed' });
    });
    aedes.on('clientError', (client, err) => {
      const peer = this.peerOf(client);
      if (peer && !peer.closedBecause) peer.closedBecause = err.message;
    });
    // A revoke re-signs the CRL: new handshakes check the new one, and holders of a revoked certificate are dropped now.
    this.unsubscribeCrl = options.store.onCrlChange((crl) => {
      server.setSecureContext(this.tlsOptions(crl));
      this.dropRevoked();
    });
  }

  private accept(socket: tls.TLSSocket): void {
    const cert = socket.getPeerX509Certificate();
    const identity = cert && /^CN=(.*)$/m.exec(cert.subject)?.[1];
    if (!cert || !identity) {
      this.emit({ type: 'refused', address: socket.remoteAddress, reason: 'client certificate without a CN' });
      socket.destroy();
      return;
    }
    const peer: Peer = { identity, serial: normalizeSerial(cert.serialNumber) };
    this.peers.set(socket, peer);
    this.tlsSockets.add(socket);
    socket.once('close', () => this.tlsSockets.delete(socket));
    this.aedes.handle(socket);
    // With aedes reading through 'readable', a 'data' listener only observes what it reads (Node streams: 'readable' takes precedence).
    const guard = new PacketSizeGuard(this.options.maxPacketBytes);
    socket.on('data', (chunk: Buffer) => {
      const problem = guard.feed(chunk);
      if (problem && !socket.destroyed) {
        peer.closedBecause = problem;
        this.emit({ type: 'refused', identity, address: socket.remoteAddress, reason: problem });
        socket.destroy();
      }
    });
  }

  private peerOf(client: Client | null): Peer | undefined {
    return client ? this.peers.get(client.conn) : undefined;
  }

  /** Client ids are kept per identity, so no certificate can take over another identity's session by reusing its client id. */
  private preConnect(client: Client, packet: { clientId: string }, done: (err: Error | null, ok: boolean) => void): void {
    const peer = this.peerOf(client);
    if (!peer) return done(new Error('no verified client certificate'), false);
    peer.clientId = packet.clientId;
    if (packet.clientId) packet.clientId = `${peer.identity}|${packet.clientId}`;
    done(null, true);
  }

  private authenticate(client: Client, done: (err: AuthenticateError | null, ok: boolean | null) => void): void {
    const peer = this.peerOf(client);
    const refuse = (reason: string): void => {
      this.emit({ type: 'refused', identity: peer?.identity, address: remoteAddress(client), reason });
      done(Object.assign(new Error(reason), { returnCode: AuthErrorCode.NOT_AUTHORIZED }), false);
    };
    if (!peer) return refuse('no verified client certificate');
    // The CRL is re-signed just after a revoke is recorded: the store's word closes that gap.
    if (this.isRevoked(peer.serial)) return refuse(`certificate ${peer.serial} of ${peer.identity} is revoked`);
    peer.permissions = this.permissionsFor(peer.identity);
    done(null, true);
  }

  /** Rights from the store as it is now: a device issued a moment ago is admitted without a restart. */
  private permissionsFor(identity: string): Permissions {
    const holds = (kind: 'device' | 'backend'): string[] => (this.options.store.currentIdentity(kind, identity) ? [identity] : []);
    return new Permissions(identity, aclEntries(holds('device'), holds('backend'), this.options.scheme));
  }

  private authorizePublish(client: Client | null, topic: string): Error | null {
    const peer = this.peerOf(client);
    if (peer?.permissions?.canPublish(topic)) return null;
    // No client: a will left by a broker that is gone; nobody can vouch for it.
    if (peer && client) this.emit({ type: 'denied', identity: peer.identity, clientId: peer.clientId ?? client.id, action: 'publish', topic });
    return new Error(`${peer?.identity ?? 'unknown'} may not publish to ${topic}`);
  }

  private authorizeSubscribe(client: Client, filter: string): boolean {
    const peer = this.peerOf(client);
    if (peer?.permissions?.canSubscribe(filter)) return true;
    if (peer) this.emit({ type: 'denied', identity: peer.identity, clientId: peer.clientId ?? client.id, action: 'subscribe', topic: filter });
    return false;
  }

  private isRevoked(serial: string): boolean {
    try {
      return Boolean(this.options.store.findBySerial(serial).revokedAt);
    } catch {
      return true; // not issued by this store: nothing vouches for it
    }
  }

  private dropRevoked(): void {
    for (const socket of this.tlsSockets) {
      const peer = this.peers.get(socket);
      if (!peer || !this.isRevoked(peer.serial)) continue;
      peer.closedBecause = `certificate ${peer.serial} revoked`;
      socket.destroy();
    }
  }

  private emit(event: BrokerEvent): void {
    try {
      this.options.onEvent?.(event);
    } catch {
      // a listener's failure must not take the broker down
    }
  }
}

function kindOf(permissions: Permissions | undefined): 'device' | 'backend' | 'unknown' {
  if (permissions?.kinds.has('device')) return 'device';
  if (permissions?.kinds.has('backend')) return 'backend';
  return 'unknown';
}

function remoteAddress(client: Client): string | undefined {
  return (client.conn as Socket).remoteAddress;
}

/** The requested names, or this host's name (when it is a valid DNS name) and localhost. */
export function serverNamesOf(names: readonly string[] | undefined): string[] {
  const requested = (names ?? []).map((n) => n.trim().toLowerCase()).filter(Boolean);
  if (requested.length) return [...new Set(requested.map((n) => assertDnsName(n)))];
  const host = os.hostname().toLowerCase();
  const hostOk = (() => {
    try {
      return assertDnsName(host) === host;
    } catch {
      return false;
    }
  })();
  return hostOk && host !== 'localhost' ? [host, 'localhost'] : ['localhost'];
}

/** The server identity for these names: the one get-or-issue step, shared with the update server on the same host name. */
async function serverIdentity(store: CaStore, names: string[]): Promise<{ cert: string; key: string }> {
  const [commonName, ...more] = names;
  return identity(store, { kind: 'server', commonName, dnsNames: more });
}
