// What the example-flow tests share: a CA in a Node-RED user directory (device certificates
// issued BEFORE Node-RED opens the store: afterwards only Node-RED's esp-ca writes it),
// Mosquitto with our generated config, simulator images in the update server's default
// folder, and the example flows patched to these ports.
import { lstatSync, promises as fs, readlinkSync } from 'node:fs';
import * as path from 'node:path';
import { CaStore } from '../../lib/pki/ca-store';
import { writeMosquittoConfig } from '../../lib/mosquitto/folders';
import { mosquittoFilesIn } from '../../lib/mosquitto/mosquitto-config';
import { FirmwareService } from '../../lib/firmware/firmware-service';
import { publishEsp32SimImage, publishSimImage } from '../../lib/sim/publish';
import { FleetSimulator, identityFromFolder, IdentitySource } from '../../lib/sim/fleet-simulator';
import { SimulatedEsp32 } from '../../lib/sim/esp32-device';
import { freePort, startMosquitto, RunningMosquitto } from './mosquitto';
import { NodeRedProcess, FlowNode, nodeById } from './node-red-process';

export const PRODUCT = 'ESP8266_SIM_D1MINI';
export const V1 = `${PRODUCT}-00.00.01`;
export const V2 = `${PRODUCT}-00.00.02`;

export interface FixtureOptions {
  root: string;
  deviceIds: string[];
  /** Device certificates issued with a short validity (expiring soon). */
  shortLivedIds?: string[];
  /** The update server's statusinterval in config.json, i.e. how often devices report. */
  statusIntervalMs?: number;
  /**
   * `mosquitto` (default): a real Mosquitto with the generated config carries the fleet, and an
   * esp-broker node in a flow gets a port of its own. `embedded`: the flow's esp-broker carries
   * it, as in the demo, and no Mosquitto runs.
   */
  broker?: 'mosquitto' | 'embedded';
  /** Images published besides V1 and V2 (48 KB each), e.g. another product's, or a bigger one whose download takes a while. */
  extraImages?: { product: string; version: string; size?: number }[];
  /**
   * ESP32 apps `<projectName>-<version>` (48 KB each) published at start, signed in the signed-app
   * scheme with the keyring's esp32-ecdsa-v1 key (the catalogue is opened before Node-RED starts,
   * so they cannot come later). Needed for `startEsp32`.
   */
  esp32Images?: { projectName: string; versions: string[] };
}

export class ExampleFixture {
  readonly devices: FleetSimulator[] = [];
  readonly esp32s: SimulatedEsp32[] = [];

  private constructor(
    readonly userDir: string,
    readonly deviceFilesDir: string,
    readonly brokerPort: number,
    readonly firmwarePort: number,
    readonly trustedKeyPem: string,
    readonly broker: RunningMosquitto | undefined,
    readonly red: NodeRedProcess,
    private readonly statusIntervalMs: number,
    /** Where an esp-broker node of a flow listens (the fleet's port when it is the fleet's broker). */
    private readonly embeddedBrokerPort: number,
    /** The update server's enrollment (EST) port, for examples that set one. */
    readonly enrollPort: number,
    private readonly mosquittoDir: string,
    /** The esp32-ecdsa-v1 public key the ESP32 images are signed with (when `esp32Images` was given). */
    private readonly esp32TrustedKeyPem: string | undefined,
    /** Where simulated ESP32s keep their NVS files. */
    private readonly nvsDir: string,
  ) {}

  static async start(o: FixtureOptions): Promise<ExampleFixture> {
    const userDir = path.join(o.root, 'user');
    const store = await CaStore.open({ dir: path.join(userDir, 'esp-fleet-ca'), commonName: 'ESP Fleet CA' });
    await store.issueServer({ commonName: 'localhost' });
    for (const id of o.deviceIds) await store.issueDevice(id);
    for (const id of o.shortLivedIds ?? []) await store.issueDevice(id, { validityDays: 10 });
    const brokerPort = await freePort();
    const setup = await writeMosquittoConfig(store, { dir: path.join(o.root, 'mosquitto'), serverName: 'localhost', backendName: 'node-red', port: brokerPort });
    const deviceFilesDir = store.deviceFilesDir;
    await store.idle();

    // The esp-firmware-server's default folder: the node opens the same catalogue and keyring.
    const service = await FirmwareService.open(path.join(userDir, 'esp-fleet-firmware'));
    const key = await service.keyring.current('esp8266-rsa');
    for (const v of ['00.00.01', '00.00.02']) await publishSimImage(service, { product: PRODUCT, version: v, size: 48 * 1024 });
    for (const extra of o.extraImages ?? []) await publishSimImage(service, { size: 48 * 1024, ...extra });
    let esp32KeyPem: string | undefined;
    if (o.esp32Images) {
      const ecdsa = (await service.keyring.current('esp32-ecdsa-v1')).id;
      esp32KeyPem = service.keyring.exportPublic(ecdsa).pem;
      for (const version of o.esp32Images.versions) await publishEsp32SimImage(service, { projectName: o.esp32Images.projectName, version, trusts: [ecdsa], size: 48 * 1024 });
    }

    const embedded = o.broker === 'embedded';
    const broker = embedded ? undefined : await startMosquitto(setup.dir);
    let red: NodeRedProcess;
    try {
      red = await NodeRedProcess.start(userDir);
    } catch (err) {
      await broker?.stop();
      throw err;
    }
    const embeddedPort = embedded ? brokerPort : await freePort();
    return new ExampleFixture(userDir, deviceFilesDir, brokerPort, await freePort(), key.publicKeyPem, broker, red, o.statusIntervalMs ?? 1000, embeddedPort, await freePort(), setup.dir, esp32KeyPem, path.join(o.root, 'esp32-nvs'));
  }

