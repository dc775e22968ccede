import { strict as assert } from 'node:assert';
import { readFileSync } from 'node:fs';
import * as path from 'node:path';
import { isDeviceId, normalizeDeviceId } from '../../lib/device-id';
import { COMMANDS, buildCommand } from '../../lib/fleet/commands';
import { TopicScheme } from '../../lib/fleet/topic-scheme';
import { parseStatus } from '../../lib/fleet/telemetry';
import { checkDeviceConfig } from '../../lib/firmware/firmware-service';
import { normalizeDownloadPath } from '../../lib/firmware/update-server';
import { looksSignedEsp8266 } from '../../lib/firmware/signing';
import { readAppDescriptor } from '../../lib/firmware/app-descriptor';
import { parseImageName } from '../../lib/firmware/version';
import { REPO_ROOT } from '../support/firmware-core';

/**
 * lib/ against the vector files the firmware core's host tests read too
 * (firmware/core/test/host_tests.cpp): edit the JSON, not a copy of it here.
 */
function vectors<T>(name: string): T {
  return JSON.parse(readFileSync(path.join(REPO_ROOT, 'test', 'vectors', name), 'utf8')) as T;
}

const scheme = TopicScheme.named('secure-esp8266');

describe('shared firmware vectors (test/vectors)', () => {
  describe('device-topics.json', () => {
    const v = vectors<{
      devices: { input: string; why: string; mac: string; id: string; status: string; will: string; commandFilter: string; commands: Record<string, string> }[];
      invalidIds: { input: string; why: string }[];
    }>('device-topics.json');

    for (const d of v.devices) {
      it(`${JSON.stringify(d.input)} is device ${d.id} (${d.why})`, () => {
        assert.equal(normalizeDeviceId(d.input), d.id);
        assert.equal(d.mac.replace(/:/g, ''), d.id, 'the id is the MAC in lowercase hex');
        assert.ok(isDeviceId(d.id));
        assert.equal(scheme.statusTopic(d.id), d.status);
        assert.equal(scheme.willTopic(d.id), d.will);
        assert.equal(scheme.deviceCommandFilter(d.id), d.commandFilter);
        assert.deepEqual(Object.keys(d.commands).sort(), Object.keys(COMMANDS.esp8266).sort());
        for (const [command, topic] of Object.entries(d.commands)) assert.equal(scheme.commandTopic(d.id, command), topic);
        assert.deepEqual(scheme.parse(d.status), { kind: 'status', id: d.id });
        assert.deepEqual(scheme.parse(d.will), { kind: 'will', id: d.id });
      });
    }
    for (const c of v.invalidIds) {
      it(`refuses ${JSON.stringify(c.input)} (${c.why})`, () => {
        assert.throws(() => normalizeDeviceId(c.input), /invalid device id/);
        assert.ok(!isDeviceId(c.input));
      });
    }
  });

  describe('commands.json', () => {
    const v = vectors<{ id: string; commands: string[]; topics: { topic: string; command: string | null; why: string }[] }>('commands.json');

    it('lists exactly the esp8266 commands of lib/fleet/commands.ts', () => {
      assert.deepEqual([...v.commands].sort(), Object.keys(COMMANDS.esp8266).sort());
      // wifi takes a payload (its own vectors, wifiPayloads: test/lib/fleet/wifi-command.test.ts); the others none.
      for (const c of v.commands.filter((x) => x !== 'wifi')) assert.equal(buildCommand('esp8266', c).payload, '');
      assert.throws(() => buildCommand('esp8266', 'wifi'), /wifi needs msg.argument/);
    });
    for (const t of v.topics) {
      it(`${JSON.stringify(t.topic)} → ${t.command ?? 'ignored'} (${t.why})`, () => {
        const built = v.commands.filter((c) => scheme.commandTopic(v.id, c) === t.topic);
        assert.deepEqual(built, t.command === null ? [] : [t.command]);
      });
    }
    it('an unknown command is refused by the backend too', () => {
      for (const t of v.topics.filter((x) => x.why === 'unknown command')) {
        assert.throws(() => buildCommand('esp8266', t.topic.split('/').pop()), /unknown command/);
      }
    });
  });

  describe('esp32-device.json', () => {
    const esp32 = TopicScheme.named('secure-esp32');
    const v = vectors<{
      id: string;
      commands: string[];
      devices: { id: string; status: string; will: string; log: string; commandFilter: string; commands: Record<string, string> }[];
      commandTopics: { topic: string; command: string | null; why: string }[];
      payloads: { command: string; arg: unknown; payload: string | null; device: boolean; deviceOnly?: boolean; why: string }[];
      appDescriptors: {
        valid: { why: string; hex: string; image: string; descriptor: Record<string, string | number> }[];
        invalid: { why: string; hex: string }[];
      };
    }>('esp32-device.json');

    it('lists exactly the esp32 commands of lib/fleet/commands.ts', () => {
      assert.deepEqual([...v.commands].sort(), Object.keys(COMMANDS.esp32).sort());
    });
    for (const d of v.devices) {
      it(`the secure-esp32 topics of ${d.id}`, () => {
        assert.equal(esp32.statusTopic(d.id), d.status);
        assert.equal(esp32.willTopic(d.id), d.will);
        assert.equal(esp32.logTopic(d.id), d.log);
        assert.equal(esp32.deviceCommandFilter(d.id), d.commandFilter);
        assert.deepEqual(Object.keys(d.commands).sort(), Object.keys(COMMANDS.esp32).sort());
        for (const [command, topic] of Object.entries(d.commands)) assert.equal(esp32.commandTopic(d.id, command), topic);
        assert.deepEqual(esp32.parse(d.status), { kind: 'status', id: d.id });
        assert.deepEqual(esp32.parse(d.will), { kind: 'will', id: d.id });
        assert.deepEqual(esp32.parse(d.log), { kind: 'log', id: d.id });
      });
    }
    for (const t of v.commandTopics) {
      it(`${JSON.stringify(t.topic)} → ${t.command ?? 'ignored'} (${t.why})`, () => {
        const built = v.commands.filter((c) => esp32.commandTopic(v.id, c) === t.topic);
        assert.deepEqual(built, t.command === null ? [] : [t.command]);
      });
    }
    for (const p of v.payloads) {
      it(`${p.command} ${JSON.stringify(p.arg)}: ${p.payload === null ? 'refused before publishing' : `publishes ${JSON.stringify(p.payload)}`} (${p.why})`, () => {
        const arg = p.arg === null ? undefined : p.arg;
        if (p.payload === null) {
          assert.throws(() => buildCommand('esp32', p.command, arg));
          assert.equal(p.device, false, 'what the backend refuses the device refuses too');
        } else {
          assert.equal(buildCommand('esp32', p.command, arg).payload, p.payload);
          assert.equal(p.device || p.deviceOnly === true, true, 'a published payload the device refuses is marked deviceOnly');
        }
      });
    }
    for (const c of v.appDescriptors.valid) {
      it(`reads the app descriptor: ${c.why}`, () => {
        const desc = readAppDescriptor(Buffer.from(c.hex, 'hex'));
        assert.ok(desc);
        assert.deepEqual({ ...desc }, c.descriptor);
        const parsed = parseImageName(c.image);
        assert.ok(parsed, `${c.image} is an image name`);
        assert.equal(parsed.version, desc.version);
      });
    }
    for (const c of v.appDescriptors.invalid) {
      it(`refuses the app descriptor: ${c.why}`, () => assert.equal(readAppDescriptor(Buffer.from(c.hex, 'hex')), undefined));
    }
  });

  describe('status-payloads.json', () => {
    type Fields = Record<string, string | number | null>;
    const v = vectors<{ built: { why: string; fields: Fields; hex?: Record<string, string>; json: string; naiveRejected: boolean }[]; rejected: { why: string; payload: string }[] }>(
      'status-payloads.json',
    );

    for (const c of v.built) {
      it(`accepts what the device builds: ${c.why}`, () => {
        const parsed = parseStatus(c.json);
        assert.ok(parsed.ok, parsed.ok ? '' : parsed.reason);
        assert.deepEqual(parsed.value, JSON.parse(c.json), 'every field passes unchanged');
        const naive = JSON.stringify(c.fields);
        if (c.naiveRejected) assert.equal(parseStatus(naive).ok, false, 'without clamping the device would send a refused status');
        else if (!c.hex) assert.equal(naive, c.json, "the device's format is JSON.stringify's");
      });
    }
    for (const c of v.rejected) {
      it(`refuses ${c.why}`, () => assert.equal(parseStatus(c.payload).ok, false));
    }
  });

  describe('device-config.json', () => {
    interface Case {
      why: string;
      text: string;
      serverAccepts: boolean;
    }
    const v = vectors<{ valid: (Case & { expected: Record<string, unknown>; configUrl: string })[]; invalid: (Case & { reason: string })[] }>('device-config.json');

    function serverAccepts(text: string): boolean {
      try {
        checkDeviceConfig(JSON.parse(text));
        return true;
      } catch {
        return false;
      }
    }
    for (const c of v.valid) {
      it(`valid: ${c.why}`, () => {
        assert.equal(serverAccepts(c.text), c.serverAccepts, 'checkDeviceConfig verdict');
        const e = c.expected;
        assert.equal(`https://${e.downloadserver}:${e.downloadport}${normalizeDownloadPath(String(e.downloadpath))}/config.json`, c.configUrl);
        if (c.serverAccepts) {
          // What the device reads is what the server means, except the outer '/' of the path.
          const parsed = JSON.parse(c.text) as Record<string, unknown>;
          for (const [key, value] of Object.entries(e)) {
            const served = key === 'downloadpath' ? normalizeDownloadPath(String(parsed[key])).replace(/^\//, '') : parsed[key];
            assert.deepEqual(served, value, key);
          }
        }
      });
    }
    for (const c of v.invalid) {
      it(`invalid on the device: ${c.why} (server ${c.serverAccepts ? 'accepts' : 'refuses'} it)`, () => {
        assert.equal(serverAccepts(c.text), c.serverAccepts);
      });
    }
  });

  describe('signed-images.json (layouts)', () => {
    const v = vectors<{ layouts: { why: string; imageSize: number; trailer: number; modulusLength: number; ok: boolean; payloadLength: number | null }[] }>(
      'signed-images.json',
    );
    for (const c of v.layouts) {
      it(`${c.ok ? 'accepts' : 'refuses'} ${c.why}`, () => {
        const image = Buffer.alloc(c.imageSize);
        if (c.imageSize >= 4) image.writeUInt32LE(c.trailer, c.imageSize - 4);
        assert.equal(looksSignedEsp8266(image, c.modulusLength), c.ok);
        if (c.ok) assert.equal(c.imageSize - c.trailer - 4, c.payloadLength);
      });
    }
  });
});
