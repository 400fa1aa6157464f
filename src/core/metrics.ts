/**
 * Prometheus metrics (prom-client).
 *
 * Request path cost: the record hook (`onRecord`) runs once per request and
 * does two Map lookups (cluster, then site), a few additions and one bucket
 * search per histogram; no labels objects, no string building. The counts
 * become Prometheus series only when scraped. Pool and backend state is read
 * when scraped too.
 *
 * Multi-process: each worker has its own registry; `clusterMetricsText` in
 * the control process merges them with its own through prom-client's
 * aggregation, using the `aggregator` each metric declares (counters and
 * histograms add up; gauges take the max, min or average that keeps their
 * meaning, see docs/operations.md).
 */
import cluster, { type Worker } from 'node:cluster';
import { AggregatorRegistry, Counter, Gauge, Registry, type Metric } from 'prom-client';
import type { PoolDescription } from '../upstream/pool.js';
import type { RequestRecord } from '../web/proxy.js';

export interface MetricsSource {
  generation(): number;
  /**
   * Pool state for the pool and backend gauges. A control process with
   * workers should return [] here: the workers' pools carry the balancer
   * scores, in-flight counts and ejections, and the control's idle pools
   * would skew their aggregation.
   */
  pools(): PoolDescription[];
  /** Certificates served (files and ACME), for the days-to-expiry gauge; the control process reports them. */
  certificates?(): { cluster: string; name: string; source: string; daysLeft: number }[];
  /** Open client connections per web listener (the data-plane processes report them). */
  clientConnections?(): { cluster: string; protocol: string; count: number }[];
}

export type ReloadResult = 'applied' | 'refused';

/** Upper bounds in seconds: an edge sees cache hits at 1 ms and slow uploads at 30 s. */
export const LATENCY_BUCKETS_SECONDS: readonly number[] = Object.freeze([0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30]);

/** Status class labels by index (floor(status / 100); 0 for anything outside 100..599). */
const STATUS_CLASS = ['other', '1xx', '2xx', '3xx', '4xx', '5xx'] as const;

/** Non-cumulative bucket counts; the last slot holds observations above the last bound. */
class Buckets {
  readonly counts: number[] = new Array<number>(LATENCY_BUCKETS_SECONDS.length + 1).fill(0);
  sum = 0;
  count = 0;

  observe(seconds: number): void {
    const bounds = LATENCY_BUCKETS_SECONDS;
    let i = 0;
    while (i < bounds.length && seconds > bounds[i]!) i++;
    this.counts[i]!++;
    this.sum += seconds;
    this.count++;
  }
}

/** Everything counted per cluster and site. */
interface SiteStats {
  readonly cluster: string;
  readonly site: string;
  readonly status: number[];
  retries: number;
  bytesIn: number;
  bytesOut: number;
  readonly total: Buckets;
  readonly upstream: Buckets;
}

interface MetricValue {
  value: number;
  labels: Record<string, string | number>;
  metricName?: string;
}

/**
 * A histogram whose observations are kept by Metrics (not by prom-client,
 * whose observe() hashes a labels object per call). Shaped like the
 * metric objects prom-client's own aggregation registers.
 */
function histogramCollector(registry: Registry, name: string, help: string, read: () => Iterable<{ labels: Record<string, string>; buckets: Buckets }>): void {
  const collect = (): MetricValue[] => {
    const values: MetricValue[] = [];
    for (const { labels, buckets } of read()) {
      if (buckets.count === 0) continue;
      let acc = 0;
      LATENCY_BUCKETS_SECONDS.forEach((le, i) => {
        acc += buckets.counts[i]!;
        values.push({ value: acc, labels: { ...labels, le }, metricName: `${name}_bucket` });
      });
      values.push({ value: buckets.count, labels: { ...labels, le: '+Inf' }, metricName: `${name}_bucket` });
      values.push({ value: buckets.sum, labels, metricName: `${name}_sum` });
      values.push({ value: buckets.count, labels, metricName: `${name}_count` });
    }
    return values;
  };
  const metric = {
    name,
    help,
    type: 'histogram',
    aggregator: 'sum',
    get: () => Promise.resolve({ name, help, type: 'histogram', aggregator: 'sum', values: collect() }),
    // The counts belong to Metrics and only grow (Prometheus counters); registry.resetMetrics() leaves them.
    reset: () => {},
  };
  registry.registerMetric(metric as unknown as Metric);
}

