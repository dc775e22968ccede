import { strict as assert } from 'node:assert';
import { readFileSync } from 'node:fs';
import * as path from 'node:path';
import { STATUS_OF, statusOfNoImage } from '../../../lib/firmware/update-server';
import type { NoImageReason } from '../../../lib/firmware/update-server';

describe('the status each answer of the update server is told as', () => {
  it('tells every reason as the wire contract says (docs/wire-contract.md, the status table), and no other', () => {
    // The table in the docs is the contract: parse it, so code and docs cannot drift apart.
    const doc = readFileSync(path.resolve(__dirname, '../../../../docs/wire-contract.md'), 'utf8');
    const rows = [...doc.matchAll(/^\| (`[^|]+) \| (\d{3})[^|]* \|$/gm)];
    const documented: Record<string, number> = {};
    for (const [, reasons, status] of rows) for (const [, reason] of reasons.matchAll(/`([a-z0-9-]+)`/g)) documented[reason] = Number(status);
    assert.deepEqual(documented, { ...STATUS_OF });
    // The catalogue's reasons go through the same table.
    for (const reason of ['up-to-date', 'unverifiable', 'bad-assignment', 'held-back', 'bad-request', 'unknown-image', 'too-large'] as NoImageReason[]) {
      assert.equal(statusOfNoImage(reason), documented[reason], reason);
    }
  });

  it('answers 500 to a reason it does not know (from a worker of another version), never 200 or 304', () => {
    assert.equal(statusOfNoImage('from-the-future' as NoImageReason), 500);
  });

  it('keeps the transport’s own refusals in the same table', () => {
    assert.equal(STATUS_OF.busy, 503);
    assert.equal(STATUS_OF['already-running'], 304);
    assert.equal(STATUS_OF['certificate-refused'], 403);
    assert.equal(STATUS_OF['http-version'], 505);
    assert.ok(Object.values(STATUS_OF).every((s) => s === 304 || (s >= 400 && s < 600)), 'no success code among the refusals');
  });
});
