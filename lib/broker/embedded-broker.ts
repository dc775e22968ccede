import type { EventEmitter } from 'node:events';
import * as os from 'node:os';
import * as tls from 'node:tls';
import * as net from 'node:net';
import type { Socket, AddressInfo } from 'node:net';
import type { Aedes, AuthenticateError, Client } from 'aedes';
import { loadAedes } from './load-aedes';
import { CaStore, IssuedRecord } from '../pki/ca-store';
import { assertDnsName, normalizeSerial } from '../pki/names';
import { peerCertificateOfSession } from '../pki/peer-certificate';
import { TopicScheme } from '../fleet/topic-scheme';
import type { FleetTopics } from '../fleet/fleet-topics';
import { identity } from '../pki/identity';
import { aclEntries, Permissions } from './acl';
import { checkDiscoveryPrefix } from '../homeassistant/topics';
import { BrokerPolicy, DEFAULT_BROKER_POLICY, Who, refusalOf } from './policy';
import { PacketSizeGuard } from './packet-size-guard';
import { KeyedCounter, RefusalTally } from '../net/connection-limits';
import { sourceKey } from '../net/source-address';

export interface EmbeddedBrokerOptions {
  store: CaStore;
  /** 8883 by default; 0 picks a free port. */
  port?: number;
  /** Address to bind; all interfaces when empty. */
  host?: string;
  /** DNS names for the broker's server certificate; the first is its CN. Default: this host's name and localhost. */
  serverNames?: string[];
  /** One scheme, or several side by side (a mixed fleet); default secure-esp8266. */
  scheme?: TopicScheme | FleetTopics;
  /** HA's discovery prefix for the backends' Home Assistant rights (lib/homeassistant/topics.ts); null leaves them out. Default `homeassistant`. */
  homeAssistantPrefix?: string | null;
  /**
   * Connections past the TLS handshake at once, backends not counted (they have their own cap,
   * so a full fleet never locks its own backend out); more are closed. No cap by default.
   */
  maxClients?: number;
  /** A client must finish its TLS handshake this soon after its TCP connect, or is dropped. Default 10 s. */
  handshakeTimeoutMs?: number;
  /** ... and send its MQTT CONNECT this soon after the handshake. Default 10 s. */
  connectTimeoutMs?: number;
  /** Connections still in their TLS handshake at once, from all sources. Default 128. */
  maxHandshakes?: number;
  /** The same from one source address (IPv6: one /64). Default 16. */
  maxHandshakesPerAddress?: number;
  /** Connections past the handshake per device identity (certificate CN). Default 2. */
  maxSessionsPerDevice?: number;
  /** The same per backend identity. Default 16. */
  maxSessionsPerBackend?: number;
  /** Largest MQTT packet a client may send. */
  maxPacketBytes?: number;
  /** Your own rules on top of the built-in ones; each can only refuse (lib/broker/policy.ts). Default: none. */
  policy?: Partial<BrokerPolicy>;
  onEvent?: (event: BrokerEvent) => void;
}

export type BrokerEvent =
  | { type: 'connected'; identity: string; kind: 'device' | 'backend' | 'unknown'; clientId: string; serial: string; address?: string }
  | { type: 'disconnected'; identity: string; kind: 'device' | 'backend' | 'unknown'; clientId: string; reason: string }
  /** A connection turned down or dropped before or instead of MQTT traffic; `cause` says which rule, `reason` the details. */
  | { type: 'refused'; cause: RefusalCause; identity?: string; address?: string; reason: string }
  /** A publish or subscription the ACL does not allow. A denied publish closes the connection (MQTT-3.3.5-2). */
  | { type: 'denied'; identity: string; clientId: string; action: 'publish' | 'subscribe'; topic: string; reason?: string }
  /** A fault of the broker itself (listening socket, message store); it keeps running. */
  | { type: 'error'; reason: string };

/** aedes' CONNACK code for a refused client (AuthErrorCode.NOT_AUTHORIZED), known once aedes is loaded. */
let notAuthorized = 5;

export const DEFAULT_MAX_PACKET_BYTES = 256 * 1024;

/**
 * Why a connection was refused:
 * - `handshakes`, `handshakes-per-address`: too many connections still in their TLS handshake, in all or from its address;
 * - `handshake-timeout`: the TLS handshake did not finish in time;
 * - `tls`: the handshake failed (no, foreign, self-signed or revoked certificate, no common protocol);
 * - `clients`: `maxClients` connections past the handshake;
 * - `sessions-per-identity`: its certificate's identity already holds its share of connections;
 * - `connect-timeout`: no MQTT CONNECT in time after the handshake;
 * - `not-authorized`: CONNECT turned down (revoked since the handshake, no CN);
 * - `protocol`: a packet over the size limit or a malformed length.
 */
