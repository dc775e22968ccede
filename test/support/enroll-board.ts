// A board at first boot as docs/enrollment.md describes it: its own EC P-256 key, one CSR with
// CN = its id, and the same `simpleenroll` request repeated until it is answered.
import { generateKeyPairSync, KeyObject, X509Certificate } from 'node:crypto';
import { buildCsr } from '../../lib/pki/csr-builder';
import { certificatesOf } from '../../lib/pki/pkcs7';
import { estRequest, EstResponse } from './est-request';

export class EnrollingBoard {
  private readonly key: KeyObject;
  /** The request body (RFC 7030 §4.2.1: base64 DER), built once: a repeat is the same CSR. */
  private readonly csr: string;

  constructor(readonly id: string) {
    this.key = generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey;
    this.csr = buildCsr({ commonName: id, privateKey: this.key }).toString('base64');
  }

  /** `simpleenroll` with the bootstrap credential (`user:password`, the bootstrap.txt line). */
  ask(port: number, ca: string, credential: string): Promise<EstResponse> {
    return estRequest(port, 'simpleenroll', { ca, body: this.csr, auth: credential });
  }

  /** The certificate of a `200` answer (PKCS#7 certs-only, RFC 7030 §4.2.3), as PEM; throws unless it is this board's. */
  certificateOf(answer: EstResponse): string {
    const ders = certificatesOf(Buffer.from(answer.body, 'base64'));
    if (ders.length !== 1) throw new Error(`expected one certificate, got ${ders.length}`);
    const cert = new X509Certificate(ders[0]);
    if (cert.subject !== `CN=${this.id}`) throw new Error(`certificate for ${cert.subject}, not CN=${this.id}`);
    if (!cert.checkPrivateKey(this.key)) throw new Error('the certificate is not for this board\'s key');
    return cert.toString();
  }

  /** The files the board keeps after enrollment, for a simulated device. */
  files(ca: string, certificatePem: string): { ca: string; cert: string; key: string } {
    return { ca, cert: certificatePem, key: this.key.export({ type: 'pkcs8', format: 'pem' }).toString() };
  }
}
