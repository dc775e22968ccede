import type { KeyType } from '../pki/keys';
import { AppendLog } from '../fs/append-log';

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
}

/** Decided requests are forgotten after this long; pending ones wait as long as it takes. */
const KEEP_DECIDED_MS = 30 * 24 * 3_600_000;

/**
 * The requests by device id, one per id (the newest line wins), kept as a JSON-lines log with
 * group commit (lib/fs/append-log.ts): a decision costs one appended line, whatever the number
 * of requests kept, instead of a rewrite of them all. Compacted when it opens and whenever it
 * holds more than twice as many lines as requests.
 */
export class RequestBook {
  private lines: number;

  private constructor(
    private readonly log: AppendLog<EnrollmentRequest>,
    private readonly byId: Map<string, EnrollmentRequest>,
    lines: number,
  ) {
    this.lines = lines;
  }

  static async open(file: string, now: Date): Promise<RequestBook> {
    const { log, entries } = await AppendLog.open<EnrollmentRequest>(file);
    const byId = new Map<string, EnrollmentRequest>();
    for (const r of entries) {
      if (typeof r?.id !== 'string') continue;
      const stale = r.state !== 'pending' && now.getTime() - Date.parse(r.decidedAt ?? r.requestedAt) > KEEP_DECIDED_MS;
      if (stale) byId.delete(r.id);
      else byId.set(r.id, r);
    }
    const book = new RequestBook(log, byId, entries.length);
    if (entries.length > byId.size) await book.compact();
    return book;
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

  /** Stores `request` (replacing the id's earlier one) and settles once its line is on disk. */
  async put(request: EnrollmentRequest): Promise<void> {
    this.byId.set(request.id, { ...request });
    this.lines++;
    await this.log.append(request);
    if (this.lines > 2 * this.byId.size + 1_000) await this.compact();
  }

  idle(): Promise<void> {
    return this.log.idle();
  }

  private async compact(): Promise<void> {
    const live = [...this.byId.values()];
    this.lines = live.length;
    await this.log.rewrite(live);
  }
}
