/**
 * The allowlist contract shared by the store (src/allowlist/), the TCP proxy
 * (src/tcp/), the admin API and the admin web UI (src/admin/).
 *
 * Data flow: the control process (or the single process) owns the store
 * (SQLite by default, PostgreSQL when configured). Every write goes through
 * AllowlistService, which validates it, writes the entry and an audit record
 * in one transaction, and notifies (PostgreSQL NOTIFY; local listeners for
 * SQLite). Each process serving TCP holds compiled, in-memory copies of the
 * lists (AllowlistTables) and looks addresses up there; the database is never
 * on the connection path. When the database is unreachable the tables keep
 * the last lists they had and the service reports 'degraded'.
 */

/** One allowlist entry as stored. Times are ISO 8601 (UTC). */
export interface AllowEntry {
  /** Stable identifier (UUID). */
  readonly id: string;
  /** The list's name: lower-case letters, digits, inner hyphens. */
  readonly list: string;
  /** Normalized CIDR: network address with prefix, e.g. 198.51.100.7/32, 2001:db8::/48. */
  readonly cidr: string;
  /** The partner this entry is for. */
  readonly partner: string;
  readonly note: string;
  /** Who added it (admin user name, 'token', or the CLI's --as). */
  readonly addedBy: string;
  readonly addedAt: string;
  /** After this time the entry no longer admits anyone; undefined = never expires. */
  readonly expiresAt?: string;
}

/** What a caller supplies for a new entry or an edit (validated by AllowlistService). */
export interface AllowEntryInput {
  readonly list: string;
  /** An address or CIDR as the user wrote it; normalized by the service. */
  readonly cidr: string;
  readonly partner: string;
  readonly note?: string;
  /** ISO 8601, or undefined for no expiry. */
  readonly expiresAt?: string;
}

export type AuditAction = 'add' | 'update' | 'remove' | 'expire';

/** One change, kept forever: who, what, before/after, why. */
export interface AuditRecord {
  readonly id: number;
  readonly at: string;
  readonly actor: string;
  readonly action: AuditAction;
  readonly list: string;
  readonly entryId: string;
  readonly before?: AllowEntry;
  readonly after?: AllowEntry;
  readonly reason: string;
}

/** Who is making a change and why (every write needs both). */
export interface ChangeContext {
  readonly actor: string;
  readonly reason: string;
}

/** A refused write: which input field is wrong, what is wrong and how to fix it. Shown as is by the UI, API and CLI. */
export class AllowlistInputError extends Error {
  constructor(
    readonly field: 'list' | 'cidr' | 'partner' | 'note' | 'expiresAt' | 'reason' | 'id',
    message: string,
    readonly fix: string,
  ) {
    super(message);
    this.name = 'AllowlistInputError';
  }
}

export interface StoreHealth {
  /** ok: connected and current; degraded: enforcing the last lists read, database unreachable. */
  readonly state: 'ok' | 'degraded';
  readonly store: 'sqlite' | 'postgres';
  /** The last error while degraded (no secrets). */
  readonly error?: string;
  /** ISO 8601: when the state last changed. */
  readonly since: string;
}

/** The answer to "is this address allowed, and by which entry?". */
export interface CheckResult {
  readonly address: string;
  readonly list: string;
  readonly allowed: boolean;
  /** The most specific unexpired entry that admits the address. */
  readonly entry?: AllowEntry;
}

/** Writes, reads and change notification; lives in the control (or single) process. */
export interface AllowlistService {
  readonly kind: 'sqlite' | 'postgres';
  /** Every list name known to the store or referenced by a tcp listener, with entry counts. */
  lists(): Promise<{ readonly name: string; readonly entries: number; readonly listeners: readonly string[] }[]>;
  entries(list: string): Promise<AllowEntry[]>;
  add(input: AllowEntryInput, ctx: ChangeContext): Promise<AllowEntry>;
  update(id: string, input: AllowEntryInput, ctx: ChangeContext): Promise<AllowEntry>;
  /** Removal refuses new connections; established sessions are not closed. */
  remove(id: string, ctx: ChangeContext): Promise<AllowEntry>;
  /** Sets the expiry to now (the entry stays, visibly expired). */
  expire(id: string, ctx: ChangeContext): Promise<AllowEntry>;
  check(address: string, list: string): Promise<CheckResult>;
  /** Newest first; filtered by list and/or entry. */
  history(filter?: { readonly list?: string; readonly entryId?: string; readonly limit?: number }): Promise<AuditRecord[]>;
  health(): StoreHealth;
}

/** A compiled list: longest-prefix lookup over unexpired entries. */
export interface AllowlistMatcher {
  /** The most specific entry admitting the address (IPv4, IPv6 or IPv4-mapped IPv6), or undefined. */
  lookup(address: string, nowMs?: number): AllowEntry | undefined;
  readonly size: number;
}
