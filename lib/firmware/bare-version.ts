import { assertProduct, parseVersion } from './version';

// Bare versions (docs/wire-contract.md, Bare versions): a sketch that calls
// `ESPhttpUpdate.update(client, url, "0.1")` sends `x-ESP8266-version: 0.1`, a version with no
// product. The catalogue keys images by `<PRODUCT>-<VERSION>`, so the product comes from the
// operator: one for the device's group, else one for the whole server. With it, the version
// order, the trusted keys and the assignments apply as to any image.

/** The current image a check names, or why it names none. */
export type BareResolution = { image: string } | { error: string };

/** True when `reported` is a version alone (no `-`), as a bare-version update client sends it. */
export function isBareVersion(reported: string): boolean {
  return reported !== '' && !reported.includes('-');
}

/**
 * `<PRODUCT>-<version>` for a bare version: the product of the first of the device's groups
 * that has one (most important first, as for assignments), else the server's. A full image
 * name, or a text that is no version, passes unchanged (the catalogue tells what is wrong).
 */
export function resolveBareVersion(reported: string, groups: readonly string[], byGroup: Readonly<Record<string, string>>, serverProduct: string | undefined): BareResolution {
  if (!isBareVersion(reported)) return { image: reported };
  try {
    parseVersion(reported);
  } catch {
    return { image: reported };
  }
  const group = groups.find((g) => byGroup[g] !== undefined);
  const product = group !== undefined ? byGroup[group] : serverProduct;
  if (product === undefined || product === '') {
    return {
      error:
        `version ${reported} names no product (a bare x-ESP8266-version or x-ESP32-version): set "Product for bare versions" on the update server, ` +
        `or a bare-version product for the device's group (action bare-product)`,
    };
  }
  return { image: `${assertProduct(product)}-${reported}` };
}
