/**
 * A discrete-event simulation of one perimeter worker balancing over a
 * pool, with synthetic time: requests arrive at a fixed rate, each pick
 * raises the chosen backend's inflight, the answer comes back after the
 * backend's latency, and the outcome is fed to its LatencyStats exactly as
 * the pool's release() does. Used by test/upstream/balancers-sim.test.ts and
 * runnable on its own to print the table in docs/balancing.md:
 *
 *   npx tsc -p tsconfig.json && node dist/bench/balancers-sim.js
 */
import { pathToFileURL } from 'node:url';
import type { BalancerKind } from '../src/config/types.js';
import { Backend } from '../src/upstream/backend.js';
import { createBalancer } from '../src/upstream/balancers.js';

export interface SimBackend {
  readonly name: string;
  readonly weight?: number;
  /** Latency of a successful answer. */
  readonly successMs: number;
  /** Latency of a failed one (5xx, reset, refused). */
  readonly failureMs: number;
  /** Share of attempts that fail, 0..1. */
  readonly failRate: number;
  /**
   * Requests served at full speed at once; beyond that the latency grows in
   * proportion (processor sharing). Undefined = unlimited.
   */
  readonly capacity?: number;
  /** From this long after the start on, the backend behaves as `then` says. */
  readonly changesAfterMs?: number;
  readonly then?: { readonly successMs: number; readonly failureMs: number; readonly failRate: number };
}

export interface SimOptions {
  readonly kind: BalancerKind;
  readonly backends: readonly SimBackend[];
  readonly requests: number;
  /** Time between two arrivals. */
  readonly intervalMs: number;
  /** The client re-sends a failed request once, to another backend. */
  readonly retryOnce: boolean;
  readonly seed: number;
  /** Latencies vary uniformly by ± this share. */
  readonly jitter?: number;
  /** Latency balancer: full comparison up to this pool size (BalancerOptions.fullScanUpTo). */
  readonly fullScanUpTo?: number;
}

export interface SimBackendResult {
  readonly name: string;
  readonly attempts: number;
  readonly share: number; // of all attempts
  /** Share of the attempts made during the last quarter of the run. */
  readonly lastQuarterShare: number;
  readonly failures: number;
}

export interface SimResult {
  readonly kind: BalancerKind;
  readonly retryOnce: boolean;
  readonly backends: readonly SimBackendResult[];
  readonly attempts: number;
  /** Mean time from arrival to the final answer, as the client sees it. */
  readonly clientMeanMs: number;
  readonly clientP99Ms: number;
  /** Share of requests whose final answer was a failure. */
  readonly clientFailRate: number;
}

