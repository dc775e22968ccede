import { strict as assert } from 'node:assert';
import { readFileSync } from 'node:fs';
import * as path from 'node:path';
import {
  ImageNameError,
  MAX_IMAGE_NAME_LENGTH,
  compareImageNames,
  compareVersions,
  imageName,
  isImageName,
  parseImageName,
  parseVersion,
} from '../../../lib/firmware/version';

/** Shared with the firmware's C++ host tests: edit the JSON, not a copy of it here. */
interface Vectors {
  comparisons: { a: string; b: string; order: -1 | 0 | 1; why: string }[];
  valid: { name: string; product: string; version: string; parts: number[]; build: string }[];
  differentProducts: [string, string][];
  invalidNames: { name: string; why: string }[];
}
// Compiled to dist/test/lib; the vectors stay in the source tree.
const VECTORS: Vectors = JSON.parse(readFileSync(path.resolve(__dirname, '../../../../test/vectors/image-versions.json'), 'utf8'));

describe('firmware image names and version order', () => {
  describe('shared vectors (test/vectors/image-versions.json)', () => {
    it('has enough of each kind to mean something', () => {
      assert.ok(VECTORS.comparisons.length >= 20);
      assert.ok(VECTORS.invalidNames.length >= 30);
      for (const o of [-1, 0, 1]) assert.ok(VECTORS.comparisons.some((c) => c.order === o), `an order ${o} case`);
    });

    for (const c of VECTORS.comparisons) {
      it(`${c.a} ${['<', '=', '>'][c.order + 1]} ${c.b}: ${c.why}`, () => {
        assert.equal(compareImageNames(c.a, c.b), c.order);
        assert.equal(compareImageNames(c.b, c.a), -c.order || 0, 'antisymmetric');
        assert.equal(compareVersions(parseImageName(c.a).version, parseImageName(c.b).version), c.order);
      });
    }

    it('parses the valid names into product, version, numeric parts and build suffix', () => {
      for (const v of VECTORS.valid) {
        assert.deepEqual(parseImageName(v.name), { product: v.product, version: v.version, parts: v.parts, build: v.build }, v.name);
        assert.equal(imageName(v.product, v.version), v.name);
        assert.ok(isImageName(v.name));
      }
    });

    for (const { name, why } of VECTORS.invalidNames) {
      it(`refuses ${JSON.stringify(name)}: ${why}`, () => {
        assert.throws(() => parseImageName(name), (err: unknown) => {
          assert.ok(err instanceof ImageNameError, `an ImageNameError, got ${String(err)}`);
          assert.match(err.message, /^invalid image name /);
          // The message quotes the input safely: printable ASCII only, bounded.
          assert.match(err.message, /^[\x20-\x7e…]*$/);
          assert.ok(err.message.length < 400);
          return true;
        });
        assert.equal(isImageName(name), false);
      });
    }

    it('refuses to order images of different products (case counts)', () => {
      for (const [a, b] of VECTORS.differentProducts) {
        assert.throws(() => compareImageNames(a, b), /different products/);
      }
    });
  });

  describe('parseImageName', () => {
    it('reads the seed firmware name', () => {
      assert.deepEqual(parseImageName('ESP8266_WEMOS_D1MINIPRO-00.00.08.f'), {
        product: 'ESP8266_WEMOS_D1MINIPRO',
        version: '00.00.08.f',
        parts: [0, 0, 8],
        build: 'f',
      });
    });

    it('takes a bare version (x-ESP8266-version "0.1") when the product is given separately', () => {
      assert.deepEqual(parseImageName('0.1', 'SENSOR'), { product: 'SENSOR', version: '0.1', parts: [0, 1], build: '' });
      assert.deepEqual(parseImageName('SENSOR-0.1', 'SENSOR').parts, [0, 1]);
      assert.throws(() => parseImageName('OTHER-0.1', 'SENSOR'), /is of product "OTHER", expected "SENSOR"/);
      assert.throws(() => parseImageName('0.1', '../etc'), /invalid product/);
      assert.throws(() => parseImageName('0.1'), /no "-" between product and version/);
    });

    it('says which part is wrong', () => {
      assert.throws(() => parseImageName('../x-1.0.0'), /invalid image name "\.\.\/x-1\.0\.0": product "\.\.\/x": only letters/);
      assert.throws(() => parseImageName('a/b-1.0'), /product "a\/b": only letters A-Z a-z, digits, "_" and "\."/);
      assert.throws(() => parseImageName('a-b-1.0'), /product "a-b"/);
      assert.throws(() => parseImageName('SENSOR-1..2'), /version "1\.\.2": an empty part is not a number/);
      assert.throws(() => parseImageName('SENSOR-1.2.3f'), /part "3f" is not a number/);
      assert.throws(() => parseImageName('SENSOR-1.2.3.4.5'), /at most 4 numeric parts/);
      assert.throws(() => parseImageName(''), /invalid image name "": expected <PRODUCT>-<VERSION>/);
      assert.throws(() => parseImageName(`${'A'.repeat(MAX_IMAGE_NAME_LENGTH)}-1.0`), /longer than 96 characters/);
      assert.throws(() => parseImageName(`${'A'.repeat(65)}-1.0`), /product "A+…?": longer than 64 characters/);
      assert.throws(() => parseImageName(42 as unknown as string), /invalid image name number/);
      assert.throws(() => parseImageName('SENSOR\u{1F680}-1.0'), /"SENSOR\\ud83d\\ude80-1\.0"/, 'non-ASCII shown escaped');
    });

    it('bounds the quoted input in messages', () => {
      const err = (() => {
        try {
          parseImageName('x'.repeat(10_000));
        } catch (e) {
          return e as Error;
        }
        throw new Error('accepted');
      })();
      assert.ok(err.message.length < 200, err.message);
    });
  });

  describe('compareVersions', () => {
    it('orders bare versions, leading zeros and missing parts included', () => {
      assert.equal(compareVersions('1.2', '1.2.0'), 0);
      assert.equal(compareVersions('01.002', '1.2'), 0);
      assert.equal(compareVersions('1.10', '1.9'), 1);
      assert.equal(compareVersions('0.0.8', '00.00.08.f'), -1);
      assert.equal(compareVersions(parseVersion('2.0'), '1.9.9.z'), 1);
    });

    it('sorts a list the way the update server picks', () => {
      const sorted = ['1.2.3.b', '1.10', '1.2.3', '1.2.3.B', '0.9.99', '1.2.3.a', '1.2.10'].sort(compareVersions);
      assert.deepEqual(sorted, ['0.9.99', '1.2.3', '1.2.3.B', '1.2.3.a', '1.2.3.b', '1.2.10', '1.10']);
    });

    it('throws on a malformed version instead of guessing an order', () => {
      assert.throws(() => compareVersions('1.2', 'SENSOR-1.2'), /invalid version "SENSOR-1\.2"/);
      assert.throws(() => compareVersions('', '1'), /invalid version ""/);
    });
  });
});
