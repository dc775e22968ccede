import { createHash, createPrivateKey, createPublicKey, KeyObject, X509Certificate } from 'node:crypto';
import mqtt, { MqttClient } from 'mqtt';
import { verifyEsp8266 } from '../firmware/signing';
import { keyBelongsTo } from '../pki/keys';
import { checkDeviceConfig, DeviceConfig } from '../firmware/firmware-service';
import type { StatusReport } from '../fleet/telemetry';
import { checkWifiCredentials } from '../fleet/wifi-credentials';
import { ReconnectPolicy } from '../device/reconnect-policy';
import { ProgressWatchdog, WatchdogStep, WATCHDOG_TICK_MS } from '../device/progress-watchdog';
import { deviceGet, DeviceGetOptions, esp8266UpdateHeaders, HttpsTarget } from './device-https';
import { readSimManifest } from './sim-image';
import { scaled, TimingOption } from './device-timing';
import type { EnrollState } from '../device/enrollment';
import { DeviceEnrollment, EnrollHost, EnrollSetup } from './device-enrollment';
import { deviceMqttOptions } from './device-mqtt';
import { BoardEvents, SimulatedBoard } from './board';

export { DEVICE_STATES, REBOOT_REASONS } from './board';
export type { DeviceState, RebootReason } from './board';

/** What a device keeps on its filesystem: the CA it trusts, its certificate and key (PEM). */
export interface DeviceFiles {
  ca: string;
  cert: string;
  key: string;
}

export type UpdateMode =
  /** `firmware` downloads, verifies, flashes and reboots (ESP8266httpUpdate's default). */
  | 'auto'
  /** `firmware` downloads and verifies; `flash` installs the download and reboots (the secure ESP8266 framework, docs/wire-contract.md). */
  | 'staged';

export interface SimulatedDeviceOptions {
  id: string;
  /** Where config.json comes from at boot (what data/config.json holds on a real device). */
  bootstrap: HttpsTarget & { path: string };
  /** What the board was flashed with: ca.crt, <id>.crt and <id>.key; or ca.crt alone with `enroll`. */
  files: DeviceFiles | Pick<DeviceFiles, 'ca'>;
  /**
   * Enroll at first boot instead (docs/enrollment.md, The device): make a P-256 key, simpleenroll
   * with the bootstrap credential, wait while pending, renew at two thirds of the lifetime.
   */
  enroll?: EnrollSetup;
  /** The running image and the public keys (PEM) compiled into it. */
  image: string;
  trusts: string[];
  build?: string;
  updateMode?: UpdateMode;
  /**
   * A fault: the watchdog resets the device while it writes an update (a long flash write that
   * starves it), so it comes back on its old image with no error to report.
   */
  resetDuringUpdate?: boolean;
  /** Flash free for an update (x-ESP8266-free-space). */
  freeSpace?: number;
  /** Drops its connection now and then and reports a poor RSSI. */
  weakSignal?: boolean;
  /** Stops talking after this many ms, without a goodbye (power cut). */
  silentAfterMs?: number;
  /**
   * Time from a reset until the device fetches config.json (boot, Wi-Fi join, NTP); by default
   * from `timing`. A power-on at start() takes it too.
   */
  rebootDelayMs?: number;
  /** How long the slow steps take (lib/sim/device-timing.ts); default `esp8266`, real-world. */
  timing?: TimingOption;
  /** Mixed into the jitter seed (the firmware mixes a hardware random word in); default 0, so runs repeat. */
  jitterSeed?: number;
  /** The Wi-Fi network the device is on; default `{ ssid: 'sim-wifi', password: 'sim-wifi-pass' }`. */
  network?: WifiNetwork;
  /** Other networks in reach, which a `wifi` command can join with the right password. */
  networks?: WifiNetwork[];
  /** Replaces config.json's mqttserver/mqttport (e.g. a test broker on another port). */
  mqtt?: { host?: string; port?: number };
  log?(line: string): void;
}

export interface WifiNetwork {
  ssid: string;
  password: string;
}

