/**
 * Issue 2 acceptance, discovery end to end: a site whose service comes from
 * DNS SRV (a real DNS server on loopback) or from a watched registry file
 * is served through perimeter, and changes to the backend set move traffic
 * without a reload while existing backends keep their health state.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import { writeFile, rename } from 'node:fs/promises';
import { join } from 'node:path';
import { startUpstream, waitFor } from '../helpers/upstream.js';
import { startPerimeter } from '../helpers/perimeter.js';
import { startDnsServer } from '../helpers/dns-server.js';

const SITE = 'www.example.com';
const DOMAIN = 'services.test';

function get(port: number, path: string): Promise<{ status: number; upstream: string }> {
  return new Promise((resolve, reject) => {
    const req = http.get({ host: '127.0.0.1', port, path, headers: { host: SITE }, agent: false }, (res) => {
      res.resume();
      res.on('end', () => resolve({ status: res.statusCode ?? 0, upstream: String(res.headers['x-upstream'] ?? '') }));
    });
    req.setTimeout(3000, () => req.destroy(new Error('request timeout')));
    req.on('error', reject);
  });
}

const site = `"${SITE}":\n  service: app\n`;
const cluster = `clusters:\n  web:\n    listen: { http: "127.0.0.1:0" }\n`;

test('DNS SRV: a site is served from SRV records, and a record change moves traffic without a reload', async (t) => {
  const a = await startUpstream({ name: 'a' });
  const b = await startUpstream({ name: 'b' });
  const dns = await startDnsServer();
  const srv = `_app._tcp.${DOMAIN}`;
  // TTL 0: re-resolved every min-ttl, so the test sees changes quickly.
  dns.setSrv(srv, [{ target: 'a.hosts.test', port: a.port }], 0);
  dns.setA('a.hosts.test', ['127.0.0.1']);
  const p = await startPerimeter({
    perimeter: `${cluster}defaults:
  balancer: round-robin
  health: { type: none }
discovery:
  dns-srv: { domain: ${DOMAIN}, servers: ["127.0.0.1:${dns.port}"], min-ttl: 100ms, max-ttl: 1s, timeout: 500ms }
`,
    sites: { 'team.yaml': site },
  });
  t.after(async () => {
    await p.close();
    await Promise.all([a.close(), b.close(), dns.close()]);
  });
  const pool = p.runtime.pool('app')!;
  // DNS answers arrive asynchronously after apply.
  await waitFor(() => pool.describe().total === 1, 3000);
  assert.equal(pool.describe().backends[0]!.key, `127.0.0.1:${a.port}`);
  for (let i = 0; i < 3; i++) assert.deepEqual(await get(p.port(), `/a${i}`), { status: 200, upstream: 'a' });
  assert.ok(dns.queriesFor(srv, 'SRV') >= 1);

  const generation = p.runtime.generation;
  const objA = pool.backends[0]!;
  // Add b (IP literal target), then take a away.
  dns.setSrv(srv, [
    { target: 'a.hosts.test', port: a.port },
    { target: '127.0.0.1', port: b.port },
  ], 0);
  await waitFor(() => pool.describe().total === 2, 3000);
  assert.equal(pool.backends.find((x) => x.port === a.port), objA, 'a kept its Backend object');
  const seen = new Set<string>();
  for (let i = 0; i < 6; i++) seen.add((await get(p.port(), `/ab${i}`)).upstream);
  assert.deepEqual([...seen].sort(), ['a', 'b']);

  dns.setSrv(srv, [{ target: '127.0.0.1', port: b.port }], 0);
  await waitFor(() => pool.describe().total === 1, 3000);
  const before = a.requests;
  for (let i = 0; i < 5; i++) assert.deepEqual(await get(p.port(), `/b${i}`), { status: 200, upstream: 'b' });
  assert.equal(a.requests, before, 'the removed backend gets no traffic');
  assert.equal(p.runtime.generation, generation, 'no configuration reload happened');

  // DNS failing keeps the last good answer.
  dns.failMode('servfail');
  const q = dns.queries;
  await waitFor(() => dns.queries > q + 1, 3000);
  assert.equal(pool.describe().total, 1);
  assert.deepEqual(await get(p.port(), '/still'), { status: 200, upstream: 'b' });
});

test('file registry: an edit adds a backend, traffic reaches it, and the existing backend keeps its health state', async (t) => {
  const a = await startUpstream({ name: 'a' });
  const b = await startUpstream({ name: 'b' });
  const registry = (ports: number[]): string => `services:\n  app: [${ports.map((x) => `"127.0.0.1:${x}"`).join(', ')}]\n`;
  const p = await startPerimeter({
    perimeter: `${cluster}defaults:
  balancer: round-robin
  health: { type: http, path: /healthz, interval: 100ms, timeout: 80ms, jitter: 0%, rise: 2, fall: 3 }
discovery:
  file: { path: registry.yaml }
`,
    sites: { 'team.yaml': site },
    extra: { 'registry.yaml': registry([a.port]) },
  });
  t.after(async () => {
    await p.close();
    await Promise.all([a.close(), b.close()]);
  });
  const pool = p.runtime.pool('app')!;
  assert.equal(pool.describe().total, 1, 'a readable registry is delivered at apply');
  for (let i = 0; i < 3; i++) assert.deepEqual(await get(p.port(), `/a${i}`), { status: 200, upstream: 'a' });
  await waitFor(() => (pool.describe().backends[0]?.consecutiveCheckOk ?? 0) >= 3, 3000);
  const objA = pool.backends[0]!;
  const checksBefore = a.healthChecks;
  const okBefore = objA.consecutiveCheckOk;
  assert.equal(objA.active, 'healthy');

  // Replace the file the way deploy tools do: write aside, rename over.
  const generation = p.runtime.generation;
  const file = join(p.dir, 'registry.yaml');
  await writeFile(`${file}.tmp`, registry([a.port, b.port]));
  await rename(`${file}.tmp`, file);
  await waitFor(() => pool.describe().total === 2, 3000);

  const descA = pool.describe().backends.find((x) => x.port === a.port)!;
  const descB = pool.describe().backends.find((x) => x.port === b.port)!;
  assert.equal(pool.backends.find((x) => x.port === a.port), objA, 'same Backend object for a');
  assert.equal(descA.active, 'healthy', 'a stays healthy (not reset to unchecked)');
  assert.ok(descA.consecutiveCheckOk >= okBefore, `a's check counter continues: ${okBefore} → ${descA.consecutiveCheckOk}`);
  assert.ok(descB.active === 'unchecked' || descB.active === 'healthy', `b starts routable: ${descB.active}`);

  const seen = new Set<string>();
  for (let i = 0; i < 6; i++) seen.add((await get(p.port(), `/ab${i}`)).upstream);
  assert.deepEqual([...seen].sort(), ['a', 'b'], 'traffic reaches the new backend');
  await waitFor(() => b.healthChecks >= 2 && a.healthChecks > checksBefore + 2, 3000);
  assert.ok(pool.backends.find((x) => x.port === a.port)!.consecutiveCheckOk > okBefore, "a's checks went on counting");
  assert.equal(p.runtime.generation, generation, 'no configuration reload happened');
});
