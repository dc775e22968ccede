// `npm start`: the whole fleet on one machine with nothing else installed. Node-RED runs with
// this package, a user directory inside the repo (.demo/, ignored by git), the example fleet
// flow (embedded broker, update server, dashboard), a CA made on first run, a few signed
// firmware versions, and simulated devices. A second start reuses the CA and the catalogue.
//
// Settings by environment: PORT (editor, 1880), MQTT_PORT (8883), FW_PORT (8070), DEVICES (10),
// ESP_FLEET_DEMO_DIR (the user directory).
import { spawn, ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, promises as fs, symlinkSync } from 'node:fs';
import * as net from 'node:net';
import * as path from 'node:path';
import { CaStore } from '../lib/pki/ca-store';
import { FirmwareService } from '../lib/firmware/firmware-service';
import { publishSimImage } from '../lib/sim/publish';
import { deviceIds } from '../lib/sim/fleet-simulator';
import { EnrollmentDesk } from '../lib/enroll/enrollment-desk';
import { parseEnrollPolicy } from '../lib/enroll/enroll-policy';
import { writeFileAtomic, readFileIfExists, PRIVATE_FILE_MODE } from '../lib/fs/atomic-file';
import { authSettingsSource, newPassword, Login } from './node-red-auth';
import { nodeRedChoice } from './node-red-choice';

const root = path.resolve(__dirname, '..', '..');
const userDir = path.resolve(process.env.ESP_FLEET_DEMO_DIR || path.join(root, '.demo'));
const editorPort = Number(process.env.PORT || 1880);
const mqttPort = Number(process.env.MQTT_PORT || 8883);
const firmwarePort = Number(process.env.FW_PORT || 8070);
const enrollPort = Number(process.env.ENROLL_PORT || 8071);
/** New boards that boot with no certificate and ask to join (docs/enrollment.md): approve them in the dashboard. */
const newBoards = Number(process.env.NEW_DEVICES ?? 3);
const deviceCount = Number(process.env.DEVICES || 10);
export const DEMO_PRODUCT = 'ESP8266_DEMO';
const FIRST_IMAGE = `${DEMO_PRODUCT}-1.0.0`;
const FLOW = path.join(root, 'examples', 'fleet-dashboard.json');

/** Node-RED finds palette modules in <userDir>/node_modules: ours and the dashboard, linked. */
function linkModules(): void {
  mkdirSync(path.join(userDir, 'node_modules', '@flowfuse'), { recursive: true });
  const links: [string, string][] = [
    [root, path.join(userDir, 'node_modules', 'node-red-contrib-esp-fleet')],
    [path.dirname(require.resolve('@flowfuse/node-red-dashboard/package.json')), path.join(userDir, 'node_modules', '@flowfuse', 'node-red-dashboard')],
  ];
  for (const [target, link] of links) if (!existsSync(link)) symlinkSync(target, link, 'dir');
}

/** The example flow with this demo's ports: patched by node type, so the file stays the one users import. */
async function writeFlow(): Promise<void> {
  const file = path.join(userDir, 'flows.json');
  if (existsSync(file)) return;
  const nodes = JSON.parse(await fs.readFile(FLOW, 'utf8')) as Record<string, unknown>[];
  for (const n of nodes) {
    if (n.type === 'esp-broker') n.port = String(mqttPort);
    if (n.type === 'esp-fleet') n.broker = `mqtts://localhost:${mqttPort}`;
    if (n.type === 'esp-firmware-server') Object.assign(n, { port: String(firmwarePort), mqttport: String(mqttPort), enrollPort: String(enrollPort) });
  }
  await fs.writeFile(file, JSON.stringify(nodes, null, 2));
}

/**
 * First run only: the CA (the esp-ca node opens it as its own), certificates for the simulated
 * devices, and three releases with a signing-key rotation between them, so "update" walks a
 * device 1.0.0 → 1.1.0 (the bridge, trusting the new key) → 2.0.0 (signed with the new key).
 * Done before Node-RED starts: a CA store has one writer at a time.
 */
async function prepare(): Promise<string> {
  const store = await CaStore.open({ dir: path.join(userDir, 'esp-fleet-ca') });
  // Never again for a device that was revoked: revocation is not undone by a restart.
  for (const id of deviceIds('a4cf12', deviceCount)) if (!store.everIssued('device', id)) await store.issueDevice(id);
  // The fleet's bootstrap credential, as a board keeps it in data/bootstrap.txt (the esp-ca node
  // opens the same enrollment folder once Node-RED runs).
  const desk = await EnrollmentDesk.open({ store, policy: parseEnrollPolicy('manual', '') });
  const secret = desk.showBootstrap() ?? (await desk.rotateBootstrap());
  await writeFileAtomic(path.join(userDir, 'sim', 'bootstrap.txt'), `${secret.user}:${secret.password}\n`, PRIVATE_FILE_MODE);
  await desk.idle();
  await store.idle();
  const service = await FirmwareService.open(path.join(userDir, 'esp-fleet-firmware'));
  if (!service.catalogue.list({ product: DEMO_PRODUCT }).length) {
    const k1 = (await service.keyring.current('esp8266-rsa')).id;
    await publishSimImage(service, { product: DEMO_PRODUCT, version: '1.0.0' });
    const k2 = (await service.keyring.rotate('esp8266-rsa')).id;
    await publishSimImage(service, { product: DEMO_PRODUCT, version: '1.1.0', signWith: k1, trusts: [k2] });
    await publishSimImage(service, { product: DEMO_PRODUCT, version: '2.0.0' });
  }
  // The key the devices' first image has compiled in: the oldest one.
  const first = service.catalogue.list({ product: DEMO_PRODUCT }).find((e) => e.name === FIRST_IMAGE)!;
  const keyFile = path.join(userDir, 'sim', 'public.key');
  mkdirSync(path.dirname(keyFile), { recursive: true });
  await fs.writeFile(keyFile, service.keyring.exportPublic(first.signedWith).pem);
  await service.keyring.idle();
  return keyFile;
}

