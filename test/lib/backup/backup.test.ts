import { strict as assert } from 'node:assert';
import { promises as fs, statSync, readFileSync } from 'node:fs';
import * as path from 'node:path';
import { X509Certificate, createPrivateKey } from 'node:crypto';
import { x509 } from '../../../lib/pki/x509';
import { normalizeSerial } from '../../../lib/pki/names';
import { CaStore } from '../../../lib/pki/ca-store';
import { FirmwareService } from '../../../lib/firmware/firmware-service';
import { createBackup, restoreBackup, readBackup } from '../../../lib/backup/backup';
import { BackupError, sealArchive, openArchive } from '../../../lib/backup/archive-crypto';
import { encodePayload, ArchiveFile, Manifest } from '../../../lib/backup/payload';
import { RestorePlace } from '../../../lib/backup/restore-plan';
import { PartSource } from '../../../lib/backup/snapshot';
import { caSource } from '../../../lib/backup/sources';
import { tempDir } from '../../support/temp-dir';
import { makeFleetState, treeSnapshot, FleetState, PASSPHRASE, TEST_KDF, DEVICES } from '../../support/fleet-state';

/** The places a fresh set of nodes would use, in `root`. */
function placesIn(root: string): RestorePlace[] {
  return [
    { role: 'ca', path: path.join(root, 'esp-fleet-ca') },
    { role: 'firmware', key: 'fw1', path: path.join(root, 'esp-fleet-firmware') },
    { role: 'registry', key: 'fleet1', path: path.join(root, 'esp-fleet-registry-fleet1.json') },
  ];
}

const filesOnly = (tree: Record<string, string>): Record<string, string> => Object.fromEntries(Object.entries(tree).filter(([k]) => !k.endsWith('/')));

