import { readFileIfExists, writeFileAtomic } from '../fs/atomic-file';
import { CoalescingTask } from '../coalescing-task';
import { DeviceEntry, DeviceRegistry, RegistryOptions } from './registry';

interface RegistryFileContent {
  version: 1;
  devices: DeviceEntry[];
}

/**
 * Keeps a registry on disk across restarts. Writes are atomic, never overlap, and happen at
 * most once per `intervalMs` however many reports arrive (20,000 a second must not mean
 * 20,000 writes).
 */
export class RegistryFile {
  private readonly writer = new CoalescingTask(() => this.write());
  private written = -1;
  private timer: NodeJS.Timeout | undefined;
  private retired = false;

  private constructor(
    readonly file: string,
    readonly registry: DeviceRegistry,
    private readonly intervalMs: number,
  ) {}

  static async open(file: string, options: RegistryOptions & { intervalMs?: number } = {}): Promise<RegistryFile> {
    const text = await readFileIfExists(file);
    let entries: DeviceEntry[] = [];
    if (text !== undefined) {
      try {
        const content = JSON.parse(text) as RegistryFileContent;
        if (content.version === 1 && Array.isArray(content.devices)) entries = content.devices;
      } catch {
        // A registry is a cache of what devices said: an unreadable one starts empty, the fleet refills it.
      }
    }
    const registry = new DeviceRegistry(options, entries);
    return new RegistryFile(file, registry, options.intervalMs ?? 2_000);
  }

  /** Call after changes; the write happens within `intervalMs`. */
  changed(): void {
    if (this.timer || this.retired) return;
    this.timer = setTimeout(() => {
      this.timer = undefined;
      this.writer.request().catch(() => undefined);
    }, this.intervalMs);
    this.timer.unref();
  }

  /** Writes now if anything changed since the last write. */
  async flush(): Promise<void> {
    if (this.timer) {
      clearTimeout(this.timer);
      this.timer = undefined;
    }
    await this.writer.request();
  }

  /**
   * Writes nothing from now on: the file was replaced under this copy (a restore from a backup),
   * and what this copy holds must not overwrite it before the flows restart.
   */
  retire(): void {
    this.retired = true;
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
  }

  private async write(): Promise<void> {
    if (this.retired) return;
    const version = this.registry.version;
    if (version === this.written) return;
    const content: RegistryFileContent = { version: 1, devices: this.registry.list() };
    await writeFileAtomic(this.file, JSON.stringify(content));
    this.written = version;
  }
}
