import type { TopicScheme } from '../fleet/topic-scheme';
import { HaMessage } from './message';
import { updateEntityConfig } from './update-entity';
import { updateStateMessage } from './update-state';

/** One device as the link sees it: what it runs, what it would get next, whether it is updating now. */
export interface EntityFacts {
  id: string;
  name?: string;
  image?: string;
  /** The update server's next image for it; null when unknown (no server, or it has not reported). */
  latest: string | null;
  /** Download percent while it updates (from the rollout), else undefined. */
  percent?: number;
  inProgress?: boolean;
}

/**
 * Which Home Assistant messages to publish (docs/home-assistant.md), with no I/O: a device's
 * config once (again after HA's birth message or a reconnect, when `all` is asked for), its
 * state whenever what HA would show changes. The last payload of each topic is kept so an
 * unchanged state is not published again; a device that has not reported an image has no
 * entity yet (HA needs `installed_version`).
 */
export class EntityBook {
  private readonly sent = new Map<string, string>();

  /** `schemeOf`: each device's own topic scheme (a mixed fleet has two), for its will as HA's availability. */
  constructor(private readonly options: { discoveryPrefix: string; schemeOf: (id: string) => TopicScheme; softwareVersion?: string }) {}

  /** Messages for what changed since the last call (configs and states not yet published as they are). */
  changes(devices: Iterable<EntityFacts>): HaMessage[] {
    const out: HaMessage[] = [];
    for (const d of devices) {
      if (!d.image) continue;
      const config = updateEntityConfig({ id: d.id, name: d.name, image: d.image }, { discoveryPrefix: this.options.discoveryPrefix, scheme: this.options.schemeOf(d.id), softwareVersion: this.options.softwareVersion });
      const inProgress = d.inProgress ?? d.percent !== undefined;
      const state = updateStateMessage(d.id, { installed: d.image, latest: d.latest ?? d.image, inProgress, percent: inProgress ? (d.percent ?? null) : null });
      for (const m of [config, state]) {
        if (this.sent.get(m.topic) === m.payload) continue;
        this.sent.set(m.topic, m.payload);
        out.push(m);
      }
    }
    return out;
  }

  /** Forgets what was sent: the next `changes` publishes everything again (HA restarted, or the connection was new). */
  forget(): void {
    this.sent.clear();
  }

  /** Forgets one topic, e.g. after a failed publish, so the next call sends it again. */
  unsent(topic: string): void {
    this.sent.delete(topic);
  }
}
