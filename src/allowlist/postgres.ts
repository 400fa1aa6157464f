/**
 * The PostgreSQL allowlist store (pg), for many perimeter hosts sharing one
 * list. Tables (created if missing): perimeter_allow_entries and
 * perimeter_allow_audit, in the schema given (default public).
 *
 * Propagation: every write transaction ends with pg_notify(channel, list),
 * delivered at commit to every perimeter LISTENing on the channel, which
 * reloads that list. One dedicated connection LISTENs and is pinged every
 * few seconds; when it (or a query) fails the store reports degraded, the
 * lists in memory stay as they were, and it reconnects with backoff
 * (0.5 s doubling to 10 s). On reconnect it LISTENs again and the service
 * reloads every list (changes made meanwhile were not notified to it).
 */
import pg from 'pg';
import type { AllowEntry, AuditAction, AuditRecord } from './types.js';
import { AllowlistUnavailableError, redact, type AllowlistBackend, type HistoryFilter, type NewAuditRecord, type StoreEvents, type StoreTx } from './store.js';

export interface PostgresOptions {
  readonly url: string;
  /** Schema holding the tables (created if missing); default: the connection's search_path (public, or e.g. ?options=-c%20search_path%3Dperimeter in the URL). Tests use their own. */
  readonly schema?: string;
  /** NOTIFY channel; default perimeter_allowlists (suffixed with the schema when one is given). */
  readonly channel?: string;
  readonly heartbeatMs?: number;
  readonly minBackoffMs?: number;
  readonly maxBackoffMs?: number;
  /** Connect and query timeouts (default 3 s and 10 s). */
  readonly connectTimeoutMs?: number;
  readonly queryTimeoutMs?: number;
}

interface EntryRow {
  id: string;
  list: string;
  cidr: string;
  partner: string;
  note: string;
  added_by: string;
  added_at: Date;
  expires_at: Date | null;
}

interface AuditRow {
  id: string;
  at: Date;
  actor: string;
  action: string;
  list: string;
  entry_id: string;
  before: AllowEntry | null;
  after: AllowEntry | null;
  reason: string;
}

function entryFromRow(r: EntryRow): AllowEntry {
  const e: AllowEntry = { id: r.id, list: r.list, cidr: r.cidr, partner: r.partner, note: r.note, addedBy: r.added_by, addedAt: r.added_at.toISOString() };
  return r.expires_at === null ? e : { ...e, expiresAt: r.expires_at.toISOString() };
}

function auditFromRow(r: AuditRow): AuditRecord {
  return {
    id: Number(r.id),
    at: r.at.toISOString(),
    actor: r.actor,
    action: r.action as AuditAction,
    list: r.list,
    entryId: r.entry_id,
    reason: r.reason,
    ...(r.before !== null ? { before: r.before } : {}),
    ...(r.after !== null ? { after: r.after } : {}),
  };
}

/** A SQL error the database answered (constraint, syntax) as opposed to a connection that failed. */
function isSqlError(err: unknown): boolean {
  const code = (err as { code?: unknown }).code;
  return typeof code === 'string' && /^[0-9A-Z]{5}$/.test(code) && !/^(08|57|53)/.test(code);
}

export class PostgresBackend implements AllowlistBackend {
  readonly kind = 'postgres' as const;
  private readonly pool: pg.Pool;
  private readonly schema: string | undefined;
  private readonly channel: string;
  private readonly t: { entries: string; audit: string };
  private events: StoreEvents | undefined;
  private listener: pg.Client | undefined;
  private heartbeat: NodeJS.Timeout | undefined;
  private retryTimer: NodeJS.Timeout | undefined;
  private backoffMs: number;
  private connected = false;
  private connecting = false;
  private closed = false;
  private tablesReady = false;

  constructor(private readonly opts: PostgresOptions) {
    const schema = opts.schema;
    if (schema !== undefined && !/^[a-z_][a-z0-9_]{0,62}$/.test(schema)) throw new Error(`invalid PostgreSQL schema name '${schema}'`);
    this.schema = schema;
    this.channel = opts.channel ?? (schema === undefined ? 'perimeter_allowlists' : `perimeter_allowlists_${schema}`);
    const q = schema === undefined ? '' : `"${schema}".`;
    this.t = { entries: `${q}perimeter_allow_entries`, audit: `${q}perimeter_allow_audit` };
    this.backoffMs = opts.minBackoffMs ?? 500;
    this.pool = new pg.Pool({ ...this.clientConfig(), max: 4, idleTimeoutMillis: 10_000 });
    // An idle pooled connection that breaks must not crash the process; the listener notices too.
    this.pool.on('error', (err) => this.lost(err));
  }

  private clientConfig(): pg.ClientConfig {
    return {
      connectionString: this.opts.url,
      connectionTimeoutMillis: this.opts.connectTimeoutMs ?? 3000,
      query_timeout: this.opts.queryTimeoutMs ?? 10_000,
      keepAlive: true,
      keepAliveInitialDelayMillis: 10_000,
      application_name: 'perimeter-allowlists',
    };
  }