export class Metrics {
  readonly registry = new Registry();
  /** cluster → site → stats. */
  private readonly sites = new Map<string, Map<string, SiteStats>>();
  /** cluster → error code → count. */
  private readonly errors = new Map<string, Map<string, number>>();
  readonly ejections: Counter<'service'>;
  readonly panicTransitions: Counter<'service' | 'to'>;
  readonly healthTransitions: Counter<'service' | 'to'>;
  /** Count a configuration apply; also sets the last-reload gauges. */
  readonly reloads: { inc(labels: { result: ReloadResult }): void };

  constructor(source: MetricsSource) {
    const r = this.registry;
    new Gauge({
      name: 'perimeter_config_generation',
      help: 'Generation of the configuration being served.',
      registers: [r],
      // Processes briefly differ during a reload: show the newest.
      aggregator: 'max',
      collect() {
        this.set(source.generation());
      },
    });
    new Gauge({
      name: 'perimeter_certificate_expiry_days',
      help: 'Days until a served certificate expires (alert well before 0; ACME renews at a third of the lifetime).',
      labelNames: ['cluster', 'name', 'source'],
      registers: [r],
      aggregator: 'min',
      collect() {
        this.reset();
        for (const c of source.certificates?.() ?? []) this.set({ cluster: c.cluster, name: c.name, source: c.source }, c.daysLeft);
      },
    });
    new Gauge({
      name: 'perimeter_client_connections',
      help: 'Open client connections of the web listeners (an HTTP/2 connection counts once, plus its streams in progress).',
      labelNames: ['cluster', 'protocol'],
      registers: [r],
      aggregator: 'sum',
      collect() {
        this.reset();
        for (const c of source.clientConnections?.() ?? []) this.inc({ cluster: c.cluster, protocol: c.protocol }, c.count);
      },
    });
    const pools = (): PoolDescription[] => source.pools();
    new Gauge({
      name: 'perimeter_pool_panic',
      help: '1 while the service pool is in panic mode (too few healthy backends).',
      labelNames: ['service', 'mode'],
      registers: [r],
      // Any process in panic is a pool in trouble.
      aggregator: 'max',
      collect() {
        this.reset();
        for (const p of pools()) this.set({ service: p.service, mode: p.panicMode }, p.panic ? 1 : 0);
      },
    });
    new Gauge({
      name: 'perimeter_pool_backends',
      help: 'Backends of a service pool, by state (total, available).',
      labelNames: ['service', 'state'],
      registers: [r],
      // Every process has the same members; availability differs by its own ejections: show the worst.
      aggregator: 'min',
      collect() {
        this.reset();
        for (const p of pools()) {
          this.set({ service: p.service, state: 'total' }, p.total);
          this.set({ service: p.service, state: 'available' }, p.available);
        }
      },
    });
    type BackendRow = PoolDescription['backends'][number];
    const perBackend = (name: string, help: string, aggregator: 'min' | 'max' | 'sum' | 'average', value: (b: BackendRow) => number): void => {
      new Gauge({
        name,
        help,
        labelNames: ['service', 'backend'],
        registers: [r],
        aggregator,
        collect() {
          this.reset();
          for (const p of pools()) for (const b of p.backends) this.set({ service: p.service, backend: b.key }, value(b));
        },
      });
    };
    perBackend('perimeter_backend_available', '1 when the backend takes traffic outside panic (healthy and not ejected).', 'min', (b) => (b.available ? 1 : 0));
    perBackend('perimeter_backend_healthy', '1 unless active health checks mark the backend unhealthy.', 'min', (b) => (b.active === 'unhealthy' ? 0 : 1));
    perBackend('perimeter_backend_ejected', '1 while passive health has ejected the backend (in any process).', 'max', (b) => (b.ejected ? 1 : 0));
    perBackend('perimeter_backend_score', "The balancer's score of the backend (lower is preferred; -1 when not finite).", 'average', (b) => (Number.isFinite(b.score) ? b.score : -1));
    perBackend('perimeter_backend_inflight', 'Requests in flight to the backend.', 'sum', (b) => b.inflight);

    this.ejections = new Counter({ name: 'perimeter_backend_ejections_total', help: 'Passive ejections.', labelNames: ['service'], registers: [r], aggregator: 'sum' });
    this.panicTransitions = new Counter({ name: 'perimeter_pool_panic_transitions_total', help: 'Panic mode entered or left (per process).', labelNames: ['service', 'to'], registers: [r], aggregator: 'sum' });
    this.healthTransitions = new Counter({ name: 'perimeter_backend_health_transitions_total', help: 'Active health state changes.', labelNames: ['service', 'to'], registers: [r], aggregator: 'sum' });

    // The control process counts every attempt; each worker counts what it was handed. Max is the control's count, not N+1 times it.
    const reloads = new Counter({ name: 'perimeter_config_reloads_total', help: 'Configuration applies, by result.', labelNames: ['result'], registers: [r], aggregator: 'max' });
    const lastOk = new Gauge({ name: 'perimeter_config_last_reload_success', help: '1 when the last configuration apply succeeded, 0 when it was refused.', registers: [r], aggregator: 'min' });
    const lastAt = new Gauge({ name: 'perimeter_config_last_reload_timestamp_seconds', help: 'Unix time of the last configuration apply or refusal.', registers: [r], aggregator: 'max' });
    this.reloads = {
      inc({ result }) {
        reloads.inc({ result });
        lastOk.set(result === 'applied' ? 1 : 0);
        lastAt.set(Date.now() / 1000);
      },
    };

    const sites = this.sites;
    const eachSite = function* (): Generator<SiteStats> {
      for (const bySite of sites.values()) yield* bySite.values();
    };
    new Counter({
      name: 'perimeter_requests_total',
      help: 'Requests answered, by cluster, site and status class (site empty when none matched).',
      labelNames: ['cluster', 'site', 'code'],
      registers: [r],
      aggregator: 'sum',
      collect() {
        this.reset();
        for (const s of eachSite()) {
          s.status.forEach((n, i) => {
            if (n > 0) this.inc({ cluster: s.cluster, site: s.site, code: STATUS_CLASS[i]! }, n);
          });
        }
      },
    });
    const perSite = (name: string, help: string, value: (s: SiteStats) => number): void => {
      new Counter({
        name,
        help,
        labelNames: ['cluster', 'site'],
        registers: [r],
        aggregator: 'sum',
        collect() {
          this.reset();
          for (const s of eachSite()) {
            const v = value(s);
            if (v > 0) this.inc({ cluster: s.cluster, site: s.site }, v);
          }
        },
      });
    };
    perSite('perimeter_retries_total', 'Retries on another backend.', (s) => s.retries);
    perSite('perimeter_request_bytes_total', 'Bytes received from clients (request heads and bodies).', (s) => s.bytesIn);
    perSite('perimeter_response_bytes_total', 'Bytes sent to clients (response heads and bodies, including the ones perimeter gives itself).', (s) => s.bytesOut);

    const errors = this.errors;
    new Counter({
      name: 'perimeter_errors_total',
      help: 'Answers perimeter gave on its own behalf, by cluster and error code (docs/errors.md).',
      labelNames: ['cluster', 'code'],
      registers: [r],
      aggregator: 'sum',
      collect() {
        this.reset();
        for (const [c, byCode] of errors) for (const [code, n] of byCode) this.inc({ cluster: c, code }, n);
      },
    });

    histogramCollector(r, 'perimeter_request_duration_seconds', 'Time from the first byte of the request to the end of the response, by cluster and site.', function* () {
      for (const s of eachSite()) yield { labels: { cluster: s.cluster, site: s.site }, buckets: s.total };
    });
    histogramCollector(r, 'perimeter_upstream_duration_seconds', 'Time spent on backend attempts (connect to end of response, all attempts), for requests that reached a backend.', function* () {
      for (const s of eachSite()) yield { labels: { cluster: s.cluster, site: s.site }, buckets: s.upstream };
    });
  }