interface DeviceEvents extends BoardEvents {
  flashed: [string];
  /** A verified download waits for `flash` (staged mode). */
  staged: [string];
  failed: [string];
}

const STATUS_DEFAULT_MS = 60_000;
/** config.json's retrytimeout and waittimeout when it has none (what esp-firmware-server serves by default). */
const RETRY_DEFAULT_MS = 3_000;
const WAIT_DEFAULT_MS = 20_000;
const DEFAULT_NETWORK: WifiNetwork = { ssid: 'sim-wifi', password: 'sim-wifi-pass' };

/**
 * One device that follows docs/wire-contract.md as the secure ESP8266 framework's firmware does: config.json at boot, MQTT
 * over mutual TLS with an LWT, the ten-field status, and the commands, with images verified
 * the way the ESP8266 Updater does before they are installed.
 */
export class SimulatedDevice extends SimulatedBoard<DeviceEvents> {
  config: DeviceConfig = {};
  private files: DeviceFiles;
  private trusts: KeyObject[];
  private staged: { image: string; build: string; trusts: KeyObject[]; md5: string } | undefined;
  private imageMd5: string;
  private startedAt = Date.now();
  /** The Wi-Fi network it is on now (changes after a `wifi` command that joined). */
  network: WifiNetwork;
  private readonly networks: WifiNetwork[];
  private readonly dog = new ProgressWatchdog();
  private dogTicker: NodeJS.Timeout | undefined;
  /** The enrollment steps of a device that enrolls itself (`enroll`), else undefined. */
  readonly enrollment: DeviceEnrollment | undefined;

  constructor(private readonly options: SimulatedDeviceOptions) {
    super(options);
    if (options.enroll) {
      // A new board: ca.crt only; the key and certificate come from its own enrollment.
      this.files = { ca: options.files.ca, cert: '', key: '' };
    } else {
      const f = options.files as Partial<DeviceFiles>;
      if (!f.cert || !f.key) throw new Error(`device ${options.id}: a certificate and key, or enroll`);
      this.files = { ca: f.ca!, cert: f.cert, key: f.key };
    }
    this.trusts = options.trusts.map((pem) => createPublicKey(pem));
    this.imageMd5 = md5(this.image);
    this.network = { ...(options.network ?? DEFAULT_NETWORK) };
    this.networks = [this.network, ...(options.networks ?? []).map((n) => ({ ...n }))];
    this.enrollment = options.enroll ? new DeviceEnrollment({ id: options.id, ca: options.files.ca, setup: options.enroll, timing: this.timing }, (s) => this.enrollStateChanged(s)) : undefined;
  }

  /** The device certificate it presents now (changes after a `cert` command). */
  get certificatePem(): string {
    return this.files.cert;
  }

  protected override poweredOn(): void {
    this.startedAt = Date.now();
    this.scheduleSilence();
  }

  /** A device set to go silent does so `silentAfterMs` after its start, across resets and re-enrollments. */
  private scheduleSilence(): void {
    if (this.options.silentAfterMs !== undefined) this.later(Math.max(0, this.options.silentAfterMs - (Date.now() - this.startedAt)), () => this.goSilent());
  }

  status(): StatusReport {
    return this.report({ freeHeap: 21000, minLoopMs: 3, loopJitterMs: 40, weakSignal: this.options.weakSignal });
  }

  protected async boot(): Promise<void> {
    const abort = this.beginBoot();
    this.policy = undefined;
    if (this.enrollment && !(await this.enrollFirst(abort.signal))) return;
    try {
      // Configuration (and certificates) are fetched at boot only (docs/wire-contract.md, config.json keys).
      this.config = await this.fetchConfig(abort.signal);
    } catch (err) {
      if (abort.signal.aborted) return;
      this.watch('loop');
      this.log(`config.json: ${(err as Error).message}; retrying`);
      // Without config.json there is no retrytimeout yet: the default, with the device's jitter.
      if (this.state === 'booting') this.later(RETRY_DEFAULT_MS + this.jitter.upTo(RETRY_DEFAULT_MS), () => void this.boot());
      return;
    }
    if (this.state !== 'booting') return;
    this.watch('loop');
    const retry = Number(this.config.retrytimeout) || RETRY_DEFAULT_MS;
    const wait = Number(this.config.waittimeout) || WAIT_DEFAULT_MS;
    this.policy = new ReconnectPolicy(retry, wait, this.jitter);
    this.policy.start(this.millis());
    this.scheduleAttempt();
  }

