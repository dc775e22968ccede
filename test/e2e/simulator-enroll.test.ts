import { strict as assert } from 'node:assert';
import { spawn, ChildProcess } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import { promises as fs, readFileSync } from 'node:fs';
import * as path from 'node:path';
import { CaStore } from '../../lib/pki/ca-store';
import { identity } from '../../lib/pki/identity';
import { keepMosquittoFolders, writeMosquittoConfig } from '../../lib/mosquitto/folders';
import { EnrollmentDesk, AuditEntry } from '../../lib/enroll/enrollment-desk';
import { parseEnrollPolicy } from '../../lib/enroll/enroll-policy';
import { startEstListener, RunningEstListener } from '../../lib/enroll/http/est-listener';
import { FirmwareService } from '../../lib/firmware/firmware-service';
import { startUpdateServer, RunningUpdateServer } from '../../lib/firmware/update-server';
import { publishSimImage } from '../../lib/sim/publish';
import { deviceIds, FleetSimulator, identityByEnrollment } from '../../lib/sim/fleet-simulator';
import type { SimulatedDevice } from '../../lib/sim/simulated-device';
import { freePort, startMosquitto, RunningMosquitto } from '../support/mosquitto';
import { localServerOptions } from '../support/update-server';
import { tempDir } from '../support/temp-dir';
import { Backend } from '../support/fleet-backend';

const IMAGE = 'ESP8266_SIM_D1MINI-00.00.01';

