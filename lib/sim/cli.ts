#!/usr/bin/env node
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { CaStore } from '../pki/ca-store';
import { keepMosquittoFolders } from '../mosquitto/folders';
import * as path from 'node:path';
import { deviceIds, FleetSimulator, identityByEnrollment, identityFromFolder, identityFromStore } from './fleet-simulator';
import { bootstrapLine } from './est-client';
import type { UpdateMode, WifiNetwork } from './simulated-device';
import { resolveTiming } from './device-timing';
import { checkWifiCredentials } from '../fleet/wifi-credentials';

const HELP = `esp-fleet-sim: simulated ESP8266 or ESP32 devices that follow the esp-fleet contract

  esp-fleet-sim --server https://localhost:8443/fw --certs DIR --trust public.key --image NAME [options]
  esp-fleet-sim --server URL --enroll https://localhost:8071 --bootstrap fleet:PASSWORD --certs DIR ...

Where devices get what a real board has on its filesystem (pick one way):
  --server URL         the update server's download base (config.json is fetched there at boot)
  --certs DIR          folder with ca.crt, <id>.crt, <id>.key (the esp-ca devices/ folder)
  --enroll-ca DIR      or: this process opens the CA store and issues missing device certificates
                       itself, server-made keys, no enrollment protocol (only while no other
                       process, e.g. Node-RED, uses that store)
  --enroll URL         or: zero-touch enrollment as a real board does it (docs/enrollment.md):
                       devices start with no certificate, make a P-256 key, ask the enrollment
                       listener (esp-firmware-server's Enrollment port, e.g. https://host:8071)
                       with simpleenroll, wait while pending, renew at 2/3 of the lifetime; the
                       cert command re-enrolls. Needs --certs DIR with ca.crt (the only CA the
                       devices trust; <id>.crt/.key are not read) and one of:
  --bootstrap USER:PASS      the fleet's bootstrap credential (esp-firmware-server, action bootstrap)
  --bootstrap-file FILE      or a file with that one line, like the board's bootstrap.txt
  --trust FILE         public.key (PEM) the running image trusts; repeat for several
  --image NAME         the image the devices run, e.g. ESP8266_WEMOS_D1MINIPRO-00.00.01

Platform:
  --platform esp8266|esp32  esp8266 (default): config.json at boot, the secure-esp8266 topics.
                       esp32: the secure-esp32 topics (/esp/<id>/update/url, update/use_url,
                       update/interval, update/run, restart; status, will and log), updates as
                       ESP-IDF's esp_https_ota fetches them (Range resumption of ESP-IDF 5.5),
                       images checked by signature (EC P-256 signed apps or RSA-3072 secure
                       boot v2, per --trust key), project name, version and secure_version.
                       Needs --mqtt-host and --mqtt-port (no config.json), --nvs-dir, --certs
                       or --enroll-ca; --image is <project_name>-<version>
  --nvs-dir DIR        esp32: folder of the devices' NVS files (<id>.json), kept across runs
  --secure-version N   esp32: secure_version of the running image (default 0)

Fleet:
  --count N            devices (default 10)          --prefix HEX   MAC prefix (default a4cf12)
  --first N            number of the first device (default 1)
  --mode auto|staged   auto: "firmware" installs and reboots; staged: needs "flash" (default auto)
  --free-space BYTES   flash free for an update (default 1000000)
  --boots-per-second N pace of boots (default 50)
  --mqtt-host H --mqtt-port P   override config.json's broker (esp32: the broker)

Timing (lib/sim/device-timing.ts; sources in bench/README.md, "Simulator timing"):
  --timing esp8266|fast   esp8266: a real ESP8266's times (default); fast: all 100x quicker
  --download-rate B/s  bytes per second a download arrives at (default 20000)
  --sector-erase-ms MS erase of one 4 KB flash sector (default 45)
  --sector-write-ms MS write of one 4 KB flash sector (default 12)
  --tls-ms MS          TCP + TLS handshake with the client certificate (default 2000)
  --boot-ms MS         boot after a reset (default 500)
  --wifi-join-ms MS    Wi-Fi join with DHCP (default 2400)
  --ntp-ms MS          first NTP answer (default 1000)
  --jitter-seed N      mixed into each device's jitter seed (default 0: runs repeat)

Wi-Fi (the wifi command):
  --wifi SSID:PASS     the network devices are on (default sim-wifi:sim-wifi-pass)
  --wifi-networks LIST other networks in reach, SSID:PASS or SSID (open), comma-separated;
                       a wifi command to anything else fails after 30 s (scaled by --timing)

Faults:
  --weak SHARE         share of devices (0..1) with a weak signal that drops now and then
  --silent SHARE       share that goes silent after --silent-after seconds (default 60)
  --tampered SHARE     share whose trusted key was tampered with (they refuse updates)

Bounds:
  --duration SECONDS   stop after this long (default 3600; 0 = until Ctrl-C)
  --report SECONDS     print a summary this often (default 10)
  --verbose            log every device event
`;

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      server: { type: 'string' },
      certs: { type: 'string' },
      'enroll-ca': { type: 'string' },
      enroll: { type: 'string' },
      bootstrap: { type: 'string' },
      'bootstrap-file': { type: 'string' },
      trust: { type: 'string', multiple: true },
      image: { type: 'string' },
      platform: { type: 'string', default: 'esp8266' },
      'nvs-dir': { type: 'string' },
      'secure-version': { type: 'string' },
      count: { type: 'string', default: '10' },
      prefix: { type: 'string', default: 'a4cf12' },
      first: { type: 'string', default: '1' },
      mode: { type: 'string', default: 'auto' },
      'free-space': { type: 'string' },
      'boots-per-second': { type: 'string', default: '50' },
      'mqtt-host': { type: 'string' },
      'mqtt-port': { type: 'string' },
      weak: { type: 'string' },
      silent: { type: 'string' },
      'silent-after': { type: 'string', default: '60' },
      tampered: { type: 'string' },
      timing: { type: 'string', default: 'esp8266' },
      'download-rate': { type: 'string' },
      'sector-erase-ms': { type: 'string' },
      'sector-write-ms': { type: 'string' },
      'tls-ms': { type: 'string' },
      'boot-ms': { type: 'string' },
      'wifi-join-ms': { type: 'string' },
      'ntp-ms': { type: 'string' },
      'jitter-seed': { type: 'string' },
      wifi: { type: 'string' },
      'wifi-networks': { type: 'string' },
      duration: { type: 'string', default: '3600' },
      report: { type: 'string', default: '10' },
      verbose: { type: 'boolean', default: false },
      help: { type: 'boolean', default: false },
    },
  });
  if (values.help) return void process.stdout.write(HELP);
  const need = (v: string | undefined, what: string): string => {
    if (!v) throw new Error(`${what} is required (see --help)`);
    return v;
  };
  const num = (v: string | undefined, what: string, min = 0): number | undefined => {
    if (v === undefined) return undefined;
    const n = Number(v);
    if (!Number.isFinite(n) || n < min) throw new Error(`${what} must be a number ≥ ${min}, got ${JSON.stringify(v)}`);
    return n;
  };
  const url = new URL(need(values.server, '--server'));
  if (url.protocol !== 'https:') throw new Error('--server must be an https:// URL');
  if (values.mode !== 'auto' && values.mode !== 'staged') throw new Error('--mode is auto or staged');
  if (!values.certs === !values['enroll-ca']) throw new Error('give exactly one of --certs DIR or --enroll-ca DIR');
  const enrollSetup = values.enroll === undefined ? undefined : enrollOptions(values.enroll, values.bootstrap, values['bootstrap-file'], values.certs, values['enroll-ca']);
  if (!enrollSetup && (values.bootstrap !== undefined || values['bootstrap-file'] !== undefined)) throw new Error('--bootstrap and --bootstrap-file go with --enroll URL');
  if (values.timing !== 'esp8266' && values.timing !== 'fast') throw new Error('--timing is esp8266 or fast');
  if (values.platform !== 'esp8266' && values.platform !== 'esp32') throw new Error('--platform is esp8266 or esp32');
  const esp32 = values.platform === 'esp32';
  if (esp32) {
    if (enrollSetup) throw new Error('--platform esp32 takes --certs or --enroll-ca, not --enroll');
    if (!values['nvs-dir']) throw new Error('--platform esp32 needs --nvs-dir DIR (the devices\' NVS files)');
    if (!values['mqtt-host'] || !values['mqtt-port']) throw new Error('--platform esp32 needs --mqtt-host and --mqtt-port (an ESP32 has the broker compiled in)');
  } else if (values['nvs-dir'] !== undefined || values['secure-version'] !== undefined) {
    throw new Error('--nvs-dir and --secure-version go with --platform esp32');
  }
  const timing = resolveTiming({
    base: values.timing,
    downloadBytesPerSecond: num(values['download-rate'], '--download-rate', 1),
    sectorEraseMs: num(values['sector-erase-ms'], '--sector-erase-ms'),
    sectorWriteMs: num(values['sector-write-ms'], '--sector-write-ms'),
    tlsHandshakeMs: num(values['tls-ms'], '--tls-ms'),
    bootMs: num(values['boot-ms'], '--boot-ms'),
    wifiJoinMs: num(values['wifi-join-ms'], '--wifi-join-ms'),
    ntpMs: num(values['ntp-ms'], '--ntp-ms'),
  });
  const network = values.wifi === undefined ? undefined : parseNetworks(values.wifi, '--wifi')[0];
  const networks = values['wifi-networks'] === undefined ? undefined : parseNetworks(values['wifi-networks'], '--wifi-networks');
  const store = values['enroll-ca'] ? await CaStore.open({ dir: values['enroll-ca'], keepers: [keepMosquittoFolders] }) : undefined;
  const trusts = (values.trust ?? []).map((f) => readFileSync(f, 'utf8'));
  if (!trusts.length) throw new Error('--trust public.key is required: the key the running image trusts (esp-firmware-server, action public-key)');

  const fleet = new FleetSimulator({
    ids: deviceIds(values.prefix, num(values.count, '--count', 1)!, num(values.first, '--first')),
    identity: enrollSetup ?? (store ? identityFromStore(store) : identityFromFolder(values.certs!)),
    bootstrap: { host: url.hostname, port: Number(url.port) || 443, path: url.pathname.replace(/\/+$/, '') },
    image: need(values.image, '--image'),
    trusts,
    updateMode: values.mode as UpdateMode,
    platform: esp32 ? 'esp32' : 'esp8266',
    nvsDir: values['nvs-dir'],
    secureVersion: num(values['secure-version'], '--secure-version'),
    freeSpace: num(values['free-space'], '--free-space', 1),
    bootsPerSecond: num(values['boots-per-second'], '--boots-per-second', 1),
    mqtt: values['mqtt-host'] || values['mqtt-port'] ? { host: values['mqtt-host'], port: num(values['mqtt-port'], '--mqtt-port', 1) } : undefined,
    weakShare: num(values.weak, '--weak'),
    silentShare: num(values.silent, '--silent'),
    silentAfterMs: num(values['silent-after'], '--silent-after')! * 1000,
    tamperedShare: num(values.tampered, '--tampered'),
    timing,
    jitterSeed: num(values['jitter-seed'], '--jitter-seed'),
    network,
    networks,
    log: values.verbose ? (line) => console.log(line) : undefined,
    onFlashed: (id, image) => console.log(`${id} installed ${image}`),
    onError: (id, message) => console.log(`${id} reports: ${message}`),
  });

  const summary = (): string => {
    const c = fleet.counts();
    const images = Object.entries(fleet.images()).map(([name, n]) => `${name}: ${n}`).join(', ');
    const reboots = Object.entries(fleet.rebootCounts()).map(([why, n]) => `${why} ${n}`).join(', ');
    const enrolling = enrollSetup ? `, enrolling ${c.enrolling}, pending approval ${c.pending}` : '';
    return `${c.online}/${c.total} online (booting ${c.booting}${enrolling}, offline ${c.offline}, rebooting ${c.rebooting}, silent ${c.silent}) | reboots: ${reboots} | ${images}`;
  };
  let stopping = false;
  const stop = async (why: string): Promise<void> => {
    if (stopping) return;
    stopping = true;
    console.log(`stopping (${why}): ${summary()}`);
    await fleet.stop();
    await store?.idle();
    process.exit(0);
  };
  process.on('SIGINT', () => void stop('Ctrl-C'));
  process.on('SIGTERM', () => void stop('SIGTERM'));
  const duration = num(values.duration, '--duration')!;
  if (duration > 0) setTimeout(() => void stop(`${duration} s elapsed`), duration * 1000).unref();
  setInterval(() => console.log(summary()), num(values.report, '--report', 1)! * 1000).unref();
  // Keep the process alive while devices run, even when every device is between timers.
  setInterval(() => undefined, 1 << 30);
  console.log(`starting ${values.count} simulated ${values.platform} devices against ${url.origin}${url.pathname}`);
  await fleet.start();
}

