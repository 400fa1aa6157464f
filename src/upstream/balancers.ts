/**
 * The balancing algorithms. A balancer chooses one backend from the pool's
 * list of currently available ones; it reads Backend fields (weight,
 * inflight, stats) and mutates nothing but its own state. `pick` runs on
 * every request, so it allocates nothing and is O(1) except weighted round
 * robin (O(n), as nginx) and retries that exclude backends.
 *
 * See docs/balancing.md for the reasoning and the simulation behind the
 * constants.
 */
import type { BalancerKind } from '../config/types.js';
import type { Backend } from './backend.js';
import type { Balancer } from './types.js';
import { newEstimate, type LatencyEstimate, type LatencyPrior } from './stats.js';

export interface BalancerOptions {
  /** Source of uniform numbers in [0, 1); tests and simulations pass a seeded one. */
  readonly random?: () => number;
  /** Latency balancer: compare all candidates in pools up to this size (default 5; 1 = always P2C). */
  readonly fullScanUpTo?: number;
}

export function createBalancer(kind: BalancerKind, options: BalancerOptions = {}): Balancer {
  const random = options.random ?? Math.random;
  switch (kind) {
    case 'round-robin':
      return new RoundRobinBalancer();
    case 'least-request':
      return new LeastRequestBalancer(random);
    case 'latency':
      return new LatencyBalancer(random, options.fullScanUpTo ?? LATENCY_FULL_SCAN_UP_TO);
  }
}

function weightOf(b: Backend): number {
  return b.weight > 0 ? b.weight : 0;
}

/**
 * Smooth weighted round robin (nginx's `ngx_http_upstream_get_peer`): every
 * pick adds each backend's weight to its current value, takes the largest
 * and subtracts the total from it. Weights 5,1,1 give a a b a c a a, not
 * a a a a a b c. Current values live in a WeakMap keyed by Backend so they
 * survive the pool replacing its candidate array, and go away with the
 * backend.
 */
class RoundRobinBalancer implements Balancer {
  readonly kind = 'round-robin';
  private readonly current = new WeakMap<Backend, { value: number }>();
  private cellsFor: readonly Backend[] | undefined;
  private cells: { value: number }[] = [];

  pick(candidates: readonly Backend[], exclude: ReadonlySet<Backend> | undefined, _now: number): Backend {
    const best = this.round(candidates, exclude);
    // Everything excluded (a retry with no other backend left): any is better than none.
    return best ?? this.round(candidates, undefined) ?? (candidates[0] as Backend);
  }

  private round(candidates: readonly Backend[], exclude: ReadonlySet<Backend> | undefined): Backend | undefined {
    // The pool keeps its candidate array until membership or health change, so
    // the WeakMap is consulted only then and each pick walks a plain array.
    if (candidates !== this.cellsFor) {
      this.cells = candidates.map((b) => this.cell(b));
      this.cellsFor = candidates;
    }
    const cells = this.cells;
    let total = 0;
    let best = -1;
    let bestValue = 0;
    for (let i = 0; i < candidates.length; i++) {
      const b = candidates[i] as Backend;
      if (exclude !== undefined && exclude.has(b)) continue;
      const w = weightOf(b);
      const cell = cells[i] as { value: number };
      cell.value += w;
      total += w;
      if (best < 0 || cell.value > bestValue) {
        best = i;
        bestValue = cell.value;
      }
    }
    if (best < 0) return undefined;
    (cells[best] as { value: number }).value -= total;
    return candidates[best];
  }

  private cell(b: Backend): { value: number } {
    let cell = this.current.get(b);
    if (cell === undefined) {
      cell = { value: 0 };
      this.current.set(b, cell);
    }
    return cell;
  }

  explain(backend: Backend, _now: number): { score: number; reason: string } {
    const current = this.current.get(backend)?.value ?? 0;
    // The next pick goes to the largest current + weight; negate so lower = preferred.
    return { score: -(current + weightOf(backend)), reason: `weight ${backend.weight}, current ${current}` };
  }
}

/**
 * Power of two choices: two distinct random candidates, keep the better
 * score. O(1), and unlike "always the best" it does not herd onto one
 * backend between updates (Mitzenmacher; Envoy, Finagle). A subclass may
 * compare every candidate in small pools instead (`fullScanUpTo`).
 */
abstract class TwoChoiceBalancer implements Balancer {
  abstract readonly kind: string;
  protected readonly random: () => number;
  /** Pools of at most this many candidates are compared in full. */
  protected readonly fullScanUpTo: number;
  // Fields rather than a returned pair so a pick allocates nothing.
  private first = 0;
  private second = 0;

  constructor(random: () => number, fullScanUpTo: number) {
    this.random = random;
    this.fullScanUpTo = fullScanUpTo;
  }

  /** Lower is better. */
  protected abstract score(b: Backend, now: number): number;
  abstract explain(backend: Backend, now: number): { score: number; reason: string };

