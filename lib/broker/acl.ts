import { TopicScheme } from '../fleet/topic-scheme';
import { FleetTopics } from '../fleet/fleet-topics';
import { backendFilters, DEFAULT_DISCOVERY_PREFIX } from '../homeassistant/topics';
import { filterCovers, topicMatches } from './topic-filter';

/**
 * One identity's rights, the single source for both brokers: Mosquitto's acl_file is rendered
 * from these entries and the embedded broker authorizes with them.
 */
export interface AclEntry {
  /** The certificate CN (Mosquitto: `use_identity_as_username`). */
  user: string;
  kind: 'backend' | 'device';
  /** Filters whose messages the identity may receive. */
  read: string[];
  /** Filters of the topics the identity may publish to. */
  write: string[];
}

/**
 * Least privilege: a device may only publish its own status, will (and log) and read its own
 * commands; a backend may read every status, will and log and write every command, plus the few
 * topics of the Home Assistant link under `homeAssistantPrefix` (lib/homeassistant/topics.ts,
 * backendFilters; `null` leaves them out). A mixed fleet (several schemes) gives each device its
 * own topics of every scheme, still only under its own id, and each backend the union. Unknown or revoked identities get no entry, so both
 * brokers deny them everything. Backends first, then devices, each sorted and without duplicates.
 */
export function aclEntries(
  deviceIds: readonly string[],
  backendNames: readonly string[],
  scheme: TopicScheme | FleetTopics = TopicScheme.named('secure-esp8266'),
  homeAssistantPrefix: string | null = DEFAULT_DISCOVERY_PREFIX,
): AclEntry[] {
  const schemes = FleetTopics.of(scheme).schemes;
  const unique = (list: string[]): string[] => [...new Set(list)];
  const ha = homeAssistantPrefix === null ? { read: [], write: [] } : backendFilters(homeAssistantPrefix);
  const backends = [...new Set(backendNames)].sort().map(
    (user): AclEntry => ({
      user,
      kind: 'backend',
      read: unique([...schemes.flatMap((s) => s.subscriptions), ...ha.read]),
      write: unique([...schemes.map((s) => s.allCommandsFilter), ...ha.write]),
    }),
  );
  const devices = [...new Set(deviceIds)].sort().map(
    (user): AclEntry => ({
      user,
      kind: 'device',
      read: unique(schemes.map((s) => s.deviceCommandFilter(user))),
      write: unique(
        schemes.flatMap((s) => {
          const log = s.logTopic(user);
          return [s.statusTopic(user), s.willTopic(user), ...(log ? [log] : [])];
        }),
      ),
    }),
  );
  return [...backends, ...devices];
}

/**
 * What one connected identity may do, decided the way Mosquitto's acl_file does: a topic is
 * allowed when one of the identity's filters matches it; no entry means nothing is allowed.
 */
export class Permissions {
  readonly read: readonly string[];
  readonly write: readonly string[];
  readonly kinds: ReadonlySet<AclEntry['kind']>;

  /** Entries for other users are ignored; several for this user add up, as in Mosquitto. */
  constructor(
    readonly user: string,
    entries: readonly AclEntry[],
  ) {
    const mine = entries.filter((e) => e.user === user);
    this.read = mine.flatMap((e) => e.read);
    this.write = mine.flatMap((e) => e.write);
    this.kinds = new Set(mine.map((e) => e.kind));
  }

  canPublish(topic: string): boolean {
    return this.write.some((f) => topicMatches(f, topic));
  }

  /** Whether a message on `topic` may be delivered to this identity. */
  canRead(topic: string): boolean {
    return this.read.some((f) => topicMatches(f, topic));
  }

  /**
   * Stricter than Mosquitto 2.0's acl_file, which grants every SUBSCRIBE and only filters
   * deliveries: a filter is granted only when one read filter covers it, so a device learns
   * from its SUBACK that `/command/#` is not for it instead of silently receiving less.
   */
  canSubscribe(filter: string): boolean {
    return this.read.some((f) => filterCovers(f, filter));
  }
}
