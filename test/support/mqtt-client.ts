import { readFileSync } from 'node:fs';
import mqtt, { MqttClient } from 'mqtt';

export interface TlsIdentity {
  ca: string;
  cert?: string;
  key?: string;
}

export function identityFromFiles(caFile: string, certFile?: string, keyFile?: string): TlsIdentity {
  return {
    ca: readFileSync(caFile, 'utf8'),
    cert: certFile ? readFileSync(certFile, 'utf8') : undefined,
    key: keyFile ? readFileSync(keyFile, 'utf8') : undefined,
  };
}

/**
 * Connects once over mutual TLS and resolves on CONNACK; rejects when the broker refuses
 * (TLS alert, closed socket) so a test can assert a refusal without waiting on a timer.
 */
export function connectTls(port: number, id: TlsIdentity, clientId: string, extra: mqtt.IClientOptions = {}): Promise<MqttClient> {
  return new Promise((resolve, reject) => {
    const client = mqtt.connect({
      protocol: 'mqtts',
      host: 'localhost',
      port,
      clientId,
      ca: id.ca,
      cert: id.cert,
      key: id.key,
      rejectUnauthorized: true,
      reconnectPeriod: 0,
      connectTimeout: 5_000,
      ...extra,
    });
    const fail = (why: string) => (err?: Error) => {
      client.end(true);
      reject(new Error(`${why}${err ? `: ${err.message}` : ''}`));
    };
    client.once('connect', () => {
      client.removeAllListeners('error');
      client.removeAllListeners('close');
      // Later faults (a keepalive timeout of a client a test left open) are kept on the client for
      // the test that owns it, never thrown into whichever test happens to run then.
      client.on('error', (err) => ((client as MqttClient & { lastError?: Error }).lastError = err));
      resolve(client);
    });
    client.once('error', fail('refused'));
    client.once('close', fail('closed before CONNACK'));
  });
}

/** Collects messages; `until` resolves when a message matching the predicate arrives. */
/** The QoS the broker grants for one filter, 128 when it refuses it (mqtt.js 5 rejects then). */
export async function granted(client: MqttClient, filter: string): Promise<number> {
  try {
    return (await client.subscribeAsync(filter))[0].qos;
  } catch (err) {
    if ((err as Error).name === 'ErrorWithSubackPacket') return 128;
    throw err;
  }
}

export class Inbox {
  readonly messages: { topic: string; payload: string }[] = [];
  private waiters: { match: (t: string, p: string) => boolean; resolve: () => void }[] = [];
  private from = 0;

  constructor(client: MqttClient) {
    client.on('message', (topic, payload) => {
      const text = payload.toString();
      this.messages.push({ topic, payload: text });
      this.waiters = this.waiters.filter((w) => {
        if (!w.match(topic, text)) return true;
        w.resolve();
        return false;
      });
    });
  }

  /** From here on `until` looks only at newer messages: call it in beforeEach when tests share an inbox. */
  mark(): void {
    this.from = this.messages.length;
  }

  until(match: (topic: string, payload: string) => boolean, ms = 5_000): Promise<void> {
    if (this.messages.slice(this.from).some((m) => match(m.topic, m.payload))) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`no matching message within ${ms} ms; got ${JSON.stringify(this.messages)}`)), ms);
      this.waiters.push({
        match,
        resolve: () => {
          clearTimeout(timer);
          resolve();
        },
      });
    });
  }

  topics(): string[] {
    return this.messages.map((m) => m.topic);
  }
}