  /** Points an example at this fixture: broker URL, update server and enrollment ports (on 127.0.0.1), the status interval. */
  patch(flows: FlowNode[]): FlowNode[] {
    for (const n of flows) {
      if (n.type === 'esp-fleet') Object.assign(n, { broker: `mqtts://localhost:${this.brokerPort}`, statusInterval: String(this.statusIntervalMs) });
      if (n.type === 'esp-broker') Object.assign(n, { port: String(this.embeddedBrokerPort), bindAddress: '127.0.0.1' });
      if (n.type === 'esp-firmware-server') {
        Object.assign(n, { port: String(this.firmwarePort), mqttport: String(this.brokerPort), statusinterval: String(this.statusIntervalMs), retrytimeout: '1000', bindAddress: '127.0.0.1' });
        if (n.enrollPort) n.enrollPort = String(this.enrollPort);
      }
    }
    return flows;
  }

  /**
   * A device enrolled while Mosquitto runs: once Node-RED's CA has written its ACL block, a SIGHUP
   * makes Mosquitto read it (what a user does after approving, README.md).
   */
  async admitToBroker(id: string, ms = 10_000): Promise<void> {
    if (!this.broker) return;
    const acl = mosquittoFilesIn(this.mosquittoDir).aclFile;
    const until = Date.now() + ms;
    while (!(await fs.readFile(acl, 'utf8')).includes(id)) {
      if (Date.now() > until) throw new Error(`${acl} has no block for ${id} after ${ms} ms`);
      await new Promise((r) => setTimeout(r, 100));
    }
    await this.broker.reload();
  }

  /**
   * Simulated devices running V1 (or `image`) that boot from this fixture's update server (files
   * from the CA's folder unless `identity`: an enrolled board's own). `tamperedShare`: the share
   * that trusts a wrong key, so they refuse every image the update server sends.
   */
  async startDevices(ids: string[], extra: { silentAfterMs?: number; identity?: IdentitySource; image?: string; tamperedShare?: number } = {}): Promise<FleetSimulator> {
    const fleet = new FleetSimulator({
      ids,
      identity: extra.identity ?? identityFromFolder(this.deviceFilesDir),
      bootstrap: { host: 'localhost', port: this.firmwarePort, path: '/fw' },
      image: extra.image ?? V1,
      trusts: [this.trustedKeyPem],
      rebootDelayMs: 200,
      timing: 'fast',
      bootsPerSecond: 50,
      silentShare: extra.silentAfterMs !== undefined ? 1 : undefined,
      silentAfterMs: extra.silentAfterMs,
      tamperedShare: extra.tamperedShare,
    });
    this.devices.push(fleet);
    await fleet.start();
    return fleet;
  }

  /**
   * Simulated ESP32s (lib/sim/esp32-device.ts) running `image`, with certificates from the CA's
   * folder, trusting the ESP32 images' key. An ESP32 has no config.json: the broker it connects to
   * is the flow's esp-broker (`broker: 'embedded'`, whose `mixed` scheme carries both platforms'
   * topics; this fixture's Mosquitto config has the ESP8266 scheme's ACL), its update server this
   * fixture's. Their status comes every `statusIntervalMs`, as the ESP8266s' does, so the fleet's
   * registry keeps them online.
   */
  async startEsp32(ids: string[], image: string): Promise<SimulatedEsp32[]> {
    if (!this.esp32TrustedKeyPem) throw new Error('startEsp32 needs esp32Images at ExampleFixture.start');
    if (this.broker) throw new Error("startEsp32 needs broker: 'embedded' (the fixture's Mosquitto ACL has no ESP32 topics)");
    const identity = identityFromFolder(this.deviceFilesDir);
    const boards: SimulatedEsp32[] = [];
    for (const id of ids) {
      const board = new SimulatedEsp32({
        id,
        files: await identity(id),
        bootstrap: { host: 'localhost', port: this.firmwarePort, path: '/fw' },
        mqtt: { host: 'localhost', port: this.brokerPort },
        image,
        trusts: [this.esp32TrustedKeyPem],
        nvsDir: this.nvsDir,
        timing: 'fast',
        rebootDelayMs: 200,
        statusIntervalMs: this.statusIntervalMs,
      });
      this.esp32s.push(board);
      boards.push(board);
      board.start();
    }
    return boards;
  }

  async stop(): Promise<void> {
    await Promise.all([...this.devices, ...this.esp32s].map((d) => d.stop()));
    await this.red?.stop();
    await this.broker?.stop();
  }
}

/** True when `flows` in the package root is a symlink that resolves to `examples`. */
export function flowsLinksToExamples(root: string): boolean {
  const flows = path.join(root, 'flows');
  return lstatSync(flows).isSymbolicLink() && path.resolve(root, readlinkSync(flows)) === path.join(root, 'examples');
}

export { nodeById };
