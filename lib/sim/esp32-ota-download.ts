import type { DeviceGetOptions, DeviceResponse, HttpsTarget } from './device-https';

/**
 * The download of an image as ESP-IDF's `esp_https_ota` makes it (v5.5.5:
 * components/esp_https_ota/src/esp_https_ota.c, esp_https_ota_begin and _http_handle_response_code;
 * the request itself from components/esp_http_client/esp_http_client.c):
 * - one GET, HTTP/1.1, headers `User-Agent: ESP32 HTTP Client/1.0` and `Host` (with `:port`
 *   unless 443), no Connection header, no If-Range, no ETag: the client never sends one;
 * - with OTA resumption on (`ota_resumption`, ESP-IDF ≥ 5.5) the GET always carries
 *   `Range: bytes=<written>-`, 0 for a fresh start; the written length counts only from 1024
 *   bytes on (DEFAULT_OTA_BUF_SIZE), and with flash encryption it is rounded down to 16;
 * - the answer to a ranged GET must be 206: anything else that is not an error (a 200 from a
 *   server that ignores Range) and 416 both mean "start over": the connection is closed, the
 *   written length set to 0 and the same GET sent once more without Range;
 * - 304 is "not modified" and no error of the download; 403/404 and other 4xx/5xx fail it.
 * ESP-IDF checks no Content-Range and no validator: a resumed download of a changed file splices
 * two images, which the signature check at the end then refuses.
 */
export interface OtaRequestLog {
  path: string;
  headers: Record<string, string>;
  status: number;
}

export type OtaDownload =
  /** `bytes` is the whole image: what is written before plus this answer. */
  | { kind: 'complete'; bytes: Buffer; resumedFrom: number }
  /** The connection dropped: `bytes` were written; `total` the image's size if it was known. */
  | { kind: 'cut'; bytes: Buffer; total?: number }
  | { kind: 'not-modified' }
  | { kind: 'http-error'; status: number; text: string };

export type OtaGet = (target: HttpsTarget, pathAndQuery: string, options: DeviceGetOptions) => Promise<DeviceResponse>;

const MIN_RESUME = 1024;

export const ESP_HTTP_USER_AGENT = 'ESP32 HTTP Client/1.0';

/** The headers esp_http_client sends for a GET of `url`, in its order (User-Agent, Host, then the OTA's Range). */
export function espIdfOtaHeaders(url: URL, rangeFrom?: number): Record<string, string> {
  const port = Number(url.port) || 443;
  const headers: Record<string, string> = { 'User-Agent': ESP_HTTP_USER_AGENT, Host: port === 443 ? url.hostname : `${url.hostname}:${port}` };
  if (rangeFrom !== undefined) headers.Range = `bytes=${rangeFrom}-`;
  return headers;
}

/** Where a ranged download starts, from what the device recorded as written. */
export function resumeOffset(written: number, flashEncryption: boolean): number {
  if (written < MIN_RESUME) return 0;
  return flashEncryption ? written & ~0xf : written;
}

export async function espHttpsOta(
  url: URL,
  written: Buffer,
  options: { resumption: boolean; flashEncryption: boolean; get: OtaGet; request: Omit<DeviceGetOptions, 'headers' | 'httpVersion' | 'keepPartial' | 'stopAfterHeaders'>; log: (entry: OtaRequestLog) => void; onFallback?: (why: string) => void },
): Promise<OtaDownload> {
  const target: HttpsTarget = { host: url.hostname, port: Number(url.port) || 443 };
  const path = `${url.pathname}${url.search}`;
  let from = options.resumption ? resumeOffset(written.length, options.flashEncryption) : 0;
  let ranged = options.resumption;
  for (let attempt = 0; attempt < 2; attempt++) {
    const headers = espIdfOtaHeaders(url, ranged ? from : undefined);
    const expectPartial = ranged;
    const res = await options.get(target, path, {
      ...options.request,
      headers,
      httpVersion: '1.1',
      keepPartial: true,
      // A ranged GET answered other than 206 (or 416) is not read: esp_https_ota closes and starts over.
      stopAfterHeaders: (status) => expectPartial && (status === 416 || (status < 300 && status !== 206)),
    });
    options.log({ path, headers, status: res.status });
    if (res.status === 304) return { kind: 'not-modified' };
    if (expectPartial && (res.status === 416 || (res.status < 300 && res.status !== 206))) {
      options.onFallback?.(res.status === 416 ? `range bytes=${from}- not satisfiable (416)` : `the server ignored Range (HTTP ${res.status})`);
      ranged = false;
      from = 0;
      continue;
    }
    if (res.status !== 200 && res.status !== 206) return { kind: 'http-error', status: res.status, text: res.body.toString('utf8').slice(0, 120) };
    const bytes = res.status === 206 ? Buffer.concat([written.subarray(0, from), res.body]) : res.body;
    const length = Number(res.headers['content-length']);
    const total = Number.isInteger(length) ? (res.status === 206 ? from + length : length) : undefined;
    if (!res.complete) return { kind: 'cut', bytes, total };
    return { kind: 'complete', bytes, resumedFrom: res.status === 206 ? from : 0 };
  }
  return { kind: 'http-error', status: 416, text: 'no full download after starting over' };
}
