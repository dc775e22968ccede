import type * as https from 'node:https';
import { STATUS_CODES } from 'node:http';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Server } from 'node:https';
import type { Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import type { TLSSocket } from 'node:tls';
import { KeyedCounter, Slot } from '../net/connection-limits';
import { sourceKey } from '../net/source-address';

// What an HTTPS server of the update server does below the request handlers: caps on
// connections (in total and per source address) counted from the moment the kernel hands a
// connection over, before any TLS; a hard deadline for the TLS handshake; closing open
// connections whose certificate has been revoked; and a short text answer plus an audit
// event for every request Node's HTTP parser refuses before a handler sees it.

/**
 * Caps and deadlines of each serving process (with `workers` > 1, each process counts its own
 * connections). Defaults in SERVING_LIMITS; the node's help says why they suit ESP8266s.
 */
export interface ServingLimits {
  /** Connections open at once, TLS handshakes included; beyond it a new one is closed at once (default 512). */
  maxConnections: number;
  /** The same from one source address (default 32). */
  maxConnectionsPerAddress: number;
  /** From accepting a connection to a finished TLS handshake, however the bytes trickle (default 10 s). */
  handshakeTimeoutMs: number;
  /** From the handshake (or the previous response) to the end of a request's headers, and of its body (default 10 s). */
  headersTimeoutMs: number;
  /** How long a keep-alive connection may wait for its next request (default 5 s). */
  keepAliveTimeoutMs: number;
  /** While a request is answered: how long no byte may move before the connection is closed (default 60 s). */
  idleTimeoutMs: number;
  /** Requests one keep-alive connection may carry; the last answer says `Connection: close` (default 100). */
  maxRequestsPerConnection: number;
}

export const SERVING_LIMITS: Readonly<ServingLimits> = Object.freeze({
  maxConnections: 512,
  maxConnectionsPerAddress: 32,
  handshakeTimeoutMs: 10_000,
  headersTimeoutMs: 10_000,
  keepAliveTimeoutMs: 5_000,
  idleTimeoutMs: 60_000,
  maxRequestsPerConnection: 100,
});

/** The limits with defaults filled in; each must be a whole number ≥ 1. */
export function servingLimits(given: Partial<ServingLimits> = {}): ServingLimits {
  const out = { ...SERVING_LIMITS };
  for (const key of Object.keys(SERVING_LIMITS) as (keyof ServingLimits)[]) {
    const v = given[key];
    if (v === undefined) continue;
    if (!Number.isInteger(v) || v < 1) throw new RangeError(`${key} must be a whole number ≥ 1, got ${JSON.stringify(v)}`);
    out[key] = v;
  }
  return out;
}

/**
 * The parts of an https.Server's options that hold each connection to the limits: headers and
 * body share one deadline (a request of ours has no body worth waiting for longer), Node checks
 * those deadlines on a short interval (its default of 30 s let slow headers last ~40 s).
 */
export function deadlineOptions(limits: ServingLimits): Pick<https.ServerOptions, 'maxHeaderSize' | 'headersTimeout' | 'requestTimeout' | 'keepAliveTimeout' | 'connectionsCheckingInterval'> {
  return {
    maxHeaderSize: 8 * 1024,
    headersTimeout: limits.headersTimeoutMs,
    requestTimeout: limits.headersTimeoutMs,
    keepAliveTimeout: limits.keepAliveTimeoutMs,
    connectionsCheckingInterval: Math.max(100, Math.min(1_000, Math.floor(limits.headersTimeoutMs / 4))),
  };
}

/** The bounds an https.Server takes after it is made: the idle timeout and the requests one connection may carry. */
export function boundRequests(server: https.Server, limits: ServingLimits): void {
  server.timeout = limits.idleTimeoutMs;
  server.maxRequestsPerSocket = limits.maxRequestsPerConnection;
}

/** Where a refusal is reported: the socket it concerns (TLS once established), status (0: no HTTP answer), reason. */
export type Refusal = (socket: Socket | TLSSocket, status: number, reason: string) => void;

export interface ConnectionGuard {
  /** Destroys every open connection whose verified certificate serial `isRevoked` says is revoked; returns how many. */
  closeRevoked(isRevoked: (serial: string) => boolean, serialOf: (socket: TLSSocket) => string | undefined): number;
  /** Destroys every connection, in its handshake or not (server.closeAllConnections only knows those past TLS). */
  destroyAll(): void;
  /** Connections open now (handshakes included). */
  readonly open: number;
}

interface Conn {
  slot: Slot;
  /** Pending while the TLS handshake has not finished. */
  deadline?: NodeJS.Timeout;
  /** Set once TLS is established. */
  tls?: TLSSocket;
}

type TlsListener = (this: Server, raw: Socket) => void;

export function guardConnections(server: Server, limits: ServingLimits, refuse: Refusal): ConnectionGuard {
  const counts = new KeyedCounter({ total: limits.maxConnections, perKey: limits.maxConnectionsPerAddress });
  const conns = new Map<Socket, Conn>();
  /** Raw sockets closed by the handshake deadline: their TLS error is already reported. */
  const expired = new WeakSet<Socket>();
  /** Errors of the TLS stage, which https.Server re-emits as 'clientError'. */
  const tlsErrors = new WeakSet<Error>();

  function onRawClose(this: Socket): void {
    const c = conns.get(this);
    if (!c) return;
    conns.delete(this);
    if (c.deadline) clearTimeout(c.deadline);
    c.slot.release();
  }

  function onDeadline(raw: Socket): void {
    const c = conns.get(raw);
    if (!c || c.tls) return;
    c.deadline = undefined;
    expired.add(raw);
    refuse(raw, 0, `TLS handshake not finished within ${limits.handshakeTimeoutMs / 1000} s`);
    // The TLS socket on top sees its transport go and is destroyed with it (tls 'socket hang up').
    raw.destroy();
  }

  // tls.Server wraps each accepted socket in its 'connection' listener (Node docs, tls.Server
  // event 'connection'). The caps decide first, so a refused socket never costs a TLS socket.
  const wrapTls = server.listeners('connection') as TlsListener[];
  server.removeAllListeners('connection');
  server.on('connection', (raw: Socket) => {
    const key = sourceKey(raw.remoteAddress);
    const slot = counts.take(key);
    if (typeof slot === 'string') {
      const reason =
        slot === 'total'
          ? `connection refused: ${counts.count()} connections open (limit ${counts.limits.total})`
          : `connection refused: ${counts.count(key)} connections open from this address (limit ${counts.limits.perKey})`;
      refuse(raw, 0, reason);
      raw.destroy();
      return;
    }
    conns.set(raw, { slot, deadline: setTimeout(onDeadline, limits.handshakeTimeoutMs, raw) });
    raw.on('close', onRawClose);
    for (const l of wrapTls) l.call(server, raw);
  });

  server.on('secureConnection', (tls: TLSSocket) => {
    // The TLS socket keeps the socket it wraps as `_parent` (lib/_tls_wrap.js, TLSSocket._init).
    const c = conns.get((tls as unknown as { _parent?: Socket })._parent as Socket);
    if (!c) return;
    if (c.deadline) clearTimeout(c.deadline);
    c.deadline = undefined;
    c.tls = tls;
  });

  // https.Server re-emits TLS errors as 'clientError' (lib/https.js): marked here, first, so
  // the handler below tells them from HTTP parse errors.
  server.prependListener('tlsClientError', (err: Error, tls: TLSSocket) => {
    tlsErrors.add(err);
    const raw = (tls as unknown as { _parent?: Socket })._parent;
    if (!(raw && expired.has(raw))) refuse(tls, 0, `TLS handshake: ${err.message}`);
  });

  // With a 'clientError' listener Node neither answers nor closes (Node docs, http.Server
  // event 'clientError'): both are done here, with a short text body and an audit event.
  server.on('clientError', (err: NodeJS.ErrnoException, socket: Duplex) => {
    if (tlsErrors.has(err)) {
      socket.destroy();
      return;
    }
    const tls = socket as TLSSocket;
    // A client that went away is no refusal, and there is nobody left to answer.
    if (err.code === 'ECONNRESET' || !tls.writable) {
      tls.destroy();
      return;
    }
    const [status, reason] = parseRefusal(err, limits);
    refuse(tls, status, reason);
    // Never into the middle of a response already under way (the check Node's default does).
    const current = (tls as unknown as { _httpMessage?: ServerResponse })._httpMessage;
    if (current?.headersSent) {
      tls.destroy();
      return;
    }
    tls.end(shortAnswer(status, reason));
    tls.destroySoon();
  });

  // CONNECT (RFC 9110 section 9.3.6) is a proxy's method: Node hands it to 'connect' listeners
  // or drops the socket without a word; here it is refused like any other method.
  server.on('connect', (req: IncomingMessage, socket: Duplex) => {
    const tls = socket as TLSSocket;
    refuse(tls, 405, `method ${req.method} refused: only GET and HEAD`);
    tls.end(shortAnswer(405, 'only GET and HEAD'));
    tls.destroySoon();
  });

  // An Expect other than 100-continue: Node would answer 417 itself, unaudited (Node docs,
  // http.Server event 'checkExpectation'; RFC 9110 section 10.1.1).
  server.on('checkExpectation', (req: IncomingMessage, res: ServerResponse) => {
    const tls = req.socket as TLSSocket;
    refuse(tls, 417, 'only Expect: 100-continue');
    res.writeHead(417, { 'Content-Type': 'text/plain; charset=utf-8', Connection: 'close' });
    res.end('only Expect: 100-continue\n');
  });

  // Pipelined requests beyond maxRequestsPerSocket: Node answers 503 itself (Node docs,
  // http.Server event 'dropRequest').
  server.on('dropRequest', (_req: IncomingMessage, socket: Duplex) => {
    refuse(socket as TLSSocket, 503, `more than ${limits.maxRequestsPerConnection} requests on one connection`);
    // Node writes that 503 right after this event and would keep answering 503s on the same
    // connection for as long as the client sends: it is closed once the answer is out.
    setImmediate(() => (socket as TLSSocket).destroySoon());
  });

  return {
    closeRevoked(isRevoked, serialOf) {
      let closed = 0;
      for (const c of conns.values()) {
        const tls = c.tls;
        if (!tls || tls.destroyed || !tls.authorized) continue;
        const serial = serialOf(tls);
        if (serial === undefined || !isRevoked(serial)) continue;
        refuse(tls, 0, 'client certificate revoked: connection closed');
        tls.destroy();
        closed++;
      }
      return closed;
    },
    destroyAll() {
      for (const [raw, c] of conns) {
        if (c.tls) c.tls.destroy();
        raw.destroy();
      }
    },
    get open() {
      return counts.count();
    },
  };
}

/** Status and reason for an error of Node's HTTP parser (llhttp codes) or its request timers. */
function parseRefusal(err: NodeJS.ErrnoException, limits: ServingLimits): [number, string] {
  switch (err.code) {
    case 'HPE_HEADER_OVERFLOW':
      return [431, 'request headers too large'];
    case 'ERR_HTTP_REQUEST_TIMEOUT':
      return [408, `request not complete within ${limits.headersTimeoutMs / 1000} s`];
    default: {
      // llhttp's reason is a short fixed text (e.g. "Invalid method encountered"); never the request.
      const why = (err as { reason?: unknown }).reason;
      return [400, `malformed request (${err.code ?? 'parse error'}${typeof why === 'string' ? `: ${why.slice(0, 80)}` : ''})`];
    }
  }
}

/** A complete HTTP/1.1 answer with a one-line text body, for a connection that closes after it. */
export function shortAnswer(status: number, reason: string): string {
  const body = `${reason}\n`;
  return `HTTP/1.1 ${status} ${STATUS_CODES[status] ?? 'Error'}\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`;
}
