import type { NodeAPI, NodeDef } from 'node-red';
import type { EspCaNode, EspCaCredentials } from './types';
import { CaStore } from '../../lib/pki/ca-store';
import { keepMosquittoFolders } from '../../lib/mosquitto/folders';
import { assertKeySize } from '../../lib/pki/keys';
import { EnrollmentDesk } from '../../lib/enroll/enrollment-desk';
import { parseEnrollPolicy } from '../../lib/enroll/enroll-policy';
import { folderInUserDir, errorText, optionalNumber } from '../shared/settings';
import { lifecycle } from '../shared/lifecycle';

interface EspCaDef extends NodeDef {
  folder: string;
  commonName: string;
  organization: string;
  keySize: string;
  validityYears: string;
  leafValidityDays: string;
  crlValidityDays: string;
  importCertificate: string;
  enrollPolicy?: string;
  enrollAllow?: string;
}

/** The CRL is checked this often and re-signed well before it lapses. */
const CRL_CHECK_MS = 6 * 3_600_000;

export = function register(RED: NodeAPI): void {
  function EspCa(this: EspCaNode, config: EspCaDef): void {
    RED.nodes.createNode(this, config);
    const node = this;
    node.folder = folderInUserDir(RED, config.folder, 'esp-fleet-ca');
    const creds = node.credentials ?? {};
    const importCert = config.importCertificate?.trim();
    const life = lifecycle(
      node,
      async (own) => {
        // Half an import must not silently create a new CA instead.
        if (Boolean(importCert) !== Boolean(creds.importKey)) {
          throw new Error('to import a CA, paste both its certificate and its private key');
        }
        const store = await CaStore.open({
          dir: node.folder,
          commonName: config.commonName,
          organization: config.organization,
          keySize: assertKeySize(config.keySize || 2048),
          validityDays: Math.round((optionalNumber(config.validityYears) ?? 10) * 365),
          leafValidityDays: optionalNumber(config.leafValidityDays),
          crlValidityDays: optionalNumber(config.crlValidityDays),
          passphrase: creds.passphrase || undefined,
          importPem: importCert && creds.importKey ? { certificate: importCert, privateKey: creds.importKey } : undefined,
          // Mosquitto folders an esp-cert-issuer wrote stay current after a restart.
          keepers: [keepMosquittoFolders],
        });
        node.log(`CA "${store.caSubject}" in ${node.folder}, ${store.issuedCount} certificates issued`);
        own.every(() => void store.refreshCrlIfDue().catch((err) => node.warn(`CRL refresh failed: ${errorText(err)}`)), CRL_CHECK_MS);
        // Close waits for writes in progress (journal, CRL), so a redeploy never cuts one short.
        own.onClose(() => store.idle());
        return store;
      },
      { badges: false, logStartError: `cannot open the CA in ${node.folder}` },
    );
    node.store = () => life.ready;
    let desk: Promise<EnrollmentDesk> | undefined;
    node.enrollment = () => {
      desk ??= life.ready.then(async (store) => {
        const opened = await EnrollmentDesk.open({ store, policy: parseEnrollPolicy(config.enrollPolicy, config.enrollAllow) });
        life.onClose(() => opened.idle());
        return opened;
      });
      return desk;
    };
  }

  RED.nodes.registerType<EspCaNode, EspCaDef, object, EspCaCredentials>('esp-ca', EspCa, {
    credentials: {
      passphrase: { type: 'password' },
      importKey: { type: 'password' },
    },
  });

  // Editor helpers: a summary for the config dialog and the CA certificate to download.
  const withCa = async (id: string): Promise<CaStore | undefined> => {
    const node = RED.nodes.getNode(id) as EspCaNode | null;
    return node && typeof node.store === 'function' ? node.store() : undefined;
  };
  RED.httpAdmin.get('/esp-fleet/ca/:id/summary', RED.auth.needsPermission('esp-ca.read'), (req, res) => {
    withCa(String(req.params.id))
      .then((store) => {
        if (!store) return res.status(404).json({ error: 'deploy the esp-ca node first' });
        res.json({
          subject: store.caSubject,
          notAfter: store.caNotAfter.toISOString(),
          issued: store.issuedCount,
          valid: store.list().length,
          crlNextUpdate: store.crlNextUpdateAt?.toISOString(),
          folder: store.dir,
        });
      })
      .catch((err) => res.status(500).json({ error: errorText(err) }));
  });
  RED.httpAdmin.get('/esp-fleet/ca/:id/ca.crt', RED.auth.needsPermission('esp-ca.read'), (req, res) => {
    withCa(String(req.params.id))
      .then((store) => {
        if (!store) return res.status(404).type('text/plain').send('deploy the esp-ca node first');
        res.type('application/x-pem-file').attachment('ca.crt').send(store.caCertificatePem);
      })
      .catch((err) => res.status(500).type('text/plain').send(errorText(err)));
  });
};
