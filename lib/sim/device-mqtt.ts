import type { IClientOptions } from 'mqtt';
import type { DeviceTiming } from './device-timing';

/**
 * How a simulated board opens its MQTT session, both platforms alike: mutual TLS with its own
 * certificate and the fleet CA pinned, client id = device id, its last will `offline`, and no
 * retries of mqtt.js's own (reconnectPeriod 0): the firmware's reconnect rule decides the next
 * attempt (lib/device/reconnect-policy.ts).
 */
export function deviceMqttOptions(o: { host: string; port: number; id: string; files: { ca: string; cert?: string; key?: string }; timing: DeviceTiming; willTopic: string }): IClientOptions {
  return {
    protocol: 'mqtts',
    host: o.host,
    port: o.port,
    servername: o.host,
    clientId: o.id,
    ca: o.files.ca,
    cert: o.files.cert,
    key: o.files.key,
    rejectUnauthorized: true,
    keepalive: 60,
    reconnectPeriod: 0,
    // A limit, not work the device does: never scaled, so `fast` does not fail slow handshakes on a busy machine.
    connectTimeout: o.timing.mqttConnectTimeoutMs,
    will: { topic: o.willTopic, payload: Buffer.from('offline'), qos: 1, retain: false },
  };
}
