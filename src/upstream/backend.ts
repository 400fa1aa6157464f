/**
 * One backend (host:port) of a service's pool. Identity is its key; the pool
 * keeps the same Backend object across discovery changes and config reloads
 * so health, ejection and latency history survive them.
 *
 * Initial state: a backend first seen is healthy when its pool has no
 * active health check, and "unchecked" otherwise. An unchecked backend
 * takes traffic (it counts as healthy) until its first check completes; then
 * `rise` consecutive successes or `fall` consecutive failures move it.
 * This follows Envoy's default (new hosts are routable before the first
 * check only when no checker is configured) softened for a cold start so a
 * fresh perimeter serves at once; a failing first check removes it within
 * one interval because `fall` counts from the unchecked state at 1.
 */
import { LatencyStats } from './stats.js';

export type ActiveHealth = 'unchecked' | 'healthy' | 'unhealthy';

export class Backend {
  readonly key: string;
  readonly host: string;
  readonly port: number;
  weight: number;

  /** Result of active checks. */
  active: ActiveHealth;
  consecutiveCheckOk = 0;
  consecutiveCheckFail = 0;
  lastCheckReason = 'not checked yet';

  /** Passive ejection (outlier detection). */
  ejectedUntil = 0;
  ejections = 0; // times ejected in a row; grows the ejection time
  consecutiveFailures = 0;
  lastEjectReason = '';

  /** Requests currently in flight to this backend. */
  inflight = 0;
  /** Decayed latency and success statistics (read by the latency balancer). */
  readonly stats: LatencyStats;

  constructor(host: string, port: number, weight: number, activeChecks: boolean) {
    this.host = host;
    this.port = port;
    this.weight = weight;
    this.key = backendKey(host, port);
    this.active = activeChecks ? 'unchecked' : 'healthy';
    this.stats = new LatencyStats();
  }

  /** Routable by active health (ignores passive ejection). */
  get activeOk(): boolean {
    return this.active !== 'unhealthy';
  }

  isEjected(now: number): boolean {
    return this.ejectedUntil > now;
  }

  /** Routable now: passes active checks and is not ejected. */
  isAvailable(now: number): boolean {
    return this.active !== 'unhealthy' && this.ejectedUntil <= now;
  }
}

export function backendKey(host: string, port: number): string {
  return host.includes(':') ? `[${host}]:${port}` : `${host}:${port}`;
}
