import { createHash, randomBytes } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import * as path from 'node:path';
import { CaStore } from '../../../lib/pki/ca-store';
import { startUpdateServer, RunningUpdateServer, UpdateEvent, ImageSource, ImageOffer, UpdateServerOptions } from '../../../lib/firmware/update-server';
import { tempDir } from '../../support/temp-dir';
import { deviceIdentity, localServerOptions } from '../../support/update-server';
import type { ClientIdentity } from '../../support/raw-https';

export const A = '84f3eb0000a1';
export const B = '84f3eb0000b2';
export const OLD = 'ESP8266_WEMOS_D1MINIPRO-00.00.07.a';
export const NEW = 'ESP8266_WEMOS_D1MINIPRO-00.00.08.f';
/** Offered a 24 MB image: more than loopback socket buffers hold, so a client that stops reading really stalls. */
export const BIG_FROM = 'ESP8266_WEMOS_D1MINIPRO-00.00.06.a';

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Waits (bounded) until `ok()` holds. */
export async function until(what: string, ok: () => boolean, ms = 10_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!ok()) {
    if (Date.now() > deadline) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await sleep(10);
  }
}

/**
 * A real update server on 127.0.0.1 for the security tests: a fresh CaStore in a temp folder
 * (server identity `localhost`, devices A and B), a two-version catalogue (OLD → NEW, and a
 * 24 MB image from BIG_FROM), and every event it reports.
 */
export class UpdateTarget {
  store!: CaStore;
  server!: RunningUpdateServer;
  offer!: ImageOffer;
  bigOffer!: ImageOffer;
  readonly events: UpdateEvent[] = [];
  private readonly tmp = tempDir('security-update');
  private unsubscribe: (() => void) | undefined;

  readonly images: ImageSource = {
    next: ({ currentImage }) => {
      if (currentImage === NEW) return { kind: 'none', reason: 'up-to-date', detail: 'already the newest' };
      if (currentImage === BIG_FROM) return { kind: 'offer', image: this.bigOffer };
      if (currentImage === OLD) return { kind: 'offer', image: this.offer };
      return { kind: 'none', reason: 'unknown-image', detail: `unknown image ${JSON.stringify(currentImage.slice(0, 60))}` };
    },
  };

  get dir(): string {
    return this.tmp.path;
  }

  get port(): number {
    return this.server.port;
  }

  async open(): Promise<this> {
    this.store = await CaStore.open({ dir: path.join(this.tmp.path, 'ca') });
    await this.store.issueServer({ commonName: 'localhost' });
    await this.store.issueDevice(A);
    await this.store.issueDevice(B);
    const image = Buffer.concat([Buffer.from([0xe9]), randomBytes(300_000)]);
    const file = path.join(this.tmp.path, 'new.bin');
    writeFileSync(file, image);
    this.offer = { name: NEW, size: image.length, sha256: sha256(image), md5: md5(image), path: file };
    const big = Buffer.alloc(24 * 1024 * 1024, 0x5a);
    big[0] = 0xe9;
    writeFileSync(path.join(this.tmp.path, 'big.bin'), big);
    this.bigOffer = { name: NEW, size: big.length, sha256: sha256(big), md5: md5(big), path: path.join(this.tmp.path, 'big.bin') };
    return this;
  }

  /**
   * (Re)starts the server. `wireCrl` (default true): revocations reach it as in the node,
   * store.onCrlChange → setCrl.
   */
  async start(overrides: Partial<UpdateServerOptions> = {}, wireCrl = true): Promise<void> {
    await this.stop();
    this.server = await startUpdateServer({
      ...(await localServerOptions(this.store)),
      deviceConfig: (device) => ({ mqttserver: 'broker.local', statusinterval: 60000, ...(device ? { device } : {}) }),
      images: this.images,
      onEvent: (e) => this.events.push(e),
      ...overrides,
    });
    const running = this.server;
    if (wireCrl) this.unsubscribe = this.store.onCrlChange((crl) => void running.setCrl(crl));
  }

  async stop(): Promise<void> {
    this.unsubscribe?.();
    this.unsubscribe = undefined;
    await this.server?.close();
  }

  id(device?: string): ClientIdentity {
    return deviceIdentity(this.store, device);
  }

  rejected(match: RegExp): UpdateEvent[] {
    return this.events.filter((e) => e.type === 'rejected' && match.test(e.reason ?? ''));
  }

  async close(): Promise<void> {
    await this.stop();
    await this.store?.idle();
    this.tmp.remove();
  }
}

const sha256 = (b: Buffer): string => createHash('sha256').update(b).digest('hex');
const md5 = (b: Buffer): string => createHash('md5').update(b).digest('hex');
