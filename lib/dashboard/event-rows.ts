import type { CommandOutcome } from '../fleet/commands';
import type { UpdateEvent } from '../firmware/update-server';

/** A command outcome as one table row. */
export interface OutcomeRow {
  at: string;
  device: string;
  command: string;
  outcome: string;
  image: string;
  /** The error, or where the image came from when it changed. */
  detail: string;
}

export function outcomeRow(o: CommandOutcome, at: Date = new Date()): OutcomeRow {
  const moved = o.previousImage && o.image && o.previousImage !== o.image ? `from ${o.previousImage}` : '';
  return { at: at.toISOString(), device: o.device, command: o.command, outcome: o.outcome, image: o.image ?? '', detail: o.error ?? moved };
}

/** An update-server event as one table row. */
export interface ServerEventRow {
  at: string;
  type: string;
  device: string;
  path: string;
  status: number;
  image: string;
  /** Why it was refused, or how much was sent and how fast (or how far, for a progress event). */
  detail: string;
}

export function serverEventRow(e: UpdateEvent): ServerEventRow {
  const sent =
    e.type === 'download-progress' ? `${e.percent ?? 0} % (${(e.offset ?? 0) + (e.bytes ?? 0)} of ${e.total ?? 0} bytes)` : e.bytes ? `${e.bytes} bytes${e.ms ? ` in ${e.ms} ms` : ''}` : '';
  return { at: e.at, type: e.type, device: e.deviceId ?? '', path: e.path, status: e.status, image: e.image ?? '', detail: e.reason ?? sent };
}
