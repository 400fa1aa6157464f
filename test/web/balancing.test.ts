/**
 * Issue 2 acceptance, balancing: with one backend 10× slower and one failing
 * 90% of requests fast, the expected-latency balancer sends each of them
 * less traffic than round robin does. Same pool, same bounded load, through
 * the real proxy; the shares are printed as diagnostics for docs/balancing.md.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { startUpstream, type Upstream } from '../helpers/upstream.js';
import { startPerimeter } from '../helpers/perimeter.js';
import { runLoad, summarize, type LoadReport } from '../helpers/load.js';
import { webConfig } from './fixtures.js';

const SITE = 'www.example.com';
const NORMAL_MS = 5;
const SLOW_MS = 10 * NORMAL_MS;
const REQUESTS = 1500;

interface Shares {
  readonly normal: number;
  readonly slow: number;
  readonly failing: number;
  readonly report: LoadReport;
}

async function run(balancer: 'round-robin' | 'latency' | 'least-request'): Promise<Shares> {
  const normal = await startUpstream({ name: 'normal' });
  const slow = await startUpstream({ name: 'slow' });
  // Fails fast: 503 at once for 90% of requests, a normal answer otherwise.
  const failing = await startUpstream({
    name: 'failing',
    handler: (_req, res) => {
      if (Math.random() < 0.9) {
        res.writeHead(503, { 'content-type': 'text/plain', 'x-upstream': 'failing' });
        res.end('busy\n');
        return;
      }
      setTimeout(() => {
        res.writeHead(200, { 'content-type': 'text/plain', 'x-upstream': 'failing' });
        res.end('failing\n');
      }, NORMAL_MS);
    },
  });
  normal.setDelay(NORMAL_MS);
  slow.setDelay(SLOW_MS);
  const ups: Upstream[] = [normal, slow, failing];
  const c = webConfig({ services: { app: ups.map((u) => u.port) }, sites: { [SITE]: 'app' } });
  // Passive ejection off: this compares the balancers alone.
  const p = await startPerimeter({
    ...c,
    perimeter: `${c.perimeter}services:\n  app:\n    balancer: ${balancer}\n    passive: { consecutive-failures: 0 }\n`,
  });
  try {
    const report = await runLoad({ port: p.port(), host: SITE, concurrency: 8, maxRequests: REQUESTS, durationMs: 12_000 });
    const total = normal.requests + slow.requests + failing.requests;
    return { normal: normal.requests / total, slow: slow.requests / total, failing: failing.requests / total, report };
  } finally {
    await p.close();
    await Promise.all(ups.map((u) => u.close()));
  }
}

const pct = (x: number): string => `${(100 * x).toFixed(1)}%`;

test('the latency balancer sends the slow and the fast-failing backend less traffic than round robin', async (t) => {
  const rr = await run('round-robin');
  const el = await run('latency');
  for (const [name, s] of [
    ['round-robin', rr],
    ['latency', el],
  ] as const) {
    const ok = (s.report.statuses.get(200) ?? 0) / s.report.total;
    t.diagnostic(
      `${name}: normal ${pct(s.normal)}, slow ${pct(s.slow)}, fast-failing ${pct(s.failing)}; ` +
        `answered 200: ${pct(ok)}; ${summarize(s.report)}`,
    );
  }
  assert.equal(rr.report.total, REQUESTS);
  assert.equal(el.report.total, REQUESTS);
  assert.equal(rr.report.errors.size + el.report.errors.size, 0, 'no transport errors');
  // Round robin is blind: about a third each.
  for (const share of [rr.normal, rr.slow, rr.failing]) assert.ok(Math.abs(share - 1 / 3) < 0.02, `round robin share ${pct(share)}`);
  assert.ok(el.slow < rr.slow, `slow: latency ${pct(el.slow)} < round robin ${pct(rr.slow)}`);
  assert.ok(el.failing < rr.failing, `fast-failing: latency ${pct(el.failing)} < round robin ${pct(rr.failing)}`);
  // Not by a hair: most traffic goes to the normal backend.
  assert.ok(el.normal > 0.6, `normal gets most traffic under latency: ${pct(el.normal)}`);
  // What the client sees follows: far fewer 503s than round robin.
  const failedShare = (s: Shares): number => (s.report.statuses.get(503) ?? 0) / s.report.total;
  assert.ok(failedShare(el) < failedShare(rr) / 2, `503s: latency ${pct(failedShare(el))}, round robin ${pct(failedShare(rr))}`);
});
