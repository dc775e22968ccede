import * as fs from 'node:fs';
import * as path from 'node:path';
import { COMMANDS, NEUTRAL_COMMANDS } from '../lib/fleet/commands';
import { TOPIC_CHOICES } from '../lib/fleet/fleet-topics';
import { BUILTIN_SCHEMES } from '../lib/fleet/topic-scheme';
import { DEVICE_ID_SPELLINGS } from '../lib/device-id';
import { ISSUER_ACTIONS, REVOCATION_REASONS } from '../lib/issuer/issuer-actions';
import { FIRMWARE_ACTIONS } from '../lib/firmware/server-actions';
import { PORT_RANGE } from '../lib/net/port';
import { BACKEND_NAME } from '../lib/pki/names';
import { ENROLL_ACTIONS } from '../lib/enroll/enroll-actions';
import { ENROLL_MODES, ENROLL_PREFIX } from '../lib/enroll/enroll-policy';

/**
 * The domain lists the editor forms check against, taken from lib/ at build time so an .html
 * file never holds its own copy: commands per command set, the device-id spellings, the actions
 * of the issuer and the update server, the topic schemes, revocation reasons, the port range and the enrollment policies.
 */
export function editorDomain(): Record<string, unknown> {
  return {
    commandSets: Object.fromEntries(Object.entries(COMMANDS).map(([set, commands]) => [set, Object.keys(commands)])),
    // Commands every platform has under its own name, resolved per device (update, restart).
    neutralCommands: NEUTRAL_COMMANDS,
    schemes: {
      ...Object.fromEntries(Object.entries(BUILTIN_SCHEMES).map(([name, s]) => [name, { templates: { log: '', ...s.templates }, commandSet: s.commandSet }])),
      // A mixed fleet: several schemes side by side, each device under its own (lib/fleet/fleet-topics.ts).
      mixed: { schemes: [...TOPIC_CHOICES.mixed], commandSets: TOPIC_CHOICES.mixed.map((n) => BUILTIN_SCHEMES[n].commandSet) },
      custom: null,
    },
    deviceId: DEVICE_ID_SPELLINGS.map((r) => ({ source: r.source, flags: r.flags })),
    issuerActions: [...ISSUER_ACTIONS],
    // esp-firmware-server runs both: the catalogue's actions and enrollment's (docs/enrollment.md).
    firmwareActions: [...FIRMWARE_ACTIONS, ...ENROLL_ACTIONS],
    enrollModes: [...ENROLL_MODES],
    enrollPrefix: { source: ENROLL_PREFIX.source, flags: ENROLL_PREFIX.flags },
    revocationReasons: Object.keys(REVOCATION_REASONS),
    port: PORT_RANGE,
    backendName: { source: BACKEND_NAME.source, flags: BACKEND_NAME.flags },
  };
}

/** resources/domain.js: Node-RED serves it at resources/node-red-contrib-esp-fleet/domain.js. */
export function writeDomainFile(root: string): string {
  const file = path.join(root, 'resources', 'domain.js');
  const text = `/* Generated at build time from lib/ (scripts/editor-domain.ts): do not edit. */\nwindow.EspFleetDomain = ${JSON.stringify(editorDomain(), null, 2)};\n`;
  fs.writeFileSync(file, text);
  return file;
}

if (require.main === module) writeDomainFile(path.resolve(__dirname, '..', '..'));
