import type { NodeAPI, Node, NodeDef } from 'node-red';
import { runIssuerAction, parseAction, IssuerDefaults, IssuedOutput, takeSecrets } from '../../lib/issuer/issuer-actions';
import type { CaStore } from '../../lib/pki/ca-store';
import type { EspCaNode } from '../esp-ca/types';
import { errorText, shortText, optionalNumber, folderInUserDir, userDirOf } from '../shared/settings';
import { openEditorBadge } from '../shared/admin-auth';
import { lifecycle } from '../shared/lifecycle';
import { backupStatesOf } from '../shared/backup-state';

interface EspCertIssuerDef extends NodeDef {
  ca: string;
  action: string;
  validityDays: string;
  includePrivateKey: boolean;
  serverName: string;
  backendName: string;
  mosquittoDir: string;
  mosquittoPort: string;
}

export = function register(RED: NodeAPI): void {
  function EspCertIssuer(this: Node, config: EspCertIssuerDef): void {
    RED.nodes.createNode(this, config);
    const node = this;
    const caNode = RED.nodes.getNode(config.ca) as EspCaNode | null;
    const defaults: IssuerDefaults = {
      validityDays: optionalNumber(config.validityDays),
      includePrivateKey: config.includePrivateKey === true,
      serverName: config.serverName || undefined,
      backendName: config.backendName || undefined,
      mosquittoDir: config.mosquittoDir?.trim() ? folderInUserDir(RED, config.mosquittoDir, '') : undefined,
      mosquittoPort: optionalNumber(config.mosquittoPort),
    };
    const backup = { userDir: userDirOf(RED), parts: () => backupStatesOf(RED, config.ca) };
    /** After a restore the CA in memory is the one from before: nothing more until flows restart. */
    let restored = false;

    const showSummary = (store: CaStore): void => {
      const until = store.caNotAfter.toISOString().slice(0, 10);
      const open = openEditorBadge(RED);
      node.status({ fill: open.fill, shape: 'dot', text: `${store.issuedCount} issued · CA until ${until}${open.suffix}` });
    };

    const life = lifecycle(
      node,
      async () => {
        if (!caNode) throw new Error('no esp-ca node is configured for this issuer');
        const store = await caNode.store();
        showSummary(store);
        return store;
      },
      { startingText: 'opening CA…' },
    );

    life.input<ReturnType<typeof takeSecrets>>(
      async (msg, send, store, { passphrase, password }) => {
        const action = parseAction(msg.topic || config.action);
        if (restored) throw new Error('the CA was restored from a backup: restart flows (Deploy ▸ Restart Flows) to load it before anything else');
        const result = await runIssuerAction(store, action, msg.payload, defaults, { backup, passphrase, password, userDir: backup.userDir });
        for (const warning of 'warnings' in result ? result.warnings : []) node.warn(warning);
        if (result.action === 'restore') {
          restored = true;
          node.status({ fill: 'yellow', shape: 'ring', text: 'restored · restart flows' });
        } else showSummary(store);
        // A batch renewal also sends each renewal as its own `renew` msg, so one Change node after
        // a Switch on topic `renew` can tell each device to fetch its certificate.
        const each = 'renewed' in result ? result.renewed.map((r: IssuedOutput) => ({ ...msg, topic: 'renew', payload: r })) : [];
        send([[...each, { ...msg, topic: action, payload: result }]]);
      },
      {
        // The backup passphrase and the .p12 password leave the msg the moment it arrives, even
        // before the CA is open: neither an output nor a Catch node sees them.
        takeSecrets: (msg) => {
          const taken = takeSecrets(msg.payload);
          if (taken.passphrase !== undefined || taken.password !== undefined) msg.payload = taken.rest;
          return taken;
        },
        // After a restore the badge keeps saying so: that is what the user must do next.
        onError: (err) => {
          if (!restored) node.status({ fill: 'red', shape: 'ring', text: shortText(errorText(err)) });
        },
      },
    );
  }

  RED.nodes.registerType('esp-cert-issuer', EspCertIssuer);
};
