import * as os from 'node:os';
import express from 'express';
import type { NodeAPI, Node, NodeDef, NodeMessage } from 'node-red';
import type { Request, Response } from 'express';
import type { EspCaNode } from '../esp-ca/types';
import { identity } from '../../lib/pki/identity';
import { FirmwareService, DeviceConfig } from '../../lib/firmware/firmware-service';
import { DEFAULT_MAX_IMAGE_SIZE } from '../../lib/firmware/catalogue';
import { startUpdateServer, RunningUpdateServer, UpdateEvent, normalizeDownloadPath, ServingLimits } from '../../lib/firmware/update-server';
import { runFirmwareAction, parseFirmwareAction, FIRMWARE_ACTIONS } from '../../lib/firmware/server-actions';
import { folderInUserDir, userDirOf, errorText, shortText, positive } from '../shared/settings';
import { openEditorBadge } from '../shared/admin-auth';
import { FloodGate } from '../shared/flood-gate';
import { lifecycle } from '../shared/lifecycle';
import { parsePort } from '../../lib/net/port';
import { RecentRows } from '../../lib/dashboard/recent-rows';
import { ServerEventRow, serverEventRow } from '../../lib/dashboard/event-rows';
import { startEstListener, RunningEstListener } from '../../lib/enroll/http/est-listener';
import { ENROLL_ACTIONS, isEnrollAction, runEnrollAction } from '../../lib/enroll/enroll-actions';
import type { AuditEntry } from '../../lib/enroll/enrollment-desk';
import type { EspFirmwareServerNode } from './types';

/** `rejected` msgs on output 2 one by one each second; the rest go into one `rejected-summary` msg. */
const REJECTED_MSGS_PER_SECOND = 20;
import { exposeBackupState, firmwareState } from '../shared/backup-state';

interface EspFirmwareServerDef extends NodeDef {
  ca: string;
  hostname: string;
  port: string;
  /** The enrollment (EST) listener's port; blank: no enrollment. */
  enrollPort?: string;
  bindAddress: string;
  downloadPath: string;
  clientCertificates: 'required' | 'optional';
  /** Product for bare versions (`x-ESP8266-version: 0.1`); blank: none, such a check gets 400. */
  bareProduct?: string;
  folder: string;
  maxDownloads: string;
  /** Serving processes: `auto` (one per core), or a number (default 1: Node-RED's only). */
  workers?: string;
  /** Connection caps and deadlines (blank: SERVING_LIMITS); the timeouts in seconds. */
  maxConnections?: string;
  maxConnectionsPerAddress?: string;
  handshakeTimeout?: string;
  headersTimeout?: string;
  keepAliveTimeout?: string;
  idleTimeout?: string;
  maxRequests?: string;
  action: string;
  mqttserver: string;
  mqttport: string;
  ntpserver: string;
  statusinterval: string;
  waittimeout: string;
  retrytimeout: string;
}

/** The badge follows the events at most this often. */
const BADGE_EVERY_MS = 500;
/** How many events `msg.recent` carries. */
const RECENT_EVENTS = 25;

