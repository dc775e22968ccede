import { revokedSerials } from '../../pki/crl-serials';

/**
 * The certificate serials a serving process refuses: those of the CRL it serves with, and
 * whatever the caller's own `isRevoked` says. A Set lookup per request.
 */
export class Revocation {
  private serials = new Set<string>();
  constructor(
    crlPem: string | undefined,
    private readonly hook?: (serial: string) => boolean,
  ) {
    if (crlPem) this.load(crlPem);
  }
  load(crlPem: string): void {
    this.serials = revokedSerials(crlPem);
  }
  /** The serials of a CRL read with revokedSerials. */
  use(serials: Set<string>): void {
    this.serials = serials;
  }
  isRevoked(serial: string): boolean {
    return this.serials.has(serial) || this.hook?.(serial) === true;
  }
}
