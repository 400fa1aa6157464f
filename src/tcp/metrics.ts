/**
 * TCP proxy metrics, registered in the process's registry and aggregated
 * across workers like the rest (counters and histograms add up; the
 * active-sessions gauge is summed: each worker holds its own sessions).
 *
 * Bytes are read from the sessions' sockets when scraped (ended sessions'
 * totals plus what the open ones have moved so far), so a long upload shows
 * up while it runs, at no cost per chunk.
 */
import { Counter, Gauge, Histogram, type Registry } from 'prom-client';

export const CONNECTION_RESULTS = ['accepted', 'denied_allowlist', 'limit_listener', 'limit_source', 'no_backend', 'connect_failed', 'proxy_header_bad'] as const;
export type ConnectionResult = (typeof CONNECTION_RESULTS)[number];

/** Sessions last from a failed login (ms) to a day-long upload. */
const SESSION_BUCKETS_SECONDS = [0.01, 0.1, 1, 10, 60, 300, 900, 1800, 3600, 7200, 14400, 43200, 86400];

export interface LiveSession {
  readonly listener: string;
  readonly bytesIn: number;
  readonly bytesOut: number;
}

export class TcpMetrics {
  private readonly connections: Counter<'listener' | 'result'>;
  private readonly duration: Histogram<'listener'>;
  /** Bytes of ended sessions by listener. */
  private readonly ended = new Map<string, { in: number; out: number }>();
  /** Connections by listener and result, for the admin API (the counter holds the same). */
  readonly counts = new Map<string, Map<ConnectionResult, number>>();

  constructor(registry: Registry, live: () => Iterable<LiveSession>) {
    this.connections = new Counter({
      name: 'perimeter_tcp_connections_total',
      help: 'TCP proxy connections by listener and result (accepted, denied_allowlist, limit_listener, limit_source, no_backend, connect_failed, proxy_header_bad).',
      labelNames: ['listener', 'result'],
      registers: [registry],
      aggregator: 'sum',
    });
    new Gauge({
      name: 'perimeter_tcp_active_sessions',
      help: 'TCP proxy sessions open now (client and backend connected), by listener.',
      labelNames: ['listener'],
      registers: [registry],
      aggregator: 'sum',
      collect() {
        this.reset();
        const n = new Map<string, number>();
        for (const s of live()) n.set(s.listener, (n.get(s.listener) ?? 0) + 1);
        for (const [listener, v] of n) this.set({ listener }, v);
      },
    });
    const ended = this.ended;
    new Counter({
      name: 'perimeter_tcp_bytes_total',
      help: 'Bytes through the TCP proxy by listener and direction (in: from clients to backends; out: from backends to clients).',
      labelNames: ['listener', 'direction'],
      registers: [registry],
      aggregator: 'sum',
      collect() {
        this.reset();
        const sum = new Map<string, { in: number; out: number }>();
        for (const [l, b] of ended) sum.set(l, { in: b.in, out: b.out });
        for (const s of live()) {
          let b = sum.get(s.listener);
          if (!b) sum.set(s.listener, (b = { in: 0, out: 0 }));
          b.in += s.bytesIn;
          b.out += s.bytesOut;
        }
        for (const [listener, b] of sum) {
          if (b.in > 0) this.inc({ listener, direction: 'in' }, b.in);
          if (b.out > 0) this.inc({ listener, direction: 'out' }, b.out);
        }
      },
    });
    this.duration = new Histogram({
      name: 'perimeter_tcp_session_duration_seconds',
      help: 'Duration of ended TCP proxy sessions, by listener.',
      labelNames: ['listener'],
      buckets: SESSION_BUCKETS_SECONDS,
      registers: [registry],
      aggregator: 'sum',
    });
  }

  count(listener: string, result: ConnectionResult): void {
    this.connections.inc({ listener, result });
    let m = this.counts.get(listener);
    if (!m) this.counts.set(listener, (m = new Map()));
    m.set(result, (m.get(result) ?? 0) + 1);
  }

  sessionEnded(listener: string, bytesIn: number, bytesOut: number, seconds: number): void {
    let b = this.ended.get(listener);
    if (!b) this.ended.set(listener, (b = { in: 0, out: 0 }));
    b.in += bytesIn;
    b.out += bytesOut;
    this.duration.observe({ listener }, seconds);
  }

  /** Bytes of ended sessions of a listener. */
  endedBytes(listener: string): { in: number; out: number } {
    return this.ended.get(listener) ?? { in: 0, out: 0 };
  }
}
