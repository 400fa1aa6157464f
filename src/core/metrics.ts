/**
 * Prometheus metrics. Pool and backend state is read when scraped (no cost
 * on the request path); request counts are plain integers in a Map bumped
 * from the request record and turned into counters at scrape time.
 */
import { Counter, Gauge, Registry } from 'prom-client';
import type { PoolDescription } from '../upstream/pool.js';
import type { RequestRecord } from '../web/proxy.js';

export interface MetricsSource {
  generation(): number;
  pools(): PoolDescription[];
}

export class Metrics {
  readonly registry = new Registry();
  private readonly requestCounts = new Map<string, { cluster: string; site: string; code: string; n: number }>();
  private readonly retryCounts = new Map<string, { cluster: string; site: string; n: number }>();
  readonly ejections: Counter<'service'>;
  readonly panicTransitions: Counter<'service' | 'to'>;
  readonly healthTransitions: Counter<'service' | 'to'>;
  readonly reloads: Counter<'result'>;

  constructor(source: MetricsSource) {
    const r = this.registry;
    new Gauge({ name: 'perimeter_config_generation', help: 'Generation of the configuration being served.', registers: [r], collect() { this.set(source.generation()); } });
    const pools = (): PoolDescription[] => source.pools();
    new Gauge({
      name: 'perimeter_pool_panic',
      help: '1 while the service pool is in panic mode (too few healthy backends).',
      labelNames: ['service', 'mode'],
      registers: [r],
      collect() {
        this.reset();
        for (const p of pools()) this.set({ service: p.service, mode: p.panicMode }, p.panic ? 1 : 0);
      },
    });
    new Gauge({
      name: 'perimeter_pool_backends',
      help: 'Backends of a service pool, by state.',
      labelNames: ['service', 'state'],
      registers: [r],
      collect() {
        this.reset();
        for (const p of pools()) {
          this.set({ service: p.service, state: 'total' }, p.total);
          this.set({ service: p.service, state: 'available' }, p.available);
        }
      },
    });
    const perBackend = (name: string, help: string, value: (b: PoolDescription['backends'][number]) => number): void => {
      new Gauge({
        name,
        help,
        labelNames: ['service', 'backend'],
        registers: [r],
        collect() {
          this.reset();
          for (const p of pools()) for (const b of p.backends) this.set({ service: p.service, backend: b.key }, value(b));
        },
      });
    };
    perBackend('perimeter_backend_available', '1 when the backend takes traffic outside panic (healthy and not ejected).', (b) => (b.available ? 1 : 0));
    perBackend('perimeter_backend_healthy', '1 unless active health checks mark the backend unhealthy.', (b) => (b.active === 'unhealthy' ? 0 : 1));
    perBackend('perimeter_backend_ejected', '1 while passive health has ejected the backend.', (b) => (b.ejected ? 1 : 0));
    perBackend('perimeter_backend_score', "The balancer's score of the backend (lower is preferred).", (b) => (Number.isFinite(b.score) ? b.score : -1));
    perBackend('perimeter_backend_inflight', 'Requests in flight to the backend.', (b) => b.inflight);

    this.ejections = new Counter({ name: 'perimeter_backend_ejections_total', help: 'Passive ejections.', labelNames: ['service'], registers: [r] });
    this.panicTransitions = new Counter({ name: 'perimeter_pool_panic_transitions_total', help: 'Panic mode entered or left.', labelNames: ['service', 'to'], registers: [r] });
    this.healthTransitions = new Counter({ name: 'perimeter_backend_health_transitions_total', help: 'Active health state changes.', labelNames: ['service', 'to'], registers: [r] });
    this.reloads = new Counter({ name: 'perimeter_config_reloads_total', help: 'Configuration applies, by result.', labelNames: ['result'], registers: [r] });

    const requestCounts = this.requestCounts;
    const retryCounts = this.retryCounts;
    new Counter({
      name: 'perimeter_requests_total',
      help: 'Requests answered, by cluster, site and status class (site empty when none matched).',
      labelNames: ['cluster', 'site', 'code'],
      registers: [r],
      collect() {
        this.reset();
        for (const v of requestCounts.values()) this.inc({ cluster: v.cluster, site: v.site, code: v.code }, v.n);
      },
    });
    new Counter({
      name: 'perimeter_retries_total',
      help: 'Retries on another backend.',
      labelNames: ['cluster', 'site'],
      registers: [r],
      collect() {
        this.reset();
        for (const v of retryCounts.values()) this.inc({ cluster: v.cluster, site: v.site }, v.n);
      },
    });
  }

  /** Count one request (called from the request record hook). */
  onRecord(rec: RequestRecord): void {
    const code = rec.status >= 100 && rec.status < 600 ? `${Math.floor(rec.status / 100)}xx` : 'other';
    const key = `${rec.cluster}\0${rec.site}\0${code}`;
    const c = this.requestCounts.get(key);
    if (c) c.n++;
    else this.requestCounts.set(key, { cluster: rec.cluster, site: rec.site, code, n: 1 });
    if (rec.retries > 0) {
      const rk = `${rec.cluster}\0${rec.site}`;
      const r = this.retryCounts.get(rk);
      if (r) r.n += rec.retries;
      else this.retryCounts.set(rk, { cluster: rec.cluster, site: rec.site, n: rec.retries });
    }
  }
}
