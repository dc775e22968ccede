import { strict as assert } from 'node:assert';
import { execFile, execFileSync } from 'node:child_process';
import { promisify } from 'node:util';
import { createPrivateKey, generateKeyPairSync, X509Certificate } from 'node:crypto';
import { promises as fs, existsSync, readFileSync, writeFileSync } from 'node:fs';
import * as path from 'node:path';
import type { MqttClient } from 'mqtt';
import { CaStore } from '../../lib/pki/ca-store';
import { buildCsr } from '../../lib/pki/csr-builder';
import { certificatesOf } from '../../lib/pki/pkcs7';
import { identity } from '../../lib/pki/identity';
import { keepMosquittoFolders, writeMosquittoConfig } from '../../lib/mosquitto/folders';
import { EnrollmentDesk } from '../../lib/enroll/enrollment-desk';
import { parseEnrollPolicy } from '../../lib/enroll/enroll-policy';
import { startEstListener, RunningEstListener } from '../../lib/enroll/http/est-listener';
import { startUpdateServer, RunningUpdateServer } from '../../lib/firmware/update-server';
import { FirmwareService } from '../../lib/firmware/firmware-service';
import { tempDir } from '../support/temp-dir';
import { freePort, startMosquitto, RunningMosquitto } from '../support/mosquitto';
import { connectTls, identityFromFiles, Inbox } from '../support/mqtt-client';
import { estRequest } from '../support/est-request';
import { localServerOptions } from '../support/update-server';
import { opensslOk } from '../support/openssl';

const run = promisify(execFile);

/**
 * A board's whole enrollment with nothing but curl and openssl, as docs/enrollment.md shows it
 * (child processes run asynchronously: the listener answers from this same process).
 */
async function curlEnroll(dir: string, port: number, id: string, credential: string): Promise<{ status: number; certificate?: string }> {
  const key = path.join(dir, `${id}.key`);
  if (!existsSync(key)) await run('openssl', ['ecparam', '-name', 'prime256v1', '-genkey', '-noout', '-out', key]);
  const csr = (await run('openssl', ['req', '-new', '-key', key, '-subj', `/CN=${id}`, '-outform', 'DER'], { encoding: 'buffer' })).stdout;
  const csrFile = path.join(dir, `${id}.csr.b64`);
  writeFileSync(csrFile, csr.toString('base64'));
  const answer = path.join(dir, `${id}.answer`);
  const { stdout: status } = await run('curl', ['-s', '-o', answer, '-w', '%{http_code}', '--max-time', '15', '--cacert', path.join(dir, 'ca.crt'), '--resolve', `localhost:${port}:127.0.0.1`, '-u', credential, '-H', 'Content-Type: application/pkcs10', '--data-binary', `@${csrFile}`, `https://localhost:${port}/.well-known/est/simpleenroll`]);
  if (status !== '200') return { status: Number(status) };
  const der = Buffer.from(readFileSync(answer, 'utf8'), 'base64');
  const certificate = execFileSync('openssl', ['pkcs7', '-inform', 'DER', '-print_certs'], { input: der, encoding: 'utf8' });
  return { status: 200, certificate };
}

