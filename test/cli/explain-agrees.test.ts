/**
 * Acceptance: `perimeter explain` agrees with what the proxy actually does.
 * One perimeter with two clusters (web trusts 127.0.0.1 as a proxy, api
 * trusts nobody), real backends that record what they receive, and a table
 * of requests: each is explained (in-process, and some through the compiled
 * CLI) and then really sent, and the two answers are compared.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import { loadConfig } from '../../src/config/load.js';
import type { PoolDescription } from '../../src/upstream/pool.js';
import { explainRequest, type Explanation } from '../../src/web/explain.js';
import { backendList, rawRequest, startPerimeter } from '../helpers/perimeter.js';
import { startUpstream, waitFor, type Upstream } from '../helpers/upstream.js';
import { perimeter } from './helpers.js';

interface Row {
  readonly name: string;
  readonly cluster: 'web' | 'api';
  readonly host: string;
  readonly method: string;
  readonly path: string;
  /** What the row is about; asserted on the explanation before comparing with the proxy. */
  readonly expect: { outcome: 'route' | 'reject'; status?: number; site?: string; matchedBy?: string; xff?: 'replaced' | 'appended'; idempotent?: boolean };
  /** Also run through the compiled CLI (--json) and compare with the in-process answer. */
  readonly cli?: boolean;
}

const rows: Row[] = [
  { name: 'exact site', cluster: 'web', host: 'www.example.com', method: 'GET', path: '/', expect: { outcome: 'route', site: 'www.example.com', matchedBy: 'exact', xff: 'appended', idempotent: true }, cli: true },
  { name: 'upper-case host with port, query string', cluster: 'web', host: 'WWW.Example.COM:80', method: 'GET', path: '/search?q=a%20b&x=1', expect: { outcome: 'route', site: 'www.example.com' } },
  { name: 'host with trailing dot', cluster: 'web', host: 'www.example.com.', method: 'GET', path: '/', expect: { outcome: 'route', site: 'www.example.com' } },
  { name: 'POST is not idempotent', cluster: 'web', host: 'www.example.com', method: 'POST', path: '/form', expect: { outcome: 'route', idempotent: false } },
  { name: 'wildcard, DELETE with query', cluster: 'web', host: 'x.apps.example.com', method: 'DELETE', path: '/items/1?force=true', expect: { outcome: 'route', site: '*.apps.example.com', matchedBy: 'wildcard "*.apps.example.com"', idempotent: true }, cli: true },
  { name: 'wildcard over two labels, HEAD', cluster: 'web', host: 'a.b.apps.example.com', method: 'HEAD', path: '/', expect: { outcome: 'route', site: '*.apps.example.com' } },
  { name: 'wildcard does not match its bare domain', cluster: 'web', host: 'apps.example.com', method: 'GET', path: '/', expect: { outcome: 'reject', status: 421 } },
  { name: 'exact api site on the web listener', cluster: 'web', host: 'api.example.com', method: 'PUT', path: '/v1/things/7?dry=1', expect: { outcome: 'route', site: 'api.example.com', idempotent: true } },
  { name: 'unknown host', cluster: 'web', host: 'nobody.example.org', method: 'GET', path: '/', expect: { outcome: 'reject', status: 421 }, cli: true },
  { name: 'host of the other cluster (api) on the web listener', cluster: 'web', host: 'partner.example.net', method: 'GET', path: '/', expect: { outcome: 'reject', status: 421 } },
  { name: 'host of the other cluster (web) on the api listener', cluster: 'api', host: 'www.example.com', method: 'GET', path: '/', expect: { outcome: 'reject', status: 421 } },
  { name: 'api cluster: untrusted client, X-Forwarded-For replaced', cluster: 'api', host: 'partner.example.net', method: 'GET', path: '/feed?since=1', expect: { outcome: 'route', site: 'partner.example.net', xff: 'replaced' }, cli: true },
  { name: 'api cluster: POST', cluster: 'api', host: 'partner.example.net', method: 'POST', path: '/upload', expect: { outcome: 'route', idempotent: false } },
  { name: 'api cluster wildcard, OPTIONS', cluster: 'api', host: 'eu.partners.example.net', method: 'OPTIONS', path: '/', expect: { outcome: 'route', site: '*.partners.example.net', xff: 'replaced' } },
  { name: 'invalid Host characters', cluster: 'web', host: 'user@www.example.com', method: 'GET', path: '/', expect: { outcome: 'reject', status: 400 }, cli: true },
  { name: 'target longer than the api cluster uri-length', cluster: 'api', host: 'partner.example.net', method: 'GET', path: '/' + 'a'.repeat(1100), expect: { outcome: 'reject', status: 414 } },
  { name: 'CONNECT on a web listener', cluster: 'web', host: 'www.example.com:443', method: 'CONNECT', path: 'www.example.com:443', expect: { outcome: 'reject', status: 501 } },
  { name: 'GET to a resetting backend is retried', cluster: 'web', host: 'flaky.example.com', method: 'GET', path: '/', expect: { outcome: 'route', idempotent: true } },
  { name: 'POST to a resetting backend is not retried', cluster: 'web', host: 'flaky.example.com', method: 'POST', path: '/charge', expect: { outcome: 'route', idempotent: false } },
  { name: 'pool in panic with mode fail (live state)', cluster: 'web', host: 'down.example.com', method: 'GET', path: '/', expect: { outcome: 'reject', status: 503 }, cli: true },
];