  /**
   * Before config.json (which the update server serves only to a device with a certificate):
   * the enrollment steps until the device holds one, then its renewal and expiry timers. False
   * when the boot was ended meanwhile.
   */
  private async enrollFirst(signal: AbortSignal): Promise<boolean> {
    const e = this.enrollment!;
    try {
      await e.untilEnrolled(signal, this.enrollHost());
    } catch {
      return false;
    }
    if (signal.aborted) return false;
    this.files = { ...this.files, ...e.identity! };
    this.setState('booting');
    this.scheduleRenewal();
    return true;
  }

  /** What the boot's enrollment shows (the board's LED): waiting for approval, or still asking. */
  private enrollStateChanged(state: EnrollState): void {
    if (!['booting', 'enrolling', 'pending'].includes(this.state)) return;
    if (state === 'pending') this.setState('pending');
    else if (state === 'key' || state === 'enroll' || state === 'backoff') this.setState('enrolling');
  }

  private enrollHost(): EnrollHost {
    return {
      pause: (ms, signal) => this.pause(ms, signal),
      watch: (step) => this.watch(step),
      feed: () => this.feed(),
      log: (line) => this.log(line),
    };
  }

  /** Renewal at two thirds of the lifetime (its distance scaled by timing), expiry at notAfter; both per boot. */
  private scheduleRenewal(): void {
    const e = this.enrollment!;
    const abort = this.bootAbort;
    // setTimeout holds at most 2^31-1 ms (Node timers docs): longer waits look again when it fires.
    const MAX = 2 ** 31 - 1;
    const renewal = (): void => {
      if (this.bootAbort !== abort || e.state !== 'enrolled') return;
      const left = e.renewInMs();
      if (left > 0) return this.later(Math.min(MAX, left), renewal);
      this.renewWhenFree('renew-due', abort);
    };
    const expiry = (): void => {
      if (this.bootAbort !== abort || !e.holdsCertificate) return;
      const left = e.expiresInMs();
      if (left > 0) return this.later(Math.min(MAX, left), expiry);
      this.log('certificate expired: enrolling again');
      this.restartEnrollment();
    };
    this.later(Math.min(MAX, e.renewInMs()), renewal);
    this.later(Math.min(MAX, e.expiresInMs()), expiry);
  }

  /**
   * simplereenroll (renewal due, the cert command, or its backoff timer): MQTT goes down first,
   * cleanly (the firmware frees the heap of one TLS session for the other); then the reconnect
   * rule brings it back with the new certificate, or the old one while renewal backs off.
   */
  private async renew(event: 'renew-due' | 'cert-command' | 'timer', abort: AbortController): Promise<void> {
    const e = this.enrollment!;
    if (!(event === 'timer' ? e.state === 'renew-backoff' : e.state === 'enrolled')) return this.fail('cert', 'not enrolled yet, or a renewal is under way');
    this.reconnect();
    let result;
    try {
      result = await e.renew(event, abort.signal, this.enrollHost());
    } catch {
      return; // the boot ended meanwhile
    }
    if (this.bootAbort !== abort) return;
    switch (result.kind) {
      case 'renewed':
        this.files = { ...this.files, ...e.identity! };
        this.errormessage = '';
        this.log('renewed its certificate');
        this.scheduleRenewal();
        return;
      case 'failed':
        this.fail('cert', result.reason.replace(/^enroll: /, ''));
        this.later(result.delayMs, () => this.renewWhenFree('timer', abort));
        return;
      case 'expired':
        return this.restartEnrollment();
      case 'not-now':
        return this.fail('cert', result.reason);
    }
  }

