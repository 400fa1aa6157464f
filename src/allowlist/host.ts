/**
 * Allowlists in a running perimeter process: the store's lifecycle across
 * reloads (control or standalone role), metrics in every role, and the
 * IPC messages that keep workers' tables current.
 *
 * The store is opened when the configuration has tcp listeners or an admin
 * listener (something that enforces or edits allowlists); a configuration
 * with neither creates no data files. A changed store (sqlite ↔ postgres,
 * another file or URL) is opened beside the old one during a reload and
 * swapped in when the reload commits.
 */
import { Counter, Gauge, type Registry } from 'prom-client';
import type { AllowlistStoreSpec, Snapshot } from '../config/types.js';
import type { Logger } from '../core/log.js';
import { openAllowlistStore, type AllowlistStoreService, type OpenStoreOptions } from './service.js';
import type { AllowlistTables } from './tables.js';
import type { AllowEntry, StoreHealth } from './types.js';

/** The control → worker message carrying one list (entries null: the list is gone). */
export interface AllowlistMessage {
  t: 'allowlist';
  name: string;
  entries: AllowEntry[] | null;
}

export interface AllowlistHostOptions {
  readonly tables: AllowlistTables;
  readonly role: 'standalone' | 'control' | 'worker';
  readonly registry: Registry;
  readonly log: Logger;
  /** Test hooks: PostgreSQL schema/channel, poll interval. */
  readonly storeOptions?: Omit<OpenStoreOptions, 'tables' | 'hooks'>;
}

export interface AllowlistPrepared {
  commit(): void;
  abort(): Promise<void>;
}

function storeKey(spec: AllowlistStoreSpec): string {
  return spec.kind === 'sqlite' ? `sqlite:${spec.file}` : `postgres:${spec.url}`;
}

/** The store a snapshot needs, if any. */
export function neededStore(snapshot: Snapshot): AllowlistStoreSpec | undefined {
  return snapshot.tcp.size > 0 || snapshot.admin !== undefined ? snapshot.allowlists : undefined;
}

export class AllowlistHost {
  private current: AllowlistStoreService | undefined;
  private key = '';
  private readonly opts: AllowlistHostOptions;
  private readonly writes: Counter<'list' | 'action'> | undefined;
  private readonly reloads: Counter<'list' | 'reason'> | undefined;

  constructor(opts: AllowlistHostOptions) {
    this.opts = opts;
    const r = opts.registry;
    const tables = opts.tables;
    new Gauge({
      name: 'perimeter_allowlist_entries',
      help: 'Entries in the in-memory allowlist (expired ones included until removed); with workers, the lowest count of any process (a worker behind shows less).',
      labelNames: ['list'],
      registers: [r],
      aggregator: 'min',
      collect() {
        this.reset();
        for (const name of tables.names()) this.set({ list: name }, tables.get(name)?.size ?? 0);
      },
    });
    const updates = new Counter({
      name: 'perimeter_allowlist_table_updates_total',
      help: 'Times a process replaced its in-memory copy of an allowlist (summed over the control process and the workers).',
      labelNames: ['list'],
      registers: [r],
      aggregator: 'sum',
    });
    tables.onChange((name) => updates.inc({ list: name }));
    if (opts.role === 'worker') return;
    const host = (): AllowlistStoreService | undefined => this.current;
    new Gauge({
      name: 'perimeter_allowlist_store_up',
      help: '1 while the allowlist store (database) is reachable and current; 0 while degraded (the last lists keep being enforced).',
      labelNames: ['store'],
      registers: [r],
      aggregator: 'max',
      collect() {
        this.reset();
        const s = host();
        if (s) this.set({ store: s.kind }, s.health().state === 'ok' ? 1 : 0);
      },
    });
    this.writes = new Counter({
      name: 'perimeter_allowlist_changes_total',
      help: 'Allowlist changes made through this perimeter (admin API, UI, CLI), by list and action.',
      labelNames: ['list', 'action'],
      registers: [r],
      aggregator: 'sum',
    });
    this.reloads = new Counter({
      name: 'perimeter_allowlist_reloads_total',
      help: 'Allowlists read from the store, by list and reason (write: own change; notify: another process changed it; full: start or reconnect).',
      labelNames: ['list', 'reason'],
      registers: [r],
      aggregator: 'sum',
    });
  }

  /** The store's service (control or standalone role, once a snapshot needing it was applied). */
  get service(): AllowlistStoreService | undefined {
    return this.current;
  }

  health(): StoreHealth | undefined {
    return this.current?.health();
  }

  /**
   * Step one of applying a snapshot: open the store it needs (if that is a
   * different one). Throws (refusing the configuration) when a SQLite file
   * cannot be opened; an unreachable PostgreSQL opens degraded.
   */
  async prepare(snapshot: Snapshot): Promise<AllowlistPrepared> {
    const byList = new Map<string, string[]>();
    for (const t of snapshot.tcp.values()) byList.set(t.allowlist, [...(byList.get(t.allowlist) ?? []), t.name]);
    const spec = this.opts.role === 'worker' ? undefined : neededStore(snapshot);
    const key = spec ? storeKey(spec) : '';
    if (key === this.key) {
      return { commit: () => this.current?.setListeners(byList), abort: async () => undefined };
    }
    let next: AllowlistStoreService | undefined;
    if (spec) {
      const log = this.opts.log;
      next = await openAllowlistStore(spec, {
        ...this.opts.storeOptions,
        tables: this.opts.tables,
        hooks: {
          onReload: (list, why) => this.reloads?.inc({ list, reason: why }),
          onWrite: (list, action) => this.writes?.inc({ list, action }),
          onHealth: (h) =>
            h.state === 'ok'
              ? log.info({ event: { action: 'allowlist-store-ok' }, store: h.store }, `allowlist store (${h.store}) is reachable again; lists reloaded`)
              : log.error({ event: { action: 'allowlist-store-degraded' }, store: h.store, error: h.error }, `allowlist store (${h.store}) unreachable: ${h.error ?? ''}; enforcing the last lists, changes refused`),
        },
      });
      next.setListeners(byList);
    }
    const old = this.current;
    return {
      commit: () => {
        this.current = next;
        this.key = key;
        if (old && old !== next) void old.close().catch(() => undefined);
      },
      abort: async () => {
        await next?.close().catch(() => undefined);
      },
    };
  }

  /** worker role: a list from the control process. */
  receive(m: AllowlistMessage): void {
    if (m.entries === null) this.opts.tables.delete(m.name);
    else this.opts.tables.set(m.name, m.entries);
  }

  /** control role: every list now, as messages for a new worker. */
  messages(): AllowlistMessage[] {
    const t = this.opts.tables;
    return t.names().map((name) => ({ t: 'allowlist', name, entries: [...(t.entries(name) ?? [])] }));
  }

  /** control role: call send for every later change. */
  forward(send: (m: AllowlistMessage) => void): () => void {
    const t = this.opts.tables;
    return t.onChange((name) => {
      const entries = t.entries(name);
      send({ t: 'allowlist', name, entries: entries ? [...entries] : null });
    });
  }

  async close(): Promise<void> {
    const s = this.current;
    this.current = undefined;
    this.key = '';
    await s?.close().catch(() => undefined);
  }
}
