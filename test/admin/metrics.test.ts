import { test } from 'node:test';
import assert from 'node:assert/strict';
import { startUpstream } from '../helpers/upstream.js';
import { webConfig } from '../web/fixtures.js';
import { readFileSync } from 'node:fs';
import { Registry } from 'prom-client';
import { clusterMetricsText, LATENCY_BUCKETS_SECONDS, Metrics } from '../../src/core/metrics.js';
import { duplicateFamilies, request, sample, startAdminPerimeter, withAdmin } from './harness.js';

const WWW = 'cluster="web",site="www.example.com"';

test('metrics: latency histograms, bytes and status classes after requests; errors_total counts a 421', async (t) => {
  const a = await startUpstream({ name: 'a' });
  a.setBody('x'.repeat(1000));
  const p = await startAdminPerimeter(await withAdmin(webConfig({ services: { app: [a.port] }, sites: { 'www.example.com': 'app' } })));
  t.after(async () => {
    await p.close();
    await a.close();
  });
  for (let i = 0; i < 4; i++) assert.equal((await request(`${p.web}/`, { headers: { host: 'www.example.com' } })).status, 200);
  a.setDelay(300);
  assert.equal((await request(`${p.web}/slow`, { headers: { host: 'www.example.com' } })).status, 200);
  a.setDelay(0);
  assert.equal((await request(`${p.web}/`, { headers: { host: 'nowhere.example.com' } })).status, 421);

  const m = (await request(`${p.admin}/metrics`)).text;
  assert.deepEqual(duplicateFamilies(m), []);
  assert.match(m, /# TYPE perimeter_request_duration_seconds histogram/);
  assert.match(m, /# TYPE perimeter_upstream_duration_seconds histogram/);

  assert.equal(sample(m, 'perimeter_requests_total', `${WWW},code="2xx"`), 5);
  assert.equal(sample(m, 'perimeter_requests_total', 'cluster="web",site="",code="4xx"'), 1);

  // Five requests to the site, one of them slower than 250 ms; buckets are cumulative.
  for (const h of ['perimeter_request_duration_seconds', 'perimeter_upstream_duration_seconds']) {
    assert.equal(sample(m, `${h}_count`, WWW), 5, h);
    assert.equal(sample(m, `${h}_bucket`, `${WWW},le="+Inf"`), 5, h);
    assert.ok(sample(m, `${h}_sum`, WWW)! >= 0.3, `${h}_sum`);
    assert.ok(sample(m, `${h}_bucket`, `${WWW},le="0.25"`)! <= 4, `${h} le=0.25`);
    assert.equal(sample(m, `${h}_bucket`, `${WWW},le="0.5"`), 5, `${h} le=0.5`);
    let prev = 0;
    for (const le of LATENCY_BUCKETS_SECONDS) {
      const v = sample(m, `${h}_bucket`, `${WWW},le="${le}"`)!;
      assert.ok(v >= prev, `${h} buckets are cumulative at le=${le}`);
      prev = v;
    }
  }
  // The 421 was answered by perimeter: a total duration, no upstream one.
  assert.equal(sample(m, 'perimeter_request_duration_seconds_count', 'cluster="web",site=""'), 1);
  assert.equal(sample(m, 'perimeter_upstream_duration_seconds_count', 'cluster="web",site=""'), undefined);

  assert.equal(sample(m, 'perimeter_errors_total', 'cluster="web",code="PRM_UNKNOWN_SITE"'), 1);
  assert.ok(sample(m, 'perimeter_response_bytes_total', WWW)! >= 5000);
  assert.ok(sample(m, 'perimeter_request_bytes_total', WWW)! > 5 * 'GET / HTTP/1.1\r\n'.length);
  assert.equal(sample(m, 'perimeter_config_last_reload_success'), 1);
  assert.equal(sample(m, 'perimeter_backend_inflight', `service="app",backend="127.0.0.1:${a.port}"`), 0);
});

test('metrics: 5xx from perimeter count by error code; retries count per site', async (t) => {
  const good = await startUpstream({ name: 'good' });
  const dead = await startUpstream({ name: 'dead' });
  await dead.stop();
  const p = await startAdminPerimeter(
    await withAdmin(webConfig({ services: { app: [dead.port, good.port], gone: [dead.port] }, sites: { 'www.example.com': 'app', 'gone.example.com': 'gone' }, defaults: '  balancer: round-robin' })),
  );
  t.after(async () => {
    await p.close();
    await good.close();
    await dead.close();
  });
  for (let i = 0; i < 4; i++) assert.equal((await request(`${p.web}/`, { headers: { host: 'www.example.com' } })).status, 200);
  assert.equal((await request(`${p.web}/`, { headers: { host: 'gone.example.com' } })).status, 502);
  const m = (await request(`${p.admin}/metrics`)).text;
  assert.ok(sample(m, 'perimeter_retries_total', WWW)! >= 1, 'refused connects were retried on the good backend');
  assert.equal(sample(m, 'perimeter_errors_total', 'cluster="web",code="PRM_UPSTREAM_CONNECT"'), 1);
  assert.equal(sample(m, 'perimeter_requests_total', 'cluster="web",site="gone.example.com",code="5xx"'), 1);
  assert.equal(sample(m, 'perimeter_upstream_duration_seconds_count', 'cluster="web",site="gone.example.com"'), 1);
});

test('docs/operations.md documents every metric', async () => {
  const doc = readFileSync('docs/operations.md', 'utf8');
  const names = (await new Metrics({ generation: () => 1, pools: () => [] }).registry.getMetricsAsJSON()).map((m) => m.name);
  names.push((await clusterMetricsText(new Registry())).body.match(/^# TYPE (perimeter_metrics_\w+)/m)![1]!);
  assert.ok(names.length >= 20, names.join(', '));
  for (const name of names) assert.ok(doc.includes(`| \`${name}\` |`), `docs/operations.md has no row for ${name}`);
});
