import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import { Backend } from '../../src/upstream/backend.js';
import {
  firstCheckDelay,
  httpProbe,
  jitteredInterval,
  probe,
  recordCheck,
  sameHealthSpec,
  statusExpected,
  tcpProbe,
} from '../../src/upstream/health.js';
import { Pool } from '../../src/upstream/pool.js';
import type { HealthSpec } from '../../src/config/types.js';
import { startUpstream, startUpstreams, testRoundRobin, testServiceSpec, waitFor } from '../helpers/upstream.js';

function httpSpec(over: Partial<HealthSpec> = {}): HealthSpec {
  return testServiceSpec('svc', { health: { kind: 'http', timeoutMs: 2000, ...over } }).health;
}

function target(port: number, host = '127.0.0.1'): { host: string; port: number; key: string } {
  return { host, port, key: `${host}:${port}` };
}

test('HTTP check sends GET path with Host, User-Agent and Connection: close', async (t) => {
  const seen: { method?: string; url?: string; headers?: Record<string, unknown> } = {};
  const up = await startUpstream({
    handler: (req, res) => {
      seen.method = req.method;
      seen.url = req.url;
      seen.headers = req.headers;
      res.writeHead(204).end();
    },
  });
  t.after(() => up.close());

  const r1 = await httpProbe(target(up.port), httpSpec({ path: '/check?deep=1' }));
  assert.deepEqual(r1, { ok: true, reason: 'HTTP 204 from /check?deep=1' });
  assert.equal(seen.method, 'GET');
  assert.equal(seen.url, '/check?deep=1');
  assert.equal(seen.headers?.host, `127.0.0.1:${up.port}`);
  assert.equal(seen.headers?.['user-agent'], 'perimeter-health');
  assert.equal(seen.headers?.connection, 'close');

  await httpProbe(target(up.port), httpSpec({ path: '/check', host: 'status.example.com' }));
  assert.equal(seen.headers?.host, 'status.example.com');
});

test('HTTP check: status outside expectStatus fails with the status and path in the reason', async (t) => {
  const up = await startUpstream();
  t.after(() => up.close());
  up.setHealth(503);
  assert.deepEqual(await httpProbe(target(up.port), httpSpec()), { ok: false, reason: 'HTTP 503 from /healthz' });
  // The same answer counts as healthy when the operator lists it.
  const lenient = httpSpec({ expectStatus: [[200, 299], [503, 503]] });
  assert.deepEqual(await httpProbe(target(up.port), lenient), { ok: true, reason: 'HTTP 503 from /healthz' });
  up.setHealth(302);
  assert.equal((await httpProbe(target(up.port), httpSpec())).ok, true); // default 200-399
  assert.equal((await httpProbe(target(up.port), httpSpec({ expectStatus: [[200, 200]] }))).ok, false);
});

test('HTTP check: refused, reset and timeout each fail with their own reason', async (t) => {
  const up = await startUpstream();
  t.after(() => up.close());

  up.setFail('reset');
  const reset = await httpProbe(target(up.port), httpSpec({ path: '/reset' }));
  assert.deepEqual(reset, { ok: false, reason: 'connection closed before response' });

  up.setFail('hang');
  const started = Date.now();
  const hung = await httpProbe(target(up.port), httpSpec({ path: '/hang', timeoutMs: 100 }));
  const took = Date.now() - started;
  assert.deepEqual(hung, { ok: false, reason: 'timeout after 100 ms' });
  assert.ok(took >= 95 && took < 1000, `timed out after ${took} ms`);

  await up.stop();
  assert.deepEqual(await httpProbe(target(up.port), httpSpec()), { ok: false, reason: 'connect ECONNREFUSED' });
});