  /** Hook for balancers that keep pool-wide state (the latency prior). */
  protected beforePick(_candidates: readonly Backend[], _now: number): void {}

  pick(candidates: readonly Backend[], exclude: ReadonlySet<Backend> | undefined, now: number): Backend {
    this.beforePick(candidates, now);
    let skip = exclude !== undefined && exclude.size > 0 ? exclude : undefined;
    let allowed = candidates.length;
    if (skip !== undefined) {
      // A retry: choose among the candidates not yet tried. Rare, so O(n) is fine.
      allowed = 0;
      for (const b of candidates) if (!skip.has(b)) allowed++;
      if (allowed === 0) {
        // Everything tried already: any backend is better than none.
        skip = undefined;
        allowed = candidates.length;
      }
    }
    if (allowed <= 1) return skip === undefined ? (candidates[0] as Backend) : nthAllowed(candidates, skip, 0);
    if (allowed <= this.fullScanUpTo) return this.best(candidates, skip, now);

    this.drawTwo(allowed);
    const a = skip === undefined ? (candidates[this.first] as Backend) : nthAllowed(candidates, skip, this.first);
    const b = skip === undefined ? (candidates[this.second] as Backend) : nthAllowed(candidates, skip, this.second);
    const sa = this.score(a, now);
    const sb = this.score(b, now);
    if (sa < sb) return a;
    if (sb < sa) return b;
    // Ties (e.g. everything idle) go either way so neither side is favoured.
    return this.random() < 0.5 ? a : b;
  }

  /** The lowest score of all allowed candidates; ties broken uniformly at random. */
  private best(candidates: readonly Backend[], skip: ReadonlySet<Backend> | undefined, now: number): Backend {
    let best: Backend | undefined;
    let bestScore = Number.POSITIVE_INFINITY;
    let ties = 0;
    for (const b of candidates) {
      if (skip !== undefined && skip.has(b)) continue;
      const s = this.score(b, now);
      if (best === undefined || s < bestScore) {
        best = b;
        bestScore = s;
        ties = 1;
      } else if (s === bestScore && this.random() * ++ties < 1) {
        best = b;
      }
    }
    return best ?? (candidates[0] as Backend);
  }

  /** Two distinct uniform indices in [0, n), n >= 2. */
  private drawTwo(n: number): void {
    const i = Math.floor(this.random() * n) % n;
    let j = Math.floor(this.random() * (n - 1)) % (n - 1);
    if (j >= i) j++;
    this.first = i;
    this.second = j;
  }
}

function nthAllowed(candidates: readonly Backend[], exclude: ReadonlySet<Backend>, nth: number): Backend {
  let k = 0;
  for (const b of candidates) {
    if (exclude.has(b)) continue;
    if (k === nth) return b;
    k++;
  }
  return candidates[0] as Backend;
}

/**
 * Least request, weight-aware: (inflight + 1) / weight, lower wins. With
 * equal weights this is Envoy's "fewer active requests"; with unequal ones
 * it is Envoy's weight / (active + 1)^bias with bias 1, inverted.
 */
class LeastRequestBalancer extends TwoChoiceBalancer {
  readonly kind = 'least-request';

  constructor(random: () => number) {
    // Always two random choices, as Envoy: in-flight counts alone say nothing
    // about quality, so comparing everything only herds harder onto whatever
    // answers (or fails) fastest.
    super(random, 1);
  }

  protected score(b: Backend, _now: number): number {
    return (b.inflight + 1) / (weightOf(b) || Number.MIN_VALUE);
  }

  explain(backend: Backend, now: number): { score: number; reason: string } {
    return { score: this.score(backend, now), reason: `inflight ${backend.inflight} / weight ${backend.weight}` };
  }
}

/** Below this the expected number of failures before a success, (1-p)/p, stops growing (at 49). */
const MIN_SUCCESS_RATE = 0.02;
/** How often the pool prior is rebuilt from the members' own statistics. */
const PRIOR_REFRESH_MS = 1000;
/** ...and while no member has samples yet, so the first measurements count quickly. */
const PRIOR_REFRESH_COLD_MS = 50;
/**
 * Pools this small are compared in full rather than by two random choices.
 * With P2C over 3 backends a third of the picks are the pair without the
 * best one, so 1 good + 2 bad backends forces a third of the traffic onto a
 * bad one (docs/balancing.md has the numbers). The bad pair's share falls
 * as 2/(n(n-1)), to 10% at 5 and 7% at 6 backends; comparing up to 5 costs
 * a few hundred nanoseconds and cannot herd, since inflight, part of the
 * score, rises synchronously with every pick.
 */
const LATENCY_FULL_SCAN_UP_TO = 5;
/** Prior success latency before any backend of the pool has answered. */
const COLD_SUCCESS_MS = 1;

