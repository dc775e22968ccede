import { pathToFileURL } from 'node:url';
import type * as AedesModule from 'aedes';

type AedesExports = typeof AedesModule;
let loading: Promise<AedesExports> | undefined;

/**
 * aedes 1.x is an ES module. `require()` of an ES module works unflagged only from Node.js
 * 20.19 / 22.12 (Node docs, "Loading ECMAScript modules using require()"); Node-RED 5 runs on
 * 22.9 and later, where only `import()` loads it. TypeScript's CommonJS output turns `import()`
 * into `require()`, so the import is made by a function it does not rewrite, of the absolute
 * file URL (a bare name would resolve from nowhere in particular).
 */
export function loadAedes(): Promise<AedesExports> {
  const nativeImport = new Function('url', 'return import(url)') as (url: string) => Promise<AedesExports>;
  loading ??= nativeImport(pathToFileURL(require.resolve('aedes')).href);
  return loading;
}