  /** A blocking step (a download, a command) holds the loop: a renewal waits for it, as on the board. */
  private renewWhenFree(event: 'renew-due' | 'timer', abort: AbortController): void {
    if (this.bootAbort !== abort) return;
    if (this.busy) return this.later(Math.max(50, scaled(this.timing, 1000)), () => this.renewWhenFree(event, abort));
    this.busy = true;
    void this.renew(event, abort).finally(() => {
      if (this.bootAbort !== abort) return;
      this.busy = false;
      if (this.state === 'online' || this.state === 'offline') this.watch('loop');
    });
  }

  /** The certificate expired: off MQTT, and the boot's steps again from simpleenroll (no reset). */
  private restartEnrollment(): void {
    this.bootAbort.abort();
    this.clearTimers();
    this.policy = undefined;
    this.busy = false;
    this.dropLink();
    this.scheduleSilence();
    void this.boot();
  }

  private async fetchConfig(signal: AbortSignal): Promise<DeviceConfig> {
    const b = this.options.bootstrap;
    const res = await this.get(b, `${b.path}/config.json`, { maxBody: 4096, timeoutMs: 15_000, signal });
    if (res.status !== 200) throw new Error(`HTTP ${res.status}`);
    const config = checkDeviceConfig(JSON.parse(res.body.toString('utf8')));
    if (typeof config.mqttserver !== 'string' || typeof config.mqttport !== 'number') throw new Error('config.json names no mqttserver/mqttport');
    return config;
  }

  /**
   * One HTTPS GET as the firmware makes it, under the watchdog: the handshake (tls step, with the
   * device's handshake time), then the reply, every arrival a progress (download step).
   */
  private async get(target: HttpsTarget, pathAndQuery: string, options: DeviceGetOptions & { signal: AbortSignal }): Promise<Awaited<ReturnType<typeof deviceGet>>> {
    this.watch('tls');
    await this.pause(scaled(this.timing, this.timing.tlsHandshakeMs), options.signal);
    this.feed();
    return deviceGet(target, pathAndQuery, this.files, {
      ...options,
      onConnected: () => this.watch('download'),
      onData: () => this.feed(),
    });
  }

  protected attempt(policy: ReconnectPolicy): void {
    if (policy !== this.policy || this.client || !['booting', 'offline'].includes(this.state)) return;
    // A blocking step (a download, a Wi-Fi change) holds the loop: the attempt waits for it.
    if (this.busy) {
      this.attemptTimer = setTimeout(() => this.attempt(policy), Math.max(50, scaled(this.timing, 1000)));
      return;
    }
    this.connectAttempts++;
    this.emitBoard('attempt');
    this.watch('tls');
    const abort = this.bootAbort;
    this.pause(scaled(this.timing, this.timing.tlsHandshakeMs), abort.signal).then(
      () => {
        if (policy === this.policy && !this.client && !abort.signal.aborted) this.connect(policy);
      },
      () => undefined,
    );
  }

  /** One attempt, no retries of its own (reconnectPeriod 0): the policy decides the next. */
  private connect(policy: ReconnectPolicy): void {
    const host = this.options.mqtt?.host ?? String(this.config.mqttserver);
    const port = this.options.mqtt?.port ?? Number(this.config.mqttport);
    const client = mqtt.connect(deviceMqttOptions({ host, port, id: this.id, files: this.files, timing: this.timing, willTopic: `/will/${this.id}/will` }));
    this.client = client;
    // The broker accepted TCP: a failure after this is a busy broker, not a lost network.
    let reached = false;
    client.stream?.once?.('connect', () => (reached = true));
    client.stream?.once?.('secureConnect', () => {
      reached = true;
      if (this.client === client) this.watch('mqtt');
    });
    client.on('connect', () => {
      if (this.client !== client) return;
      policy.connected(this.millis());
      this.watch('loop');
      this.connectedAt = Date.now();
      this.setState('online');
      client.subscribe(`/command/${this.id}/#`, { qos: 1 });
      this.publishStatus();
      this.scheduleStatus(client);
      if (this.options.weakSignal) this.scheduleDrop(client);
    });
    this.followLink(client, policy, () => reached);
    client.on('message', (topic, payload) => {
      if (this.client !== client) return;
      const command = topic.slice(`/command/${this.id}/`.length);
      void this.onCommand(command, payload.toString('utf8'));
    });
  }

