import * as path from 'node:path';
import type { MqttClient } from 'mqtt';
import type { CaStore } from '../../lib/pki/ca-store';
import type { StatusReport } from '../../lib/fleet/telemetry';
import { connectTls, identityFromFiles } from './mqtt-client';

export const BASE_STATUS: StatusReport = {
  uptimemillis: 1000,
  maxmillis: 12,
  mqttmillis: 800,
  espname: 'measure-test',
  espimage: 'ESP8266_WEMOS_D1MINIPRO-00.00.01.a',
  espbuild: 'Nov 21 2026 10:00:00',
  espip: '192.0.2.20',
  rssi: -61,
  espfreeheap: 24000,
  errormessage: '',
};

/**
 * A device as the broker sees it (secure-esp8266 topics, its own certificate, an LWT): just enough
 * to drive the backend nodes. The full simulator that downloads and verifies images is its own work.
 */
export class FakeDevice {
  status: StatusReport;
  readonly commands: string[] = [];
  private onCommand: ((command: string, payload: string) => void) | undefined;

  private constructor(
    readonly id: string,
    readonly client: MqttClient,
  ) {
    this.status = { ...BASE_STATUS, espname: `measure-${id}` };
    client.on('message', (topic, payload) => {
      const command = topic.slice(`/command/${id}/`.length);
      this.commands.push(command);
      this.onCommand?.(command, payload.toString());
    });
  }

  static async connect(port: number, store: CaStore, id: string, clientId = id): Promise<FakeDevice> {
    const dir = store.deviceFilesDir;
    const identity = identityFromFiles(path.join(dir, 'ca.crt'), path.join(dir, `${id}.crt`), path.join(dir, `${id}.key`));
    const client = await connectTls(port, identity, clientId, {
      will: { topic: `/will/${id}/will`, payload: Buffer.from('offline'), qos: 1, retain: false },
      reconnectPeriod: 0,
    });
    await client.subscribeAsync(`/command/${id}/#`, { qos: 1 });
    return new FakeDevice(id, client);
  }

  /** Reacts to commands the way a device would, e.g. report a new image after `firmware`. */
  react(handler: (command: string, payload: string) => void): void {
    this.onCommand = handler;
  }

  async publishStatus(change: Partial<StatusReport> = {}): Promise<void> {
    this.status = { ...this.status, ...change };
    await this.client.publishAsync(`/status/${this.id}`, JSON.stringify(this.status), { qos: 1 });
  }

  async publishRaw(topic: string, payload: string | Buffer): Promise<void> {
    await this.client.publishAsync(topic, payload, { qos: 1 });
  }

  /** Dies without a DISCONNECT, so the broker sends its LWT. */
  dropConnection(): void {
    this.client.stream.destroy();
    this.client.end(true);
  }

  async close(): Promise<void> {
    // A client whose socket was destroyed may never confirm its end: do not wait on it forever.
    await Promise.race([this.client.endAsync(true).catch(() => undefined), new Promise((r) => setTimeout(r, 500))]);
  }
}