describe('backup and restore (lib/backup)', function () {
  this.timeout(60_000);
  const tmp = tempDir('backup');
  let fleet: FleetState;
  let archive: string;
  let archiveBytes: Buffer;
  let n = 0;
  const freshRoot = async (): Promise<string> => {
    const root = path.join(tmp.path, `restore-${++n}`);
    await fs.mkdir(root);
    return root;
  };

  /** Expects a restore of `file` into `root` to fail with `message`, and `root` to be exactly as it was. */
  async function refused(file: string, root: string, message: RegExp, passphrase = PASSPHRASE, force = false): Promise<BackupError> {
    const before = await treeSnapshot(root);
    const err = await restoreBackup(file, passphrase, placesIn(root), { force }).then(
      () => assert.fail('the restore went through'),
      (e: unknown) => e,
    );
    assert.ok(err instanceof BackupError, `a BackupError, got ${String(err)}`);
    assert.match(err.message, message);
    assert.doesNotMatch(err.message, /\n\s+at /, 'no stack trace in the message');
    assert.deepEqual(await treeSnapshot(root), before, 'nothing written');
    return err;
  }

  before(async () => {
    fleet = await makeFleetState(path.join(tmp.path, 'source'));
    archive = path.join(tmp.path, 'fleet.efb');
    await createBackup(fleet.sources, PASSPHRASE, archive, { kdf: TEST_KDF });
    archiveBytes = readFileSync(archive);
  });
  after(() => tmp.remove());

  it('writes one file, mode 0600, that holds no readable key or certificate', async () => {
    const summary = await createBackup(fleet.sources, PASSPHRASE, path.join(tmp.path, 'again.efb'), { kdf: TEST_KDF });
    assert.equal(statSync(summary.file).mode & 0o777, 0o600);
    assert.equal(summary.size, statSync(summary.file).size);
    assert.deepEqual(summary.counts, { certificates: fleet.store.issuedCount, images: 2, devices: DEVICES.length });
    assert.equal(summary.caFingerprint, new X509Certificate(fleet.store.caCertificatePem).fingerprint256);
    assert.deepEqual(summary.parts.map((p) => p.id), ['ca', 'firmware:fw1', 'registry:fleet1']);
    const text = readFileSync(summary.file).toString('latin1');
    for (const marker of ['PRIVATE KEY', 'CERTIFICATE', 'journal', DEVICES[0], 'keyring']) assert.ok(!text.includes(marker), `${marker} is not in the clear`);
  });

  it('restores every file into fresh folders with its bytes and mode; the CA folder moves with its Mosquitto folder', async () => {
    const root = await freshRoot();
    const summary = await restoreBackup(archive, PASSPHRASE, placesIn(root));
    assert.deepEqual(summary.restored.map((r) => [r.id, r.keptAside]), [['ca', undefined], ['firmware:fw1', undefined], ['registry:fleet1', undefined]]);
    const source = filesOnly(await treeSnapshot(fleet.root));
    const restored = filesOnly(await treeSnapshot(root));
    const moved = ['esp-fleet-ca/journal.jsonl', 'esp-fleet-ca/mosquitto/mosquitto.conf'];
    for (const k of moved) {
      assert.ok(restored[k], `${k} restored`);
      delete source[k];
      delete restored[k];
    }
    assert.deepEqual(restored, source);
    assert.equal(statSync(path.join(root, 'esp-fleet-ca', 'ca.key')).mode & 0o777, 0o600);
    assert.equal(statSync(path.join(root, 'esp-fleet-ca', 'devices', `${DEVICES[0]}.key`)).mode & 0o777, 0o600);
    const conf = readFileSync(path.join(root, 'esp-fleet-ca', 'mosquitto', 'mosquitto.conf'), 'utf8');
    assert.match(conf, new RegExp(`^cafile ${path.join(root, 'esp-fleet-ca', 'mosquitto', 'ca.crt')}$`, 'm'));
    assert.ok(!conf.includes(fleet.root), 'no path into the old folder');
    assert.ok(!readFileSync(path.join(root, 'esp-fleet-ca', 'journal.jsonl'), 'utf8').includes(fleet.root));
  });

  it('gives back the same CA, records and serial counter, and the CRL with the revocation', async () => {
    const root = await freshRoot();
    await restoreBackup(archive, PASSPHRASE, placesIn(root));
    const restored = await CaStore.open({ dir: path.join(root, 'esp-fleet-ca') });
    assert.equal(restored.caCertificatePem, fleet.store.caCertificatePem);
    assert.deepEqual(restored.list({ includeRevoked: true }), fleet.store.list({ includeRevoked: true }));
    const crl = await restored.crlPem();
    assert.equal(crl, await fleet.store.crlPem());
    const before = fleet.store.list({ includeRevoked: true }).map((r) => parseInt(r.serial, 16));
    const next = parseInt((await restored.issueDevice('84f3eb0000b1')).record.serial, 16);
    assert.ok(next > Math.max(...before), `serial ${next.toString(16)} continues after ${Math.max(...before).toString(16)}`);
    await restored.idle();
  });

  it('refuses a wrong passphrase with a clear error and writes nothing', async () => {
    const root = await freshRoot();
    await refused(archive, root, /^wrong passphrase or damaged archive/, 'not the right passphrase at all');
  });

  it('refuses an archive with any header byte changed, and writes nothing', async () => {
    const root = await freshRoot();
    // A store already there: "nothing written" must mean it stays as it is too.
    await (await CaStore.open({ dir: path.join(root, 'esp-fleet-ca') })).idle();
    const headerBytes = 53;
    for (let i = 0; i < headerBytes; i++) {
      const bad = Buffer.from(archiveBytes);
      bad[i] ^= 1 << i % 8;
      const file = path.join(tmp.path, `header-${i}.efb`);
      await fs.writeFile(file, bad);
      await refused(file, root, /wrong passphrase or damaged archive|not an esp-fleet backup|unsupported|damaged archive header/);
    }
  });

  it('refuses a changed bit in the ciphertext or the tag, and writes nothing', async () => {
    const root = await freshRoot();
    const positions = [53, 54, 200, Math.floor(archiveBytes.length / 2), archiveBytes.length - 17, ...[16, 9, 4, 1].map((k) => archiveBytes.length - k)];
    for (const at of positions) {
      const bad = Buffer.from(archiveBytes);
      bad[at] ^= 0x10;
      const file = path.join(tmp.path, `body-${at}.efb`);
      await fs.writeFile(file, bad);
      await refused(file, root, /^wrong passphrase or damaged archive/);
    }
  });

  it('refuses a truncated or empty file, and writes nothing', async () => {
    const root = await freshRoot();
    for (const length of [0, 4, 8, 52, 60, archiveBytes.length - 16, archiveBytes.length - 1]) {
      const file = path.join(tmp.path, `cut-${length}.efb`);
      await fs.writeFile(file, archiveBytes.subarray(0, length));
      await refused(file, root, /wrong passphrase or damaged archive|not an esp-fleet backup|truncated/);
    }
    await refused(path.join(tmp.path, 'no-such.efb'), root, /no backup file at/);
  });

  describe('archives crafted with the right key', () => {
    let good: { manifest: Manifest; files: ArchiveFile[] };
    before(async () => {
      good = await readBackup(archive, PASSPHRASE);
    });
    async function craft(name: string, change: (p: { manifest: Manifest; files: ArchiveFile[] }) => void): Promise<string> {
      const p = structuredClone({ manifest: good.manifest, files: good.files.map((f) => ({ ...f, data: Buffer.from(f.data) })) });
      change(p);
      const file = path.join(tmp.path, `crafted-${name}.efb`);
      await fs.writeFile(file, await sealArchive(encodePayload(p), PASSPHRASE, TEST_KDF));
      return file;
    }
    const addFile = (p: { manifest: Manifest; files: ArchiveFile[] }, f: ArchiveFile): void => {
      p.files.push(f);
      const part = p.manifest.parts.find((x) => x.id === f.part);
      if (part) part.files++;
    };
    const evil = { mode: 0o644, data: Buffer.from('owned\n') };
    const cases: [string, (p: { manifest: Manifest; files: ArchiveFile[] }) => void, RegExp][] = [
      ['dotdot', (p) => addFile(p, { part: 'ca', path: '../evil', ...evil }), /unsafe path "\.\.\/evil"/],
      ['dotdot-deep', (p) => addFile(p, { part: 'firmware:fw1', path: 'catalogue/../../../evil', ...evil }), /unsafe path/],
      ['absolute', (p) => addFile(p, { part: 'ca', path: '/tmp/evil', ...evil }), /unsafe path .*absolute/],
      ['backslash', (p) => addFile(p, { part: 'ca', path: '..\\evil', ...evil }), /unsafe path/],
      ['empty-segment', (p) => addFile(p, { part: 'ca', path: 'devices//evil', ...evil }), /unsafe path/],
      ['nul', (p) => addFile(p, { part: 'ca', path: 'evil\0.crt', ...evil }), /unsafe path/],
      ['registry-name', (p) => addFile(p, { part: 'registry:fleet1', path: '../flows.json', ...evil }), /unsafe path/],
      ['setuid', (p) => addFile(p, { part: 'ca', path: 'evil', mode: 0o4755, data: evil.data }), /file mode .* outside 0\.\.0777/],
      ['unknown-role', (p) => {
        p.manifest.parts.push({ id: 'settings:x', role: 'ca', source: '/x', files: 1 } as never);
        p.files.push({ part: 'settings:x', path: 'settings.js', ...evil });
      }, /unknown part "settings:x"/],
      ['unlisted-part', (p) => p.files.push({ part: 'firmware:other', path: 'x', ...evil }), /which the manifest does not list/],
      ['twice', (p) => addFile(p, { ...p.files[0] }), /appears twice/],
      ['file-and-folder', (p) => addFile(p, { part: 'ca', path: 'ca.crt/inner', ...evil }), /both a file and a folder/],
      ['count', (p) => p.manifest.parts[0].files++, /the manifest says/],
      ['unsafe-home', (p) => (p.manifest.parts[1].inHome = '../../elsewhere'), /unsafe inHome/],
      ['other-ca', (p) => (p.manifest.caFingerprint = 'AA:BB'), /not the CA its manifest names/],
    ];
    for (const [name, change, message] of cases) {
      it(`refuses ${name} and writes nothing`, async () => {
        const root = await freshRoot();
        await refused(await craft(name, change), root, message);
        assert.deepEqual(await fs.readdir(tmp.path).then((l) => l.filter((x) => x === 'evil')), []);
      });
    }

    it('takes the internal writer\'s untouched payload (the crafting itself is sound)', async () => {
      const file = await craft('untouched', () => undefined);
      const root = await freshRoot();
      await restoreBackup(file, PASSPHRASE, placesIn(root));
      assert.ok(statSync(path.join(root, 'esp-fleet-ca', 'ca.crt')).isFile());
    });
  });

  it('refuses to restore over a CA that issued device certificates the archive does not hold, unless forced; the old folder is kept aside', async () => {
    const root = await freshRoot();
    const other = await CaStore.open({ dir: path.join(root, 'esp-fleet-ca') });
    await other.issueDevice('84f3eb0000c1');
    await other.idle();
    const err = await refused(archive, root, /restore refused: the CA in .* has issued device certificates the archive does not hold \(84f3eb0000c1\)/);
    assert.match(err.message, /force: true/);
    const before = await treeSnapshot(path.join(root, 'esp-fleet-ca'));
    const summary = await restoreBackup(archive, PASSPHRASE, placesIn(root), { force: true });
    const aside = summary.restored.find((r) => r.id === 'ca')!.keptAside!;
    assert.match(path.basename(aside), /^esp-fleet-ca\.before-restore-\d{4}-\d\d-\d\dT/);
    assert.deepEqual(await treeSnapshot(aside), before, 'the replaced CA is kept as it was');
    assert.equal(readFileSync(path.join(root, 'esp-fleet-ca', 'ca.crt'), 'utf8'), fleet.store.caCertificatePem);
  });

  it('restores over a fresh CA that holds only its own server and backend identities, without force', async () => {
    const root = await freshRoot();
    const fresh = await CaStore.open({ dir: path.join(root, 'esp-fleet-ca') });
    await fresh.issueServer({ commonName: 'localhost' });
    await fresh.issueBackend({ commonName: 'node-red' });
    await fresh.idle();
    const summary = await restoreBackup(archive, PASSPHRASE, placesIn(root));
    assert.ok(summary.restored.find((r) => r.id === 'ca')!.keptAside);
    assert.equal(readFileSync(path.join(root, 'esp-fleet-ca', 'ca.crt'), 'utf8'), fleet.store.caCertificatePem);
  });

  it('refuses to restore over a firmware folder with a signing key the archive does not hold', async () => {
    const root = await freshRoot();
    const fw = await FirmwareService.open(path.join(root, 'esp-fleet-firmware'));
    await fw.keyring.current('esp8266-rsa');
    await refused(archive, root, /holds signing keys the archive does not hold/);
  });

  it('puts a part with no matching node back where it was in the user directory, and refuses one with no place', async () => {
    const root = await freshRoot();
    const onlyCa = placesIn(root).filter((p) => p.role === 'ca');
    await assert.rejects(restoreBackup(archive, PASSPHRASE, onlyCa), /no place to restore firmware:fw1 .*registry:fleet1/);
    const summaryOld = await readBackup(archive, PASSPHRASE);
    assert.equal(summaryOld.manifest.parts.find((p) => p.id === 'firmware:fw1')!.inHome, undefined, 'made without a home: no relative place');
    const homed = path.join(tmp.path, 'homed.efb');
    await createBackup(fleet.sources, PASSPHRASE, homed, { kdf: TEST_KDF, home: fleet.root });
    const summary = await restoreBackup(homed, PASSPHRASE, onlyCa, { home: root });
    assert.deepEqual(summary.restored.map((r) => path.relative(root, r.path)), ['esp-fleet-ca', 'esp-fleet-firmware', 'esp-fleet-registry-fleet1.json']);
  });

  describe('a consistent snapshot (each interleaving made on disk by the settle hook, which runs before and after each read)', () => {
    let state: FleetState;
    let calls: number;
    beforeEach(async function () {
      state = await makeFleetState(path.join(tmp.path, `interleave-${++n}`));
      calls = 0;
    });
    /** The CA source whose settle() also runs `step(call)`: 1 before the first read, 2 after it, 3 before the second, … */
    const withSteps = (step: (call: number) => Promise<void>): PartSource[] => {
      const ca = caSource(state.store);
      return [{ ...ca, settle: async () => { await ca.settle(); await step(++calls); } }, ...state.sources.slice(1)];
    };
    const backupAndRestore = async (sources: PartSource[]): Promise<{ root: string; store: CaStore; warnings: string[] }> => {
      const file = path.join(tmp.path, `interleave-${n}.efb`);
      const { warnings } = await createBackup(sources, PASSPHRASE, file, { kdf: TEST_KDF });
      const root = await freshRoot();
      await restoreBackup(file, PASSPHRASE, placesIn(root));
      return { root, store: await CaStore.open({ dir: path.join(root, 'esp-fleet-ca') }), warnings };
    };

    it('a certificate written after the journal was read: read again, so its serial is never issued twice', async () => {
      const journal = path.join(state.store.dir, 'journal.jsonl');
      let late = '';
      const { store } = await backupAndRestore(
        withSteps(async (call) => {
          if (call === 1) {
            // The read sees servers/late.local.crt, but the journal as it was before its line.
            late = (await state.store.issueServer({ commonName: 'late.local' })).record.serial;
            const lines = readFileSync(journal, 'utf8').split('\n');
            const i = lines.findIndex((l) => l.includes(`"serial":"${late}"`));
            await fs.writeFile(journal, lines.filter((_, j) => j !== i).join('\n'));
            await fs.writeFile(`${journal}.held`, lines[i]);
          }
          if (call === 2) {
            const lines = readFileSync(journal, 'utf8').split('\n');
            const held = readFileSync(`${journal}.held`, 'utf8');
            await fs.writeFile(journal, [...lines.slice(0, -1), held, ''].join('\n'));
            await fs.rm(`${journal}.held`);
          }
        }),
      );
      assert.ok(calls >= 4, 'read twice');
      assert.ok(store.list().some((r) => r.serial === late), 'the restored journal knows the late certificate');
      assert.ok(parseInt((await store.issueDevice('84f3eb0000e1')).record.serial, 16) > parseInt(late, 16));
      await store.idle();
    });

    it('a certificate and key caught between their two writes: read again until they match', async () => {
      const keyFile = path.join(state.store.deviceFilesDir, `${DEVICES[0]}.key`);
      const original = readFileSync(keyFile);
      const { root, warnings } = await backupAndRestore(
        withSteps(async (call) => {
          if (call === 1) await fs.writeFile(keyFile, readFileSync(path.join(state.store.deviceFilesDir, `${DEVICES[1]}.key`)));
          if (call === 3) await fs.writeFile(keyFile, original);
        }),
      );
      assert.deepEqual(warnings, []);
      const dir = path.join(root, 'esp-fleet-ca', 'devices');
      assert.ok(new X509Certificate(readFileSync(path.join(dir, `${DEVICES[0]}.crt`))).checkPrivateKey(createPrivateKey(readFileSync(path.join(dir, `${DEVICES[0]}.key`)))));
    });

    it('a revocation journalled but its CRL not yet written: read again, so the restored CRL lists it', async () => {
      const crlFile = state.store.crlFile;
      let serial = '';
      let signed = Buffer.alloc(0);
      const { store } = await backupAndRestore(
        withSteps(async (call) => {
          if (call === 1) {
            const old = readFileSync(crlFile);
            serial = (await state.store.revoke(state.store.list({ kind: 'device' })[0].serial)).serial;
            signed = readFileSync(crlFile);
            await fs.writeFile(crlFile, old);
          }
          if (call === 3) await fs.writeFile(crlFile, signed);
        }),
      );
      const crl = new x509.X509Crl((await store.crlPem()).replace(/X509 CRL/g, 'CRL'));
      assert.ok(crl.entries.some((e) => normalizeSerial(e.serialNumber) === serial), `revoked ${serial} is on the restored CRL`);
    });

    it('a mismatch that stays is the state on disk: kept as it is, and reported', async () => {
      const keyFile = path.join(state.store.deviceFilesDir, `${DEVICES[0]}.key`);
      await fs.writeFile(keyFile, readFileSync(path.join(state.store.deviceFilesDir, `${DEVICES[1]}.key`)));
      const { warnings } = await backupAndRestore(state.sources);
      assert.equal(warnings.length, 1);
      assert.match(warnings[0], new RegExp(`devices/${DEVICES[0]}\\.crt and its key do not match`));
    });
  });

  it('backs up while devices are issued and revoked meanwhile, and restores a store that works', async () => {
    const root = await freshRoot();
    const busy = await makeFleetState(path.join(tmp.path, 'busy'));
    const ids = Array.from({ length: 8 }, (_, i) => `84f3eb00d0${i.toString(16).padStart(2, '0')}`);
    const churn = Promise.all(
      ids.map(async (id, i) => {
        const issued = await busy.store.issueDevice(id);
        if (i % 3 === 0) await busy.store.revoke(issued.record.serial);
      }),
    );
    const file = path.join(tmp.path, 'busy.efb');
    await createBackup(busy.sources, PASSPHRASE, file, { kdf: TEST_KDF });
    await churn;
    await restoreBackup(file, PASSPHRASE, placesIn(root));
    const restored = await CaStore.open({ dir: path.join(root, 'esp-fleet-ca') });
    const records = restored.list({ includeRevoked: true });
    const max = Math.max(...records.map((r) => parseInt(r.serial, 16)));
    assert.ok(parseInt((await restored.issueDevice('84f3eb00d0ff')).record.serial, 16) > max);
    await restored.idle();
  });

  it('refuses a backup file inside a folder it backs up, and parts that overlap', async () => {
    const inside = path.join(fleet.store.dir, 'self.efb');
    await assert.rejects(createBackup(fleet.sources, PASSPHRASE, inside, { kdf: TEST_KDF }), /lies inside .* which it backs up/);
    assert.ok(!(await fs.stat(inside).catch(() => undefined)), 'not written');
    const nested = { role: 'firmware' as const, key: 'inner', path: path.join(fleet.store.dir, 'mosquitto'), settle: async () => undefined };
    await assert.rejects(createBackup([...fleet.sources, nested], PASSPHRASE, path.join(tmp.path, 'overlap.efb'), { kdf: TEST_KDF }), /overlap: each part of a backup needs its own folder/);
  });

  it('checks the passphrase before reading anything, and never puts it in a message', async () => {
    await assert.rejects(createBackup(fleet.sources, 'short', path.join(tmp.path, 'x.efb'), { kdf: TEST_KDF }), /at least 12 characters/);
    await assert.rejects(createBackup(fleet.sources, undefined, path.join(tmp.path, 'x.efb'), { kdf: TEST_KDF }), /at least 12 characters/);
    const err = await openArchive(archiveBytes, 'a wrong passphrase here').catch((e: Error) => e);
    assert.ok(err instanceof BackupError);
    assert.ok(!err.message.includes('a wrong passphrase here'));
  });
});
