import { createHash, createPrivateKey, createPublicKey, KeyObject, X509Certificate } from 'node:crypto';
import { EventEmitter } from 'node:events';
import mqtt, { MqttClient } from 'mqtt';
import { verifyEsp8266 } from '../firmware/signing';
import { keyBelongsTo } from '../pki/keys';
import { checkDeviceConfig, DeviceConfig } from '../firmware/firmware-service';
import type { StatusReport } from '../fleet/telemetry';
import { deviceGet, esp8266UpdateHeaders, HttpsTarget } from './device-https';
import { readSimManifest } from './sim-image';

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
  files: DeviceFiles;
  /** The running image and the public keys (PEM) compiled into it. */
  image: string;
  trusts: string[];
  build?: string;
  updateMode?: UpdateMode;
  /** Flash free for an update (x-ESP8266-free-space). */
  freeSpace?: number;
  /** Drops its connection now and then and reports a poor RSSI. */
  weakSignal?: boolean;
  /** Stops talking after this many ms, without a goodbye (power cut). */
  silentAfterMs?: number;
  /** Time a reboot takes before the device boots again. */
  rebootDelayMs?: number;
  /** Replaces config.json's mqttserver/mqttport (e.g. a test broker on another port). */
  mqtt?: { host?: string; port?: number };
  log?(line: string): void;
}

export type DeviceState = 'booting' | 'online' | 'offline' | 'rebooting' | 'silent' | 'stopped';

interface DeviceEvents {
  state: [DeviceState];
  flashed: [string];
  /** A verified download waits for `flash` (staged mode). */
  staged: [string];
  failed: [string];
}

const STATUS_DEFAULT_MS = 60_000;
const RETRY_DEFAULT_MS = 10_000;

/**
 * One device that follows docs/wire-contract.md as the secure ESP8266 framework's firmware does: config.json at boot, MQTT
 * over mutual TLS with an LWT, the ten-field status, and the commands, with images verified
 * the way the ESP8266 Updater does before they are installed.
 */
export class SimulatedDevice extends EventEmitter<DeviceEvents> {
  readonly id: string;
  image: string;
  build: string;
  state: DeviceState = 'stopped';
  errormessage = '';
  config: DeviceConfig = {};
  private files: DeviceFiles;
  private trusts: KeyObject[];
  private staged: { image: string; build: string; trusts: KeyObject[]; md5: string } | undefined;
  private imageMd5: string;
  private client: MqttClient | undefined;
  private bootedAt = Date.now();
  private connectedAt = 0;
  private maxLoopMs = 0;
  private timers = new Set<NodeJS.Timeout>();
  private busy = false;

  constructor(private readonly options: SimulatedDeviceOptions) {
    super();
    this.id = options.id;
    this.image = options.image;
    this.build = options.build ?? 'Nov 21 2026 10:00:00';
    this.files = { ...options.files };
    this.trusts = options.trusts.map((pem) => createPublicKey(pem));
    this.imageMd5 = md5(this.image);
  }

  /** The device certificate it presents now (changes after a `cert` command). */
  get certificatePem(): string {
    return this.files.cert;
  }

  get online(): boolean {
    return this.state === 'online';
  }

  start(): void {
    if (this.state !== 'stopped') return;
    if (this.options.silentAfterMs !== undefined) this.later(this.options.silentAfterMs, () => this.goSilent());
    void this.boot();
  }

  /** Ends everything: timers, connection (cleanly, so no LWT), no more reboots. */
  async stop(): Promise<void> {
    this.setState('stopped');
    for (const t of this.timers) clearTimeout(t);
    this.timers.clear();
    const client = this.client;
    this.client = undefined;
    await client?.endAsync(true).catch(() => undefined);
  }

  status(): StatusReport {
    const now = Date.now();
    this.maxLoopMs = Math.max(this.maxLoopMs, 3 + Math.floor(Math.random() * 40));
    const weak = this.options.weakSignal;
    return {
      uptimemillis: now - this.bootedAt,
      maxmillis: this.maxLoopMs,
      mqttmillis: this.connectedAt ? now - this.connectedAt : 0,
      espname: `measure-${this.id}`,
      espimage: this.image,
      espbuild: this.build,
      espip: (this.client?.stream as { localAddress?: string } | undefined)?.localAddress ?? '0.0.0.0',
      rssi: (weak ? -88 : -58) - Math.floor(Math.random() * 8),
      espfreeheap: 21000 + Math.floor(Math.random() * 4000),
      errormessage: this.errormessage,
    };
  }

  private async boot(): Promise<void> {
    this.setState('booting');
    this.bootedAt = Date.now();
    this.maxLoopMs = 0;
    this.connectedAt = 0;
    this.errormessage = '';
    try {
      // Seed 000: configuration (and certificates) are fetched at boot only.
      this.config = await this.fetchConfig();
    } catch (err) {
      this.log(`config.json: ${(err as Error).message}; retrying`);
      if (this.state === 'booting') this.later(this.options.rebootDelayMs ?? RETRY_DEFAULT_MS, () => void this.boot());
      return;
    }
    if (this.state === 'booting') this.connect();
  }

  private async fetchConfig(): Promise<DeviceConfig> {
    const b = this.options.bootstrap;
    const res = await deviceGet(b, `${b.path}/config.json`, this.files, { maxBody: 4096, timeoutMs: 15_000 });
    if (res.status !== 200) throw new Error(`HTTP ${res.status}`);
    const config = checkDeviceConfig(JSON.parse(res.body.toString('utf8')));
    if (typeof config.mqttserver !== 'string' || typeof config.mqttport !== 'number') throw new Error('config.json names no mqttserver/mqttport');
    return config;
  }

