import { strict as assert } from 'node:assert';
import { readFileSync } from 'node:fs';
import * as path from 'node:path';
import { CaStore } from '../../../lib/pki/ca-store';
import { keepMosquittoFolders, writeMosquittoConfig } from '../../../lib/mosquitto/folders';
import { tempDir } from '../../support/temp-dir';
import { opensslOk } from '../../support/openssl';

const T0 = Date.parse('2030-01-01T00:00:00Z');
const DEVICE = '84f3eb0c0001';

const aclBlock = (id: string): RegExp => new RegExp(`^user ${id}\\ntopic write /status/${id}\\ntopic write /will/${id}/will\\ntopic read /command/${id}/#$`, 'm');

describe('Mosquitto folders kept from the CA change stream (lib/mosquitto)', function () {
  this.timeout(60_000);
  const tmp = tempDir('mosq-folders');
  let t = T0;
  const now = (): Date => new Date(t);
  let store: CaStore;
  let mdir: string;

  before(async () => {
    store = await CaStore.open({ dir: path.join(tmp.path, 'ca'), now });
    mdir = path.join(tmp.path, 'mosquitto');
    await writeMosquittoConfig(store, { dir: mdir, serverName: 'localhost', port: 18990 });
  });
  after(async () => {
    await store?.idle();
    tmp.remove();
  });

  it('on revoke rewrites the folder: the ACL loses the device, crl.pem is the new CRL with its fixed revocation date', async () => {
    const issued = await store.issueDevice(DEVICE);
    assert.match(readFileSync(path.join(mdir, 'acl'), 'utf8'), aclBlock(DEVICE));
    const crlBefore = readFileSync(path.join(mdir, 'crl.pem'), 'utf8');
    t = Date.parse('2030-03-04T05:06:07Z');
    await store.revoke(issued.record.serial, 'keyCompromise');
    // The keeper's writes are part of revoke: nothing to wait for.
    assert.doesNotMatch(readFileSync(path.join(mdir, 'acl'), 'utf8'), new RegExp(DEVICE));
    const crl = readFileSync(path.join(mdir, 'crl.pem'), 'utf8');
    assert.notEqual(crl, crlBefore);
    assert.equal(crl, readFileSync(store.crlFile, 'utf8'));
    assert.match(opensslOk(['crl', '-in', path.join(mdir, 'crl.pem'), '-noout', '-text']), new RegExp(`Serial Number: ${issued.record.serial}\\s+Revocation Date: Mar  4 05:06:07 2030 GMT`));
  });

  it("copies the broker's renewed certificate and key into the folder", async () => {
    const renewed = await store.renew({ commonName: 'localhost', newKey: true });
    assert.equal(readFileSync(path.join(mdir, 'server.crt'), 'utf8'), renewed.certificatePem);
    assert.equal(readFileSync(path.join(mdir, 'server.key'), 'utf8'), renewed.privateKeyPem);
  });

  it('copies the CRL re-signed by refreshCrlIfDue on the injected clock', async () => {
    t += 150 * 86_400_000; // 30 days of the 180 left: due
    assert.equal(await store.refreshCrlIfDue(), true);
    assert.equal(readFileSync(path.join(mdir, 'crl.pem'), 'utf8'), readFileSync(store.crlFile, 'utf8'));
    assert.match(opensslOk(['crl', '-in', path.join(mdir, 'crl.pem'), '-noout', '-lastupdate']), /lastUpdate=Aug  1 04:56:07 2030 GMT/);
  });

  it('after a restart, a store opened with keepers: [keepMosquittoFolders] keeps the recorded folder current', async () => {
    await store.idle();
    const reopened = await CaStore.open({ dir: store.dir, now, keepers: [keepMosquittoFolders] });
    assert.deepEqual(reopened.mosquittoFolders.map((f) => f.dir), [mdir]);
    await reopened.issueDevice('84f3eb0c0002');
    assert.match(readFileSync(path.join(mdir, 'acl'), 'utf8'), aclBlock('84f3eb0c0002'));
    await reopened.revoke(reopened.currentIdentity('device', '84f3eb0c0002')!.serial);
    assert.doesNotMatch(readFileSync(path.join(mdir, 'acl'), 'utf8'), /84f3eb0c0002/);
    assert.equal(readFileSync(path.join(mdir, 'crl.pem'), 'utf8'), readFileSync(reopened.crlFile, 'utf8'));
    keepMosquittoFolders(reopened).stop();
    await reopened.idle();
  });

  it('one keeper per store: keeping twice does not write twice, and stop() ends the upkeep', async () => {
    const d = path.join(tmp.path, 'single');
    const s = await CaStore.open({ dir: d, now });
    assert.equal(keepMosquittoFolders(s), keepMosquittoFolders(s));
    const folder = path.join(tmp.path, 'mosq-single');
    await writeMosquittoConfig(s, { dir: folder, serverName: 'localhost' });
    keepMosquittoFolders(s).stop();
    await s.issueDevice('84f3eb0c0003');
    assert.doesNotMatch(readFileSync(path.join(folder, 'acl'), 'utf8'), /84f3eb0c0003/);
    await s.idle();
  });
});
