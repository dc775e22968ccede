import { createPublicKey, KeyObject } from 'node:crypto';
import mqtt, { MqttClient } from 'mqtt';
import { TopicScheme } from '../fleet/topic-scheme';
import { buildCommand } from '../fleet/commands';
import type { StatusReport } from '../fleet/telemetry';
import { parseImageName } from '../firmware/version';
import { ReconnectPolicy } from '../device/reconnect-policy';
import { deviceGet, HttpsTarget } from './device-https';
import { scaled, TimingOption } from './device-timing';
import { Esp32Nvs, NvsFile } from './esp32-nvs';
import { checkEsp32Image } from './esp32-image-check';
import { readEsp32SimTrusts } from './esp32-sim-image';
import { espHttpsOta, OtaRequestLog, resumeOffset } from './esp32-ota-download';
import type { DeviceFiles } from './simulated-device';
import { deviceMqttOptions } from './device-mqtt';
import { BoardEvents, SimulatedBoard } from './board';

export interface SimulatedEsp32Options {
  id: string;
  /** ca.crt, <id>.crt and <id>.key, as the ESP8266 simulator gets them (lib/sim/fleet-simulator.ts identity sources). */
  files: DeviceFiles;
  /**
   * The update server compiled in (the firmware's default upgrade URL, firmware/esp32/README.md): with
   * `update/use_url` 0 the device GETs `<path>/firmware.bin?curimage=<image>` there, the ESP8266's
   * per-device next-image route, until the server has one of its own for ESP32 clients.
   */
  bootstrap: HttpsTarget & { path: string };
  /** The broker compiled in (the ESP32 has no config.json). */
  mqtt: { host: string; port: number };
  /** The running app, `<project_name>-<version>` as its esp_app_desc_t says. */
  image: string;
  /** Public keys (PEM) it verifies updates with: EC P-256 (signed apps) or RSA-3072 (secure boot v2). */
  trusts: string[];
  /** Folder of the devices' NVS files (`<id>.json`), created when missing. */
  nvsDir: string;
  /** secure_version of the running app; the chip's counter never goes below it. Default 0. */
  secureVersion?: number;
  build?: string;
  /** ESP-IDF ≥ 5.5's `ota_resumption` (a download resumes with Range); default true. */
  otaResumption?: boolean;
  /** Flash encryption (firmware/esp32's sdkconfig.secure enables it): a resumed offset is rounded down to 16 bytes. Default true. */
  flashEncryption?: boolean;
  statusIntervalMs?: number;
  /** The reconnect rule's retry and wait times (lib/device/reconnect-policy.ts); default 3 s and 20 s. */
  retryMs?: number;
  waitMs?: number;
  timing?: TimingOption;
  jitterSeed?: number;
  rebootDelayMs?: number;
  log?(line: string): void;
}

interface Esp32Events extends BoardEvents {
  flashed: [string];
  failed: [string];
  /** A line the device publishes on its `log` topic. */
  log: [string];
}

const SCHEME = TopicScheme.named('secure-esp32');
const STATUS_DEFAULT_MS = 60_000;
const RETRY_DEFAULT_MS = 3_000;
const WAIT_DEFAULT_MS = 20_000;
/** setTimeout holds at most 2^31-1 ms (Node timers docs); a longer interval waits in steps. */
const MAX_TIMER_MS = 2 ** 31 - 1;

/**
 * A simulated ESP32 of the secure-esp32 scheme (docs/wire-contract.md, MQTT topics): MQTT over
 * mutual TLS with status and will under `/esp/<id>`, the `update/*` settings in NVS, the update
 * routine on `update/run` and every `interval` seconds with esp_https_ota's requests
 * (lib/sim/esp32-ota-download.ts), the image checks of lib/sim/esp32-image-check.ts, and a line
 * on `log` for each step.
 */
export class SimulatedEsp32 extends SimulatedBoard<Esp32Events> {
  readonly platform = 'esp32';
  /** Every GET of the update routine, as sent, with the status it got (newest last). */
  readonly otaRequests: OtaRequestLog[] = [];
  private readonly projectName: string;
  private version: string;
  private appSecureVersion: number;
  private trusts: KeyObject[];
  private readonly files: DeviceFiles;
  private readonly nvsFile: NvsFile;
  private nvs: Esp32Nvs | undefined;
  /** The passive OTA partition: what the last download wrote (kept across resets, like flash). */
  private staging: Buffer = Buffer.alloc(0);

