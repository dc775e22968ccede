/** One MQTT message to publish for the Home Assistant link, as the fleet client takes it. */
export interface HaMessage {
  topic: string;
  /** Text: JSON for configs and states, empty for a removal. */
  payload: string;
  /** Configs and states are retained so HA finds them when it (re)subscribes. */
  retain: boolean;
  qos: 0 | 1;
}
