/**
 * AllowlistService over a store backend (SQLite or PostgreSQL): validation,
 * one transaction per change (entry + audit record), and keeping the
 * in-memory tables (AllowlistTables) current — after this process's own
 * writes at once, after other processes' writes on notification.
 *
 * Reads (lists, entries, check) answer from memory: what they say is what
 * the proxies enforce, also while the database is unreachable. Writes and
 * history need the database and fail with AllowlistUnavailableError then.
 */
import { randomUUID } from 'node:crypto';
import type { AllowlistStoreSpec } from '../config/types.js';
import { normalizeCidr, parseAddress } from './cidr.js';
import { AllowlistTables } from './tables.js';
import { AllowlistNotFoundError, AllowlistUnavailableError, type AllowlistBackend, type StoreTx } from './store.js';
import { AllowlistInputError, type AllowEntry, type AllowEntryInput, type AllowlistService, type AuditAction, type AuditRecord, type ChangeContext, type CheckResult, type StoreHealth } from './types.js';
import { SqliteBackend } from './sqlite.js';
import { PostgresBackend, type PostgresOptions } from './postgres.js';

export const LIST_NAME = /^[a-z0-9]([a-z0-9-]*[a-z0-9])?$/;
const MAX = { list: 63, partner: 200, note: 1000, reason: 1000, actor: 200 } as const;
// eslint-disable-next-line no-control-regex
const CONTROL = /[\u0000-\u001f\u007f]/;

export interface ServiceHooks {
  /** A list was (re)loaded into the tables; why: own write, notification, full reload. */
  onReload?(list: string, why: 'write' | 'notify' | 'full'): void;
  onWrite?(list: string, action: AuditAction): void;
  onHealth?(health: StoreHealth): void;
  /** Store problems worth an operator's attention (no secrets). */
  onError?(message: string): void;
}

export function validateListName(list: unknown): string {
  if (typeof list !== 'string' || list === '') throw new AllowlistInputError('list', 'the list name is missing', 'name the allowlist, e.g. content-partners');
  if (list.length > MAX.list || !LIST_NAME.test(list)) {
    const suggestion = list.toLowerCase().replace(/[^a-z0-9-]+/g, '-').replace(/^-+|-+$/g, '').slice(0, MAX.list);
    throw new AllowlistInputError('list', `'${list.slice(0, 80)}' is not a valid list name`, `use lower-case letters, digits and inner hyphens (at most ${MAX.list} characters)${suggestion && LIST_NAME.test(suggestion) ? `, e.g. ${suggestion}` : ''}`);
  }
  return list;
}

function text(field: 'partner' | 'note' | 'reason', value: unknown, required: boolean, fix: string): string {
  if (value === undefined || value === null) value = '';
  if (typeof value !== 'string') throw new AllowlistInputError(field, `${field} must be text`, fix);
  const v = value.trim();
  if (required && v === '') throw new AllowlistInputError(field, `${field === 'partner' ? 'the partner name' : `a ${field}`} is required`, fix);
  if (v.length > MAX[field]) throw new AllowlistInputError(field, `${field} is longer than ${MAX[field]} characters`, `shorten it to at most ${MAX[field]} characters`);
  if (CONTROL.test(v)) throw new AllowlistInputError(field, `${field} contains control characters (such as a line break)`, 'write it on one line, without control characters');
  return v;
}

const ISO = /^(\d{4})-(\d{2})-(\d{2})(?:[T ](\d{2}):(\d{2})(?::(\d{2})(?:\.\d{1,9})?)?(Z|[+-]\d{2}:?\d{2})?)?$/i;

