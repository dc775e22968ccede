import type { CommandOutcome } from './commands';

/** What esp-command reports once every targeted device has an outcome. */
export interface CommandSummary {
  command: string;
  devices: number;
  success: number;
  failed: number;
  timeout: number;
  sent: number;
  /** Devices of a mixed fleet whose platform has no such command: never sent. */
  refused?: number;
  elapsedMs: number;
  outcomes: CommandOutcome[];
}

/**
 * The summary as one line for a notification: counts first, then each device that did not
 * succeed with its reason, e.g. `firmware to 4 device(s): 3 succeeded, 1 failed, 0 timed out in
 * 12 s — 84f3eb012345: no newer image (304)`.
 */
export function commandSummaryText(s: CommandSummary): string {
  const counts = `${s.command} to ${s.devices} device(s): ${s.success} succeeded, ${s.failed} failed, ${s.timeout} timed out`;
  const tracked = `${s.sent ? `, ${s.sent} sent (not tracked)` : ''}${s.refused ? `, ${s.refused} refused` : ''}`;
  const notOk = s.outcomes.filter((o) => o.outcome === 'failed' || o.outcome === 'timeout' || o.outcome === 'refused').map((o) => `${o.device}: ${o.error ?? o.outcome}`);
  return `${counts}${tracked} in ${Math.round(s.elapsedMs / 1000)} s${notOk.length ? ` — ${notOk.join('; ')}` : ''}`;
}