function waitForPort(port: number, child: ChildProcess, ms = 120_000): Promise<void> {
  const until = Date.now() + ms;
  return new Promise((resolve, reject) => {
    const attempt = (): void => {
      if (child.exitCode !== null) return reject(new Error('Node-RED stopped before the update server was up'));
      const socket = net.connect(port, '127.0.0.1');
      socket.once('connect', () => {
        socket.destroy();
        resolve();
      });
      socket.once('error', () => {
        socket.destroy();
        if (Date.now() > until) reject(new Error(`nothing listens on port ${port} after ${ms / 1000} s: see Node-RED's log above`));
        else setTimeout(attempt, 250);
      });
    };
    attempt();
  });
}

/** The demo's login: user `admin`, a password made on first run and kept (mode 0600) in the demo folder. */
export const DEMO_USER = 'admin';
export const PASSWORD_FILE = 'demo-password';
async function demoLogin(): Promise<Login> {
  const file = path.join(userDir, PASSWORD_FILE);
  let password = (await readFileIfExists(file))?.trim();
  if (!password) {
    password = newPassword();
    await writeFileAtomic(file, `${password}\n`, PRIVATE_FILE_MODE);
  }
  return { username: DEMO_USER, password };
}

async function main(): Promise<void> {
  mkdirSync(userDir, { recursive: true, mode: 0o700 });
  linkModules();
  await writeFlow();
  const trustFile = await prepare();
  const login = await demoLogin();
  const settings = path.join(userDir, 'settings.js');
  // The editor, the admin API, http-in routes and the dashboard all need the login: nobody who
  // merely reaches the port can deploy flows, issue, revoke, sign or command.
  await writeFileAtomic(
    settings,
    `module.exports = { uiPort: ${editorPort}, uiHost: '127.0.0.1', flowFile: 'flows.json', credentialSecret: false,\n` +
      `  editorTheme: { tours: false }, telemetry: { enabled: false, updateNotification: false },\n` +
      `  logging: { console: { level: 'info' } },${authSettingsSource(login)}\n};\n`,
    PRIVATE_FILE_MODE,
  );
  const nodeRed = nodeRedChoice();
  console.log(`demo: Node-RED ${nodeRed.version} (${nodeRed.reason})`);
  const red = spawn(process.execPath, [nodeRed.redJs, '--userDir', userDir, '--settings', settings], { stdio: 'inherit' });
  const children: ChildProcess[] = [red];
  let stopping = false;
  const stop = (): void => {
    if (stopping) return;
    stopping = true;
    for (const c of children) if (c.exitCode === null) c.kill('SIGINT');
  };
  process.on('SIGINT', stop);
  process.on('SIGTERM', stop);
  red.on('exit', () => stop());

  try {
    await waitForPort(firmwarePort, red);
    if (newBoards > 0) await waitForPort(enrollPort, red);
  } catch (err) {
    if (stopping) return; // Ctrl-C while Node-RED was starting
    throw err;
  }
  const sim = spawn(
    process.execPath,
    [
      path.join(root, 'dist', 'lib', 'sim', 'cli.js'),
      ...['--server', `https://localhost:${firmwarePort}/fw`, '--certs', path.join(userDir, 'esp-fleet-ca', 'devices')],
      ...['--trust', trustFile, '--image', FIRST_IMAGE, '--count', String(deviceCount), '--duration', '0', '--report', '60'],
      // A little realism: one device in five has a weak signal.
      ...['--weak', '0.2'],
    ],
    { stdio: 'inherit' },
  );
  children.push(sim);
  sim.on('exit', () => stop());
  if (newBoards > 0) {
    // Boards flashed with the one image for all: ca.crt, the bootstrap credential, no certificate.
    const enrolling = spawn(
      process.execPath,
      [
        path.join(root, 'dist', 'lib', 'sim', 'cli.js'),
        ...['--server', `https://localhost:${firmwarePort}/fw`, '--certs', path.join(userDir, 'esp-fleet-ca', 'devices')],
        ...['--enroll', `https://localhost:${enrollPort}`, '--bootstrap-file', path.join(userDir, 'sim', 'bootstrap.txt')],
        ...['--prefix', 'a4cf13', '--count', String(newBoards), '--trust', trustFile, '--image', FIRST_IMAGE, '--duration', '0', '--report', '60'],
      ],
      { stdio: 'inherit' },
    );
    children.push(enrolling);
    enrolling.on('exit', () => stop());
  }
  console.log(
    `\nESP fleet demo is up:\n  editor     http://127.0.0.1:${editorPort}/\n  dashboard  http://127.0.0.1:${editorPort}/dashboard\n` +
      `  login      user ${login.username}, password ${login.password} (kept in ${path.join(userDir, PASSWORD_FILE)})\n` +
      `  broker     mqtts://localhost:${mqttPort} (embedded, mutual TLS)   update server https://localhost:${firmwarePort}/fw\n` +
      `  ${deviceCount} simulated devices run ${FIRST_IMAGE}; press "update" on one in the dashboard.\n` +
      (newBoards > 0 ? `  ${newBoards} new boards ask to join (enrollment https://localhost:${enrollPort}): approve them under "New devices".\n` : '') +
      `  Ctrl-C stops everything.\n`,
  );
  await Promise.all(children.map((c) => (c.exitCode !== null ? Promise.resolve() : new Promise((r) => c.once('exit', r)))));
}

main().catch((err: Error) => {
  console.error(`demo: ${err.message}`);
  process.exit(1);
});