/** An expiry as the user wrote it → ISO 8601 UTC; a date alone is that day's 00:00 UTC; no offset = UTC. */
export function parseExpiry(value: unknown): string | undefined {
  if (value === undefined || value === null || value === '') return undefined;
  const fix = 'give a date or time in ISO 8601, e.g. 2027-01-01 or 2027-01-01T12:00:00Z (UTC unless an offset is given)';
  if (typeof value !== 'string') throw new AllowlistInputError('expiresAt', 'the expiry must be a date or time as text', fix);
  const v = value.trim();
  const m = ISO.exec(v);
  if (!m) throw new AllowlistInputError('expiresAt', `'${v.slice(0, 60)}' is not a date or time`, fix);
  let iso = v.replace(' ', 'T');
  if (m[4] !== undefined && m[7] === undefined) iso += 'Z';
  const ms = Date.parse(m[4] === undefined ? `${iso}T00:00:00Z` : iso);
  const [y, mo, d] = [Number(m[1]), Number(m[2]), Number(m[3])];
  const day = new Date(Date.UTC(y, mo - 1, d));
  if (Number.isNaN(ms) || day.getUTCMonth() !== mo - 1 || day.getUTCDate() !== d) throw new AllowlistInputError('expiresAt', `'${v}' is not a valid date`, fix);
  return new Date(ms).toISOString();
}

function checkContext(ctx: ChangeContext): ChangeContext {
  const reason = text('reason', ctx?.reason, true, "say why, e.g. 'ticket OPS-123: new upload server'; it is kept in the change history");
  const actor = typeof ctx?.actor === 'string' ? ctx.actor.trim() : '';
  if (actor === '' || actor.length > MAX.actor || CONTROL.test(actor)) throw new Error('internal: a change needs a valid actor');
  return { actor, reason };
}

interface Normalized {
  readonly list: string;
  readonly cidr: string;
  readonly partner: string;
  readonly note: string;
  readonly expiresAt: string | undefined;
}

function normalizeInput(input: AllowEntryInput): Normalized {
  if (input === null || typeof input !== 'object') throw new AllowlistInputError('cidr', 'no entry was given', 'give at least list, cidr and partner');
  const list = validateListName(input.list);
  if (typeof input.cidr !== 'string') throw new AllowlistInputError('cidr', 'the address is missing', 'give an address (198.51.100.7) or a CIDR range (198.51.100.0/24)');
  const cidr = normalizeCidr(input.cidr).text;
  const partner = text('partner', input.partner, true, "name the partner this entry is for, e.g. 'Acme Records'");
  const note = text('note', input.note, false, 'a short note, e.g. what the partner uploads');
  const expiresAt = parseExpiry(input.expiresAt);
  return { list, cidr, partner, note, expiresAt };
}

function expired(e: AllowEntry, nowMs: number): boolean {
  return e.expiresAt !== undefined && Date.parse(e.expiresAt) <= nowMs;
}

export interface AllowlistStoreServiceOptions {
  readonly tables?: AllowlistTables;
  readonly hooks?: ServiceHooks;
  /** Retry a failed full reload this often while degraded (default 1 s). */
  readonly retryMs?: number;
}

export class AllowlistStoreService implements AllowlistService {
  readonly kind: 'sqlite' | 'postgres';
  readonly tables: AllowlistTables;
  private readonly backend: AllowlistBackend;
  private readonly hooks: ServiceHooks;
  private state: StoreHealth;
  /** List name → tcp listeners naming it (from the configuration). */
  private listeners = new Map<string, string[]>();
  private readonly reloading = new Map<string, { running: Promise<void>; again: boolean }>();
  private retryTimer: NodeJS.Timeout | undefined;
  private closed = false;
  private readonly retryMs: number;

  constructor(backend: AllowlistBackend, opts: AllowlistStoreServiceOptions = {}) {
    this.backend = backend;
    this.kind = backend.kind;
    this.tables = opts.tables ?? new AllowlistTables();
    this.hooks = opts.hooks ?? {};
    this.retryMs = opts.retryMs ?? 1000;
    this.state = { state: 'ok', store: backend.kind, since: new Date().toISOString() };
  }

