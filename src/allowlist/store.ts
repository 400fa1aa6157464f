/**
 * What the allowlist service needs from a database (SQLite or PostgreSQL):
 * reads, a write transaction in which the service changes entries and
 * appends audit records, and change/health signals.
 */
import type { AllowEntry, AuditRecord } from './types.js';
import { AllowlistInputError } from './types.js';

/** Operations inside one write transaction (all of them commit together, or none). */
export interface StoreTx {
  /** The entry as stored now (locked until commit where the database can). */
  get(id: string): Promise<AllowEntry | undefined>;
  entries(list: string): Promise<AllowEntry[]>;
  insert(entry: AllowEntry): Promise<void>;
  update(entry: AllowEntry): Promise<void>;
  delete(id: string): Promise<void>;
  audit(record: NewAuditRecord): Promise<AuditRecord>;
}

/** An audit record before the store numbers it. */
export type NewAuditRecord = Omit<AuditRecord, 'id'>;

export interface HistoryFilter {
  readonly list?: string;
  readonly entryId?: string;
  readonly limit?: number;
}

export interface StoreEvents {
  /** Lists changed by someone (this or another process); null: reload every list. */
  onChange(lists: readonly string[] | null): void;
  /** The database became reachable (ok) or unreachable (degraded, with an error free of secrets). */
  onHealth(state: 'ok' | 'degraded', error?: string): void;
}

export interface AllowlistBackend {
  readonly kind: 'sqlite' | 'postgres';
  /** Connect, create the tables if missing, start watching for changes. Throws when it cannot (SQLite) — PostgreSQL reports degraded and keeps trying. */
  open(events: StoreEvents): Promise<void>;
  readAll(): Promise<AllowEntry[]>;
  readList(list: string): Promise<AllowEntry[]>;
  /** Runs fn in one transaction (serialized per list), commits, then tells other processes which list changed. */
  write<T>(list: string, fn: (tx: StoreTx) => Promise<T>): Promise<T>;
  history(filter: HistoryFilter): Promise<AuditRecord[]>;
  close(): Promise<void>;
}

/** The store cannot be reached: writes are refused (HTTP 503); lookups keep using the last lists. */
export class AllowlistUnavailableError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'AllowlistUnavailableError';
  }
}

/** An entry id that does not exist (HTTP 404). */
export class AllowlistNotFoundError extends AllowlistInputError {
  constructor(id: string) {
    super('id', `there is no allowlist entry with id '${id}'`, "list the entries with 'perimeter allow ls LIST' or GET /api/allowlists/LIST/entries and use an id from there");
    this.name = 'AllowlistNotFoundError';
  }
}

/** A promise chain: one task at a time. */
export class Serial {
  private tail: Promise<unknown> = Promise.resolve();
  run<T>(fn: () => Promise<T>): Promise<T> {
    const next = this.tail.then(fn, fn);
    this.tail = next.catch(() => undefined);
    return next;
  }
}

/** Removes a URL's password (and the URL's userinfo) from a message. */
export function redact(message: string, secret?: string): string {
  let out = message;
  if (secret) {
    out = out.split(secret).join('(database URL)');
    try {
      const u = new URL(secret);
      if (u.password) out = out.split(u.password).join('***').split(decodeURIComponent(u.password)).join('***');
    } catch {
      // not a URL: nothing more to take out
    }
  }
  return out.replace(/(postgres(?:ql)?:\/\/[^:/@\s]*):[^@\s]*@/g, '$1:***@');
}
