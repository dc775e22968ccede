import { TopicScheme, CommandSet, SchemeName } from '../../lib/fleet/topic-scheme';

/** The topic-scheme settings that esp-fleet and esp-broker share. */
export interface SchemeSettings {
  scheme: SchemeName;
  statusTemplate: string;
  willTemplate: string;
  commandTemplate: string;
  logTemplate: string;
  commandSet: CommandSet;
}

export function schemeFromSettings(c: SchemeSettings): TopicScheme {
  if (c.scheme === 'custom') {
    return new TopicScheme({ status: c.statusTemplate, will: c.willTemplate, command: c.commandTemplate, log: c.logTemplate || undefined }, c.commandSet === 'esp32' ? 'esp32' : 'esp8266');
  }
  return TopicScheme.named(c.scheme || 'secure-esp8266');
}
