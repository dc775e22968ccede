import { strict as assert } from 'node:assert';
import * as path from 'node:path';
import { X509Certificate } from 'node:crypto';
import { CaStore } from '../../../lib/pki/ca-store';
import { backendIdentity } from '../../../lib/fleet/backend-identity';
import { tempDir } from '../../support/temp-dir';

describe("Node-RED's backend identity from the CA", function () {
  this.timeout(30_000);
  const tmp = tempDir('backend');
  after(() => tmp.remove());

  it('is issued on first use, reused after, and replaced once revoked', async () => {
    const store = await CaStore.open({ dir: path.join(tmp.path, 'ca') });
    const first = await backendIdentity(store, 'node-red');
    assert.equal(first.issued, true);
    assert.equal(first.ca, store.caCertificatePem);
    const again = await backendIdentity(store, 'node-red');
    assert.equal(again.issued, false);
    assert.equal(again.cert, first.cert);
    await store.revoke(new X509Certificate(first.cert).serialNumber, 'keyCompromise');
    const replaced = await backendIdentity(store, 'node-red');
    assert.equal(replaced.issued, true);
    assert.notEqual(replaced.cert, first.cert);
    assert.notEqual(replaced.key, first.key);
  });
});