  /** Opens the store and loads every list. SQLite problems throw; PostgreSQL ones leave it degraded and retrying. */
  async start(): Promise<void> {
    let full: Promise<void> | undefined;
    await this.backend.open({
      onChange: (lists) => {
        if (lists === null) void this.reloadAll().catch(() => undefined);
        else for (const l of lists) void this.reloadList(l, 'notify');
      },
      onHealth: (state, error) => {
        if (state === 'ok') {
          // Changes may have been missed while away: read everything again, then say ok.
          full = this.reloadAll().catch(() => undefined);
        } else {
          this.setHealth('degraded', error);
        }
      },
    });
    if (this.backend.kind === 'sqlite') await this.reloadAll();
    // PostgreSQL: open() has reported ok (a full reload is under way) or degraded (retrying).
    else if (full) await full;
  }

  health(): StoreHealth {
    return this.state;
  }

  private setHealth(state: 'ok' | 'degraded', error?: string): void {
    if (this.state.state === state && this.state.error === error) return;
    const changed = this.state.state !== state;
    this.state = { state, store: this.kind, ...(error !== undefined ? { error } : {}), since: changed ? new Date().toISOString() : this.state.since };
    this.hooks.onHealth?.(this.state);
    if (state === 'degraded' && error) this.hooks.onError?.(error);
  }

  /** The tcp listeners of the configuration, by the list they use (reported by lists(); a used list gets an empty table). */
  setListeners(byList: ReadonlyMap<string, readonly string[]>): void {
    this.listeners = new Map([...byList].map(([k, v]) => [k, [...v]]));
    for (const name of this.listeners.keys()) if (!this.tables.get(name)) this.tables.set(name, []);
  }

  private async reloadAll(): Promise<void> {
    let all: AllowEntry[];
    try {
      all = await this.backend.readAll();
    } catch (err) {
      this.setHealth('degraded', err instanceof AllowlistUnavailableError ? err.message : `cannot read the allowlists: ${(err as Error).message}`);
      this.scheduleRetry();
      throw err;
    }
    const by = new Map<string, AllowEntry[]>();
    for (const e of all) {
      let l = by.get(e.list);
      if (!l) by.set(e.list, (l = []));
      l.push(e);
    }
    for (const [name, entries] of by) {
      this.tables.set(name, entries);
      this.hooks.onReload?.(name, 'full');
    }
    for (const name of this.tables.names()) {
      if (by.has(name)) continue;
      if (this.listeners.has(name)) {
        if ((this.tables.get(name)?.size ?? 0) > 0) this.tables.set(name, []);
      } else {
        this.tables.delete(name);
      }
    }
    for (const name of this.listeners.keys()) if (!this.tables.get(name)) this.tables.set(name, []);
    this.setHealth('ok');
  }

  private scheduleRetry(): void {
    if (this.closed || this.retryTimer) return;
    this.retryTimer = setTimeout(() => {
      this.retryTimer = undefined;
      if (this.state.state === 'degraded') void this.reloadAll().catch(() => undefined);
    }, this.retryMs);
    this.retryTimer.unref();
  }

  /** Reload one list; concurrent requests for the same list coalesce into one more read. */
  private reloadList(list: string, why: 'write' | 'notify'): Promise<void> {
    const cur = this.reloading.get(list);
    if (cur) {
      cur.again = true;
      return cur.running;
    }
    const slot = { running: Promise.resolve(), again: false };
    const run = async (): Promise<void> => {
      do {
        slot.again = false;
        try {
          const entries = await this.backend.readList(list);
          if (entries.length === 0 && !this.listeners.has(list)) this.tables.delete(list);
          else this.tables.set(list, entries);
          this.hooks.onReload?.(list, why);
        } catch {
          // degraded (reported by the backend); reloadAll on recovery catches up
          return;
        }
      } while (slot.again && !this.closed);
    };
    slot.running = run().finally(() => this.reloading.delete(list));
    this.reloading.set(list, slot);
    return slot.running;
  }

  private ensureWritable(): void {
    if (this.state.state === 'degraded') {
      throw new AllowlistUnavailableError(`the allowlist store (${this.kind}) is unreachable: ${this.state.error ?? 'degraded'}; changes are refused until it is back (the proxies keep enforcing the last lists)`);
    }
  }

