/** Seeded random mutations of HTTP messages, for the fuzz and parser-agreement tests, and the seeded generator other property tests use. */

/** A small seeded generator (mulberry32): the same sequence for the same seed. */
export function rng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/**
 * 1–3 edits of `base`: insert one of `inserts`, delete 1–4 characters, or
 * replace one by a random byte; with `caseFlips`, some edits upper-case a
 * character instead (names and tokens are case-insensitive, values are not).
 */
export function mutate(base: string, r: () => number, inserts: readonly string[], caseFlips = false): string {
  let s = base;
  const n = 1 + Math.floor(r() * 3);
  for (let i = 0; i < n; i++) {
    const at = Math.floor(r() * s.length);
    const op = r();
    if (op < 0.4) s = s.slice(0, at) + inserts[Math.floor(r() * inserts.length)]! + s.slice(at);
    else if (op < (caseFlips ? 0.6 : 0.7)) s = s.slice(0, at) + s.slice(at + 1 + Math.floor(r() * 4));
    else if (caseFlips && op < 0.8) s = s.slice(0, at) + s.charAt(at).toUpperCase() + s.slice(at + 1);
    else s = s.slice(0, at) + String.fromCharCode(Math.floor(r() * 256)) + s.slice(at + 1);
  }
  return s;
}