/** --enroll URL with its credential and the CA file: what every enrolling device is flashed with. */
function enrollOptions(url: string, credential: string | undefined, credentialFile: string | undefined, certs: string | undefined, enrollCa: string | undefined): ReturnType<typeof identityByEnrollment> {
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    throw new Error(`--enroll ${JSON.stringify(url)} is not a URL`);
  }
  if (u.protocol !== 'https:') throw new Error('--enroll must be an https:// URL (the enrollment listener)');
  if (u.pathname !== '/' || u.search) throw new Error('--enroll is the listener base only, e.g. https://localhost:8071 (the routes are /.well-known/est/...)');
  if (enrollCa) throw new Error('--enroll and --enroll-ca are two different ways: devices enroll themselves, or this process issues their certificates');
  if (!certs) throw new Error('--enroll needs --certs DIR with ca.crt: the CA the devices trust, as on the board');
  if ((credential === undefined) === (credentialFile === undefined)) throw new Error('--enroll needs one of --bootstrap USER:PASS or --bootstrap-file FILE');
  const line = bootstrapLine(credential ?? readFileSync(credentialFile!, 'utf8'));
  const caFile = path.join(certs, 'ca.crt');
  let ca: string;
  try {
    ca = readFileSync(caFile, 'utf8');
  } catch {
    throw new Error(`${caFile} is missing: the devices need the fleet CA to trust the enrollment listener`);
  }
  return identityByEnrollment(ca, { server: { host: u.hostname.replace(/^\[|\]$/g, ''), port: Number(u.port) || 443 }, credential: line });
}

/** `a:pass,b` → networks; a name without `:` is an open network. Checked like the wifi command's argument. */
function parseNetworks(list: string, flag: string): WifiNetwork[] {
  return list.split(',').filter(Boolean).map((item) => {
    const colon = item.indexOf(':');
    const ssid = colon < 0 ? item : item.slice(0, colon);
    const password = colon < 0 ? '' : item.slice(colon + 1);
    try {
      return checkWifiCredentials({ ssid, password });
    } catch (err) {
      throw new Error(`${flag} ${JSON.stringify(ssid)}: ${(err as Error).message}`);
    }
  });
}

main().catch((err: Error) => {
  console.error(`esp-fleet-sim: ${err.message}`);
  process.exit(2);
});
