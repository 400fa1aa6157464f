import { test } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import { startUpstream, waitFor } from '../helpers/upstream.js';
import { startPerimeter } from '../helpers/perimeter.js';
import { webConfig } from '../web/fixtures.js';

// node:http, not fetch: fetch may not set Host.
function fetchText(url: string, headers: Record<string, string> = {}): Promise<{ status: number; text: string }> {
  return new Promise((resolve, reject) => {
    http
      .get(url, { headers }, (res) => {
        let text = '';
        res.setEncoding('utf8');
        res.on('data', (c: string) => (text += c));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, text }));
      })
      .on('error', reject);
  });
}

test('admin listener: metrics count requests and show panic; /api/pools shows score and reason', async (t) => {
  const a = await startUpstream({ name: 'a' });
  const b = await startUpstream({ name: 'b' });
  const cfg = webConfig({
    services: { app: [a.port, b.port] },
    sites: { 'www.example.com': 'app' },
    defaults: '  balancer: latency',
  });
  cfg.perimeter = cfg.perimeter
    .replace('  health: { type: none }', '  health: { type: http, path: /healthz, interval: 200ms, timeout: 100ms, rise: 1, fall: 1 }')
    .replace('defaults:', 'admin:\n  listen: "127.0.0.1:0"\ndefaults:');
  const p = await startPerimeter(cfg);
  t.after(async () => {
    await p.close();
    await a.close();
    await b.close();
  });
  const admin = `http://127.0.0.1:${p.runtime.admin!.port()}`;
  for (let i = 0; i < 5; i++) assert.equal((await fetchText(`${p.url()}/`, { host: 'www.example.com' })).status, 200);
  await fetchText(`${p.url()}/`, { host: 'unknown.example.com' });

  const m1 = await fetchText(`${admin}/metrics`);
  assert.equal(m1.status, 200);
  assert.match(m1.text, /perimeter_requests_total\{cluster="web",site="www.example.com",code="2xx"\} 5/);
  assert.match(m1.text, /perimeter_requests_total\{cluster="web",site="",code="4xx"\} 1/);
  assert.match(m1.text, /perimeter_pool_panic\{service="app",mode="serve-all"\} 0/);
  assert.match(m1.text, /perimeter_config_generation 1/);

  const pools = JSON.parse((await fetchText(`${admin}/api/pools`)).text) as { pools: { service: string; backends: { key: string; score: number; scoreReason: string }[] }[] };
  const app = pools.pools.find((x) => x.service === 'app')!;
  assert.equal(app.backends.length, 2);
  for (const be of app.backends) assert.match(be.scoreReason, /expected [0-9.]+ ms/);

  // Every backend fails its health check: panic, said in metrics and served anyway.
  a.setHealth(503);
  b.setHealth(503);
  await waitFor(() => p.runtime.pool('app')!.inPanic, 5000);
  const m2 = await fetchText(`${admin}/metrics`);
  assert.match(m2.text, /perimeter_pool_panic\{service="app",mode="serve-all"\} 1/);
  assert.match(m2.text, /perimeter_pool_panic_transitions_total\{service="app",to="panic"\} 1/);
  assert.match(m2.text, /perimeter_backend_healthy\{service="app",backend="127.0.0.1:\d+"\} 0/);
  assert.equal((await fetchText(`${p.url()}/`, { host: 'www.example.com' })).status, 200);
  assert.equal(p.records.at(-1)!.panic, true);
});
