import { strict as assert } from 'node:assert';
import * as path from 'node:path';
import { recordAttack } from './support/attack-tally';
import { rawRequest, RawResponse } from '../support/raw-https';
import { UpdateTarget, A, sleep, until } from './support/update-target';

// Finding: `GET <path>/%ZZ` answered express's HTML stack trace with absolute install paths
// and left no audit event. Now every malformed request gets a short text answer (never a stack
// trace or a path of this machine) and a 'rejected' event, whichever layer refuses it: Node's
// HTTP parser ('clientError'), express's router, or the handlers.

const H = 'Host: localhost\r\n';
const C = 'Connection: close\r\n';

/** [what, the raw request, the status expected]. */
const CASES: [string, string, number][] = [
  ['%ZZ in the path', `GET /fw/%ZZ HTTP/1.1\r\n${H}${C}\r\n`, 400],
  ['%ZZ after a device file name', `GET /fw/84f3eb0000a1.crt%ZZ HTTP/1.1\r\n${H}${C}\r\n`, 400],
  ['a truncated percent-escape', `GET /fw/%E0%A4%A HTTP/1.1\r\n${H}${C}\r\n`, 400],
  ['a lone percent sign', `GET /fw/abc% HTTP/1.1\r\n${H}${C}\r\n`, 400],
  ['overlong UTF-8 dots (%C0%AE)', `GET /fw/%C0%AE%C0%AE%2Fca.key HTTP/1.1\r\n${H}${C}\r\n`, 400],
  ['an invalid UTF-8 byte (%FF)', `GET /fw/%FF HTTP/1.1\r\n${H}${C}\r\n`, 400],
  ['%ZZ outside the download path', `GET /%ZZ HTTP/1.1\r\n${H}${C}\r\n`, 404],
  ['a method token with a bad character', `G@T /fw/config.json HTTP/1.1\r\n${H}${C}\r\n`, 400],
  ['an unknown method', `FOO /fw/config.json HTTP/1.1\r\n${H}${C}\r\n`, 400],
  ['DELETE', `DELETE /fw/config.json HTTP/1.1\r\n${H}${C}\r\n`, 405],
  ['POST with a body', `POST /fw/config.json HTTP/1.1\r\n${H}${C}Content-Length: 4\r\n\r\nabcd`, 405],
  ['OPTIONS *', `OPTIONS * HTTP/1.1\r\n${H}${C}\r\n`, 405],
  ['CONNECT (a proxy request)', `CONNECT localhost:443 HTTP/1.1\r\n${H}\r\n`, 405],
  ['an HTTP/0.9 request line (no version)', `GET /fw/config.json\r\n\r\n`, 505],
  ['an unknown HTTP version', `GET /fw/config.json HTTP/7.3\r\n${H}${C}\r\n`, 400],
  ['HTTP/1.1 without Host', `GET /fw/config.json HTTP/1.1\r\n${C}\r\n`, 400],
  ['a 20 KB header', `GET /fw/config.json HTTP/1.1\r\n${H}X-Big: ${'a'.repeat(20_000)}\r\n${C}\r\n`, 431],
  ['a 10 KB request line', `GET /fw/${'a'.repeat(10_000)} HTTP/1.1\r\n${H}${C}\r\n`, 431],
  ['3,000 short headers', `GET /fw/config.json HTTP/1.1\r\n${H}${Array.from({ length: 3000 }, (_, i) => `X${i}: ${i}\r\n`).join('')}${C}\r\n`, 431],
  ['a space before the colon', `GET /fw/config.json HTTP/1.1\r\nHost : localhost\r\n${C}\r\n`, 400],
  ['a NUL byte in a header value', `GET /fw/config.json HTTP/1.1\r\n${H}X-A: a\u0000b\r\n${C}\r\n`, 400],
  ['a bare CR in the request line', `GET /fw/config.json\rHTTP/1.1\r\n${H}${C}\r\n`, 400],
  ['a folded header line (obs-fold)', `GET /fw/config.json HTTP/1.1\r\n${H}X-A: a\r\n b\r\n${C}\r\n`, 400],
  ['Content-Length and Transfer-Encoding together (CL.TE)', `POST /fw/config.json HTTP/1.1\r\n${H}Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n`, 400],
  ['two different Content-Length headers', `POST /fw/config.json HTTP/1.1\r\n${H}Content-Length: 4\r\nContent-Length: 5\r\n\r\nabcde`, 400],
  ['a negative Content-Length', `GET /fw/config.json HTTP/1.1\r\n${H}Content-Length: -1\r\n\r\n`, 400],
  ['a Transfer-Encoding other than chunked last', `POST /fw/config.json HTTP/1.1\r\n${H}Transfer-Encoding: chunked, gzip\r\n\r\n`, 400],
  // Refused for its method before its body is parsed; the body's error then closes the connection.
  ['a bad chunk size', `POST /fw/config.json HTTP/1.1\r\n${H}Transfer-Encoding: chunked\r\n\r\nzz\r\n`, 405],
  ['binary garbage', `\u0016\u0003\u0001\u0000\u00ff\u00fe\u0000GET\r\n\r\n`, 400],
];

