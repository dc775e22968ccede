import * as https from 'node:https';
import type { TLSSocket } from 'node:tls';
import type { Socket } from 'node:net';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { boundRequests, deadlineOptions, guardConnections, servingLimits, ServingLimits } from '../connection-guard';
import { revokedSerials } from '../../pki/crl-serials';
import { peerOfSocket, verifiedPeer } from './peer-identity';
import type { Revocation } from './revocation';
import type { UpdateEvent, UpdateServerOptions } from './update-types';

/** What createUpdateHttpsServer gives each serving process. */
export interface UpdateHttpsServer {
  server: https.Server;
  /** The new CRL for handshakes and requests; closes the open connections it revokes (how many). */
  setCrl(crlPem: string): number;
  /** Stops accepting and closes every connection, in its handshake or not. */
  close(): Promise<void>;
}

/**
 * The HTTPS server around the request listener, with the TLS settings, caps and deadlines of
 * every serving process (lib/firmware/connection-guard.ts). `revocation` is the one the
 * listener checks requests against; setCrl loads each CRL into it.
 */
export function createUpdateHttpsServer(
  options: Pick<UpdateServerOptions, 'tls' | 'clientCertificates'> & Partial<ServingLimits>,
  listener: (req: IncomingMessage, res: ServerResponse) => void,
  onEvent: (event: UpdateEvent) => void,
  worker: number | undefined,
  revocation: Revocation,
): UpdateHttpsServer {
  const limits = servingLimits(options);
  const tlsSettings = (crl: string | undefined): https.ServerOptions => ({
    key: options.tls.key,
    cert: options.tls.cert,
    ca: options.tls.ca,
    crl,
    requestCert: true,
    rejectUnauthorized: options.clientCertificates === 'required',
    // ESP8266 BearSSL speaks TLS 1.2 at most; nothing older is offered.
    minVersion: 'TLSv1.2',
  });
  const server = https.createServer(
    {
      ...tlsSettings(options.tls.crl),
      ...deadlineOptions(limits),
      // The Host check is the handlers' (audited); Node's own would answer 400 silently.
      requireHostHeader: false,
    },
    listener,
  );
  boundRequests(server, limits);
  const refused = (socket: Socket, status: number, reason: string): void => {
    onEvent({
      type: 'rejected',
      at: new Date().toISOString(),
      path: '',
      status,
      reason,
      ...peerOfSocket(socket as TLSSocket),
      remoteAddress: socket.remoteAddress,
      ...(worker === undefined ? {} : { worker }),
    });
  };
  const guard = guardConnections(server, limits, refused);
  const serialOf = (tls: TLSSocket): string | undefined => verifiedPeer(tls)?.serialNumber;
  return {
    server,
    setCrl: (crl) => {
      // Read first: a CRL that cannot be read changes nothing.
      const serials = revokedSerials(crl);
      server.setSecureContext(tlsSettings(crl));
      revocation.use(serials);
      return guard.closeRevoked((serial) => revocation.isRevoked(serial), serialOf);
    },
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
        guard.destroyAll();
      }),
  };
}
