import * as os from 'node:os';
import * as path from 'node:path';
import type { NodeAPI } from 'node-red';

/** The Node-RED user directory (~/.node-red when the settings do not say). */
export function userDirOf(RED: NodeAPI): string {
  return (RED.settings as { userDir?: string }).userDir ?? path.join(os.homedir(), '.node-red');
}

/** Resolves a folder from the editor: absolute as given, otherwise inside the Node-RED user directory. */
export function folderInUserDir(RED: NodeAPI, folder: string | undefined, fallback: string): string {
  const chosen = folder?.trim() || fallback;
  return path.isAbsolute(chosen) ? chosen : path.join(userDirOf(RED), chosen);
}

export function errorText(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

/** Status badges have little room: keep the start of the message. */
export function shortText(text: string, max = 40): string {
  return text.length > max ? `${text.slice(0, max - 1)}…` : text;
}

export function optionalNumber(value: unknown): number | undefined {
  if (value === undefined || value === null || value === '') return undefined;
  const n = Number(value);
  return Number.isFinite(n) ? n : undefined;
}

/** An optional setting that must be a positive number when given. */
export function positive(value: unknown, label: string): number | undefined {
  const n = optionalNumber(value);
  if (value !== undefined && value !== null && value !== '' && (n === undefined || n <= 0)) {
    throw new Error(`${label} must be a positive number, got ${JSON.stringify(value)}`);
  }
  return n;
}