/** A path of this machine in an answer: the test's folders, the repository, node_modules, a home. */
function leaksPath(text: string, target: UpdateTarget): boolean {
  return [target.dir, process.cwd(), path.resolve(__dirname, '..', '..'), '/node_modules/', '/home/', '/root/', '/usr/'].some((p) => text.includes(p));
}

describe('security: malformed requests to the update server get a short text answer and an audit event', function () {
  this.timeout(60_000);
  const target = new UpdateTarget();

  before(async () => {
    await target.open();
    await target.start();
  });
  beforeEach(() => (target.events.length = 0));
  after(async () => {
    await target.close();
  });

  for (const [what, request, status] of CASES) {
    it(`${what}: ${status}`, async () => {
      const r: RawResponse = await rawRequest(target.port, target.id(A), request, { host: '127.0.0.1' });
      const body = r.body.toString('latin1');
      assert.equal(r.status, status, `${r.head}\n\n${body}`);
      assert.ok(r.body.length < 300, `a short answer (${r.body.length} bytes)`);
      if (r.body.length) assert.equal(r.headers['content-type'], 'text/plain; charset=utf-8');
      assert.doesNotMatch(body, /\n\s+at |<html|<pre|Error:|node_modules/i, 'no stack trace, no HTML');
      assert.ok(!leaksPath(body, target), `no path of this machine in ${JSON.stringify(body)}`);
      // The audit trail: one refusal with the status sent (a moment later for the server's own events).
      await until('the audit event', () => target.events.some((e) => e.type === 'rejected' && e.status === status), 2_000);
      const audit = target.events.find((e) => e.type === 'rejected' && e.status === status)!;
      assert.ok(audit.reason && audit.reason.length < 200, 'with a short reason');
      assert.equal(audit.remoteAddress, '127.0.0.1');
      assert.ok(!leaksPath(JSON.stringify(audit), target) || status >= 500);
      // And the server still serves.
      const ok = await rawRequest(target.port, target.id(A), `GET /fw/config.json HTTP/1.0\r\n${H}\r\n`, { host: '127.0.0.1' });
      assert.equal(ok.status, 200);
      recordAttack('update-server', 'refused');
    });
  }

  it('an HTTP/2 preface (PRI) is closed without an answer, and the server keeps serving', async () => {
    const r = await rawRequest(target.port, target.id(A), 'PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n', { host: '127.0.0.1' }).catch((err: Error) => err);
    assert.ok(r instanceof Error ? /no HTTP response/.test(r.message) : r.status >= 400, 'refused');
    await sleep(50);
    assert.equal((await rawRequest(target.port, target.id(A), `GET /fw/config.json HTTP/1.0\r\n${H}\r\n`, { host: '127.0.0.1' })).status, 200);
    recordAttack('update-server', 'refused');
  });

  it('an internal error names no path of this machine in its answer (the audit event keeps the detail)', async () => {
    await target.start({ images: { next: () => ({ kind: 'offer', image: { ...target.offer, path: path.join(target.dir, 'gone', 'missing.bin') } }) } });
    try {
      const r = await rawRequest(target.port, target.id(A), `GET /fw/firmware.bin?curimage=X-1.0 HTTP/1.0\r\n${H}\r\n`, { host: '127.0.0.1' });
      assert.equal(r.status, 500);
      assert.ok(!leaksPath(r.body.toString(), target), r.body.toString());
      assert.match(r.body.toString(), /missing\.bin/);
      const audit = target.events.find((e) => e.type === 'rejected' && e.status === 500)!;
      assert.ok(audit.reason?.includes(target.dir), 'the operator sees the full path');
    } finally {
      await target.start();
    }
  });
});
