export { CaStore } from './pki/ca-store';
export type { CaStoreOptions, IssuedCertificate, IssuedRecord, CertificateKind, RevocationReason, MosquittoSetup } from './pki/ca-store';
export { REVOCATION_REASONS } from './pki/ca-store';
export { normalizeDeviceId, isDeviceId, InvalidDeviceIdError } from './device-id';
export { fingerprint, isSignedBy, toPem } from './pki/x509';
export { TopicScheme, BUILTIN_SCHEMES } from './fleet/topic-scheme';
export { runIssuerAction, parseAction, ISSUER_ACTIONS } from './pki/issuer-actions';
export type { IssuerAction, IssuerResult, IssuerDefaults, IssuedOutput } from './pki/issuer-actions';
