import type { Node } from 'node-red';
import type { FleetClient, ConnectionState } from '../../lib/fleet/fleet-client';

export interface EspFleetCredentials {
  caPem?: string;
  certPem?: string;
  keyPem?: string;
}

/** What other nodes may use of an `esp-fleet` config node. */
export interface EspFleetNode extends Node<EspFleetCredentials> {
  /** The started client; rejects with the reason it could not start (bad TLS material, scheme). */
  fleet(): Promise<FleetClient>;
}

/** The badge every user node shows while the connection is not up. */
export function connectionBadge(state: ConnectionState, detail?: string): { fill: 'green' | 'yellow' | 'red' | 'grey'; shape: 'dot' | 'ring'; text: string } {
  switch (state) {
    case 'connected':
      return { fill: 'green', shape: 'dot', text: 'connected' };
    case 'connecting':
    case 'reconnecting':
      return { fill: 'yellow', shape: 'ring', text: detail ? `${state}: ${detail}`.slice(0, 40) : state };
    case 'offline':
      return { fill: 'red', shape: 'ring', text: detail ? `offline: ${detail}`.slice(0, 40) : 'offline' };
    case 'closed':
      return { fill: 'grey', shape: 'ring', text: 'closed' };
  }
}