  private message(err: unknown): string {
    const e = err as { message?: string; code?: string };
    const text = e.message || e.code || String(err);
    return `PostgreSQL: ${redact(text, this.opts.url)}`;
  }

  async open(events: StoreEvents): Promise<void> {
    this.events = events;
    await this.establish();
  }

  /** Tables, LISTEN, heartbeat; on failure: degraded and try again later. */
  private async establish(): Promise<void> {
    if (this.closed || this.connecting) return;
    this.connecting = true;
    const client = new pg.Client(this.clientConfig());
    client.on('error', (err) => this.lost(err, client));
    client.on('end', () => this.lost(new Error('connection closed'), client));
    client.on('notification', (n) => {
      if (n.channel === this.channel && n.payload) this.events?.onChange([n.payload]);
    });
    try {
      await client.connect();
      if (!this.tablesReady) {
        if (this.schema !== undefined) await client.query(`CREATE SCHEMA IF NOT EXISTS "${this.schema}"`);
        await client.query(`CREATE TABLE IF NOT EXISTS ${this.t.entries} (
          id TEXT PRIMARY KEY,
          list TEXT NOT NULL,
          cidr TEXT NOT NULL,
          partner TEXT NOT NULL,
          note TEXT NOT NULL DEFAULT '',
          added_by TEXT NOT NULL,
          added_at TIMESTAMPTZ NOT NULL,
          expires_at TIMESTAMPTZ
        )`);
        await client.query(`CREATE INDEX IF NOT EXISTS perimeter_allow_entries_list ON ${this.t.entries} (list)`);
        await client.query(`CREATE TABLE IF NOT EXISTS ${this.t.audit} (
          id BIGSERIAL PRIMARY KEY,
          at TIMESTAMPTZ NOT NULL,
          actor TEXT NOT NULL,
          action TEXT NOT NULL,
          list TEXT NOT NULL,
          entry_id TEXT NOT NULL,
          before JSONB,
          after JSONB,
          reason TEXT NOT NULL
        )`);
        await client.query(`CREATE INDEX IF NOT EXISTS perimeter_allow_audit_list ON ${this.t.audit} (list, id)`);
        await client.query(`CREATE INDEX IF NOT EXISTS perimeter_allow_audit_entry ON ${this.t.audit} (entry_id, id)`);
        this.tablesReady = true;
      }
      await client.query(`LISTEN "${this.channel}"`);
    } catch (err) {
      this.connecting = false;
      client.removeAllListeners('end');
      client.on('error', () => {});
      void client.end().catch(() => undefined);
      this.degrade(err);
      return;
    }
    this.connecting = false;
    if (this.closed) {
      void client.end().catch(() => undefined);
      return;
    }
    this.listener = client;
    this.connected = true;
    this.backoffMs = this.opts.minBackoffMs ?? 500;
    clearInterval(this.heartbeat);
    this.heartbeat = setInterval(() => {
      const c = this.listener;
      if (!c) return;
      c.query('SELECT 1').catch((err: unknown) => this.lost(err, c));
    }, this.opts.heartbeatMs ?? 3000);
    this.heartbeat.unref();
    this.events?.onHealth('ok');
  }

  /** The connection (or a query) failed: degraded now, reconnect later. */
  private lost(err: unknown, client?: pg.Client): void {
    if (this.closed) return;
    if (client !== undefined && client !== this.listener) return; // an old listener's late event
    if (this.listener) {
      const l = this.listener;
      this.listener = undefined;
      l.removeAllListeners('end');
      l.on('error', () => {});
      void l.end().catch(() => undefined);
    }
    clearInterval(this.heartbeat);
    this.heartbeat = undefined;
    if (!this.connected && this.retryTimer) return;
    this.degrade(err);
  }

  private degrade(err: unknown): void {
    this.connected = false;
    this.lastErrorText = this.message(err);
    this.events?.onHealth('degraded', this.message(err));
    if (this.closed || this.retryTimer) return;
    const delay = this.backoffMs;
    this.backoffMs = Math.min(this.backoffMs * 2, this.opts.maxBackoffMs ?? 10_000);
    this.retryTimer = setTimeout(() => {
      this.retryTimer = undefined;
      void this.establish();
    }, delay);
    this.retryTimer.unref();
  }

  private async query<R extends pg.QueryResultRow>(sql: string, args: unknown[] = []): Promise<R[]> {
    if (!this.connected) throw new AllowlistUnavailableError(`the allowlist database is unreachable (${this.lastError()})`);
    try {
      return (await this.pool.query<R>(sql, args)).rows;
    } catch (err) {
      if (isSqlError(err)) throw err;
      this.lost(err);
      throw new AllowlistUnavailableError(`the allowlist database is unreachable (${this.message(err)})`);
    }
  }

  private lastErrorText = '';
  private lastError(): string {
    return this.lastErrorText || 'reconnecting';
  }

