/**
 * The SQLite allowlist store (better-sqlite3): one file under the data
 * directory, created with its directory on first run, WAL mode.
 *
 * Propagation: the writing process reloads the list itself right after its
 * commit. Another process writing the same file (a second perimeter on the
 * same host, or a CLI) is seen by polling `PRAGMA data_version` (it changes
 * when another connection commits) every 500 ms; the audit records newer
 * than the last one seen name the lists to reload (a change without an
 * audit record, e.g. by hand with sqlite3, reloads every list).
 */
import { mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import Database from 'better-sqlite3';

/**
 * better-sqlite3 is a native addon built for one Node.js ABI. CI runs the
 * tests on a second Node.js major with the same node_modules: it builds a
 * copy of the addon for that major and names it here (.ci/run).
 */
export function sqliteBinding(): { nativeBinding?: string } {
  const p = process.env.PERIMETER_SQLITE_BINDING;
  return p ? { nativeBinding: p } : {};
}
import type { AllowEntry, AuditAction, AuditRecord } from './types.js';
import { Serial, type AllowlistBackend, type HistoryFilter, type NewAuditRecord, type StoreEvents, type StoreTx } from './store.js';

interface EntryRow {
  id: string;
  list: string;
  cidr: string;
  partner: string;
  note: string;
  added_by: string;
  added_at: string;
  expires_at: string | null;
}

interface AuditRow {
  id: number;
  at: string;
  actor: string;
  action: string;
  list: string;
  entry_id: string;
  before: string | null;
  after: string | null;
  reason: string;
}

const SCHEMA = `
CREATE TABLE IF NOT EXISTS allow_entries (
  id TEXT PRIMARY KEY,
  list TEXT NOT NULL,
  cidr TEXT NOT NULL,
  partner TEXT NOT NULL,
  note TEXT NOT NULL DEFAULT '',
  added_by TEXT NOT NULL,
  added_at TEXT NOT NULL,
  expires_at TEXT
);
CREATE INDEX IF NOT EXISTS allow_entries_list ON allow_entries (list);
CREATE TABLE IF NOT EXISTS allow_audit (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  at TEXT NOT NULL,
  actor TEXT NOT NULL,
  action TEXT NOT NULL,
  list TEXT NOT NULL,
  entry_id TEXT NOT NULL,
  before TEXT,
  after TEXT,
  reason TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS allow_audit_list ON allow_audit (list, id);
CREATE INDEX IF NOT EXISTS allow_audit_entry ON allow_audit (entry_id, id);
`;

export function entryFromRow(r: EntryRow): AllowEntry {
  const e: AllowEntry = { id: r.id, list: r.list, cidr: r.cidr, partner: r.partner, note: r.note, addedBy: r.added_by, addedAt: r.added_at };
  return r.expires_at === null ? e : { ...e, expiresAt: r.expires_at };
}

function auditFromRow(r: AuditRow): AuditRecord {
  const rec: AuditRecord = {
    id: r.id,
    at: r.at,
    actor: r.actor,
    action: r.action as AuditAction,
    list: r.list,
    entryId: r.entry_id,
    reason: r.reason,
    ...(r.before !== null ? { before: JSON.parse(r.before) as AllowEntry } : {}),
    ...(r.after !== null ? { after: JSON.parse(r.after) as AllowEntry } : {}),
  };
  return rec;
}

export interface SqliteOptions {
  /** How often to look for commits by other processes (default 500 ms). */
  readonly pollMs?: number;
}

export class SqliteBackend implements AllowlistBackend {
  readonly kind = 'sqlite' as const;
  private db: Database.Database | undefined;
  private events: StoreEvents | undefined;
  private timer: NodeJS.Timeout | undefined;
  private dataVersion = 0;
  private lastAuditId = 0;
  private readonly serial = new Serial();
  private healthy = true;

  constructor(
    readonly file: string,
    private readonly opts: SqliteOptions = {},
  ) {}

  async open(events: StoreEvents): Promise<void> {
    this.events = events;
    try {
      mkdirSync(dirname(this.file), { recursive: true, mode: 0o700 });
      const db = new Database(this.file, { timeout: 5000, ...sqliteBinding() });
      db.pragma('journal_mode = WAL');
      db.pragma('synchronous = NORMAL');
      db.exec(SCHEMA);
      this.db = db;
    } catch (err) {
      throw new Error(`cannot open the allowlist store ${this.file}: ${(err as Error).message}`);
    }
    this.dataVersion = this.db.pragma('data_version', { simple: true }) as number;
    this.lastAuditId = (this.db.prepare('SELECT COALESCE(MAX(id), 0) AS n FROM allow_audit').get() as { n: number }).n;
    this.timer = setInterval(() => this.poll(), this.opts.pollMs ?? 500);
    this.timer.unref();
  }

  private get conn(): Database.Database {
    if (!this.db) throw new Error('the allowlist store is closed');
    return this.db;
  }

  private setHealth(ok: boolean, err?: unknown): void {
    if (ok === this.healthy) return;
    this.healthy = ok;
    this.events?.onHealth(ok ? 'ok' : 'degraded', ok ? undefined : `SQLite ${this.file}: ${(err as Error).message}`);
  }

  /** Commits by other connections: reload the lists their audit records name. */
  private poll(): void {
    if (!this.db) return;
    try {
      const v = this.db.pragma('data_version', { simple: true }) as number;
      this.setHealth(true);
      if (v === this.dataVersion) return;
      this.dataVersion = v;
      const rows = this.db.prepare('SELECT id, list FROM allow_audit WHERE id > ? ORDER BY id').all(this.lastAuditId) as { id: number; list: string }[];
      if (rows.length === 0) {
        this.events?.onChange(null);
        return;
      }
      this.lastAuditId = rows[rows.length - 1]!.id;
      this.events?.onChange([...new Set(rows.map((r) => r.list))]);
    } catch (err) {
      this.setHealth(false, err);
    }
  }

  async readAll(): Promise<AllowEntry[]> {
    return this.read(() => (this.conn.prepare('SELECT * FROM allow_entries ORDER BY list, cidr, added_at').all() as EntryRow[]).map(entryFromRow));
  }

  async readList(list: string): Promise<AllowEntry[]> {
    return this.read(() => (this.conn.prepare('SELECT * FROM allow_entries WHERE list = ? ORDER BY cidr, added_at').all(list) as EntryRow[]).map(entryFromRow));
  }

  private read<T>(fn: () => T): T {
    try {
      const r = fn();
      this.setHealth(true);
      return r;
    } catch (err) {
      this.setHealth(false, err);
      throw err;
    }
  }

  write<T>(list: string, fn: (tx: StoreTx) => Promise<T>): Promise<T> {
    return this.serial.run(async () => {
      const db = this.conn;
      const tx: StoreTx = {
        get: async (id) => {
          const r = db.prepare('SELECT * FROM allow_entries WHERE id = ?').get(id) as EntryRow | undefined;
          return r ? entryFromRow(r) : undefined;
        },
        entries: async (l) => (db.prepare('SELECT * FROM allow_entries WHERE list = ?').all(l) as EntryRow[]).map(entryFromRow),
        insert: async (e) => {
          db.prepare('INSERT INTO allow_entries (id, list, cidr, partner, note, added_by, added_at, expires_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)').run(
            e.id, e.list, e.cidr, e.partner, e.note, e.addedBy, e.addedAt, e.expiresAt ?? null,
          );
        },
        update: async (e) => {
          db.prepare('UPDATE allow_entries SET list = ?, cidr = ?, partner = ?, note = ?, expires_at = ? WHERE id = ?').run(e.list, e.cidr, e.partner, e.note, e.expiresAt ?? null, e.id);
        },
        delete: async (id) => {
          db.prepare('DELETE FROM allow_entries WHERE id = ?').run(id);
        },
        audit: async (r: NewAuditRecord) => {
          const info = db
            .prepare('INSERT INTO allow_audit (at, actor, action, list, entry_id, before, after, reason) VALUES (?, ?, ?, ?, ?, ?, ?, ?)')
            .run(r.at, r.actor, r.action, r.list, r.entryId, r.before ? JSON.stringify(r.before) : null, r.after ? JSON.stringify(r.after) : null, r.reason);
          return { id: Number(info.lastInsertRowid), ...r };
        },
      };
      // IMMEDIATE: take the write lock now, so another process cannot change the rows read here before the commit.
      try {
        db.exec('BEGIN IMMEDIATE');
      } catch (err) {
        this.setHealth(false, err);
        throw err;
      }
      let result: T;
      try {
        result = await fn(tx);
        db.exec('COMMIT');
      } catch (err) {
        if (db.inTransaction) db.exec('ROLLBACK');
        throw err;
      }
      this.setHealth(true);
      return result;
    });
  }

  async history(filter: HistoryFilter): Promise<AuditRecord[]> {
    const where: string[] = [];
    const args: (string | number)[] = [];
    if (filter.list !== undefined) {
      where.push('list = ?');
      args.push(filter.list);
    }
    if (filter.entryId !== undefined) {
      where.push('entry_id = ?');
      args.push(filter.entryId);
    }
    args.push(filter.limit ?? 100);
    const sql = `SELECT * FROM allow_audit ${where.length ? `WHERE ${where.join(' AND ')}` : ''} ORDER BY id DESC LIMIT ?`;
    return this.read(() => (this.conn.prepare(sql).all(...args) as AuditRow[]).map(auditFromRow));
  }

  async close(): Promise<void> {
    clearInterval(this.timer);
    await this.serial.run(async () => undefined);
    this.db?.close();
    this.db = undefined;
  }
}