  constructor(private readonly options: SimulatedEsp32Options) {
    super(options);
    const parsed = parseImageName(options.image);
    this.projectName = parsed.product;
    this.version = parsed.version;
    this.appSecureVersion = options.secureVersion ?? 0;
    if (!options.files.cert || !options.files.key) throw new Error(`device ${options.id}: a certificate and key`);
    if (!options.mqtt?.host || !options.mqtt.port) throw new Error(`device ${options.id}: an ESP32 needs the broker's host and port (it has no config.json)`);
    this.files = { ...options.files };
    this.trusts = options.trusts.map((pem) => createPublicKey(pem));
    this.nvsFile = NvsFile.forDevice(options.nvsDir, options.id);
  }

  get certificatePem(): string {
    return this.files.cert;
  }

  /** The NVS as this boot read it (a copy), for tests and reports. */
  get settings(): Esp32Nvs | undefined {
    return this.nvs ? structuredClone(this.nvs) : undefined;
  }

  /** A write to NVS still under way lands before stop() returns. */
  protected override async poweredOff(): Promise<void> {
    await this.nvsFile.idle().catch(() => undefined);
  }

  status(): StatusReport {
    return this.report({ freeHeap: 180_000, minLoopMs: 2, loopJitterMs: 20 });
  }

  protected async boot(): Promise<void> {
    const abort = this.beginBoot();
    // nvs_flash_init and the app's reads: the settings the last boot left.
    const nvs = await this.nvsFile.read(this.appSecureVersion);
    if (abort.signal.aborted) return;
    // The app is marked valid at boot: the chip's counter rises to its secure_version (ESP-IDF esp_ota_mark_app_valid_cancel_rollback).
    if (nvs.secureVersion < this.appSecureVersion) {
      nvs.secureVersion = this.appSecureVersion;
      void this.nvsFile.write(nvs).catch(() => undefined);
    }
    this.nvs = nvs;
    this.policy = new ReconnectPolicy(this.options.retryMs ?? RETRY_DEFAULT_MS, this.options.waitMs ?? WAIT_DEFAULT_MS, this.jitter);
    this.policy.start(this.millis());
    this.scheduleAttempt();
    // The interval read at boot: a new one takes effect after a restart (docs/wire-contract.md, secure-esp32).
    this.scheduleUpdates(nvs.interval, abort);
  }

  private scheduleUpdates(intervalS: number, abort: AbortController): void {
    const every = scaled(this.timing, intervalS * 1000);
    const tick = (): void => {
      if (this.bootAbort !== abort) return;
      this.laterLong(every, tick);
      if (!this.busy) void this.runUpdate('interval');
    };
    this.laterLong(every, tick);
  }

  /** `later` for waits beyond what one timer holds. */
  private laterLong(ms: number, fn: () => void): void {
    if (ms > MAX_TIMER_MS) this.later(MAX_TIMER_MS, () => this.laterLong(ms - MAX_TIMER_MS, fn));
    else this.later(ms, fn);
  }

  protected attempt(policy: ReconnectPolicy): void {
    if (policy !== this.policy || this.client || !['booting', 'offline'].includes(this.state)) return;
    this.connectAttempts++;
    this.emitBoard('attempt');
    const abort = this.bootAbort;
    this.later(scaled(this.timing, this.timing.tlsHandshakeMs), () => {
      if (policy === this.policy && !this.client && !abort.signal.aborted) this.connect(policy);
    });
  }

  /** One attempt (esp-mqtt with the device certificate); the reconnect rule decides the next. */
  private connect(policy: ReconnectPolicy): void {
    const { host, port } = this.options.mqtt;
    const client = mqtt.connect(deviceMqttOptions({ host, port, id: this.id, files: this.files, timing: this.timing, willTopic: SCHEME.willTopic(this.id) }));
    this.client = client;
    let reached = false;
    client.stream?.once?.('secureConnect', () => (reached = true));
    client.on('connect', () => {
      if (this.client !== client) return;
      policy.connected(this.millis());
      this.connectedAt = Date.now();
      this.setState('online');
      client.subscribe(SCHEME.deviceCommandFilter(this.id), { qos: 1 });
      this.publishStatus();
      void this.logLine(`mqtt: connected, running ${this.image}`);
      this.scheduleStatus(client);
    });
    this.followLink(client, policy, () => reached);
    client.on('message', (topic, payload) => {
      if (this.client !== client) return;
      void this.onCommand(topic.slice(`${SCHEME.commandTopic(this.id, '')}`.length), payload.toString('utf8'));
    });
  }

