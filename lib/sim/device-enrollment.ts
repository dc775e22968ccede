import { generateKeyPair, KeyObject, X509Certificate } from 'node:crypto';
import { promisify } from 'node:util';
import { enrollStep, EnrollEvent, EnrollState, failureDelayMs, pendingDelayMs, renewAtS } from '../device/enrollment';
import type { WatchdogStep } from '../device/progress-watchdog';
import { DeviceTiming, scaled } from './device-timing';
import { EstOutcome, EstTarget, simpleEnroll, simpleReenroll } from './est-client';

const makeKeyPair = promisify(generateKeyPair);

/** What an enrolling board has in its data folder besides ca.crt (docs/enrollment.md, The device). */
export interface EnrollSetup {
  /** The enrollment listener (config.json's downloadserver and enrollport on a board). */
  server: EstTarget;
  /** bootstrap.txt: `user:password` (checked with est-client's bootstrapLine). */
  credential?: string;
}

/** What the steps need from the device running them: its waits (abortable) and its watchdog. */
export interface EnrollHost {
  pause(ms: number, signal: AbortSignal): Promise<void>;
  watch(step: WatchdogStep): void;
  feed(): void;
  log(line: string): void;
}

export type RenewResult =
  | { kind: 'renewed' }
  /** Kept the old certificate; the `timer` event is due after `delayMs`. */
  | { kind: 'failed'; reason: string; delayMs: number }
  /** The certificate expired: back to simpleenroll with the bootstrap credential. */
  | { kind: 'expired' }
  /** Nothing was sent: the device holds no certificate yet, or a renewal is under way (the firmware's reenrollNow). */
  | { kind: 'not-now'; reason: string };

/**
 * One simulated board's enrollment: the key it made (kept across reboots, like device.key on
 * LittleFS), the certificate it got, and the steps of lib/device/enrollment.ts between them.
 * Every wait is the device's (Retry-After, failure delay, time to renewal), scaled by `timing`;
 * certificate expiry is the certificate's own date.
 */
export class DeviceEnrollment {
  state: EnrollState = 'boot';
  /** Failures in a row (the failure delay doubles with them); reset by a 200 or a 202. */
  failures = 0;
  /** The last refusal, in one line. */
  lastReason = '';
  private key: KeyObject | undefined;
  private keyPem = '';
  private certPem = '';
  private notBeforeS = 0;
  private notAfterS = 0;
  /** Date.now() at which renewal is due: renewAtS of the certificate, its distance scaled. */
  private renewDueAt = 0;

  constructor(
    private readonly o: { id: string; ca: string; setup: EnrollSetup; timing: DeviceTiming },
    private readonly onState: (state: EnrollState) => void = () => undefined,
  ) {}

  /** The device's TLS identity once it has one. */
  get identity(): { cert: string; key: string } | undefined {
    return this.certPem ? { cert: this.certPem, key: this.keyPem } : undefined;
  }

  get holdsCertificate(): boolean {
    return this.state === 'enrolled' || this.state === 'renew' || this.state === 'renew-backoff';
  }

  /** ms from now until renewal is due (0 when it is). */
  renewInMs(now = Date.now()): number {
    return Math.max(0, this.renewDueAt - now);
  }

  /** ms from now until the certificate expires (its notAfter, not scaled). */
  expiresInMs(now = Date.now()): number {
    return Math.max(0, this.notAfterS * 1000 - now);
  }