/** mulberry32: small, fast, good enough for simulations; deterministic per seed. */
export function seededRandom(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

interface Completion {
  at: number;
  seq: number;
  index: number; // backend
  ok: boolean;
  startedAt: number;
  request: number;
  attempt: number;
}

/** Binary min-heap on (at, seq) so equal times complete in start order. */
class CompletionQueue {
  private readonly items: Completion[] = [];
  get size(): number {
    return this.items.length;
  }
  peek(): Completion | undefined {
    return this.items[0];
  }
  push(c: Completion): void {
    const h = this.items;
    h.push(c);
    let i = h.length - 1;
    while (i > 0) {
      const parent = (i - 1) >> 1;
      if (!before(h[i] as Completion, h[parent] as Completion)) break;
      [h[i], h[parent]] = [h[parent] as Completion, h[i] as Completion];
      i = parent;
    }
  }
  pop(): Completion | undefined {
    const h = this.items;
    const top = h[0];
    const last = h.pop();
    if (h.length > 0 && last !== undefined) {
      h[0] = last;
      let i = 0;
      for (;;) {
        const l = 2 * i + 1;
        const r = l + 1;
        let m = i;
        if (l < h.length && before(h[l] as Completion, h[m] as Completion)) m = l;
        if (r < h.length && before(h[r] as Completion, h[m] as Completion)) m = r;
        if (m === i) break;
        [h[i], h[m]] = [h[m] as Completion, h[i] as Completion];
        i = m;
      }
    }
    return top;
  }
}

function before(a: Completion, b: Completion): boolean {
  return a.at < b.at || (a.at === b.at && a.seq < b.seq);
}

export function simulate(opts: SimOptions): SimResult {
  const random = seededRandom(opts.seed);
  const balancer = createBalancer(opts.kind, {
    random: seededRandom(opts.seed ^ 0x5bd1e995),
    ...(opts.fullScanUpTo !== undefined ? { fullScanUpTo: opts.fullScanUpTo } : {}),
  });
  const jitter = opts.jitter ?? 0.2;
  const backends = opts.backends.map((s, i) => new Backend(`10.0.0.${i + 1}`, 8080, s.weight ?? 1, false));
  const index = new Map(backends.map((b, i) => [b, i]));
  const attempts = new Array<number>(backends.length).fill(0);
  const failures = new Array<number>(backends.length).fill(0);
  const lateAttempts = new Array<number>(backends.length).fill(0);
  const lateFrom = Math.floor(opts.requests * 0.75);
  const arrivedAt = new Float64Array(opts.requests);
  const clientLatency = new Float64Array(opts.requests);
  let clientFailed = 0;
  let seq = 0;
  const queue = new CompletionQueue();
  // Synthetic time starts well away from 0 so "never updated" stats look stale, as with Date.now().
  const t0 = 1_000_000;

  const start = (request: number, attempt: number, now: number, exclude: ReadonlySet<Backend> | undefined): void => {
    const b = balancer.pick(backends, exclude, now);
    const i = index.get(b) as number;
    const spec = opts.backends[i] as SimBackend;
    b.inflight++;
    attempts[i] = (attempts[i] ?? 0) + 1;
    if (request >= lateFrom) lateAttempts[i] = (lateAttempts[i] ?? 0) + 1;
    const phase = spec.then !== undefined && spec.changesAfterMs !== undefined && now - t0 >= spec.changesAfterMs ? spec.then : spec;
    const ok = random() >= phase.failRate;
    const base = ok ? phase.successMs : phase.failureMs;
    const load = spec.capacity !== undefined ? Math.max(1, b.inflight / spec.capacity) : 1;
    const latency = base * load * (1 - jitter + 2 * jitter * random());
    queue.push({ at: now + latency, seq: seq++, index: i, ok, startedAt: now, request, attempt });
  };

  const complete = (c: Completion): void => {
    const b = backends[c.index] as Backend;
    b.inflight--;
    const latency = c.at - c.startedAt;
    if (c.ok) b.stats.onSuccess(latency, c.at);
    else {
      b.stats.onFailure(latency, c.at);
      failures[c.index] = (failures[c.index] ?? 0) + 1;
    }
    if (!c.ok && opts.retryOnce && c.attempt === 1) {
      start(c.request, 2, c.at, new Set([b]));
      return;
    }
    clientLatency[c.request] = c.at - (arrivedAt[c.request] as number);
    if (!c.ok) clientFailed++;
  };

  for (let r = 0; r < opts.requests; r++) {
    const now = t0 + r * opts.intervalMs;
    while (queue.size > 0 && (queue.peek() as Completion).at <= now) complete(queue.pop() as Completion);
    arrivedAt[r] = now;
    start(r, 1, now, undefined);
  }
  while (queue.size > 0) complete(queue.pop() as Completion);

  const total = attempts.reduce((a, b) => a + b, 0);
  const lateTotal = lateAttempts.reduce((a, b) => a + b, 0);
  let sum = 0;
  for (const v of clientLatency) sum += v;
  const sorted = Float64Array.from(clientLatency).sort();
  return {
    kind: opts.kind,
    retryOnce: opts.retryOnce,
    backends: opts.backends.map((s, i) => ({
      name: s.name,
      attempts: attempts[i] ?? 0,
      share: (attempts[i] ?? 0) / total,
      lastQuarterShare: (lateAttempts[i] ?? 0) / lateTotal,
      failures: failures[i] ?? 0,
    })),
    attempts: total,
    clientMeanMs: sum / opts.requests,
    clientP99Ms: sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * 0.99))] ?? 0,
    clientFailRate: clientFailed / opts.requests,
  };
}

/** The acceptance scenario of issue 2: one normal backend, one 10× slower, one failing 90% fast. */
export const ACCEPTANCE_POOL: readonly SimBackend[] = [
  { name: 'normal', successMs: 10, failureMs: 10, failRate: 0 },
  { name: 'slow', successMs: 100, failureMs: 100, failRate: 0 },
  { name: 'fast-failing', successMs: 10, failureMs: 1, failRate: 0.9 },
];

function pct(v: number): string {
  return `${(v * 100).toFixed(1)}%`.padStart(7);
}

