/**
 * A device's enrollment steps (docs/enrollment.md, The device): what it does next after each
 * answer of the enrollment listener, and how long it waits. The firmware core decides the same
 * from test/vectors/enrollment.json; the simulator runs this file.
 */
export type EnrollState = 'boot' | 'key' | 'enroll' | 'pending' | 'backoff' | 'enrolled' | 'renew' | 'renew-backoff';

export type EnrollEvent =
  | 'no-key'
  | 'no-cert'
  | 'cert-valid'
  | 'key-stored'
  | 'answer-200'
  | 'answer-202'
  | 'refused'
  | 'timer'
  | 'renew-due'
  | 'cert-command'
  | 'cert-expired';

export type EnrollAction = 'make-key' | 'simpleenroll' | 'connect' | 'store-and-connect' | 'wait-retry-after' | 'wait-failure' | 'simplereenroll' | 'none';

export interface EnrollStep {
  next: EnrollState;
  action: EnrollAction;
}

/** The table of docs/enrollment.md; a pair missing here changes nothing (`none`). */
const STEPS: Partial<Record<EnrollState, Partial<Record<EnrollEvent, EnrollStep>>>> = {
  boot: {
    'no-key': { next: 'key', action: 'make-key' },
    'no-cert': { next: 'enroll', action: 'simpleenroll' },
    'cert-expired': { next: 'enroll', action: 'simpleenroll' },
    'cert-valid': { next: 'enrolled', action: 'connect' },
  },
  key: { 'key-stored': { next: 'enroll', action: 'simpleenroll' } },
  enroll: {
    'answer-200': { next: 'enrolled', action: 'store-and-connect' },
    'answer-202': { next: 'pending', action: 'wait-retry-after' },
    refused: { next: 'backoff', action: 'wait-failure' },
  },
  pending: { timer: { next: 'enroll', action: 'simpleenroll' } },
  backoff: { timer: { next: 'enroll', action: 'simpleenroll' } },
  enrolled: {
    'renew-due': { next: 'renew', action: 'simplereenroll' },
    'cert-command': { next: 'renew', action: 'simplereenroll' },
    'cert-expired': { next: 'enroll', action: 'simpleenroll' },
  },
  renew: {
    'answer-200': { next: 'enrolled', action: 'store-and-connect' },
    refused: { next: 'renew-backoff', action: 'wait-failure' },
    'answer-202': { next: 'renew-backoff', action: 'wait-failure' },
    'cert-expired': { next: 'enroll', action: 'simpleenroll' },
  },
  'renew-backoff': {
    timer: { next: 'renew', action: 'simplereenroll' },
    'cert-expired': { next: 'enroll', action: 'simpleenroll' },
  },
};

export function enrollStep(state: EnrollState, event: EnrollEvent): EnrollStep {
  return STEPS[state]?.[event] ?? { next: state, action: 'none' };
}

export const ENROLL_TIMING = {
  retryAfterDefaultS: 60,
  retryAfterMinS: 10,
  retryAfterMaxS: 3_600,
  failureFirstS: 30,
  failureMaxS: 3_600,
} as const;

/** How long to wait after a `202`: Retry-After as delta-seconds (RFC 9110 §10.2.3, optional spaces/tabs around), clamped; anything else is the default. */
export function pendingDelayMs(retryAfter: string | undefined): number {
  const t = ENROLL_TIMING;
  const s = retryAfter !== undefined && /^[ \t]*\d{1,9}[ \t]*$/.test(retryAfter) ? Number(retryAfter) : t.retryAfterDefaultS;
  return Math.min(t.retryAfterMaxS, Math.max(t.retryAfterMinS, s)) * 1000;
}

/** The wait after the n-th failure in a row (n ≥ 1): 30 s, doubling, at most an hour. */
export function failureDelayMs(failures: number): number {
  const t = ENROLL_TIMING;
  const n = Math.max(1, Math.floor(failures));
  return Math.min(t.failureMaxS, t.failureFirstS * 2 ** Math.min(n - 1, 20)) * 1000;
}

/** When a certificate valid from `notBefore` to `notAfter` (Unix seconds) is renewed: at two thirds of its life. */
export function renewAtS(notBeforeS: number, notAfterS: number): number {
  return notBeforeS + Math.floor((2 * (notAfterS - notBeforeS)) / 3);
}
