import { isDeviceId } from '../device-id';

/**
 * Topic templates with `{id}` (the device id) and, for commands, `{command}`.
 * docs/wire-contract.md, MQTT topics: "secure-esp8266" is the secure ESP8266 framework's scheme; "secure-esp32" is the ESP32 framework's
 * per-device prefix, to which we add `status` and `will` beside its `log`.
 */
export interface TopicTemplates {
  status: string;
  will: string;
  command: string;
  log?: string;
}

export type CommandSet = 'esp8266' | 'esp32';
export type SchemeName = 'secure-esp8266' | 'secure-esp32' | 'custom';

export const BUILTIN_SCHEMES: Record<Exclude<SchemeName, 'custom'>, { templates: TopicTemplates; commandSet: CommandSet }> = {
  'secure-esp8266': {
    templates: { status: '/status/{id}', will: '/will/{id}/will', command: '/command/{id}/{command}' },
    commandSet: 'esp8266',
  },
  'secure-esp32': {
    templates: { status: '/esp/{id}/status', will: '/esp/{id}/will', command: '/esp/{id}/{command}', log: '/esp/{id}/log' },
    commandSet: 'esp32',
  },
};

export type InboundKind = 'status' | 'will' | 'log';

export interface ParsedTopic {
  kind: InboundKind;
  id: string;
}

export class TopicSchemeError extends Error {}

interface CompiledInbound {
  kind: InboundKind;
  pattern: RegExp;
  filter: string;
}

export class TopicScheme {
  private readonly inbound: CompiledInbound[];

  constructor(
    readonly templates: TopicTemplates,
    readonly commandSet: CommandSet,
  ) {
    for (const kind of ['status', 'will', 'log'] as const) {
      const t = templates[kind];
      if (kind === 'log' && !t) continue;
      checkTemplate(kind, t, false);
    }
    checkTemplate('command', templates.command, true);
    const inboundKinds = (['status', 'will', 'log'] as const).filter((k) => templates[k]);
    const filters = inboundKinds.map((k) => toFilter(templates[k]!));
    if (new Set(filters).size !== filters.length) {
      throw new TopicSchemeError(`the status, will and log templates must differ: ${inboundKinds.map((k) => `${k}=${templates[k]}`).join(', ')}`);
    }
    this.inbound = inboundKinds.map((kind) => ({ kind, pattern: toPattern(templates[kind]!), filter: toFilter(templates[kind]!) }));
  }

  static named(name: Exclude<SchemeName, 'custom'>): TopicScheme {
    const builtin = BUILTIN_SCHEMES[name];
    if (!builtin) throw new TopicSchemeError(`unknown topic scheme ${JSON.stringify(name)}`);
    return new TopicScheme(builtin.templates, builtin.commandSet);
  }

  /** The subscriptions a backend needs: one wildcard filter per inbound template. */
  get subscriptions(): string[] {
    return this.inbound.map((i) => i.filter);
  }

  /** Which device and which kind of message a topic is, or a reason it is none of ours. */
  parse(topic: string): ParsedTopic | { error: string } {
    for (const { kind, pattern } of this.inbound) {
      const m = pattern.exec(topic);
      if (!m) continue;
      const id = m[1];
      if (!isDeviceId(id)) return { error: `topic ${JSON.stringify(topic)} does not carry a device id (12 lowercase hex digits)` };
      return { kind, id };
    }
    return { error: `topic ${JSON.stringify(topic)} matches no template of this scheme` };
  }

  statusTopic(id: string): string {
    return this.templates.status.replace('{id}', id);
  }

  willTopic(id: string): string {
    return this.templates.will.replace('{id}', id);
  }

  logTopic(id: string): string | undefined {
    return this.templates.log?.replace('{id}', id);
  }

  /** Every command to one device: what its ACL lets it read. */
  deviceCommandFilter(id: string): string {
    return this.templates.command.replace('{id}', id).replace('{command}', '#');
  }

  /** Every command to any device: what the backend's ACL lets it write. */
  get allCommandsFilter(): string {
    return this.templates.command.replace('{id}', '+').replace('{command}', '#');
  }

  commandTopic(id: string, command: string): string {
    return this.templates.command.replace('{id}', id).replace('{command}', command);
  }
}

function checkTemplate(kind: string, template: string | undefined, isCommand: boolean): void {
  if (typeof template !== 'string' || !template) throw new TopicSchemeError(`the ${kind} topic template is empty`);
  if (/[+#\0]/.test(template)) throw new TopicSchemeError(`the ${kind} template ${JSON.stringify(template)} contains an MQTT wildcard`);
  const segments = template.split('/');
  if (segments.filter((s) => s === '{id}').length !== 1 || (template.match(/\{id\}/g) ?? []).length !== 1) {
    throw new TopicSchemeError(`the ${kind} template ${JSON.stringify(template)} cannot identify the device: it needs {id} once, as a whole topic level (e.g. /status/{id})`);
  }
  const hasCommand = template.includes('{command}');
  if (isCommand && (!hasCommand || segments[segments.length - 1] !== '{command}' || (template.match(/\{command\}/g) ?? []).length !== 1)) {
    throw new TopicSchemeError(`the command template ${JSON.stringify(template)} needs {command} once, as its last level (e.g. /command/{id}/{command})`);
  }
  if (!isCommand && hasCommand) throw new TopicSchemeError(`the ${kind} template ${JSON.stringify(template)} must not contain {command}`);
  const unknown = template.replace(/\{id\}|\{command\}/g, '').match(/\{[^}]*\}/);
  if (unknown) throw new TopicSchemeError(`the ${kind} template ${JSON.stringify(template)} has an unknown placeholder ${unknown[0]}`);
}

function toFilter(template: string): string {
  return template.replace('{id}', '+');
}

function toPattern(template: string): RegExp {
  const [before, after] = template.split('{id}');
  const escape = (s: string): string => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
  return new RegExp(`^${escape(before)}([^/]+)${escape(after)}$`);
}