  protected override linkLost(): void {
    if (!this.busy) this.watch('loop');
  }

  /** The watchdog watches `step` from now; its Ticker runs only while a step other than the loop is on (the loop always passes). */
  private watch(step: WatchdogStep): void {
    this.dog.begin(step, this.millis());
    if (step === 'loop') {
      clearInterval(this.dogTicker);
      this.dogTicker = undefined;
    } else if (!this.dogTicker) {
      this.dogTicker = setInterval(() => {
        if (this.dog.overdue(this.millis())) {
          this.log(`watchdog: no progress in step ${this.dog.currentStep}`);
          this.reboot('watchdog');
        }
      }, WATCHDOG_TICK_MS);
    }
  }

  private feed(): void {
    this.dog.progress(this.millis());
  }

  private scheduleStatus(client: MqttClient): void {
    const every = Number(this.config.statusinterval) || STATUS_DEFAULT_MS;
    const tick = (): void => {
      if (this.client !== client || this.state === 'stopped' || this.state === 'silent') return;
      // A download holds the firmware's loop: no status until it is over.
      if (client.connected && !this.busy) this.publishStatus();
      this.later(every, tick);
    };
    // Devices booted together spread out instead of reporting in lock step.
    this.later(every * (0.5 + Math.random()), tick);
  }

  /** Weak Wi-Fi: now and then the link drops without a goodbye; the reconnect rule brings it back. */
  private scheduleDrop(client: MqttClient): void {
    const every = Number(this.config.statusinterval) || STATUS_DEFAULT_MS;
    this.later(every * (1 + 3 * Math.random()), () => {
      if (this.client !== client || !client.connected) return;
      this.log('signal lost');
      client.stream.destroy();
    });
  }

  private publishStatus(): void {
    this.client?.publish(`/status/${this.id}`, JSON.stringify(this.status()), { qos: 0 });
  }

  private async onCommand(command: string, payload: string): Promise<void> {
    if (this.state !== 'online') return;
    // As the firmware does: a restart installs a verified download, if there is one.
    if (command === 'reboot') return this.staged ? this.installAndReboot(this.staged) : this.reboot('command');
    if (this.busy) return this.fail(command, 'busy with an earlier command');
    this.busy = true;
    const abort = this.bootAbort;
    // Cleared when a command starts, so the same failure twice is still a change the backend sees.
    this.errormessage = '';
    try {
      switch (command) {
        case 'firmware':
          return await this.firmware(abort.signal);
        case 'flash':
          if (!this.staged) return this.fail(command, 'no verified download to install: send firmware first');
          return this.installAndReboot(this.staged);
        case 'cert':
          // An enrolled device re-enrolls now (docs/enrollment.md); its key never leaves it.
          if (this.enrollment) return await this.renew('cert-command', abort);
          return await this.downloadFile(command, abort.signal);
        case 'ca':
        case 'key':
          return await this.downloadFile(command, abort.signal);
        case 'wifi':
          return await this.changeWifi(payload, abort.signal);
        default:
          return this.fail(command, 'unknown command');
      }
    } catch (err) {
      // A reset ended the command: the next boot knows nothing of it.
      if (!abort.signal.aborted) this.fail(command, (err as Error).message);
    } finally {
      if (this.bootAbort === abort) {
        this.busy = false;
        if (this.state === 'online' || this.state === 'offline') this.watch('loop');
      }
    }
  }

