import { EventEmitter } from 'node:events';
import mqtt, { MqttClient, IClientOptions } from 'mqtt';
import { CommandSet, TopicScheme } from './topic-scheme';
import { FleetTopics } from './fleet-topics';
import { parseStatus, isBirthMessage, MAX_STATUS_BYTES } from './telemetry';
import { DeviceRegistry, PresenceChange, StatusUpdate } from './registry';
import { BuiltCommand } from './commands';

/** How long close() waits for in-flight QoS 1 publishes to be acknowledged. */
const CLOSE_FLUSH_MS = 2_000;

/** Resolves when every promise settled, or after `ms`, whichever is first. */
function settledWithin(promises: Promise<unknown>[], ms: number): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<void>((resolve) => (timer = setTimeout(resolve, ms)));
  return Promise.race([Promise.allSettled(promises).then(() => undefined), deadline]).finally(() => clearTimeout(timer));
}

export type ConnectionState = 'connecting' | 'connected' | 'reconnecting' | 'offline' | 'closed';

export interface FleetClientOptions {
  /** `mqtts://host:8883` (mutual TLS) or `mqtt://host:1883` (plain, not recommended). */
  url: string;
  tls?: { ca?: string; cert?: string; key?: string };
  clientId?: string;
  /** One scheme, or several side by side (a mixed fleet: lib/fleet/fleet-topics.ts). */
  scheme: TopicScheme | FleetTopics;
  registry: DeviceRegistry;
  /** Called after the registry changed, so its file can be written (throttled by the caller). */
  onRegistryChange?: () => void;
  sweepIntervalMs?: number;
  reconnectMinMs?: number;
  reconnectMaxMs?: number;
}

export interface RejectedMessage {
  topic: string;
  reason: string;
  bytes: number;
  count: number;
}

/** Topics besides the scheme's, e.g. the Home Assistant link's: the handler says whether the message was its own. */
export type ExtraHandler = (topic: string, payload: Buffer, retain: boolean) => boolean;

export interface FleetClientEvents {
  state: [ConnectionState, string | undefined];
  status: [string, StatusUpdate];
  presence: [PresenceChange];
  'device-error': [string, string];
  log: [string, string];
  rejected: [RejectedMessage];
}

/**
 * One MQTT connection for the whole fleet: subscribes to the scheme's inbound topics, turns
 * messages into registry updates and events, publishes commands, and reconnects with
 * exponential backoff (mqtt.js resubscribes after each reconnect).
 */
export class FleetClient extends EventEmitter<FleetClientEvents> {
  private client: MqttClient | undefined;
  private sweepTimer: NodeJS.Timeout | undefined;
  /** When the current subscription began (ms since the epoch): silence before it was not heard. */
  private listeningSince = 0;
  /** QoS 1 publishes not yet acknowledged by the broker. */
  private readonly inFlight = new Set<Promise<unknown>>();
  private backoffMs: number;
  private rejectedCount = 0;
  private currentState: ConnectionState = 'closed';
  private lastError: string | undefined;
  private readonly extra = new Map<string, ExtraHandler>();
  readonly topics: FleetTopics;

  constructor(private readonly options: FleetClientOptions) {
    super();
    this.topics = FleetTopics.of(options.scheme);
    this.backoffMs = options.reconnectMinMs ?? 1_000;
    const url = new URL(options.url);
    if (url.protocol !== 'mqtts:' && url.protocol !== 'mqtt:') throw new Error(`broker URL must start with mqtts:// (or mqtt://), got ${options.url}`);
  }

  get state(): ConnectionState {
    return this.currentState;
  }

  get registry(): DeviceRegistry {
    return this.options.registry;
  }

  /** The first scheme: the whole fleet's when it has one, else that of devices not heard from yet. */
  get scheme(): TopicScheme {
    return this.topics.first;
  }

  /**
   * The command set a command to `id` must be built with: its platform as last heard, when this
   * fleet has a scheme of it; otherwise (never heard, or a platform this fleet does not speak)
   * the first scheme's.
   */
  commandSetOf(id: string): CommandSet {
    return this.schemeOf(id).commandSet;
  }

  /** The scheme whose topics reach `id`. */
  schemeOf(id: string): TopicScheme {
    return this.topics.schemeFor(this.options.registry.get(id)?.platform);
  }

  get secure(): boolean {
    return this.options.url.startsWith('mqtts:');
  }

  get rejected(): number {
    return this.rejectedCount;
  }

  start(): void {
    const { tls, clientId } = this.options;
    const min = this.options.reconnectMinMs ?? 1_000;
    const opts: IClientOptions = {
      clientId: clientId ?? `esp-fleet-${Math.random().toString(16).slice(2, 10)}`,
      clean: true,
      reconnectPeriod: min,
      connectTimeout: 10_000,
      resubscribe: true,
      ca: tls?.ca,
      cert: tls?.cert,
      key: tls?.key,
      rejectUnauthorized: true,
    };
    this.setState('connecting');
    const client = mqtt.connect(this.options.url, opts);
    this.client = client;
    client.on('connect', () => {
      this.backoffMs = min;
      client.options.reconnectPeriod = min;
      this.lastError = undefined;
      const extra = [...this.extra.keys()];
      if (extra.length) client.subscribe(extra, { qos: 1 });
      client.subscribe(this.topics.subscriptions, { qos: 0 }, (err) => {
        if (err) this.setState('offline', `subscribe failed: ${err.message}`);
        else {
          this.listeningSince = Date.now();
          this.setState('connected');
        }
      });
    });
    client.on('reconnect', () => this.setState('reconnecting', this.lastError));
    // Prepended: mqtt.js schedules its reconnect in its own 'close' listener, which must see the new period.
    client.prependListener('close', () => {
      // Back off: 1 s, 2 s, 4 s … up to the maximum, reset on the next successful connect.
      client.options.reconnectPeriod = this.backoffMs;
      this.backoffMs = Math.min(this.backoffMs * 2, this.options.reconnectMaxMs ?? 30_000);
      if (this.currentState !== 'closed') this.setState('offline', this.lastError);
    });
    client.on('error', (err) => {
      this.lastError = err.message;
    });
    client.on('message', (topic, payload, packet) => {
      for (const handler of this.extra.values()) if (handler(topic, payload, packet.retain)) return;
      this.handle(topic, payload);
    });
    this.sweepTimer = setInterval(() => this.sweep(), this.options.sweepIntervalMs ?? 1_000);
    this.sweepTimer.unref();
  }

