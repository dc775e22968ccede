import type { EnrollRefusal } from '../enrollment-desk';

/** The one reason → status table of the enrollment listener (docs/enrollment.md, The enrollment listener). */
export const EST_STATUS_OF: Readonly<Record<EnrollRefusal, number>> = Object.freeze({
  'no-credential': 401,
  'bad-credential': 401,
  'no-bootstrap': 403,
  'bad-csr': 400,
  'not-a-device': 400,
  'key-refused': 400,
  held: 403,
  rejected: 403,
  'pending-other-key': 403,
  policy: 403,
  'no-certificate': 403,
  'certificate-refused': 403,
  'not-yours': 403,
  'too-many-pending': 503,
  'rate-limited': 429,
});
