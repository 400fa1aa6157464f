/**
 * Per-backend decayed statistics for the expected-latency balancer.
 *
 * Everything decays by wall time (a half-life), not by sample count, so a
 * backend that gets little traffic forgets as fast as a busy one and a
 * backend nobody has used for a while drifts back to the pool's prior: that
 * is how a recovered backend gets retried (as Spotify's ELS and Finagle's
 * peak EWMA decay by time for the same reason).
 *
 * The state is decayed sums and masses ("how many recent samples"): the mean
 * of a decayed sum over its decayed mass is an exponentially time-weighted
 * average, and the mass tells how much to trust it against the prior.
 */

/** Half-life of the latency averages: smooth enough to ignore single outliers. */
export const LATENCY_HALF_LIFE_MS = 5_000;
/**
 * Half-life of the success rate: shorter, so a busy backend that starts
 * failing loses its traffic within seconds instead of being vouched for by
 * the many successes before, and a backend left alone after failing is
 * tried again soon.
 */
export const SUCCESS_RATE_HALF_LIFE_MS = 2_000;
/** The prior counts as this many samples when blended with a backend's own evidence. */
export const PRIOR_SAMPLES = 2;

const LATENCY_DECAY_PER_MS = Math.LN2 / LATENCY_HALF_LIFE_MS;
const RATE_DECAY_PER_MS = Math.LN2 / SUCCESS_RATE_HALF_LIFE_MS;

/** What the pool believes about a backend it has not (recently) measured. */
export interface LatencyPrior {
  successMs: number;
  successRate: number; // 0..1
  failureMs: number;
}

/** A backend's estimates blended with the prior; filled in place to avoid allocation per pick. */
export interface LatencyEstimate {
  successMs: number;
  successRate: number;
  failureMs: number;
  /** Decayed number of recent samples (0 = only the prior speaks). */
  samples: number;
}

export function newEstimate(): LatencyEstimate {
  return { successMs: 0, successRate: 1, failureMs: 0, samples: 0 };
}

export class LatencyStats {
  // Latency: decayed sums and their masses (LATENCY_HALF_LIFE_MS).
  private okWeight = 0;
  private okLatencySum = 0;
  private failWeight = 0;
  private failLatencySum = 0;
  // Outcomes: decayed counts (SUCCESS_RATE_HALF_LIFE_MS).
  private okCount = 0;
  private failCount = 0;
  private updatedAt = 0;
  /** Lifetime counters (never decayed), for the admin view. */
  successes = 0;
  failures = 0;

  /** A response head arrived with status < 500 after `latencyMs`. */
  onSuccess(latencyMs: number, now: number): void {
    this.decayTo(now);
    this.okWeight += 1;
    this.okLatencySum += latencyMs > 0 ? latencyMs : 0;
    this.okCount += 1;
    this.successes++;
  }

  /** The attempt failed (5xx, connect error, reset, timeout) after `latencyMs`. */
  onFailure(latencyMs: number, now: number): void {
    this.decayTo(now);
    this.failWeight += 1;
    this.failLatencySum += latencyMs > 0 ? latencyMs : 0;
    this.failCount += 1;
    this.failures++;
  }

  /** Decayed number of recent outcomes at `now`. */
  samples(now: number): number {
    return (this.okCount + this.failCount) * rateFactor(now - this.updatedAt);
  }

  /**
   * The backend's own estimates without any prior, or false when it has no
   * recent evidence. Used to build the pool's prior from its members.
   * Latencies are NaN when there is no sample of that kind.
   */
  own(now: number, out: LatencyEstimate): boolean {
    const f = rateFactor(now - this.updatedAt);
    const ok = this.okCount * f;
    const n = ok + this.failCount * f;
    if (n < 0.5) return false;
    out.samples = n;
    out.successRate = ok / n;
    // A mean of decayed sums is unchanged by their common decay factor.
    out.successMs = this.okWeight > 0 ? this.okLatencySum / this.okWeight : Number.NaN;
    out.failureMs = this.failWeight > 0 ? this.failLatencySum / this.failWeight : Number.NaN;
    return true;
  }

  /**
   * Estimates at `now` blended with `prior` weighted as PRIOR_SAMPLES
   * samples: with no recent samples this is the prior, with many it is the
   * backend's own measurement.
   */
  read(now: number, prior: LatencyPrior, out: LatencyEstimate): LatencyEstimate {
    const dt = now - this.updatedAt;
    const lf = latencyFactor(dt);
    const rf = rateFactor(dt);
    const k = PRIOR_SAMPLES;
    const ok = this.okCount * rf;
    const fail = this.failCount * rf;
    out.samples = ok + fail;
    out.successRate = (ok + k * prior.successRate) / (ok + fail + k);
    out.successMs = (this.okLatencySum * lf + k * prior.successMs) / (this.okWeight * lf + k);
    out.failureMs = (this.failLatencySum * lf + k * prior.failureMs) / (this.failWeight * lf + k);
    return out;
  }

  /** Apply the decay since the last update, so a new sample weighs 1 and older ones less. */
  private decayTo(now: number): void {
    const dt = now - this.updatedAt;
    if (dt <= 0) return; // samples reported slightly out of order count as current
    const lf = latencyFactor(dt);
    const rf = rateFactor(dt);
    this.okWeight *= lf;
    this.okLatencySum *= lf;
    this.failWeight *= lf;
    this.failLatencySum *= lf;
    this.okCount *= rf;
    this.failCount *= rf;
    this.updatedAt = now;
  }
}

function latencyFactor(dt: number): number {
  return dt > 0 ? Math.exp(-dt * LATENCY_DECAY_PER_MS) : 1;
}

function rateFactor(dt: number): number {
  return dt > 0 ? Math.exp(-dt * RATE_DECAY_PER_MS) : 1;
}