function formatRow(label: string, r: SimResult, share: (b: SimBackendResult) => number): string {
  const shares = r.backends.map((b) => pct(share(b))).join(' ');
  return (
    `${label.padEnd(14)} ${r.retryOnce ? 'yes' : 'no '}   ${shares}   ` +
    `${r.clientMeanMs.toFixed(1).padStart(7)} ${r.clientP99Ms.toFixed(1).padStart(7)}   ${(r.clientFailRate * 100).toFixed(2).padStart(6)}%`
  );
}

interface Scenario {
  readonly title: string;
  readonly pool: readonly SimBackend[];
  readonly intervalMs: number;
  /** Show the last quarter's shares instead of the whole run's. */
  readonly lastQuarter?: boolean;
  /** Only these columns (pool indices), for big pools. */
  readonly columns?: readonly number[];
}

function main(): void {
  const requests = 20_000;
  const ten: SimBackend[] = [
    ...Array.from({ length: 8 }, (_, i) => ({ name: `normal${i + 1}`, successMs: 10, failureMs: 10, failRate: 0, capacity: 8 })),
    { name: 'slow', successMs: 100, failureMs: 100, failRate: 0, capacity: 8 },
    { name: 'fast-failing', successMs: 10, failureMs: 1, failRate: 0.9, capacity: 8 },
  ];
  const scenarios: Scenario[] = [
    { title: 'acceptance pool, 1000 req/s', pool: ACCEPTANCE_POOL, intervalMs: 1 },
    { title: 'acceptance pool, 100 req/s', pool: ACCEPTANCE_POOL, intervalMs: 10 },
    {
      title: 'acceptance pool, 500 req/s, each backend serves 8 at once (latency grows beyond)',
      pool: ACCEPTANCE_POOL.map((b) => ({ ...b, capacity: 8 })),
      intervalMs: 2,
    },
    {
      title: 'acceptance pool, 1000 req/s, the fast-failing backend recovers after 5 s (shares in the last 5 s)',
      pool: ACCEPTANCE_POOL.map((b) =>
        b.name === 'fast-failing' ? { ...b, changesAfterMs: 5000, then: { successMs: 10, failureMs: 10, failRate: 0 } } : b,
      ),
      intervalMs: 1,
      lastQuarter: true,
    },
    {
      title: 'normal a, normal b, slow at 1000 req/s; a starts failing 90% fast after 5 s (shares in the last 5 s)',
      pool: [
        { name: 'normal-a', successMs: 10, failureMs: 10, failRate: 0, changesAfterMs: 5000, then: { successMs: 10, failureMs: 1, failRate: 0.9 } },
        { name: 'normal-b', successMs: 10, failureMs: 10, failRate: 0 },
        { name: 'slow', successMs: 100, failureMs: 100, failRate: 0 },
      ],
      intervalMs: 1,
      lastQuarter: true,
    },
    {
      title: '10 backends (8 normal, slow, fast-failing; each serves 8 at once), 4000 req/s: two random choices',
      pool: ten,
      intervalMs: 0.25,
      columns: [0, 8, 9],
    },
  ];
  const variants: { label: string; kind: BalancerKind; fullScanUpTo?: number }[] = [
    { label: 'round-robin', kind: 'round-robin' },
    { label: 'least-request', kind: 'least-request' },
    { label: 'latency', kind: 'latency' },
    { label: 'latency (P2C)', kind: 'latency', fullScanUpTo: 1 },
  ];
  for (const s of scenarios) {
    const cols = s.columns ?? s.pool.map((_, i) => i);
    console.log(`\n${s.title}, ${requests} requests`);
    console.log(`balancer       retry  ${cols.map((i) => (s.pool[i] as SimBackend).name.slice(0, 7).padStart(7)).join(' ')}   mean ms  p99 ms   failed`);
    for (const retryOnce of [false, true]) {
      for (const v of variants) {
        const r = simulate({
          kind: v.kind,
          backends: s.pool,
          requests,
          intervalMs: s.intervalMs,
          retryOnce,
          seed: 42,
          ...(v.fullScanUpTo !== undefined ? { fullScanUpTo: v.fullScanUpTo } : {}),
        });
        const picked = { ...r, backends: cols.map((i) => r.backends[i] as SimBackendResult) };
        console.log(formatRow(v.label, picked, (b) => (s.lastQuarter === true ? b.lastQuarterShare : b.share)));
      }
    }
  }
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) main();