test('HTTP check never throws: a bad path or an unknown host is a failed check', async () => {
  const bad = await httpProbe(target(1), httpSpec({ path: '/with space' }));
  assert.equal(bad.ok, false);
  assert.match(bad.reason, /^check not sent: /);
  const unknown = await httpProbe({ host: 'no-such-host.invalid', port: 80, key: 'no-such-host.invalid:80' }, httpSpec());
  assert.equal(unknown.ok, false);
  assert.match(unknown.reason, /^(connect E|timeout)/);
});

test('TCP check: an open port passes, a closed one fails; aborting resolves at once', async (t) => {
  const up = await startUpstream();
  t.after(() => up.close());
  assert.deepEqual(await tcpProbe(target(up.port), 2000), { ok: true, reason: 'TCP connect ok' });
  const spec = httpSpec({ kind: 'tcp' });
  assert.equal((await probe(target(up.port), spec)).ok, true);
  await up.stop();
  assert.deepEqual(await tcpProbe(target(up.port), 2000), { ok: false, reason: 'connect ECONNREFUSED' });

  const ac = new AbortController();
  ac.abort();
  assert.deepEqual(await tcpProbe(target(up.port), 2000, ac.signal), { ok: false, reason: 'check cancelled' });
});

test('rise/fall state machine: unchecked decides on the first check, then rise and fall count', () => {
  const ok = { ok: true, reason: 'HTTP 200 from /healthz' };
  const bad = { ok: false, reason: 'HTTP 503 from /healthz' };

  const a = new Backend('10.0.0.1', 80, 1, true);
  assert.equal(a.active, 'unchecked');
  assert.equal(a.activeOk, true, 'unchecked takes traffic');
  assert.equal(recordCheck(a, ok, 2, 3), true);
  assert.equal(a.active, 'healthy');

  const b = new Backend('10.0.0.2', 80, 1, true);
  assert.equal(recordCheck(b, bad, 2, 3), true, 'a failing first check removes it at once');
  assert.equal(b.active, 'unhealthy');
  assert.equal(b.lastCheckReason, 'HTTP 503 from /healthz');

  // healthy → unhealthy after exactly `fall` failures in a row; a pass in between restarts the count
  assert.equal(recordCheck(a, bad, 2, 3), false);
  assert.equal(recordCheck(a, bad, 2, 3), false);
  assert.equal(recordCheck(a, ok, 2, 3), false);
  assert.equal(recordCheck(a, bad, 2, 3), false);
  assert.equal(recordCheck(a, bad, 2, 3), false);
  assert.equal(a.active, 'healthy');
  assert.equal(recordCheck(a, bad, 2, 3), true);
  assert.equal(a.active, 'unhealthy');
  assert.equal(a.consecutiveCheckFail, 3);

  // unhealthy → healthy after exactly `rise` passes
  assert.equal(recordCheck(a, ok, 2, 3), false);
  assert.equal(a.active, 'unhealthy');
  assert.equal(recordCheck(a, ok, 2, 3), true);
  assert.equal(a.active, 'healthy');
  assert.equal(a.consecutiveCheckOk, 2);
  assert.equal(a.consecutiveCheckFail, 0);
});

test('interval jitter is uniform within ± jitter × interval; first checks are spread', () => {
  assert.equal(jitteredInterval(1000, 0.2, () => 0), 800);
  assert.equal(jitteredInterval(1000, 0.2, () => 1), 1200);
  assert.equal(jitteredInterval(1000, 0.2, () => 0.5), 1000);
  assert.equal(jitteredInterval(1000, 0), 1000);
  for (let i = 0; i < 1000; i++) {
    const v = jitteredInterval(100, 0.3);
    assert.ok(v >= 70 && v <= 130, String(v));
  }
  assert.equal(firstCheckDelay(60_000, () => 0.999) < 1000, true);
  assert.equal(firstCheckDelay(50, () => 0.5), 25);
  assert.equal(statusExpected(404, [[200, 299], [400, 404]]), true);
  assert.equal(statusExpected(405, [[200, 299], [400, 404]]), false);
  assert.equal(sameHealthSpec(httpSpec(), httpSpec()), true);
  assert.equal(sameHealthSpec(httpSpec(), httpSpec({ expectStatus: [[200, 299]] })), false);
});

