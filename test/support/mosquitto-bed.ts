import * as path from 'node:path';
import { CaStore } from '../../lib/pki/ca-store';
import { writeMosquittoConfig } from '../../lib/mosquitto/folders';
import { freePort, startMosquitto, RunningMosquitto } from './mosquitto';
import { FakeDevice } from './fake-device';

/**
 * What the node tests on a real broker share: a CA with the given devices issued, the Mosquitto
 * folder it generates (server name localhost, a free port), and that Mosquitto running; and the
 * fake devices a test connects, closed after each test.
 */
export class MosquittoBed {
  private readonly devices: FakeDevice[] = [];

  private constructor(
    readonly store: CaStore,
    readonly port: number,
    readonly mosquittoDir: string,
    private running: RunningMosquitto,
  ) {}

  static async start(root: string, deviceIds: readonly string[]): Promise<MosquittoBed> {
    const store = await CaStore.open({ dir: path.join(root, 'ca') });
    await Promise.all(deviceIds.map((id) => store.issueDevice(id)));
    const port = await freePort();
    const { dir } = await writeMosquittoConfig(store, { dir: path.join(root, 'mosquitto'), serverName: 'localhost', port });
    return new MosquittoBed(store, port, dir, await startMosquitto(dir));
  }

  /** A device of the CA on this broker (client id = its id unless given), closed by `closeDevices`. */
  async device(id: string, clientId = id): Promise<FakeDevice> {
    const d = await FakeDevice.connect(this.port, this.store, id, clientId);
    this.devices.push(d);
    return d;
  }

  /** For afterEach: every device a test connected, gone. */
  async closeDevices(): Promise<void> {
    await Promise.all(this.devices.splice(0).map((d) => d.close()));
  }

  /** Stops the broker (a test of an outage); `startBroker` brings it back on the same port. */
  stopBroker(): Promise<void> {
    return this.running.stop();
  }

  async startBroker(): Promise<void> {
    this.running = await startMosquitto(this.mosquittoDir);
  }

  /** Broker down, and every write of the store settled. */
  async stop(): Promise<void> {
    await this.running.stop();
    await this.store.idle();
  }
}
