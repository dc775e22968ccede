import type { KeyType } from '../pki/keys';
import { CoalescingTask } from '../coalescing-task';
import { readFileIfExists, writeFileAtomic } from '../fs/atomic-file';

export type RequestState = 'pending' | 'approved' | 'rejected';

export type EnrollKeyType = KeyType;

/** One device's enrollment request and what became of it (docs/enrollment.md, Pending requests). */
export interface EnrollmentRequest {
  id: string;
  keyType: EnrollKeyType;
  /** SHA-256 of the request's SubjectPublicKeyInfo, hex: which key asks. */
  key: string;
  csrPem: string;
  address: string;
  requestedAt: string;
  state: RequestState;
  decidedAt?: string;
  /** Of the certificate issued on approval. */
  serial?: string;
  certificatePem?: string;
}

/** Decided requests are forgotten after this long; pending ones wait as long as it takes. */
const KEEP_DECIDED_MS = 30 * 24 * 3_600_000;

/**
 * The requests by device id, one per id, kept in one JSON file written atomically after each
 * change (changes made together share one write). A few thousand entries at most: a whole
 * rewrite stays small, unlike the CA's journal, which grows for ever.
 */
export class RequestBook {
  private readonly writer = new CoalescingTask(() => writeFileAtomic(this.file, `${JSON.stringify({ requests: [...this.byId.values()] })}\n`));

  private constructor(
    private readonly file: string,
    private readonly byId: Map<string, EnrollmentRequest>,
  ) {}

  static async open(file: string, now: Date): Promise<RequestBook> {
    const text = await readFileIfExists(file);
    const byId = new Map<string, EnrollmentRequest>();
    if (text !== undefined) {
      let list: unknown;
      try {
        list = (JSON.parse(text) as { requests?: unknown }).requests;
      } catch {
        throw new Error(`${file} is not valid JSON: restore it from a backup or remove it (pending requests are asked again)`);
      }
      for (const r of Array.isArray(list) ? (list as EnrollmentRequest[]) : []) {
        const stale = r.state !== 'pending' && now.getTime() - Date.parse(r.decidedAt ?? r.requestedAt) > KEEP_DECIDED_MS;
        if (typeof r?.id === 'string' && !stale) byId.set(r.id, r);
      }
    }
    return new RequestBook(file, byId);
  }

  get(id: string): EnrollmentRequest | undefined {
    const r = this.byId.get(id);
    return r && { ...r };
  }

  pending(): EnrollmentRequest[] {
    return [...this.byId.values()].filter((r) => r.state === 'pending').map((r) => ({ ...r }));
  }

  get pendingCount(): number {
    let n = 0;
    for (const r of this.byId.values()) if (r.state === 'pending') n++;
    return n;
  }

  /** Stores `request` (replacing the id's earlier one) and settles once it is on disk. */
  put(request: EnrollmentRequest): Promise<void> {
    this.byId.set(request.id, { ...request });
    return this.writer.request();
  }

  idle(): Promise<void> {
    return this.writer.idle();
  }
}