  /**
   * A boot: the steps from `boot` until the device holds a valid certificate. Resolves then;
   * rejects only when `signal` ends the boot. Pending and refused requests wait and ask again.
   */
  async untilEnrolled(signal: AbortSignal, host: EnrollHost): Promise<void> {
    // A boot starts the steps afresh (the firmware's Enrollment is a new object every boot).
    this.state = 'boot';
    this.failures = 0;
    let event: EnrollEvent = !this.key ? 'no-key' : !this.certPem ? 'no-cert' : this.expired() ? 'cert-expired' : 'cert-valid';
    let retryAfter: string | undefined;
    for (;;) {
      const step = this.go(event);
      switch (step) {
        case 'make-key': {
          host.watch('verify');
          await host.pause(scaled(this.o.timing, this.o.timing.ecPointMs), signal);
          const pair = await makeKeyPair('ec', { namedCurve: 'prime256v1' });
          if (signal.aborted) throw new Error('aborted');
          this.key = pair.privateKey;
          this.keyPem = pair.privateKey.export({ type: 'pkcs8', format: 'pem' }).toString();
          host.feed();
          host.log('made the device key (P-256)');
          event = 'key-stored';
          break;
        }
        case 'simpleenroll': {
          const outcome = await this.post(false, signal, host);
          if (outcome.kind === 'issued') {
            this.store(outcome.certificatePem);
            event = 'answer-200';
          } else if (outcome.kind === 'pending') {
            retryAfter = outcome.retryAfter;
            event = 'answer-202';
          } else {
            this.refused(outcome.reason, host);
            event = 'refused';
          }
          break;
        }
        case 'wait-retry-after':
          this.failures = 0;
          host.watch('loop');
          host.log(`enrollment pending approval: asking again after Retry-After ${retryAfter ?? '(none)'}`);
          await host.pause(scaled(this.o.timing, pendingDelayMs(retryAfter)), signal);
          event = 'timer';
          break;
        case 'wait-failure':
          host.watch('loop');
          await host.pause(scaled(this.o.timing, failureDelayMs(this.failures)), signal);
          event = 'timer';
          break;
        case 'connect':
        case 'store-and-connect':
          this.failures = 0;
          host.watch('loop');
          return;
        default:
          throw new Error(`enrollment: no step from ${this.state} on ${event}`);
      }
    }
  }

  /**
   * `renew-due`, `cert-command` (from `enrolled`) or `timer` (from `renew-backoff`): one
   * simplereenroll with the current certificate and the same key.
   */
  async renew(event: 'renew-due' | 'cert-command' | 'timer', signal: AbortSignal, host: EnrollHost): Promise<RenewResult> {
    if (this.expired()) {
      this.go('cert-expired');
      return { kind: 'expired' };
    }
    if (this.go(event) !== 'simplereenroll') return { kind: 'not-now', reason: 'not enrolled yet, or a renewal is under way' };
    const outcome = await this.post(true, signal, host);
    if (outcome.kind === 'issued') {
      this.store(outcome.certificatePem);
      this.go('answer-200');
      this.failures = 0;
      return { kind: 'renewed' };
    }
    // The old certificate stays (docs/enrollment.md: renew → renew-backoff); a 202 counts as a failure here.
    const reason = outcome.kind === 'pending' ? 'enroll: simplereenroll answered 202' : outcome.reason;
    this.refused(reason, host);
    this.go(outcome.kind === 'pending' ? 'answer-202' : 'refused');
    return { kind: 'failed', reason, delayMs: scaled(this.o.timing, failureDelayMs(this.failures)) };
  }

  private go(event: EnrollEvent): string {
    const step = enrollStep(this.state, event);
    if (step.next !== this.state) {
      this.state = step.next;
      this.onState(step.next);
    }
    return step.action;
  }

  /** The CSR (public key and signature: two point multiplications), the handshake, the request. */
  private async post(renew: boolean, signal: AbortSignal, host: EnrollHost): Promise<EstOutcome> {
    const t = this.o.timing;
    host.watch('verify');
    await host.pause(scaled(t, 2 * t.ecPointMs), signal);
    host.watch('tls');
    await host.pause(scaled(t, t.tlsHandshakeMs), signal);
    host.feed();
    const request = { id: this.o.id, key: this.key!, ca: this.o.ca, credential: this.o.setup.credential, certificatePem: this.certPem, signal };
    const outcome = await (renew ? simpleReenroll : simpleEnroll)(this.o.setup.server, request);
    if (signal.aborted) throw new Error('aborted');
    host.watch('loop');
    return outcome;
  }

  private store(pem: string): void {
    const cert = new X509Certificate(pem);
    this.certPem = pem;
    this.notBeforeS = Math.floor(Date.parse(cert.validFrom) / 1000);
    this.notAfterS = Math.floor(Date.parse(cert.validTo) / 1000);
    const now = Date.now();
    this.renewDueAt = now + scaled(this.o.timing, Math.max(0, renewAtS(this.notBeforeS, this.notAfterS) * 1000 - now));
  }

  private refused(reason: string, host: EnrollHost): void {
    this.failures++;
    this.lastReason = reason;
    host.log(`${reason} (failure ${this.failures})`);
  }

  private expired(): boolean {
    return Date.now() >= this.notAfterS * 1000;
  }
}