  async close(): Promise<void> {
    if (this.sweepTimer) clearInterval(this.sweepTimer);
    this.sweepTimer = undefined;
    const client = this.client;
    this.client = undefined;
    this.setState('closed');
    if (!client) return;
    // A redeploy right after a command must not drop it: QoS 1 publishes still in flight get
    // their PUBACK (the broker has them) before the socket closes, within a short deadline.
    if (client.connected && this.inFlight.size) await settledWithin([...this.inFlight], CLOSE_FLUSH_MS);
    await client.endAsync(true).catch(() => undefined);
  }

  /**
   * Commands are never retained: a retained `reboot` would reboot the device at every connect.
   * A command built for another command set than the device's is refused, never sent on a topic
   * the device would not read (or would read as something else).
   */
  async publishCommand(id: string, command: BuiltCommand): Promise<void> {
    const client = this.client;
    if (!client || !client.connected) throw new Error(`not connected to the broker (${this.currentState})`);
    const scheme = this.schemeOf(id);
    if (command.commandSet && command.commandSet !== scheme.commandSet) {
      throw new Error(`${command.command} is an ${command.commandSet} command; ${id} is addressed as ${scheme.commandSet}`);
    }
    await this.track(client.publishAsync(scheme.commandTopic(id, command.command), command.payload, { qos: 1, retain: false }));
  }

  /** Keeps a publish in `inFlight` until the broker acknowledged it (or it failed), for close(). */
  private async track(publish: Promise<unknown>): Promise<void> {
    this.inFlight.add(publish);
    try {
      await publish;
    } finally {
      this.inFlight.delete(publish);
    }
  }

  /** A message besides the commands (e.g. the Home Assistant link's retained configs and states). */
  async publishMessage(message: { topic: string; payload: string; retain: boolean; qos: 0 | 1 }): Promise<void> {
    const client = this.client;
    if (!client || !client.connected) throw new Error(`not connected to the broker (${this.currentState})`);
    await this.track(client.publishAsync(message.topic, message.payload, { qos: message.qos, retain: message.retain }));
  }

  /**
   * Subscribes to a filter besides the scheme's, now and after every reconnect; its messages go
   * to `handler` first. Returns the unsubscribe.
   */
  subscribeExtra(filter: string, handler: ExtraHandler): () => void {
    this.extra.set(filter, handler);
    if (this.client?.connected) this.client.subscribe(filter, { qos: 1 });
    return () => {
      if (this.extra.get(filter) !== handler) return;
      this.extra.delete(filter);
      if (this.client?.connected) this.client.unsubscribe(filter);
    };
  }

  private handle(topic: string, payload: Buffer): void {
    const parsed = this.topics.parse(topic);
    if ('error' in parsed) return this.reject(topic, parsed.error, payload.length);
    const { registry } = this.options;
    const platform = parsed.commandSet;
    switch (parsed.kind) {
      case 'status': {
        const result = parseStatus(payload);
        if (!result.ok) return this.reject(topic, result.reason, payload.length);
        const update = registry.recordStatus(parsed.id, result.value, Date.now(), platform);
        this.options.onRegistryChange?.();
        if (update.presence) this.emit('presence', update.presence);
        this.emit('status', parsed.id, update);
        if (update.newError) this.emit('device-error', parsed.id, update.newError);
        return;
      }
      case 'will': {
        if (payload.length === 0) return; // a cleared retained message
        if (payload.length > MAX_STATUS_BYTES) return this.reject(topic, `payload of ${payload.length} bytes exceeds ${MAX_STATUS_BYTES}`, payload.length);
        const change = registry.recordWill(parsed.id, isBirthMessage(payload), Date.now(), platform);
        this.options.onRegistryChange?.();
        if (change) this.emit('presence', change);
        return;
      }
      case 'log': {
        if (payload.length > MAX_STATUS_BYTES) return this.reject(topic, `payload of ${payload.length} bytes exceeds ${MAX_STATUS_BYTES}`, payload.length);
        const change = registry.recordActivity(parsed.id, Date.now(), platform);
        this.options.onRegistryChange?.();
        if (change) this.emit('presence', change);
        this.emit('log', parsed.id, payload.toString('utf8'));
        return;
      }
    }
  }

  private reject(topic: string, reason: string, bytes: number): void {
    this.rejectedCount++;
    this.emit('rejected', { topic: topic.slice(0, 200), reason, bytes, count: this.rejectedCount });
  }

  private sweep(): void {
    // Deaf, not silent: while not subscribed nobody can be judged offline for saying nothing.
    if (this.currentState !== 'connected') return;
    const changes = this.options.registry.sweep(Date.now(), this.listeningSince);
    if (changes.length) this.options.onRegistryChange?.();
    for (const change of changes) this.emit('presence', change);
  }

  private setState(state: ConnectionState, detail?: string): void {
    this.currentState = state;
    this.emit('state', state, detail);
  }
}
