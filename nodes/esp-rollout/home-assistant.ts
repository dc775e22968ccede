import type { FleetClient } from '../../lib/fleet/fleet-client';
import type { Owner } from '../shared/lifecycle';
import { EntityBook, EntityFacts } from '../../lib/homeassistant/entity-book';
import { birthTopic, checkDiscoveryPrefix, INSTALL_FILTER, OWN_PREFIX } from '../../lib/homeassistant/topics';
import { parseInstallCommand } from '../../lib/homeassistant/install-command';
import { errorText } from '../shared/settings';

/** Configs and states follow the fleet within this time (changes in between go out together). */
const FLUSH_MS = 100;

export interface HomeAssistantLinkOptions {
  prefix: string | undefined;
  /** What the update server would install next on the device, or null when unknown. */
  latestOf(id: string, image: string): string | null;
  /** Whether the rollout is updating the device now, and how far its download is. */
  progressOf(id: string): { inProgress: boolean; percent?: number };
  /** HA's install button was pressed for this device (the payload checked already). */
  onInstall(id: string): void;
  warn(text: string): void;
  softwareVersion?: string;
}

/**
 * The Home Assistant link of an esp-rollout (docs/home-assistant.md): one MQTT-discovery
 * `update` entity per device the fleet knows, its state kept current, and HA's install button
 * handed to the rollout. Everything is published again when HA announces itself on its birth
 * topic and after each reconnect. Only the devices that changed are looked at again. Returns
 * `changed(id)`, to call when the rollout moved a device.
 */
export function linkHomeAssistant(own: Owner, c: FleetClient, options: HomeAssistantLinkOptions): { changed: (id: string) => void } {
  const prefix = checkDiscoveryPrefix(options.prefix?.trim() || undefined);
  const book = new EntityBook({ discoveryPrefix: prefix, schemeOf: (id) => c.schemeOf(id), softwareVersion: options.softwareVersion });
  // The devices to look at on the next flush; undefined: all of them.
  let dirty: Set<string> | undefined;
  function* facts(ids: Iterable<string>): Iterable<EntityFacts> {
    for (const id of ids) {
      const e = c.registry.get(id);
      if (!e?.image) continue;
      yield { id, name: e.lastStatus?.espname, image: e.image, latest: options.latestOf(id, e.image), ...options.progressOf(id) };
    }
  }
  const flush = (): void => {
    if (own.closing || c.state !== 'connected') return;
    const ids = dirty ?? c.registry.ids();
    dirty = new Set();
    for (const m of book.changes(facts(ids))) {
      c.publishMessage(m).catch((err) => {
        book.unsent(m.topic);
        options.warn(`Home Assistant: ${m.topic} was not published: ${errorText(err)}`);
      });
    }
  };
  const flushSoon = own.soon(flush, FLUSH_MS);
  const changed = (id: string): void => {
    dirty?.add(id);
    flushSoon();
  };
  const everything = (): void => {
    book.forget();
    dirty = undefined;
    flushSoon();
  };
  own.listen(c, 'state', (state: string) => state === 'connected' && everything());
  own.listen(c, 'status', (id: string) => changed(id));
  const birth = birthTopic(prefix);
  own.onClose(
    c.subscribeExtra(birth, (topic, payload) => {
      if (topic !== birth) return false;
      if (payload.toString('utf8') === 'online') everything();
      return true;
    }),
  );
  own.onClose(
    c.subscribeExtra(INSTALL_FILTER, (topic, payload, retain) => {
      if (!topic.startsWith(`${OWN_PREFIX}/`) || !topic.endsWith('/install')) return false;
      const command = parseInstallCommand(topic, payload, { retain });
      if (command.ok) options.onInstall(command.id);
      else options.warn(`Home Assistant: install refused on ${topic.slice(0, 80)}: ${command.reason}`);
      return true;
    }),
  );
  everything();
  return { changed };
}
