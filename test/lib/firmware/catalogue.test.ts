import { strict as assert } from 'node:assert';
import { readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import * as path from 'node:path';
import { createHash } from 'node:crypto';
import { AddImageInput, Assignment, FirmwareCatalogue } from '../../../lib/firmware/catalogue';
import { NextImageResult, nextImage } from '../../../lib/firmware/next-image';
import { CatalogueEntry } from '../../../lib/firmware/types';
import { tempDir } from '../../support/temp-dir';

const PRODUCT = 'ESP8266_WEMOS_D1MINIPRO';
const K1 = '1111111111111111';
const K2 = '2222222222222222';
const K3 = '3333333333333333';
const DEVICE = '84f3eb012345';

/** An app image as devices expect it: first byte 0xE9, then something unique. */
function image(label: string, size = 64): Buffer {
  const b = Buffer.alloc(size, 0xff);
  b[0] = 0xe9;
  b.write(label, 1, 'utf8');
  return b;
}

function input(name: string, over: Partial<AddImageInput> = {}): AddImageInput {
  return { data: image(name), name, platform: 'esp8266', signedWith: K1, trusts: [K1], ...over };
}

/** Every file below `dir` with a hash of its content: what a refused call must leave alone. */
function snapshot(dir: string): string {
  const files: string[] = [];
  const walk = (d: string): void => {
    for (const name of readdirSync(d).sort()) {
      const p = path.join(d, name);
      if (statSync(p).isDirectory()) {
        files.push(`${path.relative(dir, p)}/`);
        walk(p);
      } else files.push(`${path.relative(dir, p)}:${createHash('sha256').update(readFileSync(p)).digest('hex')}`);
    }
  };
  walk(dir);
  return files.join('\n');
}

function sha256(b: Buffer): string {
  return createHash('sha256').update(b).digest('hex');
}

describe('firmware catalogue', () => {
  const tmp = tempDir('catalogue');
  after(() => tmp.remove());
  let n = 0;
  const freshDir = (): string => path.join(tmp.path, `c${++n}`);

  describe('images', () => {
    it('stores an image under a generated file name with its hashes, and finds it again after reopening', async () => {
      const dir = freshDir();
      const cat = await FirmwareCatalogue.open(dir);
      const data = image('v8f', 1000);
      const e = await cat.add({ data, name: `${PRODUCT}-00.00.08.f`, platform: 'esp8266', signedWith: K1.toUpperCase(), trusts: [K1, K1, K2] });
      assert.equal(e.name, `${PRODUCT}-00.00.08.f`);
      assert.equal(e.product, PRODUCT);
      assert.equal(e.version, '00.00.08.f');
      assert.equal(e.platform, 'esp8266');
      assert.equal(e.kind, 'app');
      assert.equal(e.size, 1000);
      assert.equal(e.sha256, sha256(data));
      assert.equal(e.md5, createHash('md5').update(data).digest('hex'));
      assert.equal(e.signedWith, K1, 'key ids are kept in lower case');
      assert.deepEqual(e.trusts, [K1, K2], 'duplicates dropped');
      assert.equal(e.channel, undefined);
      assert.equal(e.file, `${e.sha256}.bin`);
      assert.ok(!Number.isNaN(Date.parse(e.addedAt)));
      assert.deepEqual(readdirSync(path.join(dir, 'images')), [e.file]);
      assert.deepEqual(readFileSync(cat.pathOf(e)), data);

      const again = await FirmwareCatalogue.open(dir);
      assert.deepEqual(again.get(e.name), e);
      assert.deepEqual(again.list(), [e]);
      assert.deepEqual(await again.read(e.name), data);
    });

    it('takes product and version instead of a name', async () => {
      const cat = await FirmwareCatalogue.open(freshDir());
      const e = await cat.add({ data: image('x'), product: 'SENSOR', version: '1.2.3', platform: 'esp32', signedWith: K1, trusts: [K1], channel: 'beta' });
      assert.equal(e.name, 'SENSOR-1.2.3');
      assert.equal(e.channel, 'beta');
      await assert.rejects(cat.add({ ...input('SENSOR-1.3'), product: 'OTHER' }), /name SENSOR-1\.3 is of product SENSOR, but product "OTHER" was given/);
      await assert.rejects(cat.add({ data: image('y'), product: 'SENSOR', platform: 'esp32', signedWith: K1, trusts: [K1] }), /needs a name, or a product and a version/);
    });

    it('adding the same image again is harmless and returns the stored entry', async () => {
      const dir = freshDir();
      const cat = await FirmwareCatalogue.open(dir);
      const first = await cat.add(input('SENSOR-1.0.0'));
      const before = snapshot(dir);
      const second = await cat.add(input('SENSOR-1.0.0'));
      assert.deepEqual(second, first, 'the stored entry, addedAt included');
      assert.equal(snapshot(dir), before);
      assert.equal(cat.list().length, 1);
    });

    it('hands out copies: changing a returned entry changes nothing stored', async () => {
      const cat = await FirmwareCatalogue.open(freshDir());
      const e = await cat.add(input('SENSOR-1.0.0'));
      e.trusts.push(K3);
      e.file = '../../etc/passwd';
      cat.list()[0].trusts.push(K3);
      assert.deepEqual(cat.get('SENSOR-1.0.0')!.trusts, [K1]);
      assert.equal(cat.pathOf(e), path.join(cat.imagesDir, `${sha256(image('SENSOR-1.0.0'))}.bin`), 'the file name comes from the index, not the caller');
    });

    describe('refuses bad input and leaves the folder exactly as it was', () => {
      let dir: string;
      let cat: FirmwareCatalogue;
      before(async () => {
        dir = freshDir();
        cat = await FirmwareCatalogue.open(dir, { maxImageSize: 4096 });
        await cat.add(input('SENSOR-1.0.0'));
        await cat.add(input('SENSOR-1.1.0', { channel: 'beta' }));
        await cat.assign({ target: DEVICE, pin: 'SENSOR-1.1.0' });
      });

      const cases: [string, () => Promise<unknown>, RegExp][] = [
        ['the same name with other content', () => cat.add({ ...input('SENSOR-1.0.0'), data: image('rebuilt') }), /already in the catalogue with different content/],
        ['the same name and content with other trusts', () => cat.add({ ...input('SENSOR-1.0.0'), trusts: [K2] }), /same content but a different trusts/],
        ['the same name and content on another channel', () => cat.add({ ...input('SENSOR-1.0.0'), channel: 'beta' }), /different channel/],
        ['the same bytes under another name', () => cat.add({ ...input('SENSOR-2.0.0'), data: image('SENSOR-1.0.0') }), /already in the catalogue as SENSOR-1\.0\.0/],
        ['another spelling of a stored version', () => cat.add(input('SENSOR-1.0')), /same version as the stored SENSOR-1\.0\.0/],
        ['another spelling of a stored version (zeros)', () => cat.add(input('SENSOR-01.00.00.0')), /same version as the stored SENSOR-1\.0\.0/],
        ['an empty image', () => cat.add({ ...input('SENSOR-2.0.0'), data: Buffer.alloc(0) }), /the image is empty/],
        ['an image over the size limit', () => cat.add({ ...input('SENSOR-2.0.0'), data: image('big', 4097) }), /4097 bytes, more than the limit of 4096 bytes/],
        ['an app image without the ESP magic byte', () => cat.add({ ...input('SENSOR-2.0.0'), data: Buffer.from('<html>') }), /must start with byte 0xE9 .* starts with 0x3C/],
        ['data that is not a Buffer', () => cat.add({ ...input('SENSOR-2.0.0'), data: 'text' as unknown as Buffer }), /must be a Buffer/],
        ['path traversal in the name', () => cat.add(input('../x-1.0.0')), /invalid image name "\.\.\/x-1\.0\.0"/],
        ['a path separator in the name', () => cat.add(input('a/b-1.0')), /invalid image name "a\/b-1\.0"/],
        ['an empty name', () => cat.add(input('')), /invalid image name ""/],
        ['a too long name', () => cat.add(input(`${'A'.repeat(65)}-1.0`)), /longer than 64 characters/],
        ['a unicode name', () => cat.add(input('SENSÖR-1.0')), /invalid image name "SENS\\u00d6R-1\.0"/],
        ['a product with path characters', () => cat.add({ ...input('x'), name: undefined, product: '..', version: '1.0' }), /invalid product "\.\."/],
        ['an unknown platform', () => cat.add(input('SENSOR-2.0.0', { platform: 'avr' as 'esp8266' })), /unknown platform "avr"/],
        ['an unknown kind', () => cat.add(input('SENSOR-2.0.0', { kind: 'bootloader' as 'app' })), /unknown image kind "bootloader"/],
        ['a signedWith that is no key id', () => cat.add(input('SENSOR-2.0.0', { signedWith: 'my-key' })), /signedWith: "my-key" is not a signing key id/],
        ['no trusted keys', () => cat.add(input('SENSOR-2.0.0', { trusts: [] })), /trusts must list the key ids/],
        ['a bad trusted key', () => cat.add(input('SENSOR-2.0.0', { trusts: [K1, '12'] })), /trusts: "12" is not a signing key id/],
        ['a bad channel', () => cat.add(input('SENSOR-2.0.0', { channel: 'Beta Testers' })), /invalid channel "Beta Testers"/],
        ['removing an unknown image', () => cat.remove('SENSOR-9.0.0'), /no image "SENSOR-9\.0\.0" in the catalogue/],
        ['removing a pinned image', () => cat.remove('SENSOR-1.1.0'), /assigned to 84f3eb012345; unassign it first/],
        ['a target that is no device, group or product', () => cat.assign({ target: 'kitchen', channel: 'beta' }), /invalid assignment target "kitchen"/],
        ['a group with path characters', () => cat.assign({ target: 'group:../x', channel: 'beta' }), /invalid group "\.\.\/x"/],
        ['a product target with path characters', () => cat.assign({ target: 'product:a/b', channel: 'beta' }), /invalid product "a\/b"/],
        ['an assignment with nothing to assign', () => cat.assign({ target: DEVICE }), /exactly one of pin, rollback, channel/],
        ['a pin and a rollback together', () => cat.assign({ target: DEVICE, pin: 'SENSOR-1.0.0', rollback: 'SENSOR-1.0.0' }), /not pin and rollback/],
        ['a pin to an unknown image', () => cat.assign({ target: DEVICE, pin: 'SENSOR-7.0.0' }), /cannot pin 84f3eb012345 to SENSOR-7\.0\.0: no such image/],
        ['a rollback to a malformed name', () => cat.assign({ target: DEVICE, rollback: '../x-1.0' }), /invalid image name/],
        ['a pin to another product for a product', () => cat.assign({ target: 'product:OTHER', pin: 'SENSOR-1.0.0' }), /is of product SENSOR, not OTHER/],
        ['a bad channel assignment', () => cat.assign({ target: DEVICE, channel: '../beta' }), /invalid channel/],
        ['a channel move of an unknown image', () => cat.setChannel('SENSOR-9.0.0', 'beta'), /no image/],
      ];
      for (const [what, call, error] of cases) {
        it(what, async () => {
          const before = snapshot(dir);
          const listed = JSON.stringify([cat.list(), cat.assignments()]);
          await assert.rejects(call(), error);
          assert.equal(snapshot(dir), before, 'folder unchanged');
          assert.equal(JSON.stringify([cat.list(), cat.assignments()]), listed, 'memory unchanged');
        });
      }

      it('and a reopened catalogue sees the same', async () => {
        const again = await FirmwareCatalogue.open(dir);
        assert.deepEqual(again.list(), cat.list());
        assert.deepEqual(again.assignments(), cat.assignments());
      });

      it('unassigning a target without an assignment writes nothing', async () => {
        const before = snapshot(dir);
        assert.equal(await cat.unassign('group:none'), false);
        assert.equal(snapshot(dir), before);
      });
    });

    it('lists newest first per product, filters by product', async () => {
      const cat = await FirmwareCatalogue.open(freshDir());
      for (const v of ['1.10', '1.9', '1.2.3.b', '1.2.3', '1.2.3.a']) await cat.add(input(`SENSOR-${v}`));
      await cat.add(input('ALPHA-0.1'));
      assert.deepEqual(
        cat.list({ product: 'SENSOR' }).map((e) => e.version),
        ['1.10', '1.9', '1.2.3.b', '1.2.3.a', '1.2.3'],
      );
      assert.deepEqual(
        cat.list().map((e) => e.name),
        ['ALPHA-0.1', 'SENSOR-1.10', 'SENSOR-1.9', 'SENSOR-1.2.3.b', 'SENSOR-1.2.3.a', 'SENSOR-1.2.3'],
      );
      assert.deepEqual(cat.list({ product: 'NONE' }), []);
    });

    it('removes an image from index and folder, for good', async () => {
      const dir = freshDir();
      const cat = await FirmwareCatalogue.open(dir);
      const keep = await cat.add(input('SENSOR-1.0.0'));
      const gone = await cat.add(input('SENSOR-2.0.0'));
      const removed = await cat.remove('SENSOR-2.0.0');
      assert.deepEqual(removed, gone);
      assert.equal(cat.get('SENSOR-2.0.0'), undefined);
      assert.deepEqual(readdirSync(path.join(dir, 'images')), [keep.file]);
      assert.throws(() => cat.pathOf(gone), /no image "SENSOR-2\.0\.0"/);
      const again = await FirmwareCatalogue.open(dir);
      assert.deepEqual(again.list(), [keep]);
      // The name is free again, for the same or other bytes.
      await again.add({ ...input('SENSOR-2.0.0'), data: image('rebuilt') });
    });

    it('serves the bytes as a stream and notices a tampered file', async () => {
      const cat = await FirmwareCatalogue.open(freshDir());
      const data = image('stream', 3000);
      const e = await cat.add({ ...input('SENSOR-1.0.0'), data });
      const chunks: Buffer[] = [];
      for await (const c of cat.openStream(e)) chunks.push(c as Buffer);
      assert.deepEqual(Buffer.concat(chunks), data);
      assert.throws(() => cat.openStream('SENSOR-9.9'), /no image/);
      writeFileSync(cat.pathOf(e), image('other', 3000));
      await assert.rejects(cat.read(e), /does not match its index entry/);
    });

    it('moves an image between channels', async () => {
      const dir = freshDir();
      const cat = await FirmwareCatalogue.open(dir);
      await cat.add(input('SENSOR-1.0.0', { channel: 'beta' }));
      assert.equal((await cat.setChannel('SENSOR-1.0.0', 'stable')).channel, undefined);
      assert.equal((await FirmwareCatalogue.open(dir)).get('SENSOR-1.0.0')!.channel, undefined);
      assert.equal((await cat.setChannel('SENSOR-1.0.0', 'rc')).channel, 'rc');
    });

    it('lets only one of two racing adds of one name win', async () => {
      const cat = await FirmwareCatalogue.open(freshDir());
      const results = await Promise.allSettled([
        cat.add({ ...input('SENSOR-1.0.0'), data: image('a') }),
        cat.add({ ...input('SENSOR-1.0.0'), data: image('b') }),
        cat.add(input('SENSOR-1.1.0')),
      ]);
      assert.deepEqual(results.map((r) => r.status), ['fulfilled', 'rejected', 'fulfilled']);
      assert.equal(cat.list().length, 2);
    });

    it('refuses to open a damaged index instead of starting empty', async () => {
      const dir = freshDir();
      await (await FirmwareCatalogue.open(dir)).add(input('SENSOR-1.0.0'));
      const file = path.join(dir, 'catalogue.json');
      const good = readFileSync(file, 'utf8');
      writeFileSync(file, good.slice(0, 40));
      await assert.rejects(FirmwareCatalogue.open(dir), /catalogue\.json is damaged \(not JSON\): restore it from a backup/);
      writeFileSync(file, good.replace(/"file": "[0-9a-f]+\.bin"/, '"file": "../../x"'));
      await assert.rejects(FirmwareCatalogue.open(dir), /damaged \(image SENSOR-1\.0\.0: bad file name/);
      writeFileSync(file, good);
      assert.equal((await FirmwareCatalogue.open(dir)).list().length, 1);
      await assert.rejects(FirmwareCatalogue.open(dir, { maxImageSize: 0 }), /maxImageSize must be a positive/);
    });
  });

  describe('assignments', () => {
    it('are normalised, replaced per target, persisted, and removed', async () => {
      const dir = freshDir();
      const cat = await FirmwareCatalogue.open(dir);
      await cat.add(input('SENSOR-1.0.0'));
      await cat.add(input('SENSOR-0.9.0'));
      const a = await cat.assign({ target: '84:F3:EB:01:23:45', channel: 'beta' });
      assert.equal(a.target, DEVICE);
      assert.equal(a.channel, 'beta');
      await cat.assign({ target: 'device:84-f3-eb-01-23-45', pin: 'SENSOR-1.0.0' });
      await cat.assign({ target: 'group:kitchen', rollback: 'SENSOR-0.9.0' });
      await cat.assign({ target: 'product:SENSOR', channel: 'stable' });
      const strip = (list: Assignment[]): object[] => list.map(({ updatedAt: _, ...rest }) => rest);
      const expected = [
        { target: DEVICE, pin: 'SENSOR-1.0.0' },
        { target: 'group:kitchen', rollback: 'SENSOR-0.9.0' },
        { target: 'product:SENSOR', channel: 'stable' },
      ];
      assert.deepEqual(strip(cat.assignments()), expected);
      const again = await FirmwareCatalogue.open(dir);
      assert.deepEqual(strip(again.assignments()), expected);
      assert.equal(await again.unassign('84:f3:eb:01:23:45'), true);
      assert.deepEqual(strip((await FirmwareCatalogue.open(dir)).assignments()), expected.slice(1));
      await again.unassign('group:kitchen');
      await again.remove('SENSOR-0.9.0');
    });
  });
});

// ---- the next installable image -------------------------------------------------------

let seq = 0;
function entry(name: string, signedWith: string, trusts: string[], over: Partial<CatalogueEntry> = {}): CatalogueEntry {
  const [product, version] = [name.slice(0, name.lastIndexOf('-')), name.slice(name.lastIndexOf('-') + 1)];
  const sha = createHash('sha256').update(`${name}${++seq}`).digest('hex');
  return { name, product, version, platform: 'esp8266', kind: 'app', file: `${sha}.bin`, size: 400_000, sha256: sha, md5: sha.slice(0, 32), signedWith, trusts, addedAt: '2026-01-01T00:00:00.000Z', ...over };
}

function assignment(target: string, a: Partial<Assignment>): Assignment {
  return { target, updatedAt: '2026-01-01T00:00:00.000Z', ...a };
}

function offered(r: NextImageResult): string {
  if ('entry' in r) return r.entry.name;
  return `none: ${r.none}`;
}

function codeOf(r: NextImageResult): string {
  return 'none' in r ? r.code : 'offer';
}

describe('the next installable image', () => {
  // A key rotation: v1 trusts K1; v2 is the bridge (signed with K1, carries K2); v3 is signed with K2.
  const v1 = entry('SENSOR-1.0.0', K1, [K1]);
  const v2 = entry('SENSOR-2.0.0', K1, [K2]);
  const v3 = entry('SENSOR-3.0.0', K2, [K2]);
  const chain = [v3, v1, v2];

  describe('key rotation through a bridge image', () => {
    it('a device on v1 gets the bridge v2, not v3 which it could not verify', () => {
      const r = nextImage(chain, [], { currentImage: v1.name });
      assert.equal(offered(r), v2.name);
      assert.ok('entry' in r && /newest image of SENSOR newer than 1\.0\.0 in the stable channel that SENSOR-1\.0\.0 can verify/.test(r.reason));
    });

    it('a device on v2 gets v3', () => {
      assert.equal(offered(nextImage(chain, [], { currentImage: v2.name })), v3.name);
    });

    it('a device on v3 gets nothing, with the reason', () => {
      assert.equal(offered(nextImage(chain, [], { currentImage: v3.name })), 'none: no image of SENSOR newer than 3.0.0 in the stable channel');
    });

    it('without the bridge, says that it is missing', () => {
      const r = nextImage([v1, v3], [], { currentImage: v1.name });
      assert.match(offered(r), /^none: no image .* that SENSOR-1\.0\.0 can verify: it trusts 1111111111111111, but SENSOR-3\.0\.0 \(key 3{0}2{16}\) is signed otherwise; a bridge image .* is missing$/);
    });

    it('picks the newest verifiable image, skipping versions signed with the same key', () => {
      const v11 = entry('SENSOR-1.1.0', K1, [K1]);
      const v12 = entry('SENSOR-1.2.0', K1, [K1]);
      assert.equal(offered(nextImage([v1, v12, v11], [], { currentImage: v1.name })), v12.name);
    });

    it('works the same through the catalogue', async () => {
      const tmp = tempDir('next');
      try {
        const cat = await FirmwareCatalogue.open(tmp.path);
        await cat.add(input(v1.name, { signedWith: K1, trusts: [K1] }));
        await cat.add(input(v2.name, { signedWith: K1, trusts: [K2] }));
        await cat.add(input(v3.name, { signedWith: K2, trusts: [K2] }));
        assert.equal(offered(cat.next({ currentImage: v1.name })), v2.name);
        assert.equal(offered(cat.next({ currentImage: v2.name })), v3.name);
        assert.match(offered(cat.next({ currentImage: v3.name })), /^none: no image/);
      } finally {
        tmp.remove();
      }
    });
  });

  it('never offers a lower version on its own', () => {
    assert.match(offered(nextImage([v1, v2], [], { currentImage: v2.name })), /^none: no image of SENSOR newer than 2\.0\.0/);
  });

  it('ignores other products, platforms and kinds', () => {
    const other = entry('OTHER-9.0.0', K1, [K1]);
    const fs = entry('SENSOR-9.0.0', K1, [K1], { kind: 'spiffs' });
    const esp32 = entry('SENSOR-8.0.0', K1, [K1], { platform: 'esp32' });
    assert.match(offered(nextImage([v1, other, fs, esp32], [], { currentImage: v1.name })), /^none: no image of SENSOR newer than 1\.0\.0/);
    assert.match(offered(nextImage([v1, esp32], [assignment(DEVICE, { pin: esp32.name })], { currentImage: v1.name, deviceId: DEVICE })), /an esp32 image, but the device runs an esp8266 image/);
    assert.equal(offered(nextImage([v1, other, fs], [], { currentImage: v1.name, kind: 'spiffs' })), fs.name);
  });

  it('offers nothing for a current image the catalogue does not know, rather than guessing its keys', () => {
    assert.equal(
      offered(nextImage(chain, [], { currentImage: 'SENSOR-0.5.0' })),
      'none: current image SENSOR-0.5.0 is not in the catalogue, so the keys it trusts are unknown and no update can be offered; add SENSOR-0.5.0 with its trusted keys',
    );
    assert.match(offered(nextImage(chain, [], { currentImage: '../etc-1.0' })), /^none: the current image cannot be understood: invalid image name/);
    assert.match(offered(nextImage(chain, [], { currentImage: v1.name, deviceId: 'nope' })), /^none: invalid device id "nope"/);
  });

  it('refuses an image that does not fit the reported free space', () => {
    assert.equal(
      offered(nextImage(chain, [], { currentImage: v1.name, freeSpace: 399_999 })),
      'none: image of 400000 bytes does not fit the reported free space 399999 (next would be SENSOR-2.0.0)',
    );
    assert.equal(offered(nextImage(chain, [], { currentImage: v1.name, freeSpace: 400_000 })), v2.name);
  });

  describe('channels', () => {
    const beta = entry('SENSOR-1.5.0', K1, [K1], { channel: 'beta' });
    const all = [v1, beta, entry('SENSOR-1.6.0', K1, [K1], { channel: 'rc' })];

    it('offers a channel image only to devices assigned that channel', () => {
      assert.match(offered(nextImage(all, [], { currentImage: v1.name, deviceId: DEVICE })), /^none: no image .* in the stable channel$/);
      const a = [assignment(DEVICE, { channel: 'beta' })];
      const r = nextImage(all, a, { currentImage: v1.name, deviceId: DEVICE });
      assert.equal(offered(r), beta.name);
      assert.ok('entry' in r && r.assignment?.target === DEVICE && /\(assignment for 84f3eb012345\)$/.test(r.reason));
    });

    it('gives channel devices the stable image when it is newer', () => {
      const stable = entry('SENSOR-1.7.0', K1, [K1]);
      assert.equal(offered(nextImage([...all, stable], [assignment('group:lab', { channel: 'beta' })], { currentImage: v1.name, groups: ['lab'] })), stable.name);
    });

    it('device beats group beats product', () => {
      const a = [
        assignment('product:SENSOR', { channel: 'rc' }),
        assignment('group:lab', { channel: 'beta' }),
        assignment(DEVICE, { channel: 'stable' }),
      ];
      assert.equal(offered(nextImage(all, a, { currentImage: v1.name })), 'SENSOR-1.6.0', 'product');
      assert.equal(offered(nextImage(all, a, { currentImage: v1.name, groups: ['lab'] })), beta.name, 'group');
      assert.match(offered(nextImage(all, a, { currentImage: v1.name, groups: ['lab'], deviceId: '84:F3:EB:01:23:45' })), /^none: .*stable channel \(assignment for 84f3eb012345\)$/, 'device');
      assert.equal(offered(nextImage(all, a, { currentImage: v1.name, groups: ['none', 'lab'], deviceId: '84f3eb000000' })), beta.name, 'first group that has one');
    });
  });

  it('says why there is nothing with a code a server can map to a status', () => {
    const other = entry('OTHER-5.0.0', K1, [K1]);
    const all = [...chain, other];
    const at = (request: Parameters<typeof nextImage>[2], a: Assignment[] = []): string => codeOf(nextImage(all, a, request));
    assert.equal(at({ currentImage: v1.name }), 'offer');
    assert.equal(at({ currentImage: 'SENSOR' }), 'bad-request');
    assert.equal(at({ currentImage: v1.name, deviceId: 'x' }), 'bad-request');
    assert.equal(at({ currentImage: v1.name, kind: 'bootloader' as 'app' }), 'bad-request');
    assert.equal(at({ currentImage: 'SENSOR-0.1' }), 'unknown-image');
    assert.equal(at({ currentImage: v1.name, freeSpace: 0 }), 'too-large');
    assert.equal(at({ currentImage: v3.name }), 'up-to-date');
    assert.equal(at({ currentImage: v1.name, deviceId: DEVICE }, [assignment(DEVICE, { pin: v3.name })]), 'unverifiable');
    assert.equal(at({ currentImage: v1.name }, [assignment('product:SENSOR', { pin: other.name })]), 'bad-assignment');
    assert.equal(at({ currentImage: v1.name }, [assignment('product:SENSOR', { rollback: 'SENSOR-0.0.1' })]), 'bad-assignment');
  });

  describe('pins', () => {
    const v15 = entry('SENSOR-1.5.0', K1, [K1]);
    const imgs = [v1, v15, v2, v3];

    it('offer exactly the pinned version when it is higher', () => {
      assert.equal(offered(nextImage(imgs, [assignment(DEVICE, { pin: v15.name })], { currentImage: v1.name, deviceId: DEVICE })), v15.name);
    });

    it('offer nothing when the device runs it or something newer', () => {
      const a = [assignment('group:lab', { pin: v15.name })];
      assert.match(offered(nextImage(imgs, a, { currentImage: v15.name, groups: ['lab'] })), /^none: the device already runs SENSOR-1\.5\.0, which it is pinned to \(assignment for group:lab\)$/);
      assert.match(offered(nextImage(imgs, a, { currentImage: v2.name, groups: ['lab'] })), /^none: pinned to SENSOR-1\.5\.0, lower than the running SENSOR-2\.0\.0: a pin never downgrades, assign a rollback/);
    });

    it('still need a signature the device can verify', () => {
      assert.match(
        offered(nextImage(imgs, [assignment(DEVICE, { pin: v3.name })], { currentImage: v1.name, deviceId: DEVICE })),
        /^none: SENSOR-3\.0\.0 is signed with key 2{16}, which SENSOR-1\.0\.0 does not trust \(it trusts 1{16}\): the device could not verify it/,
      );
    });

    it('never cross products, and say when the pinned image is gone', () => {
      const other = entry('OTHER-5.0.0', K1, [K1]);
      assert.match(offered(nextImage([...imgs, other], [assignment(DEVICE, { pin: other.name })], { currentImage: v1.name, deviceId: DEVICE })), /of product OTHER, but the device runs product SENSOR/);
      assert.match(offered(nextImage(imgs, [assignment(DEVICE, { pin: 'SENSOR-8.0.0' })], { currentImage: v1.name, deviceId: DEVICE })), /^none: pinned to SENSOR-8\.0\.0, which is not in the catalogue/);
    });
  });

  describe('rollbacks', () => {
    const v21 = entry('SENSOR-2.1.0', K2, [K2]);

    it('offer the assigned lower version', () => {
      const a = [assignment(DEVICE, { rollback: v2.name })];
      const r = nextImage([v1, v2, v3, v21], a, { currentImage: v21.name, deviceId: DEVICE });
      // v2 is signed with K1, which v2.1 no longer trusts:
      assert.match(offered(r), /^none: SENSOR-2\.0\.0 is signed with key 1{16}, which SENSOR-2\.1\.0 does not trust .*could not verify it \(assignment for 84f3eb012345\)$/);
      const r3 = nextImage([v1, v2, v3, v21], [assignment(DEVICE, { rollback: v3.name })], { currentImage: v21.name, deviceId: DEVICE });
      assert.equal(offered(r3), v3.name);
      assert.ok('entry' in r3 && /^rolled back to SENSOR-3\.0\.0/.test(r3.reason));
    });

    it('stop once the device runs the rollback image', () => {
      assert.match(offered(nextImage([v1, v2, v3], [assignment(DEVICE, { rollback: v3.name })], { currentImage: v3.name, deviceId: DEVICE })), /^none: the device already runs SENSOR-3\.0\.0, which it is rolled back to/);
    });

    it('respect the free space too', () => {
      const small = nextImage([v2, v3, v21], [assignment(DEVICE, { rollback: v3.name })], { currentImage: v21.name, deviceId: DEVICE, freeSpace: 10 });
      assert.match(offered(small), /^none: image of 400000 bytes does not fit the reported free space 10/);
    });
  });
});
