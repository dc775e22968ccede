/** What `esp-rollout` does for each `msg.topic` (docs/rollout.md); update-server events it reads are listed apart. */
export const ROLLOUT_ACTIONS = ['start', 'pause', 'resume', 'abort', 'retry-failed', 'status'] as const;
export type RolloutCommand = (typeof ROLLOUT_ACTIONS)[number];

/** Events of `esp-firmware-server` (output 2) that a rollout reads when they are wired in; the others pass unnoticed. */
export const SERVER_EVENTS_READ = ['check', 'download-progress', 'not-modified'] as const;
const SERVER_EVENTS = ['download-start', 'download-complete', 'download-aborted', 'rejected', 'rejected-summary', 'file'];

export type RolloutInput = { kind: 'action'; action: RolloutCommand } | { kind: 'server-event'; event: (typeof SERVER_EVENTS_READ)[number] } | { kind: 'ignored' };

export function parseRolloutInput(topic: unknown): RolloutInput {
  if (typeof topic === 'string' && (ROLLOUT_ACTIONS as readonly string[]).includes(topic)) return { kind: 'action', action: topic as RolloutCommand };
  if (typeof topic === 'string' && (SERVER_EVENTS_READ as readonly string[]).includes(topic)) return { kind: 'server-event', event: topic as (typeof SERVER_EVENTS_READ)[number] };
  if (typeof topic === 'string' && (SERVER_EVENTS.includes(topic) || topic.startsWith('enroll-'))) return { kind: 'ignored' };
  throw new Error(`unknown action ${JSON.stringify(String(topic).slice(0, 40))}: set msg.topic to one of ${ROLLOUT_ACTIONS.join(', ')} (or wire in the update server's events)`);
}
