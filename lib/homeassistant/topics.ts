import { isDeviceId } from '../device-id';
import { shownInput } from '../input-text';

/**
 * Topic names of the Home Assistant link (docs/home-assistant.md). Two families:
 * - HA's own: the discovery configs under its discovery prefix (HA default `homeassistant`,
 *   changeable in HA's MQTT options) and HA's birth/last-will topic `<prefix>/status`;
 * - ours, under `esp-fleet/ha`: the state we publish for each device and the topic HA
 *   publishes "install" to.
 * Device ids are 12 lower-case hex digits (docs/wire-contract.md, Identities).
 */
export const DEFAULT_DISCOVERY_PREFIX = 'homeassistant';
export const OWN_PREFIX = 'esp-fleet/ha';
/** The `<node_id>` level of our discovery topics: lets the ACL name exactly our configs. */
export const DISCOVERY_NODE_ID = 'esp-fleet';
/** HA's component for firmware updates (https://www.home-assistant.io/integrations/update.mqtt). */
export const COMPONENT = 'update';
const MAX_PREFIX_LENGTH = 64;
/** HA allows `[a-zA-Z0-9_-]` in the node and object id levels; we hold the prefix to the same. */
const LEVEL = /^[A-Za-z0-9_-]+$/;

export class HomeAssistantError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'HomeAssistantError';
  }
}

/**
 * The discovery prefix as HA would use it: 1 to 64 characters of whole topic levels made of
 * `[A-Za-z0-9_-]`, separated by `/`. No wildcard, no empty level (so no leading `/`, which keeps
 * it apart from the built-in device topics), no `$` topic.
 */
export function checkDiscoveryPrefix(prefix: unknown = DEFAULT_DISCOVERY_PREFIX): string {
  if (typeof prefix !== 'string' || prefix.length === 0 || prefix.length > MAX_PREFIX_LENGTH || !prefix.split('/').every((l) => LEVEL.test(l))) {
    throw new HomeAssistantError(
      `invalid Home Assistant discovery prefix ${shownInput(prefix)}: expected up to ${MAX_PREFIX_LENGTH} characters of topic levels made of letters, digits, _ and - (default ${DEFAULT_DISCOVERY_PREFIX})`,
    );
  }
  return prefix;
}

function checkId(id: unknown): string {
  if (!isDeviceId(id)) throw new HomeAssistantError(`invalid device id ${shownInput(id)}: expected 12 lower-case hex digits`);
  return id;
}

/** Where the retained discovery config of one device's update entity lives. */
export function discoveryConfigTopic(id: string, prefix: string = DEFAULT_DISCOVERY_PREFIX): string {
  return `${checkDiscoveryPrefix(prefix)}/${COMPONENT}/${DISCOVERY_NODE_ID}/${checkId(id)}/config`;
}

/** HA publishes `online` here when it starts (its birth message): the moment to publish the configs again. */
export function birthTopic(prefix: string = DEFAULT_DISCOVERY_PREFIX): string {
  return `${checkDiscoveryPrefix(prefix)}/status`;
}

/** Our retained JSON state of one device's update entity. */
export function stateTopic(id: string): string {
  return `${OWN_PREFIX}/${checkId(id)}/state`;
}

/** Where HA publishes the install payload for one device. */
export function installTopic(id: string): string {
  return `${OWN_PREFIX}/${checkId(id)}/install`;
}

/** What Node-RED subscribes to for every device's install button. */
export const INSTALL_FILTER = `${OWN_PREFIX}/+/install`;
export const STATE_FILTER = `${OWN_PREFIX}/+/state`;

/** The device id of an install topic, or undefined when the topic is not one. */
export function idOfInstallTopic(topic: string): string | undefined {
  const m = /^esp-fleet\/ha\/([^/]+)\/install$/.exec(topic);
  return m && isDeviceId(m[1]) ? m[1] : undefined;
}

/**
 * The rights a backend identity (Node-RED, and HA when it connects with a backend certificate)
 * needs for the link (lib/broker/acl.ts). Both sides read and write the same few topics, so each
 * filter appears in both lists:
 * - reads of `<prefix>/+/+/config` and `<prefix>/+/+/+/config` are the two filters HA subscribes
 *   to for discovery; the embedded broker grants a SUBSCRIBE only when a read filter covers it
 *   (lib/broker/acl.ts, Permissions.canSubscribe), so a narrower read would refuse HA's
 *   subscription there. Writes stay on our own configs, `<prefix>/update/esp-fleet/+/config`.
 * - `<prefix>/status`: HA's birth and last will, written by HA, read by Node-RED.
 * - our state and install topics: Node-RED writes state and reads install, HA the reverse.
 * Devices get none of these.
 */
export function backendFilters(prefix: string = DEFAULT_DISCOVERY_PREFIX): { read: string[]; write: string[] } {
  const p = checkDiscoveryPrefix(prefix);
  const ours = `${p}/${COMPONENT}/${DISCOVERY_NODE_ID}/+/config`;
  return {
    read: [`${p}/+/+/config`, `${p}/+/+/+/config`, `${p}/status`, STATE_FILTER, INSTALL_FILTER],
    write: [ours, `${p}/status`, STATE_FILTER, INSTALL_FILTER],
  };
}
