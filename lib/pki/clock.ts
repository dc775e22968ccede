/**
 * Where the CA reads the time. Passed in (CaStoreOptions.now) so that validity periods,
 * revocation dates and CRL updates can be tested on fixed dates; the default is the system clock.
 */
export type Clock = () => Date;

export const systemClock: Clock = () => new Date();

export const DAY_MS = 86_400_000;

/** Certificates and CRLs start a little in the past: a device's NTP clock may lag the server's. */
export const BACKDATE_MS = 10 * 60_000;
