import type { Node } from 'node-red';
import type { CaStore } from '../../lib/pki/ca-store';
import type { EnrollmentDesk } from '../../lib/enroll/enrollment-desk';

export interface EspCaCredentials {
  passphrase?: string;
  importKey?: string;
}

/** What other nodes may use of an `esp-ca` config node. */
export interface EspCaNode extends Node<EspCaCredentials> {
  folder: string;
  /** The opened store; rejects with the reason when it cannot be opened. */
  store(): Promise<CaStore>;
  /** The CA's enrollment desk (policy from this node), opened on first use. */
  enrollment(): Promise<EnrollmentDesk>;
}