describe('EST enrollment on its own listener (docs/enrollment.md): curl + openssl, real Mosquitto', function () {
  this.timeout(90_000);
  const tmp = tempDir('est');
  const board = path.join(tmp.path, 'board');
  let store: CaStore;
  let desk: EnrollmentDesk;
  let est: RunningEstListener;
  let main: RunningUpdateServer;
  let broker: RunningMosquitto;
  let mqttPort: number;
  let backend: MqttClient;
  let inbox: Inbox;
  let credential: string;
  let n = 0;
  const freshId = (): string => `c0ffee${(++n).toString(16).padStart(6, '0')}`;
  const ca = (): string => store.caCertificatePem;

  before(async () => {
    store = await CaStore.open({ dir: path.join(tmp.path, 'ca'), keepers: [keepMosquittoFolders] });
    await fs.mkdir(board);
    await fs.writeFile(path.join(board, 'ca.crt'), store.caCertificatePem);
    mqttPort = await freePort();
    const setup = await writeMosquittoConfig(store, { dir: path.join(tmp.path, 'mosquitto'), serverName: 'localhost', backendName: 'node-red', port: mqttPort });
    broker = await startMosquitto(setup.dir);
    backend = await connectTls(mqttPort, identityFromFiles(path.join(setup.dir, 'ca.crt'), path.join(store.dir, 'backends', 'node-red.crt'), path.join(store.dir, 'backends', 'node-red.key')), 'node-red');
    inbox = new Inbox(backend);
    await backend.subscribeAsync('/status/+');
    desk = await EnrollmentDesk.open({ store, policy: parseEnrollPolicy('allowlist', 'c0ffee00000*') });
    credential = `${desk.showBootstrap()!.user}:${desk.showBootstrap()!.password}`;
    const server = await identity(store, { kind: 'server', commonName: 'localhost' });
    est = await startEstListener({ desk, port: 0, host: '127.0.0.1', tls: { cert: server.cert, key: server.key, ca: ca(), crl: await store.crlPem() } });
    store.onCrlChange((crl) => est.setCrl(crl));
    const service = await FirmwareService.open(path.join(tmp.path, 'fw'));
    main = await startUpdateServer({ ...(await localServerOptions(store)), deviceConfig: () => ({}), images: service.imageSource() });
  });
  beforeEach(() => inbox.mark());
  after(async () => {
    await backend?.endAsync(true);
    await Promise.all([est?.close(), main?.close(), broker?.stop()]);
    await desk?.idle();
    await store?.idle();
    tmp.remove();
  });

  it('curl + openssl enroll a P-256 board (allowlisted: at once), and it connects to Mosquitto with the certificate it got', async () => {
    const id = freshId();
    const got = await curlEnroll(board, est.port, id, credential);
    assert.equal(got.status, 200);
    const cert = new X509Certificate(got.certificate!);
    assert.equal(cert.subject, `CN=${id}`);
    assert.equal(cert.publicKey.asymmetricKeyType, 'ec');
    assert.ok(cert.checkPrivateKey(createPrivateKey(readFileSync(path.join(board, `${id}.key`)))));
    await fs.writeFile(path.join(board, `${id}.crt`), got.certificate!);
    assert.match(opensslOk(['verify', '-CAfile', path.join(board, 'ca.crt'), '-purpose', 'sslclient', path.join(board, `${id}.crt`)]), /OK/);
    // The folder keeper added the device's ACL block; Mosquitto 2.0 applies it on a SIGHUP (MOSQUITTO_CHANGES).
    await store.idle();
    await broker.reload();
    const device = await connectTls(mqttPort, identityFromFiles(path.join(board, 'ca.crt'), path.join(board, `${id}.crt`), path.join(board, `${id}.key`)), id);
    try {
      await device.publishAsync(`/status/${id}`, JSON.stringify({ uptimemillis: 1 }));
      await inbox.until((t) => t === `/status/${id}`);
    } finally {
      await device.endAsync(true);
    }
  });

  it('manual approval: 202 with Retry-After until approved, then the same request gets the certificate; reject keeps another out', async () => {
    const id = 'c0ffee100001'; // not on the allowlist
    const first = await curlEnroll(board, est.port, id, credential);
    assert.equal(first.status, 202);
    const raw = await estRequest(est.port, 'simpleenroll', { ca: ca(), auth: credential, body: readFileSync(path.join(board, `${id}.csr.b64`)) });
    assert.equal(raw.status, 202);
    assert.equal(raw.headers['retry-after'], '60');
    assert.ok(desk.pending().some((r) => r.id === id));
    await desk.approve(id);
    const after = await curlEnroll(board, est.port, id, credential);
    assert.equal(after.status, 200);
    assert.equal(new X509Certificate(after.certificate!).subject, `CN=${id}`);

    const other = 'c0ffee100002';
    assert.equal((await curlEnroll(board, est.port, other, credential)).status, 202);
    await desk.reject(other);
    assert.equal((await curlEnroll(board, est.port, other, credential)).status, 403);
    assert.equal(store.currentIdentity('device', other), undefined);
  });

  it('cacerts is PKCS#7 openssl reads; Accept: application/pem-certificate-chain gets PEM', async () => {
    const cacerts = await estRequest(est.port, 'cacerts', { ca: ca() });
    assert.equal(cacerts.status, 200);
    assert.match(String(cacerts.headers['content-type']), /application\/pkcs7-mime/);
    const printed = execFileSync('openssl', ['pkcs7', '-inform', 'DER', '-print_certs'], { input: Buffer.from(cacerts.body, 'base64'), encoding: 'utf8' });
    assert.equal(new X509Certificate(printed).fingerprint256, new X509Certificate(ca()).fingerprint256);
    const id = freshId();
    const key = generateKeyPairSync('ec', { namedCurve: 'prime256v1' }).privateKey;
    const pem = await estRequest(est.port, 'simpleenroll', { ca: ca(), auth: credential, accept: 'application/pem-certificate-chain', body: buildCsr({ commonName: id, privateKey: key }).toString('base64') });
    assert.equal(pem.status, 200);
    assert.match(String(pem.headers['content-type']), /application\/pem-certificate-chain/);
    assert.ok(new X509Certificate(pem.body).checkPrivateKey(key));
    const p7 = await estRequest(est.port, 'simpleenroll', { ca: ca(), auth: credential, body: buildCsr({ commonName: id, privateKey: key }).toString('base64') });
    assert.equal(p7.status, 200, 'the same request again gets its certificate again');
    assert.match(String(p7.headers['content-type']), /smime-type=certs-only/);
    assert.equal(certificatesOf(Buffer.from(p7.body, 'base64')).length, 1);
  });

  it('refused with a reason and nothing stored: credential, CN, held id, signature, keys, size, routes', async () => {
    const before = store.issuedCount;
    const pendingBefore = desk.pending().length;
    const ec = () => generateKeyPairSync('ec', { namedCurve: 'prime256v1' }).privateKey;
    const csr = (id: string, key = ec()): string => buildCsr({ commonName: id, privateKey: key }).toString('base64');
    const id = freshId();
    const cases: [string, Promise<{ status: number; headers: Record<string, unknown>; body: string }>, number, RegExp][] = [
      ['no credential', estRequest(est.port, 'simpleenroll', { ca: ca(), body: csr(id) }), 401, /bootstrap credential/],
      ['wrong credential', estRequest(est.port, 'simpleenroll', { ca: ca(), auth: 'fleet:wrong-password', body: csr(id) }), 401, /wrong bootstrap/],
      ['CN not a device id', estRequest(est.port, 'simpleenroll', { ca: ca(), auth: credential, body: csr('node-red') }), 400, /not a device id/],
      ['not base64', estRequest(est.port, 'simpleenroll', { ca: ca(), auth: credential, body: '%%%not base64%%%' }), 400, /base64 DER/],
      ['RSA-1024', estRequest(est.port, 'simpleenroll', { ca: ca(), auth: credential, body: csr(id, generateKeyPairSync('rsa', { modulusLength: 1024 }).privateKey) }), 400, /1024 bits/],
      ['oversized body', estRequest(est.port, 'simpleenroll', { ca: ca(), auth: credential, body: 'A'.repeat(64 * 1024) }), 413, /larger than/],
      ['an unknown route', estRequest(est.port, 'x', { ca: ca(), path: '/fw/config.json' }), 404, /only enrollment/],
      ['reenroll without a certificate', estRequest(est.port, 'simplereenroll', { ca: ca(), body: csr(id) }), 403, /current certificate/],
    ];
    const tampered = Buffer.from(csr(id), 'base64');
    tampered[tampered.length - 3] ^= 0x40;
    cases.push(['a signature that does not verify', estRequest(est.port, 'simpleenroll', { ca: ca(), auth: credential, body: tampered.toString('base64') }), 400, /signature/]);
    for (const [why, answer, status, text] of cases) {
      const a = await answer;
      assert.equal(a.status, status, `${why}: ${a.body}`);
      assert.match(a.body, text, why);
      assert.ok(!/\n\s+at /.test(a.body), `${why}: no stack trace`);
      if (status === 401) assert.match(String(a.headers['www-authenticate']), /^Basic realm=/);
    }
    assert.equal(store.issuedCount, before, 'nothing issued');
    assert.equal(desk.pending().length, pendingBefore, 'nothing pending');

    // An id that holds a valid certificate (issued the classic way) cannot be taken over with the bootstrap credential.
    const held = freshId();
    await store.issueDevice(held);
    const count = store.issuedCount;
    const takeover = await estRequest(est.port, 'simpleenroll', { ca: ca(), auth: credential, body: csr(held) });
    assert.equal(takeover.status, 403);
    assert.match(takeover.body, /already holds a valid certificate/);
    assert.equal(store.issuedCount, count);
  });

  it('the main update server still requires a client certificate; it serves no EST route', async () => {
    await assert.rejects(estRequest(main.port, 'cacerts', { ca: ca() }), /certificate|socket hang up|ECONNRESET|alert/i);
    const files = store.identityFiles('device', (await store.issueDevice(freshId())).record.commonName);
    const withCert = await estRequest(main.port, 'cacerts', { ca: ca(), cert: readFileSync(files.certificate, 'utf8'), key: readFileSync(files.privateKey, 'utf8') });
    assert.equal(withCert.status, 404);
  });

  it('simplereenroll: a valid certificate renews; once revoked (CRL) it is refused, on a fresh connection', async () => {
    const id = freshId();
    const key = generateKeyPairSync('ec', { namedCurve: 'prime256v1' }).privateKey;
    const csr = buildCsr({ commonName: id, privateKey: key }).toString('base64');
    const first = await estRequest(est.port, 'simpleenroll', { ca: ca(), auth: credential, accept: 'application/pem-certificate-chain', body: csr });
    assert.equal(first.status, 200);
    const keyPem = key.export({ type: 'pkcs8', format: 'pem' }).toString();
    const renewed = await estRequest(est.port, 'simplereenroll', { ca: ca(), cert: first.body, key: keyPem, accept: 'application/pem-certificate-chain', body: csr });
    assert.equal(renewed.status, 200, renewed.body);
    const next = new X509Certificate(renewed.body);
    assert.notEqual(next.serialNumber, new X509Certificate(first.body).serialNumber);
    await store.revoke(next.serialNumber, 'keyCompromise');
    await store.idle();
    const count = store.issuedCount;
    const refused = await estRequest(est.port, 'simplereenroll', { ca: ca(), cert: renewed.body, key: keyPem, body: csr });
    assert.equal(refused.status, 403);
    assert.match(refused.body, /does not verify|revoked/);
    assert.equal(store.issuedCount, count);
  });
});
