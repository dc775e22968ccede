import { TopicScheme } from '../fleet/topic-scheme';
import { shownInput } from '../input-text';
import { HaMessage } from './message';
import { checkDiscoveryPrefix, discoveryConfigTopic, DEFAULT_DISCOVERY_PREFIX, HomeAssistantError, installTopic, stateTopic } from './topics';
import { checkText } from './text';

/**
 * The discovery config of one device's `update` entity, following Home Assistant's MQTT update
 * schema (https://www.home-assistant.io/integrations/update.mqtt) and its discovery rules
 * (https://www.home-assistant.io/integrations/mqtt/#mqtt-discovery). Full key names, no
 * abbreviations: the payload is under 1 KB either way.
 *
 * Availability is the device's own will topic (docs/wire-contract.md, MQTT topics): our firmware
 * publishes a retained `online` there when it connects and the broker publishes its retained
 * last will `offline` when it drops, which are HA's `payload_available` / `payload_not_available`
 * as they stand, so no template is needed. With `bridge`, a second topic (Node-RED's own
 * online/offline) must also say online: without Node-RED, install cannot work.
 */
export const PAYLOAD_INSTALL = 'install';
export const ORIGIN_NAME = 'node-red-contrib-esp-fleet';
export const AVAILABLE = 'online';
export const NOT_AVAILABLE = 'offline';

export interface HaDevice {
  /** The device id (12 lower-case hex digits). */
  id: string;
  /** Its name in HA; default `ESP <id>` (the status' `espname` is a good choice). */
  name?: string;
  /** The running image name (`espimage`), shown as the device's software version. */
  image?: string;
  /** Default: the product part of `image` (before its last `-`), else `ESP8266/ESP32`. */
  model?: string;
  /** Default `Espressif`. */
  manufacturer?: string;
}

export interface UpdateEntityOptions {
  /** HA's discovery prefix; default `homeassistant`. */
  discoveryPrefix?: string;
  /** The fleet's topic scheme, for the will topic; default secure-esp8266. */
  scheme?: TopicScheme;
  /** Our package version, shown as the origin's `sw_version`. */
  softwareVersion?: string;
  /** An http(s) URL shown as the origin's `support_url`. */
  supportUrl?: string;
  /** A topic where Node-RED keeps a retained `online` (and leaves `offline` as its will): the entity is available only when both say online. */
  bridgeTopic?: string;
}

/** The config's shape, as we write it (a subset of HA's schema). */
export interface UpdateEntityConfig {
  name: string;
  unique_id: string;
  default_entity_id: string;
  device: { identifiers: string[]; connections: [string, string][]; name: string; model: string; manufacturer: string; sw_version?: string };
  origin: { name: string; sw_version?: string; support_url?: string };
  device_class: 'firmware';
  entity_category: 'config';
  state_topic: string;
  command_topic: string;
  payload_install: string;
  availability: { topic: string; payload_available: string; payload_not_available: string }[];
  availability_mode: 'all' | 'latest';
  qos: 1;
  retain: false;
  display_precision: 0;
}

/** The id HA keeps the entity under: stable for a device whatever its name or image. */
export function uniqueIdOf(id: string): string {
  return `esp-fleet-${id}-firmware`;
}

export function updateEntityConfig(device: HaDevice, options: UpdateEntityOptions = {}): HaMessage {
  if (typeof device !== 'object' || device === null) throw new HomeAssistantError(`invalid device ${shownInput(device)}: expected {id, name?, image?, model?, manufacturer?}`);
  const prefix = checkDiscoveryPrefix(options.discoveryPrefix ?? DEFAULT_DISCOVERY_PREFIX);
  const topic = discoveryConfigTopic(device.id, prefix);
  const id = device.id;
  const scheme = options.scheme ?? TopicScheme.named('secure-esp8266');
  const image = device.image === undefined ? undefined : checkText('image', device.image, 96);
  const product = image && image.lastIndexOf('-') > 0 ? image.slice(0, image.lastIndexOf('-')) : undefined;
  const availability = [{ topic: scheme.willTopic(id), payload_available: AVAILABLE, payload_not_available: NOT_AVAILABLE }];
  if (options.bridgeTopic !== undefined) {
    const bridge = checkText('bridge topic', options.bridgeTopic, 128);
    if (/[+#]/.test(bridge)) throw new HomeAssistantError(`invalid bridge topic ${shownInput(bridge)}: no MQTT wildcards`);
    availability.push({ topic: bridge, payload_available: AVAILABLE, payload_not_available: NOT_AVAILABLE });
  }
  const origin: UpdateEntityConfig['origin'] = { name: ORIGIN_NAME };
  if (options.softwareVersion !== undefined) origin.sw_version = checkText('software version', options.softwareVersion, 64);
  if (options.supportUrl !== undefined) {
    const url = checkText('support URL', options.supportUrl, 256);
    // HA checks the origin's support_url as a configuration URL: http(s) only.
    if (!/^https?:\/\/[^\s/]+/.test(url)) throw new HomeAssistantError(`invalid support URL ${shownInput(url)}: expected an http:// or https:// URL`);
    origin.support_url = url;
  }
  const config: UpdateEntityConfig = {
    // With a device, HA names the entity "<device name> Firmware".
    name: 'Firmware',
    unique_id: uniqueIdOf(id),
    // HA 2025.10 replaced object_id by default_entity_id (domain.object id); older releases ignore the key.
    default_entity_id: `update.esp_${id}_firmware`,
    device: {
      identifiers: [`esp-fleet-${id}`],
      // The id is the station MAC: HA merges this device with others that know the same MAC.
      connections: [['mac', id.match(/../g)!.join(':')]],
      name: device.name === undefined ? `ESP ${id}` : checkText('device name', device.name, 64),
      model: device.model === undefined ? (product ?? 'ESP8266/ESP32') : checkText('model', device.model, 64),
      manufacturer: device.manufacturer === undefined ? 'Espressif' : checkText('manufacturer', device.manufacturer, 64),
      ...(image ? { sw_version: image } : {}),
    },
    origin,
    device_class: 'firmware',
    entity_category: 'config',
    state_topic: stateTopic(id),
    command_topic: installTopic(id),
    payload_install: PAYLOAD_INSTALL,
    availability,
    availability_mode: availability.length > 1 ? 'all' : 'latest',
    qos: 1,
    // HA must not retain the install press: a retained one would start an update again at every reconnect.
    retain: false,
    display_precision: 0,
  };
  return { topic, payload: JSON.stringify(config), retain: true, qos: 1 };
}

/**
 * What a device that leaves the fleet gets: an empty retained config removes the entity (and the
 * HA device when nothing else refers to it), then our retained state is cleared so nothing of it
 * stays on the broker.
 */
export function updateEntityRemoval(id: string, options: Pick<UpdateEntityOptions, 'discoveryPrefix'> = {}): HaMessage[] {
  return [
    { topic: discoveryConfigTopic(id, options.discoveryPrefix ?? DEFAULT_DISCOVERY_PREFIX), payload: '', retain: true, qos: 1 },
    { topic: stateTopic(id), payload: '', retain: true, qos: 1 },
  ];
}
