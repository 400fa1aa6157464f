import { test } from 'node:test';
import assert from 'node:assert/strict';
import cluster, { type Worker } from 'node:cluster';
import { fileURLToPath } from 'node:url';
import { Metrics, clusterMetricsText } from '../../src/core/metrics.js';
import { duplicateFamilies, sample } from './harness.js';

const fixture = fileURLToPath(new URL('./fixtures/cluster-metrics.js', import.meta.url));
const WWW = 'cluster="web",site="www.example.com"';

function fork(env: Record<string, string>): Promise<Worker> {
  const w = cluster.fork(env);
  // Silent workers: drain their output so a full pipe never blocks them.
  w.process.stdout?.resume();
  w.process.stderr?.resume();
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('worker not ready within 10 s')), 10_000);
    w.on('message', (m: unknown) => {
      if ((m as { kind?: unknown } | null)?.kind === 'test:ready') {
        clearTimeout(timer);
        resolve(w);
      }
    });
    w.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`worker exited with ${code} before it was ready`));
    });
  });
}

function stop(w: Worker): Promise<void> {
  if (w.isDead()) return Promise.resolve();
  return new Promise((resolve) => {
    const timer = setTimeout(() => w.process.kill('SIGKILL'), 3000);
    w.once('exit', () => {
      clearTimeout(timer);
      resolve();
    });
    if (w.isConnected()) w.send('stop');
    else w.process.kill('SIGKILL');
  });
}

test('clusterMetricsText: the control merges its own metrics with every worker\'s, each by its aggregator', async (t) => {
  cluster.setupPrimary({ exec: fixture, silent: true });
  const workers: Worker[] = [];
  t.after(async () => {
    await Promise.all(workers.map(stop));
  });
  workers.push(...(await Promise.all([fork({ REQUESTS: '3' }), fork({ REQUESTS: '5' })])));

  // The control process: no request path, its own generation and reload results.
  const control = new Metrics({ generation: () => 4, pools: () => [] });
  control.reloads.inc({ result: 'applied' });
  const m = await clusterMetricsText(control.registry, { timeoutMs: 5000 });
  assert.equal(m.workers, 2);
  assert.equal(m.answered, 2);
  assert.match(m.contentType, /^text\/plain; version=0\.0\.4/);
  assert.deepEqual(duplicateFamilies(m.body), []);

  // Counters and histograms add up across workers.
  assert.equal(sample(m.body, 'perimeter_requests_total', `${WWW},code="2xx"`), 8);
  assert.equal(sample(m.body, 'perimeter_requests_total', 'cluster="web",site="",code="4xx"'), 2);
  assert.equal(sample(m.body, 'perimeter_errors_total', 'cluster="web",code="PRM_UNKNOWN_SITE"'), 2);
  assert.equal(sample(m.body, 'perimeter_request_duration_seconds_count', WWW), 8);
  assert.equal(sample(m.body, 'perimeter_request_duration_seconds_bucket', `${WWW},le="+Inf"`), 8);
  assert.equal(sample(m.body, 'perimeter_upstream_duration_seconds_count', WWW), 8);
  // Gauges keep their meaning: newest generation, the control's reload count (not N+1 times it).
  assert.equal(sample(m.body, 'perimeter_config_generation'), 4);
  assert.equal(sample(m.body, 'perimeter_config_reloads_total', 'result="applied"'), 1);
  assert.equal(sample(m.body, 'perimeter_config_last_reload_success'), 1);
  assert.equal(sample(m.body, 'perimeter_pool_panic', 'service="app",mode="serve-all"'), 0);
  // Workers listening on port 0 share one port (node:cluster), so both pools hold the same backend: one series each.
  assert.equal([...m.body.matchAll(/^perimeter_backend_inflight\{service="app",backend="127\.0\.0\.1:\d+"\} 0$/gm)].length, 1);
  assert.equal(sample(m.body, 'perimeter_pool_backends', 'service="app",state="total"'), 1);
  assert.equal(sample(m.body, 'perimeter_metrics_scrape_workers', 'result="answered"'), 2);
  assert.equal(sample(m.body, 'perimeter_metrics_scrape_workers', 'result="missing"'), 0);

  // A worker that does not answer is left out after the timeout, and said to be missing.
  workers.push(await fork({ REQUESTS: '2', SERVE_METRICS: '0' }));
  const started = Date.now();
  const partial = await clusterMetricsText(control.registry, { timeoutMs: 300 });
  assert.ok(Date.now() - started < 3000, 'bounded by the timeout');
  assert.deepEqual([partial.workers, partial.answered], [3, 2]);
  // Its own 2 requests went to the shared port: any worker may have served them, the silent one included.
  const served = sample(partial.body, 'perimeter_requests_total', `${WWW},code="2xx"`)!;
  assert.ok(served >= 8 && served <= 10, `served ${served}`);
  assert.equal(sample(partial.body, 'perimeter_metrics_scrape_workers', 'result="missing"'), 1);

  // No workers at all: the control's own metrics.
  await Promise.all(workers.map(stop));
  const alone = await clusterMetricsText(control.registry);
  assert.deepEqual([alone.workers, alone.answered], [0, 0]);
  assert.equal(sample(alone.body, 'perimeter_config_generation'), 4);
  assert.equal(sample(alone.body, 'perimeter_requests_total', `${WWW},code="2xx"`), undefined);
});
