import { createHash } from 'node:crypto';
import { promises as fs } from 'node:fs';

/**
 * Images held in memory once and shared by every download of them: a read stream per
 * download cost a thread-pool round trip per 16 KiB and its own buffers per connection
 * (bench/firmware-server). Bounded by total bytes, least recently used out first. Each image
 * is checked against its catalogue SHA-256 when loaded: a file changed on disk is never served.
 */
export class ImageCache {
  /** Map order is use order: the first entry is the least recently used. */
  private readonly entries = new Map<string, { data: Promise<Buffer>; size: number }>();
  private bytes = 0;

  constructor(private readonly maxBytes = 64 * 1024 * 1024) {}

  get(file: string, sha256: string, size: number): Promise<Buffer> {
    const key = `${sha256}:${file}`;
    const hit = this.entries.get(key);
    if (hit) {
      this.entries.delete(key);
      this.entries.set(key, hit);
      return hit.data;
    }
    const data = fs.readFile(file).then((buf) => {
      if (buf.length !== size || createHash('sha256').update(buf).digest('hex') !== sha256) {
        throw new Error(`${file} changed on disk since it was published (size or SHA-256 differ): not served`);
      }
      return buf;
    });
    const entry = { data, size };
    this.entries.set(key, entry);
    this.bytes += size;
    data.catch(() => this.drop(key, entry));
    for (const [k, e] of this.entries) {
      if (this.bytes <= this.maxBytes || k === key) break;
      this.drop(k, e);
    }
    return data;
  }

  private drop(key: string, entry: { size: number }): void {
    if (this.entries.get(key) !== entry) return;
    this.entries.delete(key);
    this.bytes -= entry.size;
  }
}