  async readAll(): Promise<AllowEntry[]> {
    return (await this.query<EntryRow>(`SELECT * FROM ${this.t.entries} ORDER BY list, cidr, added_at`)).map(entryFromRow);
  }

  async readList(list: string): Promise<AllowEntry[]> {
    return (await this.query<EntryRow>(`SELECT * FROM ${this.t.entries} WHERE list = $1 ORDER BY cidr, added_at`, [list])).map(entryFromRow);
  }

  async write<T>(list: string, fn: (tx: StoreTx) => Promise<T>): Promise<T> {
    if (!this.connected) throw new AllowlistUnavailableError(`the allowlist database is unreachable (${this.lastError()}); try again when it is back`);
    let client: pg.PoolClient;
    try {
      client = await this.pool.connect();
    } catch (err) {
      this.lost(err);
      throw new AllowlistUnavailableError(`the allowlist database is unreachable (${this.message(err)}); try again when it is back`);
    }
    // A checked-out connection that breaks between queries must not crash the process.
    const onClientError = (): void => {};
    client.on('error', onClientError);
    const q = async <R extends pg.QueryResultRow>(sql: string, args: unknown[] = []): Promise<R[]> => (await client.query<R>(sql, args)).rows;
    const tx: StoreTx = {
      get: async (id) => {
        const rows = await q<EntryRow>(`SELECT * FROM ${this.t.entries} WHERE id = $1 FOR UPDATE`, [id]);
        return rows[0] ? entryFromRow(rows[0]) : undefined;
      },
      entries: async (l) => (await q<EntryRow>(`SELECT * FROM ${this.t.entries} WHERE list = $1`, [l])).map(entryFromRow),
      insert: async (e) => {
        await q(`INSERT INTO ${this.t.entries} (id, list, cidr, partner, note, added_by, added_at, expires_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)`, [
          e.id, e.list, e.cidr, e.partner, e.note, e.addedBy, e.addedAt, e.expiresAt ?? null,
        ]);
      },
      update: async (e) => {
        await q(`UPDATE ${this.t.entries} SET list = $1, cidr = $2, partner = $3, note = $4, expires_at = $5 WHERE id = $6`, [e.list, e.cidr, e.partner, e.note, e.expiresAt ?? null, e.id]);
      },
      delete: async (id) => {
        await q(`DELETE FROM ${this.t.entries} WHERE id = $1`, [id]);
      },
      audit: async (r: NewAuditRecord) => {
        const rows = await q<{ id: string }>(
          `INSERT INTO ${this.t.audit} (at, actor, action, list, entry_id, before, after, reason) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING id`,
          [r.at, r.actor, r.action, r.list, r.entryId, r.before ? JSON.stringify(r.before) : null, r.after ? JSON.stringify(r.after) : null, r.reason],
        );
        return { id: Number(rows[0]!.id), ...r };
      },
    };
    let broken: unknown;
    try {
      await q('BEGIN');
      // One writer per list at a time across every host: the duplicate check below stays true until commit.
      await q('SELECT pg_advisory_xact_lock(hashtext($1))', [`${this.schema ?? ''}.${list}`]);
      const result = await fn(tx);
      await q('SELECT pg_notify($1, $2)', [this.channel, list]);
      await q('COMMIT');
      return result;
    } catch (err) {
      if (!isSqlError(err) && !(err instanceof Error && err.name === 'AllowlistInputError') && !(err instanceof Error && err.name === 'AllowlistNotFoundError')) {
        broken = err;
      }
      await client.query('ROLLBACK').catch(() => undefined);
      if (broken !== undefined) {
        this.lost(broken);
        throw new AllowlistUnavailableError(`the allowlist database is unreachable (${this.message(broken)}); the change was not made`);
      }
      throw err;
    } finally {
      client.off('error', onClientError);
      client.release(broken instanceof Error ? broken : undefined);
    }
  }

  async history(filter: HistoryFilter): Promise<AuditRecord[]> {
    const where: string[] = [];
    const args: unknown[] = [];
    if (filter.list !== undefined) {
      args.push(filter.list);
      where.push(`list = $${args.length}`);
    }
    if (filter.entryId !== undefined) {
      args.push(filter.entryId);
      where.push(`entry_id = $${args.length}`);
    }
    args.push(filter.limit ?? 100);
    const sql = `SELECT * FROM ${this.t.audit} ${where.length ? `WHERE ${where.join(' AND ')}` : ''} ORDER BY id DESC LIMIT $${args.length}`;
    return (await this.query<AuditRow>(sql, args)).map(auditFromRow);
  }

  async close(): Promise<void> {
    this.closed = true;
    clearInterval(this.heartbeat);
    clearTimeout(this.retryTimer);
    const l = this.listener;
    this.listener = undefined;
    if (l) {
      l.removeAllListeners('end');
      l.on('error', () => {});
      await l.end().catch(() => undefined);
    }
    await this.pool.end().catch(() => undefined);
  }
}
