/**
 * Your own rules for the embedded broker, as hooks in the style of aedes' `authenticate`,
 * `authorizePublish` and `authorizeSubscribe`. A hook runs only after the built-in rule allowed
 * the action, and can only take rights away: whatever a hook answers, a client never gets more
 * than the least-privilege ACL (lib/broker/acl.ts) and the certificate checks give it.
 */
export interface Who {
  /** The certificate CN: a device id or a backend name. */
  identity: string;
  kind: 'device' | 'backend' | 'unknown';
  /** Serial of the client certificate (hex). */
  serial: string;
  address?: string;
}

/** `true` allows; `false` or a reason (shown in the refused/denied event) refuses. */
export type Verdict = boolean | string;

export interface BrokerPolicy {
  /** At CONNECT, after the CA, CRL and session caps. Default: allow. */
  mayConnect(who: Who): Verdict;
  /** Each PUBLISH the ACL allows. Default: allow (MQTT-3.3.5-2: a refused publish closes the connection). */
  mayPublish(who: Who, topic: string): Verdict;
  /** Each filter of a SUBSCRIBE the ACL allows. Default: allow (refused filters get 0x80 in the SUBACK, MQTT-3.9.3). */
  maySubscribe(who: Who, filter: string): Verdict;
}

/** The defaults: nothing beyond the built-in rules. */
export const DEFAULT_BROKER_POLICY: BrokerPolicy = {
  mayConnect: () => true,
  mayPublish: () => true,
  maySubscribe: () => true,
};

/**
 * A hook's answer as a refusal reason, or undefined when it allows. A hook that throws refuses:
 * a bug in a user's rule must not open the broker.
 */
export function refusalOf(hook: () => Verdict, what: string): string | undefined {
  try {
    const v = hook();
    if (v === true) return undefined;
    return typeof v === 'string' && v ? v : `${what} refused by the broker policy`;
  } catch (err) {
    return `${what} refused: the broker policy failed (${err instanceof Error ? err.message : String(err)})`.slice(0, 200);
  }
}
