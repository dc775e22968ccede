import type { IncomingMessage } from 'node:http';
import type { TLSSocket } from 'node:tls';
import { normalizeDeviceId, isDeviceId } from '../../device-id';
import { peerCertificateOfSession } from '../../pki/peer-certificate';
import { reportedMac } from './request-headers';

/** Who asks, as far as the connection tells. */
export interface Client {
  deviceId?: string;
  certificateSerial?: string;
  /** Identified by a verified certificate (not only by a header). */
  authenticated: boolean;
}

/**
 * CN and serial of the client certificate the handshake verified. Every connection here is a
 * fresh one, so what matters is the first call: read from the session (~9 us) rather than
 * getPeerCertificate() (~50 us) or getPeerX509Certificate() (~140 us the first time).
 */
export function verifiedPeer(socket: TLSSocket): { commonName?: string; serialNumber: string } | undefined {
  const session = socket.getSession();
  const peer = session && peerCertificateOfSession(session);
  if (peer) return peer;
  const c = socket.getPeerCertificate();
  if (c.raw === undefined) return undefined;
  const cn: unknown = c.subject?.CN;
  return { commonName: typeof cn === 'string' ? cn : undefined, serialNumber: c.serialNumber };
}

/** The device a verified certificate names (its CN), else the MAC the client reports (for assignments only). */
export function identify(req: IncomingMessage): Client {
  const socket = req.socket as TLSSocket;
  const cert = socket.authorized ? verifiedPeer(socket) : undefined;
  const cn = cert?.commonName;
  if (cn !== undefined && isDeviceId(cn)) {
    return { deviceId: cn, certificateSerial: cert!.serialNumber, authenticated: true };
  }
  // Without a certificate (optional mode): the MAC the update client reports, for assignments only.
  const mac = reportedMac(req);
  try {
    return { deviceId: mac ? normalizeDeviceId(mac) : undefined, certificateSerial: cert?.serialNumber, authenticated: false };
  } catch {
    return { authenticated: false, certificateSerial: cert?.serialNumber };
  }
}

/** What a connection refused before any request says of its peer, for the audit event. */
export function peerOfSocket(tls: TLSSocket): Partial<Client> {
  const peer = tls.encrypted && tls.authorized ? verifiedPeer(tls) : undefined;
  if (!peer) return {};
  const cn = peer.commonName;
  return { certificateSerial: peer.serialNumber, authenticated: true, ...(cn !== undefined && isDeviceId(cn) ? { deviceId: cn } : {}) };
}
