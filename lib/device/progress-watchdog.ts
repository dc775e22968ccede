/**
 * The firmware's software watchdog, as the portable core decides it (docs/wire-contract.md,
 * Device timing): it resets the chip when the current step has made no progress for longer
 * than that step's budget. It is fed by progress only (a loop pass, a received block, a flash
 * write, the end of a connect step), never by time passing, so a slow download that keeps
 * moving never resets while a stalled one does.
 */
export const WATCHDOG_STEPS = {
  /** One pass of loop(): the sketch's own work between two passes. */
  loop: 6_000,
  /** A DNS look-up: lwIP's own time-out in the ESP8266 core is 10 s, plus margin. */
  dns: 12_000,
  /**
   * TCP connect and the TLS handshake (RSA-2048 client certificate: 1–3 s on an ESP8266 at 80 MHz).
   * Above the 15 s that esp8266/Arduino 3.1.2's WiFiClientSecure allows a connect itself, so a
   * handshake stalled by an overloaded broker fails on its own (and backs off) before the chip resets.
   */
  tls: 20_000,
  /** MQTT CONNECT until CONNACK. */
  mqtt: 10_000,
  /** Between two received blocks of a download (512-byte TLS records, each a progress). */
  download: 6_000,
  /** Update.end(): hashing the image and checking its signature, once. */
  verify: 10_000,
} as const;

export type WatchdogStep = keyof typeof WATCHDOG_STEPS;

/** How often the firmware's Ticker checks (and the simulator too). */
export const WATCHDOG_TICK_MS = 500;

export class ProgressWatchdog {
  private step: WatchdogStep = 'loop';
  private last = 0;

  /** A new step starts now (that is progress too). */
  begin(step: WatchdogStep, now: number): void {
    this.step = step;
    this.last = now;
  }

  progress(now: number): void {
    this.last = now;
  }

  overdue(now: number): boolean {
    return ((now - this.last) >>> 0) > WATCHDOG_STEPS[this.step];
  }

  get currentStep(): WatchdogStep {
    return this.step;
  }
}

/** One event of a timeline in test/vectors/device-timing.json. */
export type TimelineEvent =
  | { at: number; begin: WatchdogStep }
  | { at: number; progress: true }
  /** Progress every `every` ms from `at` to `until` (a download of 512-byte records). */
  | { at: number; every: number; until: number };

/**
 * Runs a timeline through the watchdog as the firmware does: events in time order, a check at
 * every tick (multiples of WATCHDOG_TICK_MS). The time of the first overdue tick, or null.
 */
export function runTimeline(events: readonly TimelineEvent[], end: number): number | null {
  const points: { at: number; begin?: WatchdogStep }[] = [];
  for (const e of events) {
    if ('begin' in e) points.push({ at: e.at, begin: e.begin });
    else if ('every' in e) for (let t = e.at; t <= e.until; t += e.every) points.push({ at: t });
    else points.push({ at: e.at });
  }
  points.sort((a, b) => a.at - b.at);
  const dog = new ProgressWatchdog();
  dog.begin('loop', 0);
  let i = 0;
  for (let tick = WATCHDOG_TICK_MS; tick <= end; tick += WATCHDOG_TICK_MS) {
    // Events at the tick's own millisecond happen before the check.
    for (; i < points.length && points[i].at <= tick; i++) {
      const p = points[i];
      if (p.begin) dog.begin(p.begin, p.at);
      else dog.progress(p.at);
    }
    if (dog.overdue(tick)) return tick;
  }
  return null;
}