  private async change(list: string, action: AuditAction, fn: (tx: StoreTx, at: string) => Promise<AllowEntry>): Promise<AllowEntry> {
    this.ensureWritable();
    const result = await this.backend.write(list, async (tx) => fn(tx, new Date().toISOString()));
    this.hooks.onWrite?.(list, action);
    await this.reloadList(list, 'write');
    return result;
  }

  private static duplicate(existing: readonly AllowEntry[], cidr: string, nowMs: number, exceptId?: string): void {
    const dup = existing.find((e) => e.cidr === cidr && e.id !== exceptId && !expired(e, nowMs));
    if (dup) {
      throw new AllowlistInputError('cidr', `${cidr} is already on ${dup.list} (entry ${dup.id}, partner ${dup.partner})`, 'edit that entry instead, or expire or remove it first');
    }
  }

  async lists(): Promise<{ name: string; entries: number; listeners: readonly string[] }[]> {
    const names = new Set([...this.tables.names(), ...this.listeners.keys()]);
    return [...names].sort().map((name) => ({ name, entries: this.tables.entries(name)?.length ?? 0, listeners: this.listeners.get(name) ?? [] }));
  }

  async entries(list: string): Promise<AllowEntry[]> {
    validateListName(list);
    return [...(this.tables.entries(list) ?? [])];
  }

  /** One entry by id (from memory), or undefined. */
  entry(id: string): AllowEntry | undefined {
    for (const name of this.tables.names()) {
      const e = this.tables.entries(name)?.find((x) => x.id === id);
      if (e) return e;
    }
    return undefined;
  }

  async add(input: AllowEntryInput, ctx: ChangeContext): Promise<AllowEntry> {
    const n = normalizeInput(input);
    const c = checkContext(ctx);
    const now = Date.now();
    if (n.expiresAt !== undefined && Date.parse(n.expiresAt) <= now) {
      throw new AllowlistInputError('expiresAt', `the expiry ${n.expiresAt} is in the past`, 'give a future date, or leave the expiry out for an entry that does not expire');
    }
    return this.change(n.list, 'add', async (tx, at) => {
      AllowlistStoreService.duplicate(await tx.entries(n.list), n.cidr, now);
      const entry: AllowEntry = {
        id: randomUUID(),
        list: n.list,
        cidr: n.cidr,
        partner: n.partner,
        note: n.note,
        addedBy: c.actor,
        addedAt: at,
        ...(n.expiresAt !== undefined ? { expiresAt: n.expiresAt } : {}),
      };
      await tx.insert(entry);
      await tx.audit({ at, actor: c.actor, action: 'add', list: n.list, entryId: entry.id, after: entry, reason: c.reason });
      return entry;
    });
  }

  private async current(tx: StoreTx, id: string): Promise<AllowEntry> {
    if (typeof id !== 'string' || id === '' || id.length > 100) throw new AllowlistNotFoundError(String(id).slice(0, 100));
    const e = await tx.get(id);
    if (!e) throw new AllowlistNotFoundError(id);
    return e;
  }

  /** The list an entry is on (for the per-list write lock); from memory, else the store will say. */
  private listOf(id: string): string {
    return this.entry(id)?.list ?? '';
  }

  async update(id: string, input: AllowEntryInput, ctx: ChangeContext): Promise<AllowEntry> {
    const n = normalizeInput(input);
    const c = checkContext(ctx);
    const now = Date.now();
    return this.change(n.list, 'update', async (tx, at) => {
      const before = await this.current(tx, id);
      if (before.list !== n.list) {
        throw new AllowlistInputError('list', `entry ${id} is on ${before.list}, not ${n.list}`, `entries do not move between lists: add a new entry on ${n.list} and remove this one`);
      }
      if (n.expiresAt !== undefined && n.expiresAt !== before.expiresAt && Date.parse(n.expiresAt) <= now) {
        throw new AllowlistInputError('expiresAt', `the expiry ${n.expiresAt} is in the past`, "give a future date; to end the entry now use 'expire'");
      }
      AllowlistStoreService.duplicate(await tx.entries(n.list), n.cidr, now, id);
      const { expiresAt: _old, ...rest } = before;
      const after: AllowEntry = { ...rest, cidr: n.cidr, partner: n.partner, note: n.note, ...(n.expiresAt !== undefined ? { expiresAt: n.expiresAt } : {}) };
      await tx.update(after);
      await tx.audit({ at, actor: c.actor, action: 'update', list: n.list, entryId: id, before, after, reason: c.reason });
      return after;
    });
  }