export = function register(RED: NodeAPI): void {
  /** The service of each deployed update server, for the editor's upload (admin endpoints below). */
  const services = new Map<string, Promise<FirmwareService>>();

  function EspFirmwareServer(this: Node, config: EspFirmwareServerDef): void {
    RED.nodes.createNode(this, config);
    const node = this;
    const userDir = userDirOf(RED);
    let server: RunningUpdateServer | undefined;
    let downloads = 0;
    let enrollmentProblem: string | undefined;
    const showListening = (): void => {
      const open = openEditorBadge(RED);
      const fill = enrollmentProblem ? 'yellow' : open.fill;
      if (server) node.status({ fill, shape: 'dot', text: `:${server.port} · ${downloads} downloading${enrollmentProblem ? ' · enrollment off' : ''}${open.suffix}` });
    };

    // The last events, newest first, ride on every event msg for a dashboard table.
    const recentEvents = new RecentRows<ServerEventRow>(RECENT_EVENTS);
    // Nodes linked to this server (esp-rollout) hear its events without a wire.
    const eventListeners = new Set<(event: UpdateEvent) => void>();
    const tellListeners = (event: UpdateEvent): void => {
      for (const listener of eventListeners) {
        try {
          listener(event);
        } catch (err) {
          node.warn(`a node listening to the update server failed: ${errorText(err)}`);
        }
      }
    };
    (node as EspFirmwareServerNode).onServerEvent = (listener) => {
      eventListeners.add(listener);
      return () => void eventListeners.delete(listener);
    };

    // Refusals are the one event an attacker makes at will: a flood becomes a summary a second.
    const rejectedGate = new FloodGate<string>(REJECTED_MSGS_PER_SECOND, (held) => node.send([null, { topic: 'rejected-summary', payload: held, recent: recentEvents.list() } as NodeMessage]));

    const life = lifecycle(node, async (own) => {
      own.onClose(() => rejectedGate.close());
      const caNode = RED.nodes.getNode(config.ca) as EspCaNode | null;
      if (!caNode) throw new Error('choose the esp-ca node whose CA the devices trust');
      const store = await caNode.store();
      // Every request is an event: the badge follows at most twice a second, as the broker's does.
      const showListeningSoon = own.soon(showListening, BADGE_EVERY_MS);
      const hostname = config.hostname?.trim() || 'localhost';
      const port = parsePort(config.port) ?? 8070;
      const enrollPort = parsePort(config.enrollPort, 'enrollment port');
      if (enrollPort !== undefined && enrollPort === port) throw new Error('the enrollment port must differ from the update server port');
      const downloadPath = normalizeDownloadPath(config.downloadPath || 'fw');
      // One click: the server identity for this host name, shared with a broker on the same name.
      const { cert, key } = await identity(store, { kind: 'server', commonName: hostname });
      const service = await FirmwareService.open(folderInUserDir(RED, config.folder, 'esp-fleet-firmware'));
      const defaults: DeviceConfig = {
        downloadserver: hostname,
        downloadport: port,
        downloadpath: downloadPath.replace(/^\//, ''),
        mqttserver: config.mqttserver || hostname,
        mqtttls: true,
        mqttport: parsePort(config.mqttport, 'MQTT port') ?? 8883,
        ntpserver: config.ntpserver || 'pool.ntp.org',
        statusinterval: positive(config.statusinterval, 'status interval') ?? 60_000,
        waittimeout: positive(config.waittimeout, 'wait timeout') ?? 20_000,
        retrytimeout: positive(config.retrytimeout, 'retry timeout') ?? 3_000,
        ...(enrollPort !== undefined ? { enrollport: enrollPort } : {}),
      };
      server = await startUpdateServer({
        port,
        host: config.bindAddress || undefined,
        tls: { cert, key, ca: store.caCertificatePem, crl: await store.crlPem() },
        clientCertificates: config.clientCertificates === 'optional' ? 'optional' : 'required',
        downloadPath,
        deviceFilesDir: store.deviceFilesDir,
        deviceConfig: (id) => service.deviceConfig(defaults, id),
        images: service.imageSource({ bareVersionProduct: config.bareProduct?.trim() || undefined }),
        maxConcurrentDownloads: positive(config.maxDownloads, 'concurrent downloads') ?? 20,
        workers: workerCount(config.workers),
        ...limitsOf(config),
        // Between a revocation and the CRL that lists it, requests are refused by the store's own record.
        isRevoked: (serial) => {
          try {
            return store.findBySerial(serial).revokedAt !== undefined;
          } catch {
            return false;
          }
        },
        onWorker: (w) => {
          if (w.event === 'exited') node.warn(`update server worker ${w.worker} (pid ${w.pid}) exited (${w.signal ?? `code ${w.code}`}); starting it again in ${w.restartInMs} ms`);
        },
        onEvent: (event: UpdateEvent) => {
          tellListeners(event);
          // Up to 20 a download: out on output 2, but neither in the last-25 window nor on the badge.
          if (event.type === 'download-progress') {
            node.send([null, { topic: event.type, payload: event, recent: recentEvents.list() } as NodeMessage]);
            return;
          }
          if (event.type === 'download-start') downloads++;
          if (event.type === 'download-complete' || event.type === 'download-aborted') downloads = Math.max(0, downloads - 1);
          showListeningSoon();
          if (event.type === 'rejected' && !rejectedGate.pass(rejectionCause(event))) return;
          node.send([null, { topic: event.type, payload: event, recent: recentEvents.add(serverEventRow(event)) } as NodeMessage]);
        },
      });
      const running = server;
      own.onClose(() => running.close());
      // Revocations reach the running server at once, and so does each CRL refresh.
      own.onClose(
        store.onCrlChange((crl) => {
          running.setCrl(crl).catch((err) => node.error(`update server: the new CRL was not loaded: ${errorText(err)}`));
        }),
      );
      if (enrollPort !== undefined) {
        // Enrollment is an extra: when it cannot start (port in use, a damaged enrollment folder),
        // the update server keeps serving the devices that have their certificates.
        try {
          const desk = await caNode.enrollment();
          if (desk.policy.mode === 'open') node.warn('enrollment is open: anyone with the bootstrap credential gets a device certificate at once (set the esp-ca policy to manual or allowlist)');
          if (desk.bootstrapProblem) node.warn(`enrollment: ${desk.bootstrapProblem}`);
          const est: RunningEstListener = await startEstListener({
            desk,
            port: enrollPort,
            host: config.bindAddress || undefined,
            tls: { cert, key, ca: store.caCertificatePem, crl: await store.crlPem() },
            ...limitsOf(config),
            onEvent: (event) => {
              if (!rejectedGate.pass('enroll-connection')) return;
              node.send([null, { topic: 'rejected', payload: { ...event, listener: 'enrollment' } } as NodeMessage]);
            },
          });
          own.onClose(() => est.close());
          own.onClose(store.onCrlChange((crl) => void est.setCrl(crl)));
          // New requests and decisions are msgs (a flow notifies or approves); a device's repeated poll is audited only.
          own.onClose(
            desk.subscribe((entry: AuditEntry) => {
              if (entry.repeat) return;
              if (entry.event === 'refused' && !rejectedGate.pass('enroll-refused')) return;
              node.send([null, { topic: `enroll-${entry.event}`, payload: entry, pending: desk.pending().length } as NodeMessage]);
            }),
          );
          node.log(`enrollment (EST) on https://${hostname}:${est.port}/.well-known/est/ (policy ${desk.policy.mode})`);
        } catch (err) {
          enrollmentProblem = errorText(err);
          node.error(`enrollment is off: ${enrollmentProblem}`, { topic: 'enroll-error', payload: enrollmentProblem });
        }
      }
      showListening();
      const workers = server.workerPids();
      node.log(`update server on https://${hostname}:${server.port}${downloadPath}/ (client certificates ${config.clientCertificates || 'required'}${workers.length ? `; worker processes ${workers.join(', ')}` : ''})`);
      return service;
    }, { logStartError: 'update server cannot start' });
    const starting = life.ready;
    (node as EspFirmwareServerNode).firmware = () => starting;
    services.set(node.id, starting);
    // The editor's upload must not reach a server that is gone (guarded: a redeploy's new node may own the id).
    life.onClose(() => {
      if (services.get(node.id) === starting) services.delete(node.id);
    });
    exposeBackupState(node, firmwareState(config.ca, folderInUserDir(RED, config.folder, 'esp-fleet-firmware'), starting));

    life.input(async (msg, send, service) => {
      const topic = msg.topic || config.action || 'publish';
      if (isEnrollAction(topic)) {
        const caNode = RED.nodes.getNode(config.ca) as EspCaNode | null;
        if (!caNode) throw new Error('choose the esp-ca node whose CA the devices trust');
        const result = await runEnrollAction(await caNode.enrollment(), topic, msg.payload);
        send([{ ...msg, topic, payload: result } as NodeMessage, null]);
        return;
      }
      if (!(FIRMWARE_ACTIONS as readonly string[]).includes(topic)) {
        throw new Error(`unknown action ${JSON.stringify(String(topic).slice(0, 40))}: set msg.topic to one of ${[...FIRMWARE_ACTIONS, ...ENROLL_ACTIONS].join(', ')}`);
      }
      const action = parseFirmwareAction(topic);
      const result = await runFirmwareAction(service, action, msg as unknown as { payload?: unknown }, userDir);
      send([{ ...msg, topic: action, payload: result } as NodeMessage, null]);
    });
  }

  /** The caps and deadlines the editor sets; blank fields keep their defaults (lib/firmware/connection-guard.ts). */
  function limitsOf(config: EspFirmwareServerDef): Partial<ServingLimits> {
    const whole = (v: string | undefined, label: string): number | undefined => {
      const n = positive(v, label);
      if (n !== undefined && !Number.isInteger(n)) throw new Error(`${label} must be a whole number, got ${JSON.stringify(v)}`);
      return n;
    };
    const ms = (v: string | undefined, label: string): number | undefined => {
      const s = positive(v, label);
      return s === undefined ? undefined : Math.max(1, Math.round(s * 1000));
    };
    const out: Partial<ServingLimits> = {
      maxConnections: whole(config.maxConnections, 'connections'),
      maxConnectionsPerAddress: whole(config.maxConnectionsPerAddress, 'connections per address'),
      handshakeTimeoutMs: ms(config.handshakeTimeout, 'handshake timeout'),
      headersTimeoutMs: ms(config.headersTimeout, 'headers timeout'),
      keepAliveTimeoutMs: ms(config.keepAliveTimeout, 'keep-alive timeout'),
      idleTimeoutMs: ms(config.idleTimeout, 'idle timeout'),
      maxRequestsPerConnection: whole(config.maxRequests, 'requests per connection'),
    };
    for (const k of Object.keys(out) as (keyof ServingLimits)[]) if (out[k] === undefined) delete out[k];
    return out;
  }

  /** What a refusal is counted under in a rejected-summary msg. */
  function rejectionCause(event: UpdateEvent): string {
    if (event.status) return `http-${event.status}`;
    if (event.reason?.startsWith('connection refused')) return 'connection-cap';
    return event.reason?.startsWith('TLS handshake') ? 'tls-handshake' : 'other';
  }

  /** `auto`: one serving process per core; blank: 1 (Node-RED's own). */
  function workerCount(value: string | undefined): number {
    const v = String(value ?? '').trim();
    if (v === 'auto') return os.availableParallelism();
    const n = positive(v, 'processes') ?? 1;
    if (!Number.isInteger(n)) throw new Error(`processes must be a whole number or auto, got ${JSON.stringify(value)}`);
    return n;
  }

  RED.nodes.registerType('esp-firmware-server', EspFirmwareServer);

  // Publishing signs with the fleet's key, so it is an admin action behind Node-RED's own login
  // (adminAuth), never an http-in route: the editor's upload form posts the image here.
  const serviceOf = (req: Request, res: Response): Promise<FirmwareService> | undefined => {
    const service = services.get(String(req.params.id));
    if (!service) res.status(404).type('text/plain').send('deploy this update server first');
    return service;
  };
  const answerError = (res: Response, err: unknown): void => void res.status(400).type('text/plain').send(shortText(errorText(err), 300));
  RED.httpAdmin.post(
    '/esp-fleet/firmware/:id/publish',
    RED.auth.needsPermission('esp-firmware-server.write'),
    express.raw({ type: () => true, limit: DEFAULT_MAX_IMAGE_SIZE }),
    (req: Request, res: Response) => {
      const service = serviceOf(req, res);
      if (!service) return;
      const q = req.query as Record<string, unknown>;
      const text = (k: string): string | undefined => (typeof q[k] === 'string' && q[k] ? (q[k] as string) : undefined);
      if (!Buffer.isBuffer(req.body) || req.body.length === 0) return answerError(res, new Error('send the image as the request body'));
      const msg = { payload: req.body as Buffer, platform: text('platform'), product: text('product'), version: text('version'), name: text('name'), channel: text('channel'), kind: text('kind'), scheme: text('scheme') };
      service
        .then((s) => runFirmwareAction(s, 'publish', msg))
        .then((result) => res.json(result))
        .catch((err) => answerError(res, err));
    },
  );
  RED.httpAdmin.get('/esp-fleet/firmware/:id/catalogue', RED.auth.needsPermission('esp-firmware-server.read'), (req: Request, res: Response) => {
    const service = serviceOf(req, res);
    service
      ?.then((s) => runFirmwareAction(s, 'list', { payload: '' }))
      .then((result) => res.json(result))
      .catch((err) => answerError(res, err));
  });
};
