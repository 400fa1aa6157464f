import { test } from 'node:test';
import assert from 'node:assert/strict';
import { startUpstream } from '../helpers/upstream.js';
import { webConfig } from '../web/fixtures.js';
import type { ConfigInfo, ReloadOutcome } from '../../src/admin/types.js';
import type { SiteRow } from '../../src/config/inventory.js';
import type { PoolDescription } from '../../src/upstream/pool.js';
import type { BackendRow } from '../../src/admin/server.js';
import { freePort } from '../helpers/cli.js';
import { getJSON, request, sample, startAdminPerimeter, withAdmin } from './harness.js';

test('admin API: every endpoint answers with its shape; unknown paths 404, wrong methods 405 with Allow', async (t) => {
  const a = await startUpstream({ name: 'a' });
  const p = await startAdminPerimeter(await withAdmin(webConfig({ services: { app: [a.port] }, sites: { 'www.example.com': 'app' } })));
  t.after(async () => {
    await p.close();
    await a.close();
  });

  const index = await getJSON<{ endpoints: string[] }>(`${p.admin}/`);
  assert.equal(index.status, 200);
  assert.ok(index.body.endpoints.includes('POST /api/reload'));

  const metrics = await request(`${p.admin}/metrics`);
  assert.equal(metrics.status, 200);
  assert.match(metrics.headers['content-type'] ?? '', /^text\/plain; version=0\.0\.4/);
  assert.equal(sample(metrics.text, 'perimeter_config_generation'), 1);

  const config = await getJSON<ConfigInfo>(`${p.admin}/api/config`);
  assert.equal(config.status, 200);
  assert.equal(config.body.generation, 1);
  assert.equal(config.body.source, p.runtime.snapshot!.source);
  assert.ok(Math.abs(Date.parse(config.body.appliedAt) - Date.now()) < 60_000, `appliedAt ${config.body.appliedAt}`);
  assert.equal(config.body.lastReload, null);
  assert.equal(config.body.workers, 0);

  const sites = await getJSON<{ generation: number; sites: SiteRow[] }>(`${p.admin}/api/sites`);
  assert.equal(sites.status, 200);
  assert.deepEqual(
    sites.body.sites.map((s) => [s.host, s.cluster, s.service, s.file, s.line]),
    [['www.example.com', 'web', 'app', 'sites/team.yaml', 1]],
  );
  assert.match(sites.body.sites[0]!.listeners[0]!, /^http:\/\/127\.0\.0\.1:\d+$/);

  const pools = await getJSON<{ generation: number; pools: PoolDescription[] }>(`${p.admin}/api/pools`);
  assert.equal(pools.body.generation, 1);
  assert.deepEqual(pools.body.pools.map((x) => [x.service, x.total]), [['app', 1]]);

  assert.equal((await request(`${p.web}/`, { headers: { host: 'www.example.com' } })).status, 200);
  const backends = await getJSON<{ generation: number; backends: BackendRow[] }>(`${p.admin}/api/backends`);
  assert.equal(backends.status, 200);
  assert.equal(backends.body.backends.length, 1);
  const be = backends.body.backends[0]!;
  assert.equal(be.service, 'app');
  assert.equal(be.key, `127.0.0.1:${a.port}`);
  assert.equal(be.health, 'healthy'); // health: none counts as healthy
  assert.equal(be.ejected, false);
  assert.equal(be.inflight, 0);
  assert.ok(be.score === null || typeof be.score === 'number');
  assert.ok(be.reason.length > 0);
  assert.equal(be.reason, be.scoreReason);

  // HEAD where GET is: headers, no body.
  const head = await request(`${p.admin}/api/config`, { method: 'HEAD' });
  assert.equal(head.status, 200);
  assert.equal(head.text, '');

  const missing = await request(`${p.admin}/api/nothing`);
  assert.equal(missing.status, 404);
  assert.match(missing.headers['content-type'] ?? '', /^application\/json/);
  assert.match((JSON.parse(missing.text) as { error: string }).error, /no such endpoint: \/api\/nothing/);

  const post = await request(`${p.admin}/metrics`, { method: 'POST' });
  assert.equal(post.status, 405);
  assert.equal(post.headers.allow, 'GET, HEAD');
  const getReload = await request(`${p.admin}/api/reload`);
  assert.equal(getReload.status, 405);
  assert.equal(getReload.headers.allow, 'POST');
  assert.equal((await request(`${p.admin}/api/config`, { method: 'DELETE' })).status, 405);
});