  /** Count one request (called from the request record hook, once per request). */
  onRecord(rec: RequestRecord): void {
    let bySite = this.sites.get(rec.cluster);
    if (!bySite) this.sites.set(rec.cluster, (bySite = new Map()));
    let s = bySite.get(rec.site);
    if (!s) {
      s = { cluster: rec.cluster, site: rec.site, status: [0, 0, 0, 0, 0, 0], retries: 0, bytesIn: 0, bytesOut: 0, total: new Buckets(), upstream: new Buckets() };
      bySite.set(rec.site, s);
    }
    const st = rec.status;
    s.status[st >= 100 && st < 600 ? Math.floor(st / 100) : 0]!++;
    s.retries += rec.retries;
    s.bytesIn += rec.bytesIn;
    s.bytesOut += rec.bytesOut;
    s.total.observe(rec.durationMs / 1000);
    if (rec.attempts > 0) s.upstream.observe(rec.upstreamMs / 1000);
    if (rec.errorCode !== '') {
      let byCode = this.errors.get(rec.cluster);
      if (!byCode) this.errors.set(rec.cluster, (byCode = new Map()));
      byCode.set(rec.errorCode, (byCode.get(rec.errorCode) ?? 0) + 1);
    }
  }
}

// ---------------------------------------------------------------------------
// Multi-process: workers answer scrapes over the node:cluster IPC channel.
//
// prom-client's AggregatorRegistry.clusterMetrics() resolves to the workers'
// merged *text*, which cannot be merged again with the control's own
// families (generation, reloads, ...) without duplicate HELP/TYPE lines. So
// the control asks for each worker's JSON with its own message and hands
// control + workers to AggregatorRegistry.aggregate in one go. The messages
// carry `kind`, not `t`, so the runtime's IPC dispatch ignores them.

