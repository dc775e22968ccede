/** Normalises a download path: one leading slash, no trailing slash, safe characters only. */
export function normalizeDownloadPath(p: string): string {
  const trimmed = `/${p.trim().replace(/^\/+|\/+$/g, '')}`;
  if (!/^\/[A-Za-z0-9._~/-]*$/.test(trimmed) || trimmed.split('/').some((s) => s === '..' || s === '.')) {
    throw new Error(`invalid download path ${JSON.stringify(p)}: letters, digits and / . _ ~ - only`);
  }
  return trimmed === '/' ? '' : trimmed;
}
