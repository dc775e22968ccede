import { strict as assert } from 'node:assert';
import { promises as fs, existsSync, readFileSync, readdirSync, statSync, writeFileSync } from 'node:fs';
import * as path from 'node:path';
import { createPublicKey, randomBytes } from 'node:crypto';
import { SigningKeyring } from '../../../lib/firmware/keyring';
import { keyIdOf, verifyEsp32V1, verifyEsp8266, verifySecureBootV2 } from '../../../lib/firmware/signing';
import type { SignatureScheme } from '../../../lib/firmware/types';
import { tempDir } from '../../support/temp-dir';
import { opensslOk } from '../../support/openssl';

function fakeImage(size: number): Buffer {
  const image = randomBytes(size);
  image[0] = 0xe9;
  image.fill(0xaa, size - 8);
  return image;
}

/** Every file of the folder with its size and content hash, to show a failed call changed nothing. */
function snapshot(dir: string): string {
  return JSON.stringify(readdirSync(dir).sort().map((name) => `${name}:${readFileSync(path.join(dir, name)).toString('base64')}`));
}

describe('SigningKeyring', function () {
  this.timeout(120_000);
  const tmp = tempDir('keyring');
  let dir: string;
  let ring: SigningKeyring;
  after(() => tmp.remove());

  before(async () => {
    dir = path.join(tmp.path, 'keys');
    ring = await SigningKeyring.open(dir);
  });

  it('starts empty and makes no key until one is asked for', () => {
    assert.deepEqual(ring.list(), []);
    assert.equal(ring.peekCurrent('esp8266-rsa'), undefined);
    assert.deepEqual(readdirSync(dir), []);
    assert.equal(statSync(dir).mode & 0o777, 0o700);
  });

  it('makes the ESP8266 key on first use: RSA-2048, private key 0600, id from the SPKI as openssl sees it', async () => {
    const info = await ring.current('esp8266-rsa');
    assert.equal(info.scheme, 'esp8266-rsa');
    assert.match(info.id, /^[0-9a-f]{16}$/);
    assert.ok(!Number.isNaN(Date.parse(info.createdAt)));
    const keyFile = path.join(dir, `${info.id}.key`);
    assert.equal(statSync(keyFile).mode & 0o777, 0o600);
    assert.match(opensslOk(['pkey', '-in', keyFile, '-noout', '-text']), /Private-Key: \(2048 bit/);
    const pubFile = path.join(tmp.path, 'esp8266.pub.pem');
    writeFileSync(pubFile, info.publicKeyPem);
    const derFile = path.join(tmp.path, 'esp8266.pub.der');
    opensslOk(['pkey', '-pubin', '-in', pubFile, '-outform', 'DER', '-out', derFile]);
    assert.equal(info.id, opensslOk(['dgst', '-sha256', '-r', derFile]).slice(0, 16));
    // the private key file belongs to the public key in the index
    assert.equal(opensslOk(['pkey', '-in', keyFile, '-pubout']), info.publicKeyPem);
    assert.deepEqual(await ring.current('esp8266-rsa'), info, 'second use returns the same key');
  });

  it('makes one key, not two, when the first uses come at once', async () => {
    const [a, b, c] = await Promise.all([ring.current('esp32-ecdsa-v1'), ring.current('esp32-ecdsa-v1'), ring.current('esp32-ecdsa-v1')]);
    assert.equal(a.id, b.id);
    assert.equal(b.id, c.id);
    assert.equal(ring.list().filter((k) => k.scheme === 'esp32-ecdsa-v1').length, 1);
    assert.match(opensslOk(['pkey', '-in', path.join(dir, `${a.id}.key`), '-noout', '-text']), /ASN1 OID: prime256v1/);
  });

  it('makes an RSA-3072 key for secure boot v2', async () => {
    const info = await ring.current('esp32-sbv2-rsa');
    assert.match(opensslOk(['pkey', '-in', path.join(dir, `${info.id}.key`), '-noout', '-text']), /Private-Key: \(3072 bit/);
  });

  it('never hands out private keys: list, get, the index file and exportPublic hold public parts only', () => {
    const everything = JSON.stringify([ring.list(), ring.list().map((k) => ring.get(k.id)), ring.list().map((k) => ring.exportPublic(k.id))]);
    assert.doesNotMatch(everything, /PRIVATE/);
    assert.doesNotMatch(readFileSync(path.join(dir, 'keyring.json'), 'utf8'), /PRIVATE/);
    for (const k of ring.list()) assert.deepEqual(Object.keys(k).sort(), ['createdAt', 'id', 'publicKeyPem', 'scheme']);
  });

  it('hands out copies: changing what list() returned changes nothing', () => {
    const listed = ring.list();
    listed[0].publicKeyPem = 'tampered';
    assert.notEqual(ring.list()[0].publicKeyPem, 'tampered');
  });

  it('is the same keyring when opened again: same keys, same current ones, same ids', async () => {
    const again = await SigningKeyring.open(dir);
    assert.deepEqual(again.list(), ring.list());
    for (const scheme of ['esp8266-rsa', 'esp32-ecdsa-v1', 'esp32-sbv2-rsa'] as SignatureScheme[]) {
      assert.deepEqual(await again.current(scheme), ring.peekCurrent(scheme));
      const info = again.peekCurrent(scheme)!;
      assert.equal(keyIdOf(info.publicKeyPem), info.id);
    }
  });

  it('signs by id in the layout of the key\'s scheme, verifiable with the public key', async () => {
    const image = fakeImage(20_000);
    const e8266 = ring.peekCurrent('esp8266-rsa')!;
    const v1 = ring.peekCurrent('esp32-ecdsa-v1')!;
    const sb = ring.peekCurrent('esp32-sbv2-rsa')!;
    assert.deepEqual(verifyEsp8266(await ring.sign(e8266.id, image), createPublicKey(e8266.publicKeyPem)), { ok: true, payloadLength: 20_000 });
    assert.deepEqual(verifyEsp32V1(await ring.sign(v1.id, image), createPublicKey(v1.publicKeyPem)), { ok: true, payloadLength: 20_000 });
    assert.deepEqual(verifySecureBootV2(await ring.sign(sb.id, image), createPublicKey(sb.publicKeyPem)), { ok: true, payloadLength: 20_480 });
    await assert.rejects(ring.sign('0123456789abcdef', image), /no signing key "0123456789abcdef" in the keyring/);
  });

  it('exports the PEM for the ESP8266 sketch, X||Y for the ESP32 v1 key and the eFuse digest for secure boot v2', () => {
    const e8266 = ring.exportPublic(ring.peekCurrent('esp8266-rsa')!.id);
    assert.match(e8266.pem, /^-----BEGIN PUBLIC KEY-----\n/);
    assert.equal(e8266.raw64, undefined);
    const pubFile = path.join(tmp.path, 'public.key');
    writeFileSync(pubFile, e8266.pem);
    assert.match(opensslOk(['pkey', '-pubin', '-in', pubFile, '-noout', '-text']), /Public-Key: \(2048 bit\)/);

    const v1 = ring.exportPublic(ring.peekCurrent('esp32-ecdsa-v1')!.id);
    const ecFile = path.join(tmp.path, 'ec.pub.pem');
    writeFileSync(ecFile, v1.pem);
    const text = opensslOk(['ec', '-pubin', '-in', ecFile, '-text', '-noout']);
    const point = /pub:\s*\n((?:\s+[0-9a-f:]+\n)+)/.exec(text)?.[1].replace(/[\s:]/g, '') ?? '';
    assert.equal(v1.raw64?.toString('hex'), point.slice(2));
    assert.equal(v1.raw64?.length, 64);

    const sb = ring.exportPublic(ring.peekCurrent('esp32-sbv2-rsa')!.id);
    assert.equal(sb.sbv2KeyDigest?.length, 32);
    assert.throws(() => ring.exportPublic('nope'), /no signing key "nope"/);
  });

  it('rotates: a new current key, the old one kept and still signing (bridge images)', async () => {
    const old = ring.peekCurrent('esp8266-rsa')!;
    const fresh = await ring.rotate('esp8266-rsa');
    assert.notEqual(fresh.id, old.id);
    assert.equal(ring.peekCurrent('esp8266-rsa')?.id, fresh.id);
    assert.deepEqual(await ring.current('esp8266-rsa'), fresh);
    assert.deepEqual(ring.get(old.id), old);
    assert.equal(ring.isCurrent(old.id), false);
    assert.equal(ring.isCurrent(fresh.id), true);
    assert.equal(statSync(path.join(dir, `${fresh.id}.key`)).mode & 0o777, 0o600);

    const image = fakeImage(10_000);
    const bridge = await ring.sign(old.id, image);
    assert.equal(verifyEsp8266(bridge, createPublicKey(old.publicKeyPem)).ok, true);
    assert.equal(verifyEsp8266(bridge, createPublicKey(fresh.publicKeyPem)).ok, false);
    assert.equal(verifyEsp8266(await ring.sign(fresh.id, image), createPublicKey(fresh.publicKeyPem)).ok, true);

    const reopened = await SigningKeyring.open(dir);
    assert.equal(reopened.peekCurrent('esp8266-rsa')?.id, fresh.id);
    assert.deepEqual(reopened.get(old.id), old);
    assert.equal(reopened.list().length, 4);
    // rotating one scheme leaves the others alone
    assert.equal(reopened.peekCurrent('esp32-ecdsa-v1')?.id, ring.peekCurrent('esp32-ecdsa-v1')?.id);
  });

  it('never regenerates a key whose private file is gone: signing says so, current stays', async () => {
    const d = path.join(tmp.path, 'lost');
    const r = await SigningKeyring.open(d);
    const info = await r.current('esp32-ecdsa-v1');
    await fs.rm(path.join(d, `${info.id}.key`));
    const again = await SigningKeyring.open(d);
    assert.deepEqual(await again.current('esp32-ecdsa-v1'), info);
    await assert.rejects(again.sign(info.id, fakeImage(1000)), /private key of signing key [0-9a-f]{16} is missing .*never regenerated/);
    assert.equal(existsSync(path.join(d, `${info.id}.key`)), false);
  });

  it('refuses a private key file that holds another key', async () => {
    const d = path.join(tmp.path, 'swapped');
    const r = await SigningKeyring.open(d);
    const a = await r.current('esp32-ecdsa-v1');
    const b = await r.rotate('esp32-ecdsa-v1');
    await fs.copyFile(path.join(d, `${b.id}.key`), path.join(d, `${a.id}.key`));
    await assert.rejects(r.sign(a.id, fakeImage(1000)), /holds another key/);
  });

  it('refuses to open a damaged index and leaves it as it is', async () => {
    const d = path.join(tmp.path, 'damaged');
    const r = await SigningKeyring.open(d);
    await r.current('esp32-ecdsa-v1');
    const index = path.join(d, 'keyring.json');
    const good = readFileSync(index, 'utf8');

    writeFileSync(index, good.slice(0, good.length / 2));
    let before = snapshot(d);
    await assert.rejects(SigningKeyring.open(d), /keyring index .*keyring\.json is damaged: not valid JSON/);
    assert.equal(snapshot(d), before);

    const parsed = JSON.parse(good) as { keys: { id: string }[] };
    parsed.keys[0].id = '0000000000000000';
    writeFileSync(index, JSON.stringify(parsed));
    before = snapshot(d);
    await assert.rejects(SigningKeyring.open(d), /damaged: .*(does not match its public key|not a esp32-ecdsa-v1 key of the keyring)/);
    assert.equal(snapshot(d), before);
  });

  it('rejects an unknown scheme with the list of known ones', async () => {
    await assert.rejects(ring.current('esp32-rsa' as SignatureScheme), /unknown signature scheme "esp32-rsa": use esp8266-rsa, esp32-ecdsa-v1, esp32-sbv2-rsa/);
    await assert.rejects(ring.rotate('x' as SignatureScheme), /unknown signature scheme/);
    assert.throws(() => ring.peekCurrent('x' as SignatureScheme), /unknown signature scheme/);
  });
});