  /**
   * `wifi` (docs/wire-contract.md, MQTT topics: wifi): leave the current network, try the new one
   * for up to 30 s (timing.wifiTryMs); joined → store it and reconnect with an empty errormessage;
   * not joined → back on the old network with the contract's error. The password is never logged.
   */
  private async changeWifi(payload: string, signal: AbortSignal): Promise<void> {
    let wanted: WifiNetwork;
    try {
      wanted = checkWifiCredentials(payload);
    } catch (err) {
      // The checker's texts start with "wifi"; they never repeat the password.
      return this.fail('wifi', (err as Error).message.replace(/^wifi:?\s*/, ''));
    }
    const old = this.network;
    this.log(`wifi: trying ${JSON.stringify(wanted.ssid)}`);
    // One station interface: leaving the old network drops the MQTT link (the broker sends the LWT).
    this.dropLink();
    this.setState('offline');
    this.policy?.failed(this.millis());
    this.scheduleAttempt();
    const known = this.networks.find((n) => n.ssid === wanted.ssid);
    const joins = known !== undefined && known.password === wanted.password;
    if (joins) {
      await this.pause(scaled(this.timing, this.timing.wifiJoinMs), signal);
      this.network = { ...wanted };
      this.errormessage = '';
      this.log(`wifi: joined ${JSON.stringify(wanted.ssid)}`);
    } else {
      await this.pause(scaled(this.timing, this.timing.wifiTryMs + this.timing.wifiJoinMs), signal);
      this.network = old;
      this.errormessage = `wifi: cannot join ${wanted.ssid} within 30 s; back on ${old.ssid}`;
      this.log(this.errormessage);
      this.emit('failed', this.errormessage);
    }
    // The reconnect rule brings MQTT back; its first status says which network won.
  }

  /** Where downloads go after boot: config.json's downloadserver/port/path, else where it came from. */
  private downloadServer(): HttpsTarget & { path: string } {
    const c = this.config;
    const b = this.options.bootstrap;
    const path = typeof c.downloadpath === 'string' ? `/${c.downloadpath.replace(/^\/+|\/+$/g, '')}`.replace(/^\/$/, '') : b.path;
    return c.downloadserver ? { host: String(c.downloadserver), port: Number(c.downloadport) || 443, path } : { ...b, path };
  }

  private async firmware(signal: AbortSignal): Promise<void> {
    const server = this.downloadServer();
    const freeSpace = this.options.freeSpace ?? 1_000_000;
    const t = this.timing;
    const res = await this.get(server, `${server.path}/firmware.bin?curimage=${encodeURIComponent(this.image)}`, {
      headers: esp8266UpdateHeaders({ mac: this.id, freeSpace, sketchSize: 400_000, sketchMd5: this.imageMd5 }),
      maxBody: freeSpace,
      // The socket's own idle limit; the watchdog (6 s between blocks) resets first.
      timeoutMs: 120_000,
      // Read at the device's rate; each 4 KB sector is erased and written as the download reaches it.
      pace: { bytesPerSecond: t.downloadBytesPerSecond / t.scale, every: 4096, everyMs: scaled(t, t.sectorEraseMs + t.sectorWriteMs) },
      signal,
    });
    if (res.status === 200 && this.options.resetDuringUpdate) {
      this.log('watchdog reset while writing the update');
      return this.reboot('watchdog');
    }
    if (res.status === 200) {
      // Update.end(): the image is hashed and its signature checked, once.
      this.watch('verify');
      await this.pause(scaled(t, (res.body.length / 1024) * t.verifyMsPerKb), signal);
      this.feed();
    }
    if (res.status === 304) return this.fail('firmware', `no newer image for ${this.image} (304)`);
    if (res.status !== 200) return this.fail('firmware', `update server answered HTTP ${res.status}${res.body.length ? `: ${res.body.toString('utf8').slice(0, 120)}` : ''}`);
    const expectedMd5 = res.headers['x-md5'];
    if (expectedMd5 && expectedMd5.toLowerCase() !== createHash('md5').update(res.body).digest('hex')) return this.fail('firmware', 'MD5 of the download does not match x-MD5');
    if (res.body[0] !== 0xe9 && res.body[0] !== 0x1f) return this.fail('firmware', `not an ESP8266 image (first byte 0x${res.body[0]?.toString(16)})`);
    // The Updater's check: trailer length = modulus length, SHA-256 of the rest, RSA PKCS#1 v1.5.
    const results = this.trusts.map((k) => verifyEsp8266(res.body, k));
    const good = results.find((r) => r.ok);
    if (!good || !good.ok) return this.fail('firmware', `signature check failed: ${results.map((r) => (r.ok ? '' : r.reason)).join('; ') || 'no trusted key'}`);
    const manifest = readSimManifest(res.body.subarray(0, good.payloadLength));
    if (!manifest) return this.fail('firmware', 'the image verifies but is not a simulator image (a real ESP would boot it)');
    const next = { image: manifest.image, build: manifest.build, trusts: manifest.trusts.map((pem) => createPublicKey(pem)), md5: createHash('md5').update(res.body).digest('hex') };
    this.log(`downloaded ${manifest.image} (${res.body.length} bytes), signature good`);
    if ((this.options.updateMode ?? 'auto') === 'auto') return this.installAndReboot(next);
    this.staged = next;
    this.emit('staged', next.image);
    this.publishStatus();
  }