  private scheduleStatus(client: MqttClient): void {
    const every = this.options.statusIntervalMs ?? STATUS_DEFAULT_MS;
    const tick = (): void => {
      if (this.client !== client || this.state === 'stopped') return;
      if (client.connected) this.publishStatus();
      this.later(every, tick);
    };
    this.later(every * (0.5 + Math.random()), tick);
  }

  private publishStatus(): void {
    this.client?.publish(SCHEME.statusTopic(this.id), JSON.stringify(this.status()), { qos: 0 });
  }

  /** A line on `log` (QoS 0: a line while offline is lost, as on the board); resolves once it is on the wire. */
  private logLine(line: string): Promise<void> {
    this.options.log?.(`${this.id} ${line}`);
    this.emit('log', line);
    const client = this.client;
    if (!client?.connected) return Promise.resolve();
    return new Promise((resolve) => client.publish(SCHEME.logTopic(this.id)!, line, { qos: 0 }, () => resolve()));
  }

  private async onCommand(command: string, payload: string): Promise<void> {
    if (this.state !== 'online' || !this.nvs) return;
    switch (command) {
      // Its own topics come back through the `/esp/<id>/#` subscription.
      case 'status':
      case 'will':
      case 'log':
        return;
      case 'restart':
        // The line goes out before the reset (esp_restart after the publish), or the backend never sees it.
        await this.logLine('restart: rebooting');
        return this.reboot('command');
      case 'update/run':
        return this.runUpdate('update/run');
      case 'update/url':
      case 'update/use_url':
      case 'update/interval':
        return this.storeSetting(command, payload);
      default:
        return this.fail(command, 'unknown topic');
    }
  }

  /** Checked by the same rules the backend builds the command with (lib/fleet/commands.ts); refused values are not stored. */
  private async storeSetting(command: 'update/url' | 'update/use_url' | 'update/interval', payload: string): Promise<void> {
    let value: string;
    try {
      value = buildCommand('esp32', command, payload.trim()).payload;
    } catch (err) {
      return this.fail(command, `refused: ${(err as Error).message.replace(/^update\/[a-z_]+ /, '')}; not stored`);
    }
    const nvs = this.nvs!;
    const next: Esp32Nvs = { ...nvs };
    if (command === 'update/url') next.url = value;
    else if (command === 'update/use_url') next.useUrl = value === '1' ? 1 : 0;
    else next.interval = Number(value);
    // Taken at once, so the next command builds on it; the writes land in order (NvsFile.write).
    this.nvs = next;
    try {
      await this.nvsFile.write(next);
    } catch (err) {
      return this.fail(command, `NVS write failed: ${(err as Error).message}`);
    }
    this.errormessage = '';
    if (command === 'update/url') void this.logLine(`update/url: stored ${value}${next.useUrl ? '' : ' (in use once update/use_url is 1)'}`);
    else if (command === 'update/use_url') void this.logLine(`update/use_url: stored ${value}: updates come from ${next.useUrl && next.url ? next.url : 'the default server'}${next.useUrl && !next.url ? ' (no update/url stored yet)' : ''}`);
    else void this.logLine(`update/interval: stored ${value} s; takes effect after restart`);
    this.publishStatus();
  }

  /** The URL of this run: the stored one with use_url 1, else the default per-device endpoint. */
  private updateUrl(): URL {
    const nvs = this.nvs!;
    if (nvs.useUrl === 1 && nvs.url) {
      // As the firmware does (firmware/core esp32UpdateUrl): its running image goes along, so the URL names the next-image endpoint.
      const url = new URL(nvs.url);
      url.search = `${url.search ? `${url.search}&` : '?'}curimage=${encodeURIComponent(this.image)}`;
      return url;
    }
    const b = this.options.bootstrap;
    return new URL(`https://${b.host}:${b.port}${b.path}/firmware.bin?curimage=${encodeURIComponent(this.image)}`);
  }

  private async runUpdate(trigger: 'update/run' | 'interval'): Promise<void> {
    if (this.busy) return this.fail('update/run', 'an update is already running');
    if (!this.nvs) return;
    this.busy = true;
    const abort = this.bootAbort;
    this.errormessage = '';
    try {
      await this.update(trigger, abort.signal);
    } catch (err) {
      if (!abort.signal.aborted) this.fail('update/run', (err as Error).message);
    } finally {
      if (this.bootAbort === abort) this.busy = false;
    }
  }