export type RefusalCause =
  | 'handshakes'
  | 'handshakes-per-address'
  | 'handshake-timeout'
  | 'tls'
  | 'clients'
  | 'sessions-per-identity'
  | 'connect-timeout'
  | 'not-authorized'
  | 'protocol';

/**
 * Defaults of the connection limits. The deadlines are far above what an ESP8266 needs on a
 * weak link (its RSA-2048 handshake takes 1-3 s) and far below the 30-120 s of aedes and Node.
 * 16 handshakes per address still let a fleet behind one NAT router reconnect: a refused device
 * retries, so after a power cut 500 devices behind one address queue for slots instead of being
 * locked out, while one address alone can never take all 128. Two sessions per device leave room
 * for a reconnect while the broker still holds the old, dead connection (MQTT-3.1.4-2 then
 * closes the old one when the new CONNECT reuses its client id).
 */
export const BROKER_LIMIT_DEFAULTS = {
  handshakeTimeoutMs: 10_000,
  connectTimeoutMs: 10_000,
  maxHandshakes: 128,
  maxHandshakesPerAddress: 16,
  maxSessionsPerDevice: 2,
  maxSessionsPerBackend: 16,
} as const;

type Limits = { -readonly [K in keyof typeof BROKER_LIMIT_DEFAULTS]: number };

/** What the broker knows of one TLS connection from its verified client certificate. */
interface Peer {
  identity: string;
  serial: string;
  /** Runs until the client's CONNECT arrives. */
  connectTimer?: NodeJS.Timeout;
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
  private readonly limits: Limits;
  /** Connections from TCP accept until 'secureConnection' or close, by source address. */
  private readonly handshakes: KeyedCounter;
  /** What ends a connection's handshake phase, by its TCP 4-tuple (the TLS socket and the raw one share it). */
  private readonly inHandshake = new Map<string, () => void>();
  /** Connections past the handshake, by certificate identity. */
  private readonly sessions = new KeyedCounter({ total: Infinity, perKey: Infinity });
  /** Connections past the handshake that count against maxClients (all but backends). */
  private clientSlots = 0;
  private readonly refusals = new RefusalTally<RefusalCause>();

  private constructor(
    private readonly options: Required<Pick<EmbeddedBrokerOptions, 'store' | 'scheme' | 'maxPacketBytes'>> & EmbeddedBrokerOptions,
    /** Accepts TCP and counts handshakes; passes only what it admits on to `server`. */
    private readonly listener: net.Server,
    private readonly server: tls.Server,
    private readonly aedes: Aedes,
    private readonly tlsOptions: (crl: string) => tls.SecureContextOptions,
    /** The DNS names on the server certificate. */
    readonly serverNames: string[],
  ) {
    this.limits = { ...BROKER_LIMIT_DEFAULTS };
    for (const key of Object.keys(BROKER_LIMIT_DEFAULTS) as (keyof Limits)[]) {
      const value = options[key];
      if (value === undefined) continue;
      if (!(value > 0)) throw new RangeError(`${key} must be a positive number, got ${value}`);
      this.limits[key] = value;
    }
    this.handshakes = new KeyedCounter({ total: this.limits.maxHandshakes, perKey: this.limits.maxHandshakesPerAddress });
  }