function header(text: string, name: string): string | undefined {
  const m = new RegExp(`^${name}: *(.*)$`, 'im').exec(text.split('\r\n\r\n')[0] ?? '');
  return m?.[1]?.trim();
}

function getJson(url: string): Promise<unknown> {
  return new Promise((resolve, reject) => {
    http
      .get(url, (res) => {
        let text = '';
        res.setEncoding('utf8');
        res.on('data', (c: string) => (text += c));
        res.on('end', () => resolve(JSON.parse(text)));
      })
      .on('error', reject);
  });
}

test('perimeter explain agrees with the proxy on a table of requests', async (t) => {
  const names = ['www1', 'www2', 'apps', 'api', 'partner', 'partners', 'flaky'] as const;
  const up = new Map<string, Upstream>();
  for (const n of names) up.set(n, await startUpstream({ name: n }));
  const u = (n: (typeof names)[number]): Upstream => up.get(n)!;
  u('flaky').setFail('reset');
  // A backend that is not there: its pool goes into panic and fails fast.
  const gone = await startUpstream({ name: 'gone' });
  await gone.close();

  const p = await startPerimeter({
    perimeter: `clusters:
  web:
    default: true
    listen: { http: "127.0.0.1:0" }
    trusted-proxies: ["127.0.0.1/32"]
  api:
    listen: { http: "127.0.0.1:0" }
    log: { omit: [query, cookies, authorization] }
    limits: { uri-length: 1k }
admin:
  listen: "127.0.0.1:0"
defaults:
  balancer: round-robin
  health: { type: none }
discovery:
  static:
    frontend: ${backendList([u('www1').port, u('www2').port])}
    apps: ${backendList([u('apps').port])}
    public-api: ${backendList([u('api').port])}
    partner: ${backendList([u('partner').port])}
    partners: ${backendList([u('partners').port])}
    flaky: ${backendList([u('flaky').port])}
    down: ${backendList([gone.port])}
services:
  flaky:
    passive: { consecutive-failures: 0 }
    retries: { attempts: 2 }
  down:
    health: { type: tcp, interval: 100ms, timeout: 50ms, rise: 1, fall: 1 }
    panic: { mode: fail }
`,
    sites: {
      'web-team.yaml': `www.example.com:
  service: frontend
  owner: web-team
"*.apps.example.com":
  service: apps
api.example.com:
  service: public-api
flaky.example.com:
  service: flaky
down.example.com:
  service: down
`,
      'partner-team.yaml': `partner.example.net:
  service: partner
  cluster: api
"*.partners.example.net":
  service: partners
  cluster: api
`,
    },
  });
  t.after(async () => {
    await p.close();
    for (const x of up.values()) await x.close();
  });

  const loaded = await loadConfig(p.dir);
  assert.ok(loaded.ok);
  const snapshot = loaded.snapshot;
  const admin = `http://127.0.0.1:${p.runtime.admin!.port()}`;
  // The dead backend's first check marks it unhealthy: its pool enters panic.
  let live: PoolDescription[] = [];
  const poll = async (): Promise<PoolDescription[]> => ((await getJson(`${admin}/api/pools`)) as { pools: PoolDescription[] }).pools;
  const deadline = Date.now() + 5000;
  while (Date.now() < deadline) {
    live = await poll();
    if (live.find((x) => x.service === 'down')?.panic) break;
    await new Promise((r) => setTimeout(r, 50));
  }
  assert.equal(live.find((x) => x.service === 'down')?.panic, true, 'the pool of a dead backend is in panic');

  const byPort = new Map<string, Upstream>([...up.values()].map((x) => [`127.0.0.1:${x.port}`, x]));
  const total = (): number => [...up.values()].reduce((n, x) => n + x.requests, 0);

  for (const row of rows) {
    await t.test(row.name, async () => {
      const ex = explainRequest(snapshot, { host: row.host, path: row.path, method: row.method, from: '127.0.0.1', cluster: row.cluster }, live);
      // What the row is about, as explain says it.
      assert.equal(ex.outcome, row.expect.outcome, ex.reasons.join('\n'));
      if (row.expect.status !== undefined) assert.equal(ex.status, row.expect.status);
      if (row.expect.site !== undefined) assert.equal(ex.site, row.expect.site);
      if (row.expect.matchedBy !== undefined) assert.equal(ex.matchedBy, row.expect.matchedBy);
      if (row.expect.xff !== undefined) assert.equal(ex.forwarding.xForwardedFor, row.expect.xff);
      if (row.expect.idempotent !== undefined) assert.equal(ex.retries?.idempotent, row.expect.idempotent);
      assert.ok(ex.reasons.length > 0);

      if (row.cli) {
        const args = ['explain', p.dir, '--host', row.host, '--path', row.path, '--method', row.method, '--from', '127.0.0.1', '--cluster', row.cluster, '--admin', admin, '--json'];
        const r = await perimeter(args);
        assert.equal(r.code, ex.outcome === 'route' ? 0 : 1, r.stderr);
        const fromCli = JSON.parse(r.stdout) as Explanation;
        // Same decision; the CLI adds one reason about where live state came from.
        assert.deepEqual({ ...fromCli, reasons: fromCli.reasons.slice(0, -1), backends: fromCli.backends.map((b) => b.key) }, { ...ex, reasons: [...ex.reasons], backends: ex.backends.map((b) => b.key) });
        assert.match(fromCli.reasons.at(-1)!, /live state from http:\/\/127\.0\.0\.1/);
      }

      // Now really send it, through a client that claims to be forwarding for 203.0.113.9.
      const before = { records: p.records.length, delivered: total(), flaky: u('flaky').requests };
      const req = `${row.method} ${row.path} HTTP/1.1\r\nHost: ${row.host}\r\nX-Forwarded-For: 203.0.113.9\r\nContent-Length: 0\r\nConnection: close\r\n\r\n`;
      const res = await rawRequest(p.port(row.cluster), req, { waitMs: 5000 });
      assert.ok(res.closed, 'perimeter closes after Connection: close');
      await waitFor(() => p.records.length > before.records, 2000);
      const rec = p.records[before.records]!;
      const status = res.statuses[0];

      if (ex.outcome === 'reject') {
        assert.equal(status, ex.status, res.text.slice(0, 200));
        assert.equal(header(res.text, 'x-perimeter-error'), ex.errorCode);
        assert.equal(total(), before.delivered, 'no backend received a rejected request');
        assert.equal(rec.errorCode, ex.errorCode);
        return;
      }
      // Routed: the site and service the proxy chose, and a backend explain listed.
      assert.equal(rec.site, ex.site);
      assert.equal(rec.service, ex.service);
      assert.equal(rec.cluster, ex.cluster);
      assert.ok(
        ex.backends.some((b) => b.key === rec.backend),
        `backend ${rec.backend} is among explain's ${ex.backends.map((b) => b.key).join(', ')}`,
      );
      assert.ok(ex.backends.every((b) => b.health === 'healthy'), 'live health of a pool without checks');
      const backend = byPort.get(rec.backend)!;
      assert.ok(backend.requests > 0);
      if (row.host.startsWith('flaky.')) {
        // The retry rule explain states, as the proxy applies it.
        const delivered = u('flaky').requests - before.flaky;
        assert.equal(delivered, ex.retries!.idempotent ? 1 + ex.retries!.attempts : 1);
        assert.equal(status, 502);
        return;
      }
      assert.equal(status, 200, res.text.slice(0, 200));
      const got = backend.received.at(-1)!;
      assert.equal(got.method, row.method);
      assert.equal(got.url, row.path);
      const xff = ex.forwarding.xForwardedFor === 'appended' ? '203.0.113.9, 127.0.0.1' : '127.0.0.1';
      assert.equal(got.headers['x-forwarded-for'], xff);
    });
  }

  // The text form shows the live panic state and the fail-fast answer.
  const text = await perimeter(['explain', p.dir, '--host', 'down.example.com', '--admin', admin]);
  assert.equal(text.code, 1);
  assert.match(text.stdout, /^outcome +perimeter answers 503 PRM_PANIC_FAIL_FAST$/m);
  assert.match(text.stdout, /^panic +IN PANIC now, threshold 50%, mode fail$/m);
  assert.match(text.stdout, new RegExp(`^backends +127\\.0\\.0\\.1:${gone.port} +weight 1 +unhealthy`, 'm'));
});
