import { strict as assert } from 'node:assert';
import { STATUS_OF, statusOfNoImage } from '../../../lib/firmware/update-server';
import type { NoImageReason } from '../../../lib/firmware/update-server';

describe('the status each answer of the update server is told as', () => {
  it('tells the catalogue’s reasons for "nothing" as 304, 400, 404 or 413 (what ESP8266httpUpdate tells apart)', () => {
    const expected: Record<NoImageReason, number> = {
      'up-to-date': 304,
      unverifiable: 304,
      'bad-assignment': 304,
      'held-back': 304,
      'bad-request': 400,
      'unknown-image': 404,
      'too-large': 413,
    };
    for (const [reason, status] of Object.entries(expected)) assert.equal(statusOfNoImage(reason as NoImageReason), status, reason);
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
