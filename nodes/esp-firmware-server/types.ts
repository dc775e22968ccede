import type { Node } from 'node-red';
import type { FirmwareService } from '../../lib/firmware/firmware-service';
import type { UpdateEvent } from '../../lib/firmware/update-server';

/** What other nodes (esp-rollout) may use of a deployed `esp-firmware-server`. */
export interface EspFirmwareServerNode extends Node {
  /** The catalogue and rules the server serves with; rejects when the server could not start. */
  firmware(): Promise<FirmwareService>;
  /** Every event of the server as it happens (progress included); returns the unsubscribe. */
  onServerEvent(listener: (event: UpdateEvent) => void): () => void;
}
