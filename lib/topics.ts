/** The default "secure-esp8266" topic scheme of seed 000 (DESIGN.md, MQTT topics). */
export const scheme8266 = {
  status: (id: string): string => `/status/${id}`,
  will: (id: string): string => `/will/${id}/will`,
  command: (id: string, command: string): string => `/command/${id}/${command}`,
  commandFilter: (id: string): string => `/command/${id}/#`,
  backendReads: ['/status/+', '/will/+/will'] as const,
  backendWrites: '/command/#',
};
