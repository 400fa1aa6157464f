/**
 * Snapshots cross the control → worker IPC channel, which sends JSON. The
 * snapshot holds only plain data and Maps; on the wire a Map is
 * `{ $map: [[key, value], ...] }`, and the worker turns those back into
 * Maps. The wire form travels inside the IPC message as data, not as a JSON
 * string of its own: a string inside the message was escaped by the channel
 * and parsed twice by the worker (the channel's parse, then its own), which
 * for 1,000 sites took 2.2 of a worker's 4.3 ms per reload.
 */
import type { Snapshot } from '../config/types.js';

/** A snapshot as it crosses the IPC channel: plain data, Maps tagged (see snapshotToWire). */
export type WireSnapshot = Readonly<Record<string, unknown>>;

/**
 * The snapshot for the workers, as plain data. Workers get no admin section
 * (they run no admin listener and need no token), and no PostgreSQL URL for
 * the allowlists (the control process keeps the store).
 */
export function snapshotToWire(s: Snapshot): WireSnapshot {
  const { admin: _admin, ...rest } = s;
  return toWire({ ...rest, allowlists: s.allowlists.kind === 'postgres' ? { kind: 'postgres', url: '' } : s.allowlists }) as WireSnapshot;
}

/** The snapshot again, from what the IPC channel delivered (changed in place: Maps restored). */
export function snapshotFromWire(w: WireSnapshot): Snapshot {
  return revive(w) as Snapshot;
}

/** A copy with every Map as `{ $map: entries }`; what JSON leaves out (undefined, functions) is left out later by the channel. */
function toWire(v: unknown): unknown {
  if (v === null || typeof v !== 'object') return v;
  if (v instanceof Map) {
    const entries: [unknown, unknown][] = [];
    for (const [k, x] of v) entries.push([toWire(k), toWire(x)]);
    return { $map: entries };
  }
  if (Array.isArray(v)) return v.map(toWire);
  const out: Record<string, unknown> = {};
  for (const k of Object.keys(v)) {
    const x = toWire((v as Record<string, unknown>)[k]);
    // A key named '__proto__' stays a key (a plain set on a new object would set its prototype).
    if (k === '__proto__') Object.defineProperty(out, k, { value: x, writable: true, enumerable: true, configurable: true });
    else out[k] = x;
  }
  return out;
}

/**
 * Tagged Maps back into Maps, in place: one walk after the channel's plain
 * JSON.parse (a JSON.parse reviver, which calls back for every value, took
 * three times as long: 44 against 14 µs for the bench's snapshot).
 */
function revive(v: unknown): unknown {
  if (v === null || typeof v !== 'object') return v;
  if (Array.isArray(v)) {
    for (let i = 0; i < v.length; i++) v[i] = revive(v[i]);
    return v;
  }
  const tagged = (v as { $map?: unknown }).$map;
  if (Array.isArray(tagged)) {
    const m = new Map<unknown, unknown>();
    for (const e of tagged as [unknown, unknown][]) m.set(revive(e[0]), revive(e[1]));
    return m;
  }
  const o = v as Record<string, unknown>;
  for (const k of Object.keys(o)) {
    const x = o[k];
    if (x === null || typeof x !== 'object') continue;
    const y = revive(x);
    if (y !== x) o[k] = y; // an own key (JSON.parse makes every key own): a plain set, even for '__proto__'
  }
  return o;
}
