import { TopicScheme, CommandSet, SchemeName } from '../../lib/fleet/topic-scheme';
import { FleetTopics } from '../../lib/fleet/fleet-topics';

/** The topic-scheme settings that esp-fleet and esp-broker share. */
export interface SchemeSettings {
  /** `mixed`: secure-esp8266 and secure-esp32 devices on one connection (lib/fleet/fleet-topics.ts). */
  scheme: SchemeName | 'mixed';
  statusTemplate: string;
  willTemplate: string;
  commandTemplate: string;
  logTemplate: string;
  commandSet: CommandSet;
}

export function schemeFromSettings(c: SchemeSettings): TopicScheme | FleetTopics {
  if (c.scheme === 'custom') {
    return new TopicScheme({ status: c.statusTemplate, will: c.willTemplate, command: c.commandTemplate, log: c.logTemplate || undefined }, c.commandSet === 'esp32' ? 'esp32' : 'esp8266');
  }
  if (c.scheme === 'mixed') return FleetTopics.named('mixed');
  return TopicScheme.named(c.scheme || 'secure-esp8266');
}
