import { normalizeDeviceId } from '../device-id';
import type { EnrollmentDesk } from './enrollment-desk';

/** What `esp-firmware-server` does with enrollment for each `msg.topic` (docs/enrollment.md). */
export const ENROLL_ACTIONS = ['pending', 'approve', 'reject', 'bootstrap', 'bootstrap-rotate', 'bootstrap-revoke'] as const;
export type EnrollAction = (typeof ENROLL_ACTIONS)[number];

export function isEnrollAction(value: unknown): value is EnrollAction {
  return typeof value === 'string' && (ENROLL_ACTIONS as readonly string[]).includes(value);
}

/** `approve` / `reject` take one id, a list, or `{id}` / `{ids}` (a dashboard row or a table selection). */
function idsOf(payload: unknown): string[] {
  const o = (typeof payload === 'object' && payload !== null && !Array.isArray(payload) ? payload : {}) as Record<string, unknown>;
  const raw = Array.isArray(payload) ? payload : typeof payload === 'string' ? payload.split(/[\s,]+/).filter(Boolean) : Array.isArray(o.ids) ? o.ids : o.id !== undefined ? [o.id] : [];
  if (raw.length === 0) throw new Error('set msg.payload to the device id to decide (or a list, or {id})');
  if (raw.length > 1_000) throw new Error('at most 1000 ids at once');
  return [...new Set(raw.map((v) => normalizeDeviceId(typeof v === 'object' && v !== null ? (v as Record<string, unknown>).id : v)))];
}

export async function runEnrollAction(desk: EnrollmentDesk, action: EnrollAction, payload: unknown): Promise<unknown> {
  switch (action) {
    case 'pending':
      return { action, requests: desk.pending() };
    case 'approve':
    case 'reject': {
      const decided: { id: string; serial?: string }[] = [];
      const failed: { id: string; error: string }[] = [];
      const reason = typeof payload === 'object' && payload !== null && typeof (payload as Record<string, unknown>).reason === 'string' ? ((payload as Record<string, unknown>).reason as string) : undefined;
      for (const id of idsOf(payload)) {
        try {
          decided.push(action === 'approve' ? await desk.approve(id) : await desk.reject(id, reason));
        } catch (err) {
          failed.push({ id, error: (err as Error).message });
        }
      }
      if (decided.length === 0 && failed.length) throw new Error(failed.map((f) => f.error).join('; ').slice(0, 300));
      return { action, decided, failed, pending: desk.pending().length };
    }
    case 'bootstrap': {
      const s = desk.showBootstrap();
      return { action, ...(s ? { ...s, line: `${s.user}:${s.password}` } : { revoked: true }), ...(desk.bootstrapProblem ? { problem: desk.bootstrapProblem } : {}) };
    }
    case 'bootstrap-rotate': {
      const s = await desk.rotateBootstrap();
      return { action, ...s, line: `${s.user}:${s.password}` };
    }
    case 'bootstrap-revoke':
      await desk.revokeBootstrap();
      return { action, revoked: true };
  }
}