test('checks run every interval ± jitter, measured at the backend', async (t) => {
  const times: number[] = [];
  const up = await startUpstream({
    handler: (req, res) => {
      if (req.url === '/beat') times.push(Date.now());
      res.end('ok');
    },
  });
  t.after(() => up.close());
  const pool = new Pool(testServiceSpec('beat', { health: { kind: 'http', path: '/beat', intervalMs: 60, jitter: 0.5 } }), testRoundRobin());
  t.after(() => pool.close());
  pool.setMembers([{ host: '127.0.0.1', port: up.port, weight: 1 }]);
  await waitFor(() => times.length >= 15, 5000);
  pool.close();
  const gaps = times
    .slice(1)
    .map((v, i) => v - (times[i] ?? 0))
    .sort((a, b) => a - b);
  // Periods are 30..90 ms, counted from the start of each check; arrival at the
  // backend adds connect noise and a loaded machine adds delay, so judge the
  // distribution, not single gaps.
  const median = gaps[Math.floor(gaps.length / 2)] ?? 0;
  assert.ok(median >= 30 && median <= 90 + 40, `median gap ${median} ms: ${gaps.join(',')}`);
  const mean = gaps.reduce((a, b) => a + b, 0) / gaps.length;
  assert.ok(mean >= 45, `mean gap ${mean} ms: jitter must not shorten the period: ${gaps.join(',')}`);
  assert.ok((gaps[gaps.length - 1] ?? 0) - (gaps[0] ?? 0) >= 5, `jitter spreads the gaps: ${gaps.join(',')}`);
  const count = times.length;
  await new Promise((r) => setTimeout(r, 200));
  assert.equal(times.length, count, 'no check after close()');
});

test('a backend whose health endpoint starts failing leaves within interval × fall and returns after rise', async (t) => {
  const ups = await startUpstreams(3, { name: 'web' });
  t.after(() => Promise.all(ups.map((u) => u.close())));
  const intervalMs = 50;
  const fall = 3;
  const rise = 2;
  // Slack for a loaded machine; the check counts below are exact whatever the load.
  const slackMs = 400;
  const changes: { key: string; healthy: boolean; at: number; checks: number }[] = [];
  const sickUp = ups[1];
  assert.ok(sickUp);
  const pool = new Pool(
    testServiceSpec('web', { health: { kind: 'http', intervalMs, fall, rise, jitter: 0, timeoutMs: 1000 } }),
    testRoundRobin(),
    {
      onHealthChange: (_s, b, healthy) =>
        changes.push({ key: b.key, healthy, at: Date.now(), checks: b.port === sickUp.port ? sickUp.healthChecks : -1 }),
    },
  );
  t.after(() => pool.close());
  pool.setMembers(ups.map((u) => ({ host: u.host, port: u.port, weight: 1 })));
  await waitFor(() => pool.backends.every((b) => b.active === 'healthy'), 2000);

  const sick = pool.backends[1];
  assert.ok(sick);
  sickUp.setHealth(503);
  const failedAt = Date.now();
  const checksAtFail = sickUp.healthChecks;
  await waitFor(() => changes.some((c) => c.key === sick.key && !c.healthy), 3000);
  const down = changes.find((c) => c.key === sick.key && !c.healthy);
  assert.ok(down);
  assert.equal(down.checks - checksAtFail, fall, 'exactly `fall` failed checks take it out');
  const left = down.at - failedAt;
  // The first failing check comes within one interval, then fall - 1 more intervals.
  assert.ok(left >= (fall - 1) * intervalMs - 5, `left after ${left} ms, before fall checks could fail`);
  assert.ok(left <= fall * intervalMs + slackMs, `left after ${left} ms, expected within ${fall * intervalMs} ms (+${slackMs} ms slack)`);
  assert.equal(sick.lastCheckReason, 'HTTP 503 from /healthz');
  assert.equal(sick.active, 'unhealthy');
  for (let i = 0; i < 30; i++) {
    const r = pool.acquire();
    assert.ok(r.ok);
    assert.notEqual(r.backend, sick, 'an unhealthy backend gets no traffic');
    assert.equal(r.panic, false);
    pool.release(r.backend, 'success', 1);
  }

  sickUp.setHealth(200);
  const healedAt = Date.now();
  const checksAtHeal = sickUp.healthChecks;
  await waitFor(() => changes.some((c) => c.key === sick.key && c.healthy && c.at >= healedAt), 3000);
  const up = changes.find((c) => c.key === sick.key && c.healthy && c.at >= healedAt);
  assert.ok(up);
  assert.equal(up.checks - checksAtHeal, rise, 'exactly `rise` passed checks bring it back');
  const back = up.at - healedAt;
  assert.ok(back >= (rise - 1) * intervalMs - 5, `back after ${back} ms, before rise checks could pass`);
  assert.ok(back <= rise * intervalMs + slackMs, `back after ${back} ms, expected within ${rise * intervalMs} ms (+${slackMs} ms slack)`);
  const picked = new Set<unknown>();
  for (let i = 0; i < 6; i++) {
    const r = pool.acquire();
    assert.ok(r.ok);
    picked.add(r.backend);
    pool.release(r.backend, 'success', 1);
  }
  assert.ok(picked.has(sick), 'back in rotation');
});