  private connect(): void {
    const host = this.options.mqtt?.host ?? String(this.config.mqttserver);
    const retry = Number(this.config.retrytimeout) || RETRY_DEFAULT_MS;
    const client = mqtt.connect({
      protocol: 'mqtts',
      host,
      port: this.options.mqtt?.port ?? Number(this.config.mqttport),
      servername: host,
      clientId: this.id,
      ca: this.files.ca,
      cert: this.files.cert,
      key: this.files.key,
      rejectUnauthorized: true,
      keepalive: 60,
      reconnectPeriod: retry,
      connectTimeout: Number(this.config.waittimeout) || 15_000,
      will: { topic: `/will/${this.id}/will`, payload: Buffer.from('offline'), qos: 1, retain: false },
    });
    this.client = client;
    client.on('connect', () => {
      this.connectedAt = Date.now();
      this.setState('online');
      client.subscribe(`/command/${this.id}/#`, { qos: 1 });
      this.publishStatus();
      this.scheduleStatus(client);
      if (this.options.weakSignal) this.scheduleDrop(client);
    });
    client.on('close', () => {
      if (this.client === client && this.state === 'online') this.setState('offline');
    });
    client.on('error', (err) => this.log(`mqtt: ${err.message}`));
    client.on('message', (topic, payload) => {
      if (this.client !== client) return;
      const command = topic.slice(`/command/${this.id}/`.length);
      void this.onCommand(command, payload.toString('utf8'));
    });
  }

  private scheduleStatus(client: MqttClient): void {
    const every = Number(this.config.statusinterval) || STATUS_DEFAULT_MS;
    const tick = (): void => {
      if (this.client !== client || this.state === 'stopped' || this.state === 'silent') return;
      if (client.connected) this.publishStatus();
      this.later(every, tick);
    };
    // Devices booted together spread out instead of reporting in lock step.
    this.later(every * (0.5 + Math.random()), tick);
  }

  /** Weak Wi-Fi: now and then the link drops without a goodbye; mqtt.js reconnects like the firmware. */
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

  private async onCommand(command: string, _payload: string): Promise<void> {
    void _payload;
    if (this.state !== 'online') return;
    // As the firmware does: a restart installs a verified download, if there is one.
    if (command === 'reboot') return this.staged ? this.installAndReboot(this.staged) : this.reboot();
    if (this.busy) return this.fail(command, 'busy with an earlier command');
    this.busy = true;
    // Cleared when a command starts, so the same failure twice is still a change the backend sees.
    this.errormessage = '';
    try {
      switch (command) {
        case 'firmware':
          return await this.firmware();
        case 'flash':
          if (!this.staged) return this.fail(command, 'no verified download to install: send firmware first');
          return this.installAndReboot(this.staged);
        case 'ca':
        case 'cert':
        case 'key':
          return await this.downloadFile(command);
        default:
          return this.fail(command, 'unknown command');
      }
    } catch (err) {
      this.fail(command, (err as Error).message);
    } finally {
      this.busy = false;
    }
  }

  /** Where downloads go after boot: config.json's downloadserver/port/path, else where it came from. */
  private downloadServer(): HttpsTarget & { path: string } {
    const c = this.config;
    const b = this.options.bootstrap;
    const path = typeof c.downloadpath === 'string' ? `/${c.downloadpath.replace(/^\/+|\/+$/g, '')}`.replace(/^\/$/, '') : b.path;
    return c.downloadserver ? { host: String(c.downloadserver), port: Number(c.downloadport) || 443, path } : { ...b, path };
  }

  private async firmware(): Promise<void> {
    const server = this.downloadServer();
    const freeSpace = this.options.freeSpace ?? 1_000_000;
    const res = await deviceGet(server, `${server.path}/firmware.bin?curimage=${encodeURIComponent(this.image)}`, this.files, {
      headers: esp8266UpdateHeaders({ mac: this.id, freeSpace, sketchSize: 400_000, sketchMd5: this.imageMd5 }),
      maxBody: freeSpace,
      timeoutMs: 120_000,
    });
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
    this.reboot();
  }

  /** A reboot is a dropped link (the broker sends the LWT), a pause, then a boot. */
  private reboot(): void {
    this.setState('rebooting');
    this.dropLink();
    this.later(this.options.rebootDelayMs ?? 1500, () => void this.boot());
  }

  private async downloadFile(command: 'ca' | 'cert' | 'key'): Promise<void> {
    const server = this.downloadServer();
    const name = command === 'ca' ? 'ca.crt' : `${this.id}.${command === 'cert' ? 'crt' : 'key'}`;
    const res = await deviceGet(server, `${server.path}/${name}`, this.files, { maxBody: 16 * 1024, timeoutMs: 15_000 });
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

  private reconnect(): void {
    const client = this.client;
    this.client = undefined;
    this.setState('offline');
    client?.end(false, () => undefined);
    this.connect();
  }

  private goSilent(): void {
    this.log('going silent');
    this.setState('silent');
    for (const t of this.timers) clearTimeout(t);
    this.timers.clear();
    this.dropLink();
  }

  /** The link dies without a DISCONNECT (power cut, reset): the broker publishes the LWT. */
  private dropLink(): void {
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

  private setState(state: DeviceState): void {
    if (this.state === state) return;
    this.state = state;
    this.emit('state', state);
  }

  private later(ms: number, fn: () => void): void {
    const t = setTimeout(() => {
      this.timers.delete(t);
      fn();
    }, ms);
    this.timers.add(t);
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
