import * as https from 'node:https';

export interface EstResponse {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: string;
}

/** One request to an EST route on 127.0.0.1, a fresh TLS connection each time, as a board makes it. */
export function estRequest(
  port: number,
  route: 'cacerts' | 'simpleenroll' | 'simplereenroll' | string,
  o: { ca: string; body?: string | Buffer; auth?: string; cert?: string; key?: string; accept?: string; contentType?: string; method?: string; path?: string; localAddress?: string } = { ca: '' },
): Promise<EstResponse> {
  return new Promise((resolve, reject) => {
    const headers: Record<string, string> = {};
    if (o.body !== undefined) headers['Content-Type'] = o.contentType ?? 'application/pkcs10';
    if (o.auth) headers.Authorization = `Basic ${Buffer.from(o.auth).toString('base64')}`;
    if (o.accept) headers.Accept = o.accept;
    const req = https.request(
      {
        host: '127.0.0.1',
        port,
        servername: 'localhost',
        method: o.method ?? (o.body === undefined ? 'GET' : 'POST'),
        path: o.path ?? `/.well-known/est/${route}`,
        ca: o.ca,
        cert: o.cert,
        key: o.key,
        agent: false,
        localAddress: o.localAddress,
        headers,
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks).toString('utf8') }));
        res.on('error', reject);
      },
    );
    req.on('error', reject);
    req.setTimeout(15_000, () => req.destroy(new Error('EST request timed out')));
    req.end(o.body);
  });
}
