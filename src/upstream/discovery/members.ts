/**
 * Member lists as discovery delivers them: sorted by address so two answers
 * with the same members in another order compare equal and nobody is told
 * about a change that is not one.
 */
import type { MemberAddress } from '../types.js';
import { backendKey } from '../backend.js';

/** Sorted, frozen, duplicates merged (their weights added: two records for one address are two shares). */
export function normalizeMembers(members: Iterable<MemberAddress>): readonly MemberAddress[] {
  const byKey = new Map<string, MemberAddress>();
  for (const m of members) {
    const key = backendKey(m.host, m.port);
    const seen = byKey.get(key);
    byKey.set(key, seen ? { host: m.host, port: m.port, weight: seen.weight + m.weight } : { host: m.host, port: m.port, weight: m.weight });
  }
  const sorted = [...byKey.entries()].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)).map(([, m]) => Object.freeze(m));
  return Object.freeze(sorted);
}

/** Equal member lists; both must be normalized. */
export function sameMembers(a: readonly MemberAddress[], b: readonly MemberAddress[]): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) {
    const x = a[i]!;
    const y = b[i]!;
    if (x.host !== y.host || x.port !== y.port || x.weight !== y.weight) return false;
  }
  return true;
}
