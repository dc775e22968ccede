import { BUILTIN_SCHEMES, CommandSet, InboundKind, TopicScheme, TopicSchemeError } from './topic-scheme';

/** The built-in choices of one connection: one scheme, or `mixed` (ESP8266 and ESP32 devices side by side). */
export const TOPIC_CHOICES = {
  'secure-esp8266': ['secure-esp8266'],
  'secure-esp32': ['secure-esp32'],
  // First is the default: a device not heard from yet is addressed as an ESP8266.
  mixed: ['secure-esp8266', 'secure-esp32'],
} as const satisfies Record<string, readonly (keyof typeof BUILTIN_SCHEMES)[]>;

export type TopicChoiceName = keyof typeof TOPIC_CHOICES;

export interface FleetParsedTopic {
  kind: InboundKind;
  id: string;
  /** The command set of the scheme the topic matched: the device's platform. */
  commandSet: CommandSet;
}

/**
 * The topics of one fleet connection: one or more schemes, each of its own command set
 * (docs/wire-contract.md, MQTT topics). A single scheme behaves exactly as the scheme does; with
 * several, the subscriptions are the union and a topic belongs to the first scheme that parses it.
 */
export class FleetTopics {
  readonly schemes: readonly TopicScheme[];

  constructor(schemes: readonly TopicScheme[]) {
    if (schemes.length === 0) throw new TopicSchemeError('a fleet needs at least one topic scheme');
    const sets = schemes.map((s) => s.commandSet);
    // One scheme per command set: the set is how a command finds the device's topic.
    if (new Set(sets).size !== sets.length) throw new TopicSchemeError(`two schemes of one fleet share a command set (${sets.join(', ')})`);
    this.schemes = [...schemes];
  }

  static of(choice: TopicScheme | FleetTopics): FleetTopics {
    return choice instanceof FleetTopics ? choice : new FleetTopics([choice]);
  }

  static named(name: TopicChoiceName): FleetTopics {
    const names = TOPIC_CHOICES[name] as readonly (keyof typeof BUILTIN_SCHEMES)[] | undefined;
    if (!names || !Object.hasOwn(TOPIC_CHOICES, name)) throw new TopicSchemeError(`unknown topic scheme ${JSON.stringify(name)}: ${Object.keys(TOPIC_CHOICES).join(', ')}`);
    return new FleetTopics(names.map((n) => TopicScheme.named(n)));
  }

  /** The scheme of devices not heard from yet. */
  get first(): TopicScheme {
    return this.schemes[0];
  }

  get commandSets(): CommandSet[] {
    return this.schemes.map((s) => s.commandSet);
  }

  /** Every inbound filter of every scheme, each once. */
  get subscriptions(): string[] {
    return [...new Set(this.schemes.flatMap((s) => s.subscriptions))];
  }

  /** The scheme of `set`, or the first when the fleet has none of that set (or it is unknown). */
  schemeFor(set: CommandSet | undefined): TopicScheme {
    return this.schemes.find((s) => s.commandSet === set) ?? this.first;
  }

  parse(topic: string): FleetParsedTopic | { error: string } {
    let error: string | undefined;
    for (const scheme of this.schemes) {
      const parsed = scheme.parse(topic);
      if (!('error' in parsed)) return { ...parsed, commandSet: scheme.commandSet };
      // A template matched but the id is bad: that reason says more than "no template".
      if (!/matches no template/.test(parsed.error)) error ??= parsed.error;
    }
    return { error: error ?? `topic ${JSON.stringify(topic)} matches no template of ${this.schemes.length > 1 ? 'these schemes' : 'this scheme'}` };
  }
}