  private installAndReboot(next: { image: string; build: string; trusts: KeyObject[]; md5: string }): void {
    this.image = next.image;
    this.build = next.build;
    this.trusts = next.trusts;
    this.imageMd5 = next.md5;
    this.staged = undefined;
    this.emit('flashed', next.image);
    this.reboot('update');
  }

  protected override resetting(): void {
    this.scheduleSilence();
  }


  private async downloadFile(command: 'ca' | 'cert' | 'key', signal: AbortSignal): Promise<void> {
    const server = this.downloadServer();
    const name = command === 'ca' ? 'ca.crt' : `${this.id}.${command === 'cert' ? 'crt' : 'key'}`;
    const res = await this.get(server, `${server.path}/${name}`, { maxBody: 16 * 1024, timeoutMs: 15_000, signal });
    if (res.status !== 200) return this.fail(command, `${name}: HTTP ${res.status}`);
    const pem = res.body.toString('utf8');
    try {
      if (command === 'key') createPrivateKey(pem);
      else new X509Certificate(pem);
    } catch {
      return this.fail(command, `${name} is not a valid PEM ${command === 'key' ? 'key' : 'certificate'}`);
    }
    const files = { ...this.files, [command]: pem };
    this.files = files;
    this.log(`stored new ${name}`);
    // Reconnect with the new identity once certificate and key belong together.
    if (certMatchesKey(files.cert, files.key)) this.reconnect();
    else this.publishStatus();
  }

  /** A clean disconnect (no LWT), then the reconnect rule with the new identity. */
  private reconnect(): void {
    const client = this.client;
    if (!client) return;
    client.end(false, () => undefined);
  }

  private goSilent(): void {
    this.log('going silent');
    this.bootAbort.abort();
    this.policy = undefined;
    this.setState('silent');
    this.clearTimers();
    this.dropLink();
  }

  protected override clearTimers(): void {
    super.clearTimers();
    clearInterval(this.dogTicker);
    this.dogTicker = undefined;
  }

  protected dropLink(): void {
    const client = this.client;
    this.client = undefined;
    client?.stream?.destroy();
    client?.end(true);
  }

  private fail(command: string, why: string): void {
    this.errormessage = `${command}: ${why}`;
    this.log(this.errormessage);
    this.emit('failed', this.errormessage);
    this.publishStatus();
  }

  private log(line: string): void {
    this.options.log?.(`${this.id} ${line}`);
  }
}

function md5(text: string): string {
  return createHash('md5').update(text).digest('hex');
}

function certMatchesKey(certPem: string, keyPem: string): boolean {
  try {
    return keyBelongsTo(createPrivateKey(keyPem), new X509Certificate(certPem));
  } catch {
    return false;
  }
}
