import type { NodeAPI } from 'node-red';

let warned = false;

/**
 * Whether Node-RED runs without `adminAuth`: then anyone who reaches its port can deploy flows,
 * and so issue, revoke, sign and command through our nodes. Logged once per process; the nodes
 * that hold that power show it on their badge (yellow) for as long as it lasts.
 * https://nodered.org/docs/user-guide/runtime/securing-node-red
 */
export function editorIsOpen(RED: NodeAPI): boolean {
  const settings = RED.settings as { adminAuth?: unknown; httpNodeAuth?: unknown };
  const open = !settings.adminAuth;
  if (open && !warned) {
    warned = true;
    RED.log.warn(
      'esp-fleet: Node-RED runs without adminAuth, so anyone who can reach its port can deploy flows that issue, revoke, sign firmware and send commands. ' +
        'Set adminAuth (and httpNodeAuth for the dashboard) in settings.js: https://nodered.org/docs/user-guide/runtime/securing-node-red',
    );
  }
  return open;
}

/** The badge suffix and colour of a node that holds power while the editor has no login. */
export function openEditorBadge(RED: NodeAPI): { fill: 'green' | 'yellow'; suffix: string } {
  return editorIsOpen(RED) ? { fill: 'yellow', suffix: ' · editor without login' } : { fill: 'green', suffix: '' };
}