test('TCP check detects a closed port and the restart on the same port', async (t) => {
  const ups = await startUpstreams(2, { name: 'sftp' });
  t.after(() => Promise.all(ups.map((u) => u.close())));
  const pool = new Pool(
    testServiceSpec('sftp', { health: { kind: 'tcp', intervalMs: 50, fall: 2, rise: 2, timeoutMs: 1000 } }),
    testRoundRobin(),
  );
  t.after(() => pool.close());
  pool.setMembers(ups.map((u) => ({ host: u.host, port: u.port, weight: 1 })));
  await waitFor(() => pool.backends.every((b) => b.active === 'healthy'), 2000);
  const [first, second] = pool.backends;
  assert.ok(first && second);
  assert.equal(first.lastCheckReason, 'TCP connect ok');

  await ups[0]?.stop();
  await waitFor(() => first.active === 'unhealthy', 2000);
  assert.equal(first.lastCheckReason, 'connect ECONNREFUSED');
  assert.equal(second.active, 'healthy');
  assert.deepEqual(pool.describe().available, 1);

  await ups[0]?.restart();
  await waitFor(() => first.active === 'healthy', 2000);
  assert.equal(pool.describe().available, 2);
});

test('a new backend that is not up yet leaves rotation after its first failed check', async (t) => {
  const up = await startUpstream();
  const port = up.port;
  await up.stop(); // nothing listens on `port` now
  t.after(() => up.close());
  const changes: string[] = [];
  const pool = new Pool(
    testServiceSpec('cold', { health: { kind: 'http', intervalMs: 50, fall: 3, rise: 2 } }),
    testRoundRobin(),
    { onHealthChange: (_s, b, healthy, reason) => changes.push(`${b.key} ${healthy} ${reason} after ${b.consecutiveCheckFail} check(s)`) },
  );
  t.after(() => pool.close());
  pool.setMembers([{ host: '127.0.0.1', port, weight: 1 }]);
  const b = pool.backends[0];
  assert.ok(b);
  assert.equal(b.active, 'unchecked');
  assert.equal(pool.inPanic, false, 'unchecked counts as healthy');
  const started = Date.now();
  await waitFor(() => b.active === 'unhealthy', 2000);
  assert.ok(Date.now() - started <= 50 + 250, 'one interval, not fall intervals');
  assert.deepEqual(changes, [`127.0.0.1:${port} false connect ECONNREFUSED after 1 check(s)`]);
});
