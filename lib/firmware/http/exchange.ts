import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Client } from './peer-identity';
import type { ImageCache } from '../image-cache';
import type { AppInternals, UpdateEvent, UpdateServerOptions } from './update-types';

/** One request as the handlers see it: Node's own request and response (express's extend them). */
export interface Exchange {
  req: IncomingMessage;
  res: ServerResponse;
  client: Client;
  /** The URL path without the query (for events). */
  path: string;
}

/** What a handler says of an event; the rest comes from the exchange. */
export type EventFields = Omit<UpdateEvent, 'at' | 'path' | 'deviceId' | 'certificateSerial' | 'authenticated' | 'remoteAddress'>;

/**
 * A reason as a client may see it: absolute paths of this machine cut down to their last
 * segment (an error of the file system names the install folder).
 */
export function withoutPaths(reason: string): string {
  return reason.replace(/(?:[A-Za-z]:)?(?:[\\/][^\s\\/'"`]+)+[\\/]([^\s\\/'"`]*)/g, '$1');
}

/** What the handlers of one serving process share. */
export interface HandlerContext {
  options: UpdateServerOptions;
  cap: number;
  cache: ImageCache;
  acquireSlot: AppInternals['acquireSlot'];
  /** Downloads this process is sending (with workers, the cap counts all processes). */
  downloads: { sending: number };
  idleSeconds: number;
  emit(x: Exchange, e: EventFields, slot?: number): void;
  refuse(x: Exchange, status: number, reason: string): void;
}
