/**
 * A compiled allowlist: longest-prefix match over per-prefix-length hash
 * maps (at most 33 IPv4 and 129 IPv6 lengths; only the lengths in use are
 * probed, longest first). A lookup costs one parse and one Map.get per
 * distinct prefix length, independent of the number of entries.
 *
 * Expiry is checked at lookup time (nowMs), so an entry stops admitting
 * clients at its expiry even when nothing is written to the store. An
 * expired entry is skipped and a shorter, unexpired prefix still matches.
 */
import { maskV4, maskV6, normalizeCidr, parseAddress } from './cidr.js';
import type { AllowEntry, AllowlistMatcher } from './types.js';

interface Compiled {
  readonly entry: AllowEntry;
  /** Infinity when the entry never expires. */
  readonly expiresMs: number;
}

/** Among entries with the same CIDR the longest-lived wins (no expiry first), then the oldest. */
function byLifetime(a: Compiled, b: Compiled): number {
  if (a.expiresMs !== b.expiresMs) return b.expiresMs - a.expiresMs;
  if (a.entry.addedAt !== b.entry.addedAt) return a.entry.addedAt < b.entry.addedAt ? -1 : 1;
  return a.entry.id < b.entry.id ? -1 : a.entry.id > b.entry.id ? 1 : 0;
}

function pick(list: readonly Compiled[] | undefined, nowMs: number): AllowEntry | undefined {
  if (list === undefined) return undefined;
  for (const c of list) if (c.expiresMs > nowMs) return c.entry;
  return undefined;
}

class PrefixMatcher implements AllowlistMatcher {
  readonly size: number;
  private readonly v4 = new Map<number, Map<number, Compiled[]>>();
  private readonly v6 = new Map<number, Map<bigint, Compiled[]>>();
  private readonly lens4: number[];
  private readonly lens6: number[];

  constructor(entries: readonly AllowEntry[]) {
    let size = 0;
    for (const entry of entries) {
      let parsed;
      try {
        parsed = normalizeCidr(entry.cidr);
      } catch {
        continue; // the store validates on write; a bad row never widens a list
      }
      const expiresMs = entry.expiresAt === undefined ? Infinity : Date.parse(entry.expiresAt);
      const c: Compiled = { entry, expiresMs: Number.isNaN(expiresMs) ? -Infinity : expiresMs };
      if (parsed.family === 4) {
        let m = this.v4.get(parsed.prefix);
        if (!m) this.v4.set(parsed.prefix, (m = new Map()));
        const l = m.get(parsed.v4);
        if (l) l.push(c);
        else m.set(parsed.v4, [c]);
      } else {
        let m = this.v6.get(parsed.prefix);
        if (!m) this.v6.set(parsed.prefix, (m = new Map()));
        const l = m.get(parsed.v6);
        if (l) l.push(c);
        else m.set(parsed.v6, [c]);
      }
      size++;
    }
    for (const m of this.v4.values()) for (const l of m.values()) l.sort(byLifetime);
    for (const m of this.v6.values()) for (const l of m.values()) l.sort(byLifetime);
    this.lens4 = [...this.v4.keys()].sort((a, b) => b - a);
    this.lens6 = [...this.v6.keys()].sort((a, b) => b - a);
    this.size = size;
  }

  lookup(address: string, nowMs: number = Date.now()): AllowEntry | undefined {
    const a = parseAddress(address);
    if (a === undefined) return undefined;
    if (a.family === 4) {
      for (const len of this.lens4) {
        const e = pick(this.v4.get(len)!.get(maskV4(a.v4, len)), nowMs);
        if (e) return e;
      }
      return undefined;
    }
    for (const len of this.lens6) {
      const e = pick(this.v6.get(len)!.get(maskV6(a.v6, len)), nowMs);
      if (e) return e;
    }
    return undefined;
  }
}

/** Compiles entries (as stored: normalized CIDRs) into a longest-prefix matcher. */
export function compileMatcher(entries: readonly AllowEntry[]): AllowlistMatcher {
  return new PrefixMatcher(entries);
}