async function until(what: string, ok: () => boolean, ms = 15_000): Promise<void> {
  const end = Date.now() + ms;
  while (!ok()) {
    if (Date.now() > end) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

/**
 * Zero-touch enrollment end to end (docs/enrollment.md): simulated boards flashed with ca.crt and
 * the bootstrap credential only enroll over EST with manual approval, then connect to a real
 * Mosquitto (whose ACL lists each device, so it reloads after an approval) and report status.
 */
describe('end to end: simulated devices enroll (EST, manual approval) and come online on real Mosquitto', function () {
  this.timeout(60_000);
  const tmp = tempDir('e2e-enroll');
  const board = path.join(tmp.path, 'board');
  let store: CaStore;
  let desk: EnrollmentDesk;
  let est: RunningEstListener;
  let server: RunningUpdateServer;
  let broker: RunningMosquitto;
  let backend: Backend;
  let trust: string;
  let credential: string;
  const audit: AuditEntry[] = [];
  const fleets: FleetSimulator[] = [];
  const children: ChildProcess[] = [];

  before(async () => {
    store = await CaStore.open({ dir: path.join(tmp.path, 'ca'), keepers: [keepMosquittoFolders] });
    await identity(store, { kind: 'server', commonName: 'localhost' });
    const mqttPort = await freePort();
    const setup = await writeMosquittoConfig(store, { dir: path.join(tmp.path, 'mosquitto'), serverName: 'localhost', backendName: 'node-red', port: mqttPort });
    broker = await startMosquitto(setup.dir);
    backend = await Backend.connect(store, mqttPort, { maxInFlight: 8 });
    const service = await FirmwareService.open(path.join(tmp.path, 'fw'));
    trust = (await service.keyring.current('esp8266-rsa')).publicKeyPem;
    await publishSimImage(service, { product: 'ESP8266_SIM_D1MINI', version: '00.00.01', size: 32 * 1024 });
    const defaults = { mqttserver: 'localhost', mqttport: mqttPort, mqtttls: true, statusinterval: 1000, retrytimeout: 500 };
    server = await startUpdateServer({ ...(await localServerOptions(store)), deviceConfig: (id) => service.deviceConfig(defaults, id), images: service.imageSource() });
    store.onCrlChange((crl) => server.setCrl(crl));
    // Retry-After 60 s (600 ms with the fast timing); the rate limit raised: every device here comes from 127.0.0.1.
    desk = await EnrollmentDesk.open({ store, policy: parseEnrollPolicy('manual', ''), retryAfterS: 60, rate: { burst: 1000, refillMs: 10 } });
    desk.subscribe((e) => audit.push(e));
    const b = desk.showBootstrap()!;
    credential = `${b.user}:${b.password}`;
    const tlsId = await identity(store, { kind: 'server', commonName: 'localhost' });
    est = await startEstListener({ desk, port: 0, host: '127.0.0.1', tls: { cert: tlsId.cert, key: tlsId.key, ca: store.caCertificatePem, crl: await store.crlPem() } });
    store.onCrlChange((crl) => est.setCrl(crl));
    // What a new board is flashed with: ca.crt and bootstrap.txt, nothing else.
    await fs.mkdir(board);
    await fs.writeFile(path.join(board, 'ca.crt'), store.caCertificatePem);
    await fs.writeFile(path.join(board, 'bootstrap.txt'), `${credential}\n`);
  });

  after(async () => {
    for (const c of children) c.kill('SIGTERM');
    await Promise.all(children.map((c) => (c.exitCode === null && c.signalCode === null ? new Promise((r) => c.once('exit', r)) : undefined)));
    await Promise.all(fleets.map((f) => f.stop()));
    await backend?.close();
    await Promise.all([est?.close(), server?.close(), broker?.stop()]);
    await desk?.idle();
    await store?.idle();
    tmp.remove();
  });

  /** The broker learns a new device from its ACL after an approval (Mosquitto 2 re-reads it on SIGHUP). */
  const approve = async (id: string): Promise<void> => {
    await desk.approve(id);
    await store.idle();
    await broker.reload();
  };

  it('pending → approve: the waiting device comes online and reports; reject: the other stays out, backing off; cert re-enrolls', async () => {
    const [approved, rejected] = deviceIds('e0e0e0', 2);
    const fleet = new FleetSimulator({
      ids: [approved, rejected],
      identity: identityByEnrollment(readFileSync(path.join(board, 'ca.crt'), 'utf8'), { server: { host: 'localhost', port: est.port }, credential: readFileSync(path.join(board, 'bootstrap.txt'), 'utf8').trim() }),
      bootstrap: { host: 'localhost', port: server.port, path: '/fw' },
      image: IMAGE,
      trusts: [trust],
      timing: 'fast',
      bootsPerSecond: 200,
    });
    fleets.push(fleet);
    await fleet.start();
    const [a, r] = fleet.devices as [SimulatedDevice, SimulatedDevice];
    await until('both devices pending', () => a.state === 'pending' && r.state === 'pending' && desk.pending().length >= 2);
    assert.deepEqual(desk.pending().map((p) => p.id).sort(), [approved, rejected]);
    assert.equal(desk.pending()[0].keyType, 'ec');
    // Still waiting a while later: it polls (repeated requests) and never connects.
    await until('a repeated poll', () => audit.some((e) => e.id === approved && e.event === 'request' && e.repeat === true));
    // Each poll is a request in flight (enrolling) that ends in 202 (pending again); never online.
    await until('pending again after the poll', () => a.state === 'pending');
    assert.equal(backend.registry.get(approved), undefined);

    await approve(approved);
    await desk.reject(rejected);
    await backend.waitOnline([approved], 15_000);
    assert.equal(a.state, 'online');
    assert.equal(backend.registry.get(approved)!.lastStatus!.espname, `measure-${approved}`);
    const cert = new X509Certificate(a.certificatePem);
    assert.equal(cert.subject, `CN=${approved}`);
    assert.equal(cert.publicKey.asymmetricKeyDetails?.namedCurve, 'prime256v1');
    assert.equal(store.currentIdentity('device', approved)?.serial, cert.serialNumber.toLowerCase());

    // The rejected one keeps asking, is refused each time (backoff doubling), never connects.
    const refusedAt = audit.filter((e) => e.id === rejected && e.event === 'refused').length;
    await until('two more refusals', () => audit.filter((e) => e.id === rejected && e.event === 'refused').length >= refusedAt + 2, 10_000);
    assert.equal(r.state, 'enrolling');
    assert.equal(r.enrollment?.state === 'backoff' || r.enrollment?.state === 'enroll', true);
    assert.ok(r.enrollment!.failures >= 2);
    assert.equal(r.connectAttempts, 0, 'it never tried MQTT');
    assert.equal(backend.registry.get(rejected), undefined);
    assert.equal(store.currentIdentity('device', rejected), undefined);

    // cert: an enrolled device re-enrolls now (simplereenroll with its certificate) and reconnects with the new one.
    const before = a.certificatePem;
    const [sent] = await backend.command([approved], 'cert');
    assert.equal(sent.outcome, 'sent');
    await until('the renewed certificate, online again', () => a.certificatePem !== before && a.online);
    const renewed = new X509Certificate(a.certificatePem);
    assert.equal(store.currentIdentity('device', approved)?.serial, renewed.serialNumber.toLowerCase());
    assert.ok(audit.some((e) => e.id === approved && e.event === 'issued' && e.via === 'simplereenroll'));
    assert.equal(a.errormessage, '');
    await fleet.stop();
  });

  it('esp-fleet-sim --enroll with --bootstrap-file: pending until approved, then online', async () => {
    const [id] = deviceIds('e1e1e1', 1);
    const cli = path.join(__dirname, '../../lib/sim/cli.js');
    const trustFile = path.join(tmp.path, 'public.key');
    await fs.writeFile(trustFile, trust);
    const child = spawn(process.execPath, [cli, '--server', `https://localhost:${server.port}/fw`, '--enroll', `https://localhost:${est.port}`, '--bootstrap-file', path.join(board, 'bootstrap.txt'), '--certs', board, '--trust', trustFile, '--image', IMAGE, '--prefix', 'e1e1e1', '--count', '1', '--timing', 'fast', '--report', '1', '--duration', '50'], { stdio: ['ignore', 'pipe', 'pipe'] });
    children.push(child);
    let out = '';
    child.stdout!.on('data', (c: Buffer) => (out += c.toString()));
    child.stderr!.on('data', (c: Buffer) => (out += c.toString()));
    await until('the CLI device pending', () => desk.pending().some((p) => p.id === id) && /pending approval 1/.test(out), 15_000);
    assert.equal(backend.registry.get(id), undefined);
    await approve(id);
    await backend.waitOnline([id], 15_000);
    await until('the CLI to report it online', () => /1\/1 online/.test(out), 5_000);
  });

  it('esp-fleet-sim: --enroll needs ca.crt and a bootstrap credential, and is not --enroll-ca', async () => {
    const cli = path.join(__dirname, '../../lib/sim/cli.js');
    const run = (args: string[]): Promise<{ code: number | null; stderr: string }> =>
      new Promise((resolve) => {
        const c = spawn(process.execPath, [cli, '--server', 'https://localhost:1/fw', '--trust', cli, '--image', 'X-1', ...args], { stdio: ['ignore', 'ignore', 'pipe'] });
        let stderr = '';
        c.stderr!.on('data', (b: Buffer) => (stderr += b.toString()));
        c.on('exit', (code) => resolve({ code, stderr }));
      });
    assert.match((await run(['--certs', board, '--enroll', 'https://localhost:1'])).stderr, /--enroll needs one of --bootstrap USER:PASS or --bootstrap-file FILE/);
    assert.match((await run(['--certs', tmp.path, '--enroll', 'https://localhost:1', '--bootstrap', 'fleet:x'])).stderr, /ca\.crt is missing/);
    assert.match((await run(['--certs', board, '--enroll', 'http://localhost:1', '--bootstrap', 'fleet:x'])).stderr, /--enroll must be an https:\/\/ URL/);
    assert.match((await run(['--certs', board, '--enroll', 'https://localhost:1/.well-known/est', '--bootstrap', 'fleet:x'])).stderr, /listener base only/);
    assert.match((await run(['--certs', board, '--enroll', 'https://localhost:1', '--bootstrap', 'fleet'])).stderr, /must be user:password/);
    assert.match((await run(['--certs', board, '--bootstrap', 'fleet:x'])).stderr, /go with --enroll URL/);
    const both = await run(['--enroll-ca', tmp.path, '--enroll', 'https://localhost:1', '--bootstrap', 'fleet:x']);
    assert.equal(both.code, 2);
    assert.match(both.stderr, /two different ways/);
  });
});