  private async update(trigger: 'update/run' | 'interval', signal: AbortSignal): Promise<void> {
    const url = this.updateUrl();
    const nvs = this.nvs!;
    const resumption = this.options.otaResumption ?? true;
    const flashEncryption = this.options.flashEncryption ?? true;
    // What an earlier run of the same URL wrote (the example keeps it in whole KB).
    const recorded = resumption && nvs.ota?.url === url.href ? Math.min(nvs.ota.writtenKb * 1024, this.staging.length) : 0;
    const written = this.staging.subarray(0, recorded);
    const from = resumption ? resumeOffset(written.length, flashEncryption) : 0;
    void this.logLine(`update: ${trigger === 'interval' ? 'interval elapsed, ' : ''}checking ${url.origin}${url.pathname}${from ? ` (resuming from byte ${from})` : ''}`);
    const t = this.timing;
    await this.pause(scaled(t, t.tlsHandshakeMs), signal);
    const result = await espHttpsOta(url, written, {
      resumption,
      flashEncryption,
      get: (target, path, o) => deviceGet(target, path, this.files, o),
      request: {
        maxBody: 4 * 1024 * 1024,
        timeoutMs: 120_000,
        pace: { bytesPerSecond: t.downloadBytesPerSecond / t.scale, every: 4096, everyMs: scaled(t, t.sectorEraseMs + t.sectorWriteMs) },
        signal,
      },
      log: (entry) => this.otaRequests.push(entry),
      onFallback: (why) => this.logLine(`update: ${why}; starting the download over`),
    });
    if (result.kind === 'not-modified') return this.fail('update/run', `no newer image for ${this.image} (304)`);
    if (result.kind === 'http-error') return this.fail('update/run', `update server answered HTTP ${result.status}${result.text ? `: ${result.text}` : ''}`);
    if (result.kind === 'cut') {
      this.staging = result.bytes;
      const kb = Math.floor(result.bytes.length / 1024);
      await this.saveOta({ ...this.nvs!, ota: resumption ? { url: url.href, writtenKb: kb } : undefined });
      const next = resumption ? resumeOffset(kb * 1024, flashEncryption) : 0;
      return this.fail('update/run', `connection lost after ${result.bytes.length}${result.total ? ` of ${result.total}` : ''} bytes; the next run ${next ? `resumes from byte ${next}` : 'starts over'}`);
    }
    // Complete: the resumption record goes (the example erases it before esp_https_ota_finish).
    this.staging = Buffer.alloc(0);
    await this.saveOta({ ...this.nvs!, ota: undefined });
    void this.logLine(`update: downloaded ${result.bytes.length} bytes${result.resumedFrom ? ` (resumed at byte ${result.resumedFrom})` : ''}; verifying`);
    await this.pause(scaled(t, (result.bytes.length / 1024) * t.verifyMsPerKb), signal);
    const check = checkEsp32Image(result.bytes, { projectName: this.projectName, version: this.version, secureVersion: this.nvs!.secureVersion, trusts: this.trusts });
    if (!check.ok) return this.fail('update/run', `refused: ${check.reason}; keeps running ${this.image}`);
    const trusts = readEsp32SimTrusts(result.bytes.subarray(0, check.payloadLength));
    if (!trusts) return this.fail('update/run', `refused: ${check.name} verifies but is not a simulator image (a real ESP32 would boot it)`);
    await this.logLine(`update: ${check.name} verified (signature, project, version, secure_version ${check.secureVersion}); rebooting into it`);
    this.image = check.name;
    this.version = check.version;
    this.appSecureVersion = check.secureVersion;
    this.trusts = trusts.map((pem) => createPublicKey(pem));
    this.emit('flashed', check.name);
    this.reboot('update');
  }

  private async saveOta(next: Esp32Nvs): Promise<void> {
    this.nvs = next;
    await this.nvsFile.write(next).catch((err: Error) => this.logLine(`nvs: write failed: ${err.message}`));
  }

  /**
   * The link dies without a DISCONNECT, so the broker publishes the will. What the device wrote
   * before the reset (its last `log` line) still leaves: the socket is ended, not destroyed, and
   * forced shut only if it lingers.
   */
  protected dropLink(): void {
    const client = this.client;
    this.client = undefined;
    if (!client) return;
    const stream = client.stream;
    const force = setTimeout(() => client.end(true), 500);
    stream?.once('close', () => {
      clearTimeout(force);
      client.end(true);
    });
    if (stream) stream.end();
    else client.end(true);
  }

  private fail(command: string, why: string): void {
    this.errormessage = `${command}: ${why}`;
    void this.logLine(this.errormessage);
    this.emit('failed', this.errormessage);
    this.publishStatus();
  }

}
