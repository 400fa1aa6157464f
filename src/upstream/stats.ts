/**
 * Per-backend decayed statistics for the expected-latency balancer.
 * PLACEHOLDER SHAPE: the balancer work fills in the decay model.
 */
export class LatencyStats {
  /** A response head arrived with status < 500 after `latencyMs`. */
  onSuccess(_latencyMs: number, _now: number): void {}
  /** The attempt failed (5xx, connect error, reset, timeout) after `latencyMs`. */
  onFailure(_latencyMs: number, _now: number): void {}
}
