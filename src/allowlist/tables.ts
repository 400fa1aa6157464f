/**
 * The in-memory allowlists of one process: list name → compiled matcher.
 * Every role has one (runtime.allowlists); the control process fills it
 * from the store, workers from IPC. The TCP proxy asks get(name) per
 * connection; an unknown list admits nobody.
 */
import { compileMatcher } from './matcher.js';
import type { AllowEntry, AllowlistMatcher } from './types.js';

export type TablesListener = (name: string, version: number) => void;

export class AllowlistTables {
  private readonly matchers = new Map<string, AllowlistMatcher>();
  private readonly raw = new Map<string, readonly AllowEntry[]>();
  private readonly listeners = new Set<TablesListener>();
  private versionNo = 0;

  /** Increases by one on every set() or delete(). */
  get version(): number {
    return this.versionNo;
  }

  /** Replaces a list (compiles it first, then swaps the reference). */
  set(name: string, entries: readonly AllowEntry[]): void {
    const m = compileMatcher(entries);
    this.matchers.set(name, m);
    this.raw.set(name, entries);
    this.bump(name);
  }

  delete(name: string): void {
    if (!this.matchers.delete(name)) return;
    this.raw.delete(name);
    this.bump(name);
  }

  get(name: string): AllowlistMatcher | undefined {
    return this.matchers.get(name);
  }

  /** The entries a list was compiled from (for handing to workers). */
  entries(name: string): readonly AllowEntry[] | undefined {
    return this.raw.get(name);
  }

  names(): string[] {
    return [...this.matchers.keys()].sort();
  }

  /** Called after each change with the list name and the new version; returns an unsubscribe function. */
  onChange(fn: TablesListener): () => void {
    this.listeners.add(fn);
    return () => this.listeners.delete(fn);
  }

  private bump(name: string): void {
    this.versionNo++;
    for (const fn of this.listeners) {
      try {
        fn(name, this.versionNo);
      } catch {
        // a listener's failure must not stop the others or the writer
      }
    }
  }
}