/**
 * Expected latency, in the spirit of Spotify's ELS and Finagle's peak EWMA.
 *
 *   E     = S + (1 - p) / p × (F + S̄)
 *   score = E × (inflight + 1) / weight
 *
 * S: decayed success latency, p: decayed success rate, F: decayed failure
 * latency, S̄: the pool's typical success latency. (1-p)/p is the expected
 * number of failures before a success; each costs its own latency plus a
 * re-send, which takes about S̄. So a backend that fails in 1 ms 90% of the
 * time expects 9 failures per success and scores far worse than a healthy
 * one, where a plain latency average would rank it best. (inflight + 1)
 * accounts for the queue already waiting there, and spreads load the moment
 * a backend slows down, before any latency sample comes back.
 *
 * Backends without recent samples are read through a prior: the average of
 * the members that have samples, counted as PRIOR_SAMPLES samples. A new
 * backend thus starts as "typical" and gets a fair trial, and a backend left
 * alone after a bad spell decays back to typical and is tried again.
 */
class LatencyBalancer extends TwoChoiceBalancer {
  readonly kind = 'latency';
  private readonly prior: LatencyPrior = { successMs: COLD_SUCCESS_MS, successRate: 1, failureMs: COLD_SUCCESS_MS };
  private priorWarm = false;
  private priorAt = Number.NEGATIVE_INFINITY;
  private priorFrom: readonly Backend[] | undefined;
  /** Mean inflight per backend at the last refresh. */
  private poolQueue = 0;
  /** What a re-send after a failure costs: a typical request behind a typical queue. */
  private resendMs = COLD_SUCCESS_MS;
  private readonly scratch: LatencyEstimate = newEstimate();

  constructor(random: () => number, fullScanUpTo: number) {
    super(random, fullScanUpTo);
  }

  protected override beforePick(candidates: readonly Backend[], now: number): void {
    const age = now - this.priorAt;
    // The pool replaces its candidate array only when membership or health change.
    if (candidates !== this.priorFrom || age >= (this.priorWarm ? PRIOR_REFRESH_MS : PRIOR_REFRESH_COLD_MS) || age < 0) {
      this.refreshPrior(candidates, now);
    }
  }

  private refreshPrior(candidates: readonly Backend[], now: number): void {
    const e = this.scratch;
    let n = 0;
    let okN = 0;
    let failN = 0;
    let successMs = 0;
    let successRate = 0;
    let failureMs = 0;
    let inflight = 0;
    for (const b of candidates) {
      inflight += b.inflight;
      if (!b.stats.own(now, e)) continue;
      n++;
      successRate += e.successRate;
      if (!Number.isNaN(e.successMs)) {
        successMs += e.successMs;
        okN++;
      }
      if (!Number.isNaN(e.failureMs)) {
        failureMs += e.failureMs;
        failN++;
      }
    }
    this.priorAt = now;
    this.priorFrom = candidates;
    this.poolQueue = candidates.length > 0 ? inflight / candidates.length : 0;
    if (n > 0) {
      this.priorWarm = true;
      this.prior.successRate = successRate / n;
      if (okN > 0) this.prior.successMs = successMs / okN;
      // Without failures anywhere, assume a failure takes as long as a success.
      this.prior.failureMs = failN > 0 ? failureMs / failN : this.prior.successMs;
    } // else keep the last prior (or the cold one)
    this.resendMs = this.prior.successMs * (this.poolQueue + 1);
  }

  /** Expected latency of one request before its own queue, from an estimate. */
  private expected(e: LatencyEstimate): number {
    const p = e.successRate > MIN_SUCCESS_RATE ? e.successRate : MIN_SUCCESS_RATE;
    return e.successMs + ((1 - p) / p) * (e.failureMs + this.resendMs);
  }

  protected score(b: Backend, now: number): number {
    const e = b.stats.read(now, this.prior, this.scratch);
    return (this.expected(e) * (b.inflight + 1)) / (weightOf(b) || Number.MIN_VALUE);
  }

  explain(backend: Backend, now: number): { score: number; reason: string } {
    const e = backend.stats.read(now, this.prior, newEstimate());
    const score = (this.expected(e) * (backend.inflight + 1)) / (weightOf(backend) || Number.MIN_VALUE);
    const weight = backend.weight === 1 ? '' : `, weight ${backend.weight}`;
    const evidence = e.samples < 0.5 ? ' (no recent samples: pool prior)' : '';
    return {
      score,
      reason:
        `ewma success ${ms(e.successMs)} ms, success ${pct(e.successRate)}%, failure ${ms(e.failureMs)} ms, ` +
        `inflight ${backend.inflight}${weight} => expected ${ms(score)} ms${evidence}`,
    };
  }
}

function ms(v: number): string {
  return v >= 100 ? v.toFixed(0) : v.toFixed(1);
}

function pct(v: number): string {
  const p = v * 100;
  return p < 10 ? p.toFixed(1) : p.toFixed(0);
}
