/**
 * How long a simulated device takes for what a real ESP8266 does slowly. The defaults are an
 * ESP8266 at 80 MHz on a home network; the sources of each figure are beside it and in
 * bench/README.md ("Simulator timing"). `scale` multiplies every duration and divides the
 * download rate, so `fast` (scale 0.01) keeps the same sequence of steps for tests that must be
 * quick. The watchdog budgets (lib/device/progress-watchdog.ts) are never scaled: they are the
 * device's rule, and a step that is slow only because of `scale` stays far inside them.
 */
export interface DeviceTiming {
  /**
   * Bytes per second a download arrives at, the device reading 512-byte TLS records
   * (max_fragment_length, RFC 6066) with BearSSL: espressif/ESP8266_RTOS_SDK#438 measures HTTPS
   * GETs at about 20 KB/s, the figure issue 13 takes for an OTA update too.
   */
  downloadBytesPerSecond: number;
  /**
   * Erasing one 4 KB flash sector before it is written (the ESP8266 Updater erases each sector
   * as the download reaches it): 45 ms typical, 400 ms at most for the W25Q32 family on most
   * ESP-12 modules (Winbond datasheet, tSE); "usually around 40 ms" (apache/mynewt-core#1664).
   */
  sectorEraseMs: number;
  /** Writing one 4 KB sector: 16 page programs of 256 bytes, 0.7 ms typical each (W25Q32 datasheet, tPP). */
  sectorWriteMs: number;
  /**
   * TCP connect plus the TLS handshake with an RSA-2048 client certificate: 1 to 3 s on an
   * ESP8266 at 80 MHz (docs/wire-contract.md, Device timing); BearSSL server handshakes of 2 to
   * 6 s are reported at 160 MHz (esp8266/Arduino#6247).
   */
  tlsHandshakeMs: number;
  /** Bootloader, SDK start and mounting LittleFS after a reset (an estimate: well under a second). */
  bootMs: number;
  /**
   * Joining the Wi-Fi with DHCP: 2.2 to 2.6 s after ESP.restart() with WiFi.begin(ssid, pass),
   * 5 to 6.7 s after a power cycle (esp8266/Arduino#2735, averages of 20 runs).
   */
  wifiJoinMs: number;
  /** The first SNTP answer before TLS can check certificate dates (an estimate: one round trip and the core's polling). */
  ntpMs: number;
  /** Hashing and checking the signature of the image in Update.end(), per KB (SHA-256 on the lx106 at about 1 MB/s: an estimate). */
  verifyMsPerKb: number;
  /** How long the device tries a new Wi-Fi network before it goes back (docs/wire-contract.md, MQTT topics: wifi). */
  wifiTryMs: number;
  /**
   * One P-256 scalar multiplication on the lx106 at 80 MHz: making the device key costs one,
   * a CSR two (the public key, then the ECDSA signature, as fleet_app.cpp's postCsr does). Issue
   * 14: "a P-256 key is made on the device in about a second" (an estimate).
   */
  ecPointMs: number;
  /** One MQTT connect attempt (TCP, TLS, CONNACK) counts as failed after this; below the watchdog's MQTT budget. A limit: not scaled. */
  mqttConnectTimeoutMs: number;
  /** Multiplies every duration above (but the MQTT connect limit) and divides the download rate. */
  scale: number;
}

export const ESP8266_TIMING: Readonly<DeviceTiming> = Object.freeze({
  downloadBytesPerSecond: 20_000,
  sectorEraseMs: 45,
  sectorWriteMs: 12,
  tlsHandshakeMs: 2_000,
  bootMs: 500,
  wifiJoinMs: 2_400,
  ntpMs: 1_000,
  verifyMsPerKb: 1,
  wifiTryMs: 30_000,
  ecPointMs: 1_000,
  mqttConnectTimeoutMs: 8_000,
  scale: 1,
});

/** The same device a hundred times faster, for tests: a 96 KB update in well under a second. */
export const FAST_TIMING: Readonly<DeviceTiming> = Object.freeze({ ...ESP8266_TIMING, scale: 0.01 });

export type TimingOption = 'esp8266' | 'fast' | (Partial<DeviceTiming> & { base?: 'esp8266' | 'fast' });

export function resolveTiming(option: TimingOption | undefined): DeviceTiming {
  if (option === undefined || option === 'esp8266') return { ...ESP8266_TIMING };
  if (option === 'fast') return { ...FAST_TIMING };
  const { base, ...given } = option;
  const t: DeviceTiming = { ...(base === 'fast' ? FAST_TIMING : ESP8266_TIMING) };
  for (const [k, v] of Object.entries(given)) {
    if (v === undefined) continue;
    if (typeof v !== 'number' || !Number.isFinite(v) || v < 0 || (k === 'downloadBytesPerSecond' && v === 0) || (k === 'scale' && v === 0)) {
      throw new Error(`timing ${k} must be a number ≥ 0${k === 'downloadBytesPerSecond' || k === 'scale' ? ' and not 0' : ''}, got ${JSON.stringify(v)}`);
    }
    if (!(k in ESP8266_TIMING)) throw new Error(`unknown timing ${JSON.stringify(k)}: one of ${Object.keys(ESP8266_TIMING).join(', ')}`);
    (t as unknown as Record<string, number>)[k] = v;
  }
  return t;
}

/** A duration of `t`, scaled. */
export function scaled(t: DeviceTiming, ms: number): number {
  return Math.max(0, Math.round(ms * t.scale));
}

/** Reset to connected Wi-Fi with the time: what a reboot costs before config.json is fetched. */
export function bootToNetworkMs(t: DeviceTiming): number {
  return scaled(t, t.bootMs + t.wifiJoinMs + t.ntpMs);
}