  async remove(id: string, ctx: ChangeContext): Promise<AllowEntry> {
    const c = checkContext(ctx);
    return this.changeById(id, 'remove', async (tx, at) => {
      const before = await this.current(tx, id);
      await tx.delete(id);
      await tx.audit({ at, actor: c.actor, action: 'remove', list: before.list, entryId: id, before, reason: c.reason });
      return before;
    });
  }

  async expire(id: string, ctx: ChangeContext): Promise<AllowEntry> {
    const c = checkContext(ctx);
    return this.changeById(id, 'expire', async (tx, at) => {
      const before = await this.current(tx, id);
      if (expired(before, Date.parse(at))) {
        throw new AllowlistInputError('id', `entry ${id} already expired at ${before.expiresAt}`, 'nothing to do; remove it to delete it from the list');
      }
      const after: AllowEntry = { ...before, expiresAt: at };
      await tx.update(after);
      await tx.audit({ at, actor: c.actor, action: 'expire', list: before.list, entryId: id, before, after, reason: c.reason });
      return after;
    });
  }

  /** A change to an existing entry: locks by its list; reloads the list it was on. */
  private async changeById(id: string, action: AuditAction, fn: (tx: StoreTx, at: string) => Promise<AllowEntry>): Promise<AllowEntry> {
    this.ensureWritable();
    const result = await this.backend.write(this.listOf(id), async (tx) => fn(tx, new Date().toISOString()));
    this.hooks.onWrite?.(result.list, action);
    await this.reloadList(result.list, 'write');
    return result;
  }

  async check(address: string, list: string): Promise<CheckResult> {
    validateListName(list);
    const raw = typeof address === 'string' ? address.trim() : '';
    if (parseAddress(raw) === undefined || raw.includes('/')) {
      throw new AllowlistInputError('cidr', `'${raw.slice(0, 80)}' is not an IP address`, 'give one IPv4 or IPv6 address, e.g. 198.51.100.7 or 2001:db8::7');
    }
    const entry = this.tables.get(list)?.lookup(raw, Date.now());
    return entry ? { address: raw, list, allowed: true, entry } : { address: raw, list, allowed: false };
  }

  async history(filter: { readonly list?: string; readonly entryId?: string; readonly limit?: number } = {}): Promise<AuditRecord[]> {
    if (filter.list !== undefined) validateListName(filter.list);
    const limit = Math.max(1, Math.min(1000, Math.floor(Number(filter.limit ?? 100)) || 100));
    this.ensureWritable();
    return this.backend.history({ ...filter, limit });
  }

  async close(): Promise<void> {
    this.closed = true;
    clearTimeout(this.retryTimer);
    await this.backend.close();
  }
}

export interface OpenStoreOptions extends AllowlistStoreServiceOptions {
  /** PostgreSQL: schema, channel and timing (tests). */
  readonly postgres?: Omit<PostgresOptions, 'url'>;
  readonly sqlitePollMs?: number;
}

/** The service for a configured store, started (tables loaded, watching for changes). */
export async function openAllowlistStore(spec: AllowlistStoreSpec, opts: OpenStoreOptions = {}): Promise<AllowlistStoreService> {
  const backend = spec.kind === 'sqlite' ? new SqliteBackend(spec.file, { pollMs: opts.sqlitePollMs }) : new PostgresBackend({ ...opts.postgres, url: spec.url });
  const service = new AllowlistStoreService(backend, opts);
  try {
    await service.start();
  } catch (err) {
    await service.close().catch(() => undefined);
    throw err;
  }
  return service;
}