  static async start(opts: EmbeddedBrokerOptions): Promise<EmbeddedBroker> {
    const options = { ...opts, scheme: opts.scheme ?? TopicScheme.named('secure-esp8266'), maxPacketBytes: opts.maxPacketBytes ?? DEFAULT_MAX_PACKET_BYTES };
    // A bad prefix fails here, not at the first client's authorization.
    if (options.homeAssistantPrefix != null) checkDiscoveryPrefix(options.homeAssistantPrefix);
    const { store } = options;
    const names = serverNamesOf(options.serverNames);
    const identity = await serverIdentity(store, names);
    const tlsOptions = (crl: string): tls.SecureContextOptions => ({ key: identity.key, cert: identity.cert, ca: store.caCertificatePem, crl, minVersion: 'TLSv1.2' });
    // Node's own handshake timeout only emits tlsClientError and restarts on every byte; the
    // broker's deadline from TCP accept destroys the socket (startHandshake); Node's stays, later, as a backstop.
    const handshakeTimeout = (opts.handshakeTimeoutMs ?? BROKER_LIMIT_DEFAULTS.handshakeTimeoutMs) + 1_000;
    const server = tls.createServer({ ...tlsOptions(await store.crlPem()), requestCert: true, rejectUnauthorized: true, handshakeTimeout });
    // A plain TCP listener in front: a connection refused by a cap is closed before Node builds any
    // TLS state for it (about half the cost of a refusal). Admitted ones are handed to the TLS server
    // the documented way, by emitting 'connection' on it (Node docs, tls.Server event 'connection').
    const listener = net.createServer();
    // Hooks are bound after construction: they need the instance, aedes needs them at creation.
    let self: EmbeddedBroker | undefined;
    const { Aedes, AuthErrorCode } = await loadAedes();
    notAuthorized = AuthErrorCode.NOT_AUTHORIZED;
    const aedes = await Aedes.createBroker({
      // MQTT 3.1 caps client ids at 23 characters; ours carry the identity in front.
      maxClientsIdLength: 23 + 65,
      // The broker's own CONNECT deadline (accept()) comes first; aedes' is the backstop.
      connectTimeout: (opts.connectTimeoutMs ?? BROKER_LIMIT_DEFAULTS.connectTimeoutMs) + 1_000,
      preConnect: (client, packet, done) => self!.preConnect(client, packet, done),
      authenticate: (client, _username, _password, done) => self!.authenticate(client, done),
      authorizePublish: (client, packet, done) => done(self!.authorizePublish(client, packet.topic)),
      authorizeSubscribe: (client, sub, done) => done(null, self!.authorizeSubscribe(client, sub.topic) ? sub : null),
      authorizeForward: (client, packet) => (self!.peerOf(client)?.permissions?.canRead(packet.topic) ? packet : null),
    });
    const broker = new EmbeddedBroker(options, listener, server, aedes, tlsOptions, names);
    self = broker;
    broker.wire();
    try {
      await new Promise<void>((resolve, reject) => {
        listener.once('error', reject);
        listener.listen(options.port ?? 8883, options.host || undefined, () => {
          listener.off('error', reject);
          listener.on('error', (err) => broker.emit({ type: 'error', reason: err.message }));
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
    return (this.listener.address() as AddressInfo).port;
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

  /** Connections still in their TLS handshake. */
  get handshakingCount(): number {
    return this.handshakes.count();
  }

  /** Connections past the TLS handshake held by one certificate identity. */
  connectionsOf(identity: string): number {
    return this.sessions.count(identity);
  }

  /** Connections refused since the start (every `refused` event). */
  get refusedCount(): number {
    return this.refusals.total;
  }

  /** The same by cause. */
  refusedByCause(): Partial<Record<RefusalCause, number>> {
    return this.refusals.byCause();
  }

  /** The limits in force: the options given, defaults for the rest. */
  get connectionLimits(): Readonly<Limits> {
    return { ...this.limits };
  }

  /** Stops listening, drops every connection and frees the port. */
  close(): Promise<void> {
    this.closing ??= (async () => {
      this.unsubscribeCrl?.();
      const closed = new Promise<void>((resolve) => this.listener.close(() => resolve()));
      for (const socket of this.sockets) socket.destroy();
      await new Promise<void>((resolve) => this.aedes.close(() => resolve()));
      await closed;
    })();
    return this.closing;
  }

  private wire(): void {
    const { server, aedes, options } = this;
    this.listener.on('connection', (socket: Socket) => this.startHandshake(socket));
    server.on('tlsClientError', (err: Error & { code?: string; reason?: string }, socket) => {
      const address = socket.remoteAddress;
      // Node leaves the socket open after its handshake timeout (it only emits this event).
      socket.destroy();
      // A certificate that fails verification (foreign CA, revoked, expired) ends the handshake with
      // Node closing the socket: it arrives here as a reset, with the reason in authorizationError.
      const unverified = socket.authorizationError;
      if (unverified) return this.refuse('tls', `TLS handshake: client certificate not accepted (${String(unverified)})`, { address });
      // Any other reset is the client hanging up, or the broker closing it for a cap or deadline (refused already).
      if (err.code === 'ECONNRESET') return;
      const cause = err.code === 'ERR_TLS_HANDSHAKE_TIMEOUT' ? 'handshake-timeout' : 'tls';
      // OpenSSL's message carries its source file and line; its reason alone says it.
      this.refuse(cause, `TLS handshake: ${err.reason ?? err.message}`, { address });
    });
    server.on('secureConnection', (socket) => {
      this.inHandshake.get(fourTuple(socket))?.();
      this.accept(socket);
    });
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

  /**
   * A TCP connection holds a handshake slot (in all and for its address) from accept until its
   * TLS handshake completes or it closes; without a free slot it is destroyed at once, and one
   * that is not through the handshake by the deadline is destroyed then.
   */
  private startHandshake(raw: Socket): void {
    this.sockets.add(raw);
    raw.once('close', () => this.sockets.delete(raw));
    if (raw.destroyed) return;
    const address = raw.remoteAddress;
    const key = sourceKey(address);
    const slot = this.handshakes.take(key);
    if (typeof slot === 'string') {
      const { maxHandshakes, maxHandshakesPerAddress } = this.limits;
      if (slot === 'total') this.refuse('handshakes', `more than ${maxHandshakes} TLS handshakes at once`, { address });
      else this.refuse('handshakes-per-address', `more than ${maxHandshakesPerAddress} TLS handshakes at once from ${key}`, { address });
      raw.destroy();
      return;
    }
    this.server.emit('connection', raw);
    const tuple = fourTuple(raw);
    const timer = setTimeout(() => {
      if (raw.destroyed) return;
      this.refuse('handshake-timeout', `TLS handshake not done within ${seconds(this.limits.handshakeTimeoutMs)}`, { address });
      raw.destroy();
    }, this.limits.handshakeTimeoutMs);
    const done = (): void => {
      clearTimeout(timer);
      slot.release();
      if (this.inHandshake.get(tuple) === done) this.inHandshake.delete(tuple);
    };
    this.inHandshake.set(tuple, done);
    raw.once('close', done);
  }

  private accept(socket: tls.TLSSocket): void {
    const cert = verifiedPeer(socket);
    const identity = cert?.identity;
    const address = socket.remoteAddress;
    if (!cert || !identity) {
      this.refuse('not-authorized', 'client certificate without a CN', { address });
      socket.destroy();
      return;
    }
    const peer: Peer = { identity, serial: cert.serial };
    // The identity is known here, before any MQTT: a certificate over its share never holds a session slot.
    const backend = this.recordOf(peer.serial)?.kind === 'backend';
    const { maxClients } = this.options;
    if (!backend && maxClients && this.clientSlots >= maxClients) {
      this.refuse('clients', `more than ${maxClients} clients at once`, { identity, address });
      socket.destroy();
      return;
    }
    const perIdentity = backend ? this.limits.maxSessionsPerBackend : this.limits.maxSessionsPerDevice;
    const session = this.sessions.take(identity, perIdentity);
    if (typeof session === 'string') {
      this.refuse('sessions-per-identity', `${identity} already holds ${perIdentity} connection${perIdentity === 1 ? '' : 's'}`, { identity, address });
      socket.destroy();
      return;
    }
    if (!backend) this.clientSlots++;
    peer.connectTimer = setTimeout(() => {
      if (socket.destroyed) return;
      this.refuse('connect-timeout', `no MQTT CONNECT within ${seconds(this.limits.connectTimeoutMs)} of the TLS handshake`, { identity, address });
      peer.closedBecause = 'no CONNECT in time';
      socket.destroy();
    }, this.limits.connectTimeoutMs);
    this.peers.set(socket, peer);
    this.tlsSockets.add(socket);
    socket.once('close', () => {
      clearTimeout(peer.connectTimer);
      session.release();
      if (!backend) this.clientSlots--;
      this.tlsSockets.delete(socket);
    });
    this.aedes.handle(socket);
    // With aedes reading through 'readable', a 'data' listener only observes what it reads (Node streams: 'readable' takes precedence).
    const guard = new PacketSizeGuard(this.options.maxPacketBytes);
    socket.on('data', (chunk: Buffer) => {
      const problem = guard.feed(chunk);
      if (problem && !socket.destroyed) {
        peer.closedBecause = problem;
        this.refuse('protocol', problem, { identity, address });
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
    clearTimeout(peer.connectTimer);
    peer.clientId = packet.clientId;
    if (packet.clientId) packet.clientId = `${peer.identity}|${packet.clientId}`;
    done(null, true);
  }

  private authenticate(client: Client, done: (err: AuthenticateError | null, ok: boolean | null) => void): void {
    const peer = this.peerOf(client);
    const refuse = (reason: string): void => {
      this.refuse('not-authorized', reason, { identity: peer?.identity, address: remoteAddress(client) });
      done(Object.assign(new Error(reason), { returnCode: notAuthorized }), false);
    };
    if (!peer) return refuse('no verified client certificate');
    // The CRL is re-signed just after a revoke is recorded: the store's word closes that gap.
    if (this.isRevoked(peer.serial)) return refuse(`certificate ${peer.serial} of ${peer.identity} is revoked`);
    peer.permissions = this.permissionsFor(peer.identity);
    const policy = this.policy.mayConnect;
    const refused = refusalOf(() => policy(this.whoOf(peer, client)), `connection of ${peer.identity}`);
    if (refused) return refuse(refused);
    done(null, true);
  }

  /** Rights from the store as it is now: a device issued a moment ago is admitted without a restart. */
  private permissionsFor(identity: string): Permissions {
    const holds = (kind: 'device' | 'backend'): string[] => (this.options.store.currentIdentity(kind, identity) ? [identity] : []);
    return new Permissions(identity, aclEntries(holds('device'), holds('backend'), this.options.scheme, this.options.homeAssistantPrefix));
  }

  private authorizePublish(client: Client | null, topic: string): Error | null {
    const peer = this.peerOf(client);
    if (peer?.permissions?.canPublish(topic)) {
      const hook = this.policy.mayPublish;
      const refused = client ? refusalOf(() => hook(this.whoOf(peer, client), topic), `publish to ${topic}`) : undefined;
      if (!refused) return null;
      this.emit({ type: 'denied', identity: peer.identity, clientId: peer.clientId ?? client!.id, action: 'publish', topic, reason: refused });
      return new Error(refused);
    }
    // No client: a will left by a broker that is gone; nobody can vouch for it.
    if (peer && client) this.emit({ type: 'denied', identity: peer.identity, clientId: peer.clientId ?? client.id, action: 'publish', topic });
    return new Error(`${peer?.identity ?? 'unknown'} may not publish to ${topic}`);
  }

  private authorizeSubscribe(client: Client, filter: string): boolean {
    const peer = this.peerOf(client);
    if (peer?.permissions?.canSubscribe(filter)) {
      const hook = this.policy.maySubscribe;
      const refused = refusalOf(() => hook(this.whoOf(peer, client), filter), `subscription to ${filter}`);
      if (!refused) return true;
      this.emit({ type: 'denied', identity: peer.identity, clientId: peer.clientId ?? client.id, action: 'subscribe', topic: filter, reason: refused });
      return false;
    }
    if (peer) this.emit({ type: 'denied', identity: peer.identity, clientId: peer.clientId ?? client.id, action: 'subscribe', topic: filter });
    return false;
  }

  private get policy(): BrokerPolicy {
    return { ...DEFAULT_BROKER_POLICY, ...this.options.policy };
  }

  private whoOf(peer: Peer, client: Client): Who {
    return { identity: peer.identity, kind: kindOf(peer.permissions), serial: peer.serial, address: remoteAddress(client) };
  }

  private isRevoked(serial: string): boolean {
    const record = this.recordOf(serial);
    return !record || Boolean(record.revokedAt); // not issued by this store: nothing vouches for it
  }

  private recordOf(serial: string): IssuedRecord | undefined {
    try {
      return this.options.store.findBySerial(serial);
    } catch {
      return undefined;
    }
  }

  private refuse(cause: RefusalCause, reason: string, who: { identity?: string; address?: string }): void {
    this.refusals.add(cause);
    this.emit({ type: 'refused', cause, ...who, reason });
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

/**
 * CN and serial of the client certificate the handshake verified, read from the TLS session
 * (~9 us) rather than by the first getPeerX509Certificate() (~140 us, a tenth of the broker's
 * CPU per connect); see lib/pki/peer-certificate.ts.
 */
function verifiedPeer(socket: tls.TLSSocket): { identity?: string; serial: string } | undefined {
  const session = socket.getSession();
  const fromSession = session && peerCertificateOfSession(session);
  if (fromSession) return { identity: fromSession.commonName, serial: normalizeSerial(fromSession.serialNumber) };
  const cert = socket.getPeerX509Certificate();
  return cert && { identity: /^CN=(.*)$/m.exec(cert.subject)?.[1], serial: normalizeSerial(cert.serialNumber) };
}

/** The same for the raw socket and the TLS socket on top of it, and unique among open connections. */
function fourTuple(socket: Socket): string {
  return `${socket.localAddress}|${socket.localPort}|${socket.remoteAddress}|${socket.remotePort}`;
}

function seconds(ms: number): string {
  return `${Math.round(ms / 100) / 10} s`;
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