test('admin API without a token: a browser on the host cannot use it (DNS rebinding, cross-origin POST)', async (t) => {
  const a = await startUpstream({ name: 'a' });
  const p = await startAdminPerimeter(await withAdmin(webConfig({ services: { app: [a.port] }, sites: { 'www.example.com': 'app' } })));
  t.after(async () => {
    await p.close();
    await a.close();
  });
  // A page on attacker.example rebinds its name to 127.0.0.1: the Host header still names it.
  assert.equal((await request(`${p.admin}/api/config`, { headers: { host: 'attacker.example:9901' } })).status, 403);
  assert.equal((await request(`${p.admin}/api/config`, { headers: { host: 'localhost:9901' } })).status, 200);
  assert.equal((await request(`${p.admin}/api/config`, { headers: { host: '[::1]:9901' } })).status, 200);
  const cross = await request(`${p.admin}/api/reload`, { method: 'POST', headers: { origin: 'http://attacker.example' } });
  assert.equal(cross.status, 403);
  assert.equal(p.runtime.generation, 1, 'the cross-origin POST reloaded nothing');
});

test('POST /api/reload applies a changed configuration (200) and refuses a broken one (409) without changing anything', async (t) => {
  const a = await startUpstream({ name: 'a' });
  const admin = `admin:\n  listen: "127.0.0.1:${await freePort()}"\n`;
  const cfg = (sites: Record<string, string>) => withAdmin(webConfig({ services: { app: [a.port] }, sites }), admin);
  const p = await startAdminPerimeter(await cfg({ 'www.example.com': 'app' }));
  t.after(async () => {
    await p.close();
    await a.close();
  });
  assert.equal((await request(`${p.web}/`, { headers: { host: 'api.example.com' } })).status, 421);

  await p.write(await cfg({ 'www.example.com': 'app', 'api.example.com': 'app' }));
  const ok = await request(`${p.admin}/api/reload`, { method: 'POST' });
  assert.equal(ok.status, 200, ok.text);
  const applied = JSON.parse(ok.text) as ReloadOutcome;
  assert.deepEqual([applied.ok, applied.generation, applied.trigger, applied.errors], [true, 2, 'api', []]);
  assert.equal((await request(`${p.web}/`, { headers: { host: 'api.example.com' } })).status, 200);
  const sites = await getJSON<{ generation: number; sites: SiteRow[] }>(`${p.admin}/api/sites`);
  assert.deepEqual([sites.body.generation, sites.body.sites.map((s) => s.host)], [2, ['api.example.com', 'www.example.com']]);

  // A site naming a service that does not exist: refused with file:line:column, generation 2 keeps serving.
  await p.write(await cfg({ 'www.example.com': 'app', 'api.example.com': 'nope' }));
  const refused = await request(`${p.admin}/api/reload`, { method: 'POST' });
  assert.equal(refused.status, 409, refused.text);
  const outcome = JSON.parse(refused.text) as ReloadOutcome;
  assert.equal(outcome.ok, false);
  assert.equal(outcome.generation, 2);
  assert.match(outcome.errors[0]!, /^sites\/team\.yaml:\d+:\d+: /);
  assert.equal((await request(`${p.web}/`, { headers: { host: 'api.example.com' } })).status, 200);

  const config = await getJSON<ConfigInfo>(`${p.admin}/api/config`);
  assert.equal(config.body.generation, 2);
  assert.equal(config.body.lastReload?.ok, false);
  assert.equal(config.body.lastReload?.trigger, 'api');
  const m = (await request(`${p.admin}/metrics`)).text;
  assert.equal(sample(m, 'perimeter_config_last_reload_success'), 0);
  assert.equal(sample(m, 'perimeter_config_reloads_total', 'result="applied"'), 2);
  assert.equal(sample(m, 'perimeter_config_reloads_total', 'result="refused"'), 1);
  const at = sample(m, 'perimeter_config_last_reload_timestamp_seconds')!;
  assert.ok(Math.abs(at - Date.now() / 1000) < 60, `timestamp ${at}`);
});

