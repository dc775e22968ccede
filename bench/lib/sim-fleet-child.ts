// Simulated devices of bench/fleet in a process of their own (child_process.fork), so their
// CPU and memory are not Node-RED's. Each device is the full lib/sim SimulatedDevice: config.json
// over mutual-TLS HTTPS at boot, MQTT over mutual TLS with its own certificate, status every
// statusinterval, and `firmware` downloads verified like the ESP8266 Updater does.
//
// Protocol (process IPC): the parent sends SimCommand, the child answers SimReply.
import { promises as fs } from 'node:fs';
import * as path from 'node:path';
import { FleetSimulator } from '../../lib/sim/fleet-simulator';
import type { DeviceState } from '../../lib/sim/simulated-device';
import type { TimingOption } from '../../lib/sim/device-timing';
import type { RebootReason } from '../../lib/sim/simulated-device';

export interface SimStart {
  ids: string[];
  /** `<id>.crt` and `ca.crt` here; keys come from `keys` (devices share a pool: key generation is not what is measured). */
  certDir: string;
  keys: string[];
  bootstrap: { host: string; port: number; path: string };
  image: string;
  trusts: string[];
  bootsPerSecond: number;
  /** A real ESP8266's timing (lib/sim/device-timing.ts), or `fast` for a quick run. */
  timing: TimingOption;
}

export type SimCommand = { cmd: 'start'; start: SimStart } | { cmd: 'stats' } | { cmd: 'close' };
export type SimStats = Record<DeviceState, number> & {
  total: number;
  images: Record<string, number>;
  rss: number;
  errors: string[];
  /** Reboots per reason since start (waittimeout, command, watchdog, update). */
  reboots: Partial<Record<RebootReason, number>>;
  /** MQTT connect attempts of all devices since start. */
  connectAttempts: number;
};
export type SimReply = { type: 'started' } | { type: 'stats'; stats: SimStats } | { type: 'closed' } | { type: 'error'; message: string };

function reply(r: SimReply): void {
  if (process.connected) process.send?.(r, undefined, undefined, () => undefined);
}

let fleet: FleetSimulator | undefined;
const errors: string[] = [];

process.on('message', (cmd: SimCommand) => {
  const go = async (): Promise<void> => {
    switch (cmd.cmd) {
      case 'start': {
        const s = cmd.start;
        const ca = await fs.readFile(path.join(s.certDir, 'ca.crt'), 'utf8');
        fleet = new FleetSimulator({
          ids: s.ids,
          identity: async (id) => ({ ca, cert: await fs.readFile(path.join(s.certDir, `${id}.crt`), 'utf8'), key: s.keys[parseInt(id.slice(-4), 16) % s.keys.length]! }),
          bootstrap: s.bootstrap,
          image: s.image,
          trusts: s.trusts,
          bootsPerSecond: s.bootsPerSecond,
          timing: s.timing,
          onError: (id, message) => {
            if (errors.length < 10) errors.push(`${id}: ${message}`);
          },
        });
        // Boots go on in the background; the parent watches progress with `stats`.
        fleet.start().catch((err: Error) => errors.push(err.message));
        reply({ type: 'started' });
        return;
      }
      case 'stats':
        reply({
          type: 'stats',
          stats: {
            ...(fleet?.counts() ?? { booting: 0, enrolling: 0, pending: 0, online: 0, offline: 0, rebooting: 0, silent: 0, stopped: 0, total: 0 }),
            images: fleet?.images() ?? {},
            rss: process.memoryUsage().rss,
            errors: [...errors],
            reboots: fleet?.rebootCounts() ?? {},
            connectAttempts: fleet?.connectAttempts() ?? 0,
          },
        });
        return;
      case 'close':
        await fleet?.stop();
        reply({ type: 'closed' });
        process.disconnect();
        return;
    }
  };
  go().catch((err: Error) => reply({ type: 'error', message: err.stack ?? err.message }));
});
process.on('disconnect', () => process.exit(0));
