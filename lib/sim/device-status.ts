import type { StatusReport } from '../fleet/telemetry';

/** What a simulated device knows when it reports (ESP8266 and ESP32 alike). */
export interface StatusInputs {
  id: string;
  image: string;
  build: string;
  bootedAt: number;
  /** 0 while not connected. */
  connectedAt: number;
  maxLoopMs: number;
  localAddress?: string;
  weakSignal?: boolean;
  /** Free heap around which the reports vary (an ESP8266 has about 21 KB left, an ESP32 far more). */
  freeHeap: number;
  errormessage: string;
}

/** The ten-field status JSON (docs/wire-contract.md, Status JSON fields), the same for both platforms. */
export function statusReport(s: StatusInputs, now = Date.now()): StatusReport {
  return {
    uptimemillis: now - s.bootedAt,
    maxmillis: s.maxLoopMs,
    mqttmillis: s.connectedAt ? now - s.connectedAt : 0,
    espname: `measure-${s.id}`,
    espimage: s.image,
    espbuild: s.build,
    espip: s.localAddress ?? '0.0.0.0',
    rssi: (s.weakSignal ? -88 : -58) - Math.floor(Math.random() * 8),
    espfreeheap: s.freeHeap + Math.floor(Math.random() * 4000),
    errormessage: s.errormessage,
  };
}