const METRICS_REQUEST = 'perimeter:metrics-request';
const METRICS_RESPONSE = 'perimeter:metrics-response';

interface MetricsRequest {
  readonly kind: typeof METRICS_REQUEST;
  readonly id: number;
}

interface MetricsResponse {
  readonly kind: typeof METRICS_RESPONSE;
  readonly id: number;
  readonly metrics?: unknown[];
  readonly error?: string;
}

function isMessage<K extends string>(m: unknown, kind: K): m is { kind: K; id: number } {
  return m !== null && typeof m === 'object' && (m as { kind?: unknown }).kind === kind && typeof (m as { id?: unknown }).id === 'number';
}

/**
 * In a worker process: answer the control process's metric scrapes with
 * this registry. Returns a function that stops answering.
 */
export function serveWorkerMetrics(registry: Registry): () => void {
  const onMessage = (m: unknown): void => {
    if (!isMessage(m, METRICS_REQUEST)) return;
    const reply = (msg: MetricsResponse): void => {
      // With a callback, a closed channel is reported there instead of as an 'error' event.
      if (process.connected) process.send?.(msg, undefined, {}, () => {});
    };
    registry.getMetricsAsJSON().then(
      (metrics) => reply({ kind: METRICS_RESPONSE, id: m.id, metrics }),
      (err: unknown) => reply({ kind: METRICS_RESPONSE, id: m.id, error: String(err) }),
    );
  };
  process.on('message', onMessage);
  return () => {
    process.off('message', onMessage);
  };
}

let scrapeId = 0;

/** One worker's metrics as JSON, or undefined if it failed, exited or did not answer in time. */
function askWorker(worker: Worker, id: number, timeoutMs: number): Promise<unknown[] | undefined> {
  return new Promise((resolve) => {
    const done = (v: unknown[] | undefined): void => {
      clearTimeout(timer);
      worker.off('message', onMessage);
      worker.off('exit', onExit);
      resolve(v);
    };
    const onMessage = (m: unknown): void => {
      if (isMessage(m, METRICS_RESPONSE) && m.id === id) done(Array.isArray((m as MetricsResponse).metrics) ? (m as MetricsResponse).metrics : undefined);
    };
    const onExit = (): void => done(undefined);
    const timer = setTimeout(() => done(undefined), timeoutMs);
    worker.on('message', onMessage);
    worker.once('exit', onExit);
    const req: MetricsRequest = { kind: METRICS_REQUEST, id };
    worker.send(req, undefined, (err: Error | null) => {
      if (err) done(undefined);
    });
  });
}

export interface ClusterMetricsText {
  readonly contentType: string;
  readonly body: string;
  /** Workers asked, and how many answered in time. */
  readonly workers: number;
  readonly answered: number;
}

/**
 * In the control (primary) process: the Prometheus text of the control's
 * own registry merged with every live worker's, each metric aggregated by
 * its declared aggregator. A worker that does not answer within `timeoutMs`
 * is left out (and counted in perimeter_metrics_scrape_workers{result="missing"}).
 */
export async function clusterMetricsText(control: Registry, opts: { timeoutMs?: number } = {}): Promise<ClusterMetricsText> {
  const timeoutMs = opts.timeoutMs ?? 2000;
  const workers = Object.values(cluster.workers ?? {}).filter((w): w is Worker => w !== undefined && w.isConnected() && !w.isDead());
  const id = ++scrapeId;
  const [own, ...answers] = await Promise.all([control.getMetricsAsJSON(), ...workers.map((w) => askWorker(w, id, timeoutMs))]);
  const got = answers.filter((a): a is unknown[] => a !== undefined);

  const scrape = new Registry();
  const g = new Gauge({ name: 'perimeter_metrics_scrape_workers', help: 'Workers asked for metrics in this scrape, by result (answered, missing).', labelNames: ['result'], registers: [scrape], aggregator: 'sum' });
  g.set({ result: 'answered' }, got.length);
  g.set({ result: 'missing' }, workers.length - got.length);

  const merged = AggregatorRegistry.aggregate([own, ...got, await scrape.getMetricsAsJSON()]);
  return { contentType: control.contentType, body: await merged.metrics(), workers: workers.length, answered: got.length };
}
