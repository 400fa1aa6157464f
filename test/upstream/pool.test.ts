import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import * as http from 'node:http';
import type { Backend } from '../../src/upstream/backend.js';
import { Pool } from '../../src/upstream/pool.js';
import type { Outcome, PoolEvents } from '../../src/upstream/types.js';
import { startUpstreams, testRoundRobin, testServiceSpec, waitFor } from '../helpers/upstream.js';
import type { Upstream } from '../helpers/upstream.js';

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

function members(ups: readonly Upstream[]): { host: string; port: number; weight: number }[] {
  return ups.map((u) => ({ host: u.host, port: u.port, weight: 1 }));
}

function addresses(n: number, base = 8000): { host: string; port: number; weight: number }[] {
  return Array.from({ length: n }, (_, i) => ({ host: '127.0.0.1', port: base + i, weight: 1 }));
}

/**
 * One proxied attempt as the web proxy makes it: acquire, send a GET over a
 * real connection, classify how it ended, release.
 */
async function attempt(pool: Pool, exclude?: ReadonlySet<Backend>): Promise<{ backend: Backend; outcome: Outcome } | undefined> {
  const pick = pool.acquire(exclude);
  if (!pick.ok) return undefined;
  const backend = pick.backend;
  const started = Date.now();
  const outcome = await new Promise<Outcome>((resolve) => {
    let connected = false;
    const req = http.get({ host: backend.host, port: backend.port, path: '/', agent: false }, (res) => {
      res.resume();
      resolve((res.statusCode ?? 0) >= 500 ? 'http-5xx' : 'success');
    });
    req.on('socket', (s) => s.once('connect', () => (connected = true)));
    req.on('error', () => resolve(connected ? 'reset' : 'connect-error'));
  });
  pool.release(backend, outcome, Date.now() - started);
  return { backend, outcome };
}

function recordEvents(): { log: string[]; events: PoolEvents } {
  const log: string[] = [];
  return {
    log,
    events: {
      onHealthChange: (s, b, healthy) => log.push(`health ${s} ${b.key} ${healthy}`),
      onEject: (s, b) => log.push(`eject ${s} ${b.key}`),
      onPanic: (s, panic, healthy, total) => log.push(`panic ${s} ${panic} ${healthy}/${total}`),
      onMembersChange: (s, added, removed) => log.push(`members ${s} +${added.join(',')} -${removed.join(',')}`),
    },
  };
}

test('an empty pool answers NO_BACKEND; members take turns; inflight counts open attempts', () => {
  const pool = new Pool(testServiceSpec('web'), testRoundRobin());
  try {
    assert.deepEqual(pool.acquire(), { ok: false, error: 'NO_BACKEND' });
    assert.equal(pool.inPanic, false, 'an empty pool is not in panic, it is empty');
    pool.setMembers(addresses(3));
    const picks = [pool.acquire(), pool.acquire(), pool.acquire(), pool.acquire()];
    const keys = picks.map((p) => (p.ok ? p.backend.key : p.error));
    assert.deepEqual(keys, ['127.0.0.1:8000', '127.0.0.1:8001', '127.0.0.1:8002', '127.0.0.1:8000']);
    const [a, b] = pool.backends;
    assert.ok(a && b);
    assert.equal(a.inflight, 2);
    assert.equal(b.inflight, 1);
    pool.release(a, 'success', 5);
    pool.release(a, 'cancelled', 5);
    pool.release(b, 'http-5xx', 5);
    assert.equal(a.inflight, 0);
    assert.equal(b.inflight, 0);
    pool.release(a, 'success', 5); // a double release must not go negative
    assert.equal(a.inflight, 0);
    pool.setMembers([]);
    assert.deepEqual(pool.acquire(), { ok: false, error: 'NO_BACKEND' });
  } finally {
    pool.close();
  }
});

test('acquire avoids backends already tried for this request while others are available', () => {
  const pool = new Pool(testServiceSpec('web'), testRoundRobin());
  try {
    pool.setMembers(addresses(3));
    const [a, b, c] = pool.backends;
    assert.ok(a && b && c);
    for (let i = 0; i < 10; i++) {
      const r = pool.acquire(new Set([a, c]));
      assert.ok(r.ok);
      assert.equal(r.backend, b);
      pool.release(r.backend, 'cancelled', 0);
    }
    // Everything tried: the balancer may repeat one rather than fail.
    const r = pool.acquire(new Set([a, b, c]));
    assert.ok(r.ok);
  } finally {
    pool.close();
  }
});

test('a retry over real sockets goes to another backend after a refused connection', async (t) => {
  const ups = await startUpstreams(3, { name: 'web' });
  t.after(() => Promise.all(ups.map((u) => u.close())));
  const pool = new Pool(testServiceSpec('web'), testRoundRobin());
  t.after(() => pool.close());
  pool.setMembers(members(ups));
  await ups[0]?.stop();
  for (let i = 0; i < 6; i++) {
    const tried = new Set<Backend>();
    let last = await attempt(pool, tried);
    while (last && last.outcome !== 'success') {
      tried.add(last.backend);
      last = await attempt(pool, tried);
    }
    assert.equal(last?.outcome, 'success');
    assert.ok(tried.size <= 1, 'at most the dead backend was tried first');
  }
  assert.equal((ups[1]?.requests ?? 0) + (ups[2]?.requests ?? 0), 6);
  assert.ok(pool.backends.every((b) => b.inflight === 0));
});

test('membership change keeps the state of surviving backends and checks new ones', async (t) => {
  const ups = await startUpstreams(3, { name: 'api' });
  t.after(() => Promise.all(ups.map((u) => u.close())));
  const { log, events } = recordEvents();
  const pool = new Pool(
    testServiceSpec('api', {
      health: { kind: 'http', intervalMs: 50, fall: 2, rise: 2 },
      passive: { consecutiveFailures: 2, baseEjectionMs: 5000, maxEjectedPercent: 100 },
    }),
    testRoundRobin(),
    events,
  );
  t.after(() => pool.close());
  ups[1]?.setHealth(500);
  pool.setMembers(members(ups.slice(0, 2)));
  const [a, b] = pool.backends;
  assert.ok(a && b);
  await waitFor(() => a.active === 'healthy' && b.active === 'unhealthy', 2000);
  pool.release(a, 'http-5xx', 1);
  pool.release(a, 'http-5xx', 1);
  assert.equal(a.isEjected(Date.now()), true);
  const ejectedUntil = a.ejectedUntil;
  const okChecks = a.consecutiveCheckOk;

  // Discovery now answers b (with a new weight), a new backend c, and a duplicate of c; a is kept too.
  const c = ups[2];
  assert.ok(c && ups[0] && ups[1]);
  pool.setMembers([
    { host: ups[1].host, port: ups[1].port, weight: 5 },
    { host: c.host, port: c.port, weight: 1 },
    { host: ups[0].host, port: ups[0].port, weight: 1 },
    { host: c.host, port: c.port, weight: 9 },
  ]);
  assert.equal(pool.backends.length, 3);
  assert.equal(pool.backends[0], b, 'same object for the same host:port');
  assert.equal(pool.backends[2], a);
  assert.equal(b.weight, 5);
  assert.equal(b.active, 'unhealthy', 'health survives');
  assert.equal(a.ejectedUntil, ejectedUntil, 'ejection survives');
  assert.ok(a.consecutiveCheckOk >= okChecks, 'check history survives');
  const fresh = pool.backends[1];
  assert.ok(fresh);
  assert.equal(fresh.active, 'unchecked', 'a new backend starts unchecked when checks are on');
  assert.equal(fresh.weight, 1, 'the first of duplicate answers wins');
  assert.ok(log.includes(`members api +${c.host}:${c.port} -`));
  await waitFor(() => fresh.active === 'healthy', 2000);

  // Removing b stops its checks; its in-flight attempt still ends normally.
  const pick = pool.acquire(new Set([fresh]));
  assert.ok(pick.ok);
  pool.setMembers(members([ups[0], c]));
  assert.ok(log.includes(`members api + -${ups[1].host}:${ups[1].port}`));
  assert.equal(pool.backends.includes(b), false);
  const checksBefore = ups[1].healthChecks;
  await sleep(150);
  assert.ok(ups[1].healthChecks <= checksBefore + 1, 'no more checks for a removed backend');
  pool.release(pick.backend, 'http-5xx', 1);
  assert.equal(pick.backend.inflight, 0);
});

test('new backends start healthy when the pool has no active checks', () => {
  const pool = new Pool(testServiceSpec('plain'), testRoundRobin());
  try {
    pool.setMembers(addresses(2));
    assert.ok(pool.backends.every((b) => b.active === 'healthy'));
  } finally {
    pool.close();
  }
});

test('passive ejection over real sockets: a backend answering 5xx N times in a row is ejected', async (t) => {
  const ups = await startUpstreams(3, { name: 'web' });
  t.after(() => Promise.all(ups.map((u) => u.close())));
  const ejects: { key: string; untilMs: number; reason: string; at: number }[] = [];
  const pool = new Pool(
    testServiceSpec('web', { passive: { consecutiveFailures: 3, baseEjectionMs: 10_000, maxEjectionMs: 60_000, maxEjectedPercent: 70 } }),
    testRoundRobin(),
    { onEject: (_s, b, untilMs, reason) => ejects.push({ key: b.key, untilMs, reason, at: Date.now() }) },
  );
  t.after(() => pool.close());
  pool.setMembers(members(ups));
  ups[1]?.setStatus(503);
  for (let i = 0; i < 9; i++) await attempt(pool); // round robin: backend 1 gets 3 of these
  assert.equal(ejects.length, 1);
  const e = ejects[0];
  assert.ok(e);
  assert.equal(e.key, `${ups[1]?.host}:${ups[1]?.port}`);
  assert.ok(Math.abs(e.untilMs - e.at - 10_000) < 50, 'ejected for baseEjectionMs');
  assert.equal(e.reason, '3 consecutive failures (last: http-5xx): ejected for 10000 ms (ejection 1 in a row)');
  const before = ups[1]?.requests;
  for (let i = 0; i < 10; i++) assert.equal((await attempt(pool))?.outcome, 'success');
  assert.equal(ups[1]?.requests, before, 'an ejected backend gets no traffic');
  const d = pool.describe();
  const sick = d.backends.find((x) => x.key === e.key);
  assert.equal(sick?.ejected, true);
  assert.equal(sick?.available, false);
  assert.equal(sick?.ejections, 1);
  assert.equal(d.available, 2);

  // A stopped backend counts connect errors the same way.
  await ups[2]?.stop();
  for (let i = 0; i < 6; i++) await attempt(pool);
  assert.equal(ejects.length, 2);
  assert.match(ejects[1]?.reason ?? '', /last: connect-error/);
});

test('ejection time grows with each ejection in a row, up to maxEjectionMs, and comes back on its own', async (t) => {
  const { log, events } = recordEvents();
  const spec = testServiceSpec('grow', {
    passive: { consecutiveFailures: 2, baseEjectionMs: 60, maxEjectionMs: 150, maxEjectedPercent: 50 },
  });
  const pool = new Pool(spec, testRoundRobin(), events);
  t.after(() => pool.close());
  pool.setMembers(addresses(4));
  const b = pool.backends[0];
  assert.ok(b);
  const durations: number[] = [];
  for (let round = 0; round < 4; round++) {
    pool.release(b, 'timeout', 1);
    assert.equal(b.isEjected(Date.now()), false, 'one failure is not enough');
    const now = Date.now();
    pool.release(b, 'reset', 1);
    assert.equal(b.isEjected(Date.now()), true);
    durations.push(b.ejectedUntil - now);
    // Failures while ejected (e.g. requests already in flight) neither extend nor count.
    pool.release(b, 'reset', 1);
    assert.equal(b.consecutiveFailures, 0);
    assert.equal(pool.availableBackends.includes(b), false);
    // Back on its own once the time is over, noticed without any traffic.
    await waitFor(() => log.filter((l) => l === `eject grow ${b.key}`).length === round + 1 && pool.availableBackends.includes(b), 1000);
  }
  const rounded = durations.map((d) => Math.round(d / 10) * 10);
  assert.deepEqual(rounded, [60, 120, 150, 150]);
  assert.equal(b.ejections, 3, 'the count stops growing at the cap (ceil(150 / 60))');
});

test('success resets the failure count; cancelled says nothing; good service decays the ejection count', async (t) => {
  const pool = new Pool(
    testServiceSpec('decay', { passive: { consecutiveFailures: 3, baseEjectionMs: 50, maxEjectionMs: 1000, maxEjectedPercent: 100 } }),
    testRoundRobin(),
  );
  t.after(() => pool.close());
  pool.setMembers(addresses(2));
  const b = pool.backends[0];
  assert.ok(b);
  pool.release(b, 'http-5xx', 1);
  pool.release(b, 'http-5xx', 1);
  pool.release(b, 'cancelled', 1);
  pool.release(b, 'success', 1);
  pool.release(b, 'http-5xx', 1);
  pool.release(b, 'cancelled', 1);
  pool.release(b, 'http-5xx', 1);
  assert.equal(b.isEjected(Date.now()), false);
  assert.equal(b.consecutiveFailures, 2);
  pool.release(b, 'connect-error', 1);
  assert.equal(b.isEjected(Date.now()), true);
  assert.equal(b.ejections, 1);

  // Eject twice in a row.
  await waitFor(() => !b.isEjected(Date.now()), 1000);
  for (let i = 0; i < 3; i++) pool.release(b, 'http-5xx', 1);
  assert.equal(b.ejections, 2);
  const returnsAt = b.ejectedUntil;
  await waitFor(() => !b.isEjected(Date.now()), 1000);
  // One step off per baseEjectionMs of good service since it came back; a
  // loaded machine may let more time pass between the steps, so the
  // expectation is computed from the time that really passed.
  const expected = (at: number): number => Math.max(0, 2 - Math.floor((at - returnsAt) / 50));
  let at = Date.now();
  pool.release(b, 'success', 1);
  assert.equal(b.ejections, expected(at), 'serving right after coming back does not forgive at once');
  await sleep(60);
  at = Date.now();
  pool.release(b, 'success', 1);
  assert.equal(b.ejections, expected(at));
  assert.ok(b.ejections < 2);
  await sleep(60);
  pool.release(b, 'success', 1);
  assert.equal(b.ejections, 0);
  const now = Date.now();
  for (let i = 0; i < 3; i++) pool.release(b, 'http-5xx', 1);
  assert.ok(Math.abs(b.ejectedUntil - now - 50) < 10, 'back to the base ejection time');
});

test('the ejected share never exceeds maxEjectedPercent, but one backend may always be ejected', () => {
  const fail = (pool: Pool, b: Backend): void => {
    for (let i = 0; i < 2; i++) pool.release(b, 'http-5xx', 1);
  };
  const spec = testServiceSpec('cap', { passive: { consecutiveFailures: 2, baseEjectionMs: 10_000, maxEjectedPercent: 50 } });
  const pool = new Pool(spec, testRoundRobin());
  try {
    pool.setMembers(addresses(4));
    for (const b of pool.backends) fail(pool, b);
    const now = Date.now();
    assert.deepEqual(
      pool.backends.map((b) => b.isEjected(now)),
      [true, true, false, false],
    );
    assert.equal(
      pool.backends[2]?.lastEjectReason,
      'not ejected after 2 consecutive failures (last: http-5xx): 2 of 4 backends already ejected, cap 50%',
    );
    assert.equal(pool.inPanic, false, '2 of 4 available is not below 50%');
    // Its next failure tries again (the count stays above the threshold).
    pool.release(pool.backends[2] as Backend, 'http-5xx', 1);
    assert.equal(pool.backends[2]?.isEjected(Date.now()), false);
  } finally {
    pool.close();
  }

  const small = new Pool(testServiceSpec('small', { passive: { consecutiveFailures: 2, maxEjectedPercent: 10 } }), testRoundRobin());
  try {
    small.setMembers(addresses(3));
    for (const b of small.backends) fail(small, b);
    const now = Date.now();
    assert.deepEqual(
      small.backends.map((b) => b.isEjected(now)),
      [true, false, false],
    );
  } finally {
    small.close();
  }
});

test('panic serve-all: with every backend failing health, the pool still serves all of them', async (t) => {
  const ups = await startUpstreams(3, { name: 'pay' });
  t.after(() => Promise.all(ups.map((u) => u.close())));
  const { log, events } = recordEvents();
  const pool = new Pool(
    testServiceSpec('pay', { health: { kind: 'http', intervalMs: 50, fall: 1, rise: 1 }, panic: { thresholdPercent: 50, mode: 'serve-all' } }),
    testRoundRobin(),
    events,
  );
  t.after(() => pool.close());
  pool.setMembers(members(ups));
  await waitFor(() => pool.backends.every((b) => b.active === 'healthy'), 2000);
  for (const u of ups) u.setHealth(503);
  await waitFor(() => pool.backends.every((b) => b.active === 'unhealthy'), 2000);
  assert.equal(pool.inPanic, true);
  // Entered panic when the second one fell (1 of 3 is below 50%).
  assert.ok(log.includes('panic pay true 1/3'), log.join('\n'));
  const served = new Set<string>();
  for (let i = 0; i < 6; i++) {
    const r = await attempt(pool);
    assert.equal(r?.outcome, 'success', 'the backends still answer, only their health endpoint fails');
    served.add(r?.backend.key ?? '');
  }
  assert.equal(served.size, 3, 'balances over all backends');
  const pick = pool.acquire();
  assert.ok(pick.ok && pick.panic, 'the pick says it was made in panic');
  pool.release(pick.backend, 'cancelled', 0);
  const d = pool.describe();
  assert.equal(d.panic, true);
  assert.match(d.summary, /^panic: 0 of 3 backends available \(threshold 50%\), serving all backends$/);

  for (const u of ups) u.setHealth(200);
  await waitFor(() => !pool.inPanic, 2000);
  assert.ok(log.some((l) => l.startsWith('panic pay false')));
});

test('panic fail: too few healthy backends answer PANIC_FAIL_FAST', async (t) => {
  const ups = await startUpstreams(4, { name: 'strict' });
  t.after(() => Promise.all(ups.map((u) => u.close())));
  const { log, events } = recordEvents();
  const pool = new Pool(
    testServiceSpec('strict', { health: { kind: 'http', intervalMs: 50, fall: 1, rise: 1 }, panic: { thresholdPercent: 50, mode: 'fail' } }),
    testRoundRobin(),
    events,
  );
  t.after(() => pool.close());
  pool.setMembers(members(ups));
  await waitFor(() => pool.backends.every((b) => b.active === 'healthy'), 2000);
  ups[0]?.setHealth(503);
  ups[1]?.setHealth(503);
  await waitFor(() => pool.availableBackends.length === 2, 2000);
  assert.equal(pool.inPanic, false, '2 of 4 is not below 50%');
  const r = pool.acquire();
  assert.ok(r.ok && !r.panic);
  pool.release(r.backend, 'success', 1);

  await ups[2]?.stop();
  await waitFor(() => pool.inPanic, 2000);
  assert.deepEqual(pool.acquire(), { ok: false, error: 'PANIC_FAIL_FAST' });
  assert.ok(log.includes('panic strict true 1/4'));
  assert.match(pool.describe().summary, /failing fast$/);
});

test('panic also counts ejected backends and ends when the ejection does, without traffic', async (t) => {
  const { log, events } = recordEvents();
  const pool = new Pool(
    testServiceSpec('ej', {
      passive: { consecutiveFailures: 1, baseEjectionMs: 80, maxEjectedPercent: 100 },
      panic: { thresholdPercent: 10, mode: 'serve-all' },
    }),
    testRoundRobin(),
    events,
  );
  t.after(() => pool.close());
  pool.setMembers(addresses(2));
  for (const b of pool.backends) pool.release(b, 'connect-error', 1);
  assert.equal(pool.availableBackends.length, 0);
  assert.equal(pool.inPanic, true, 'no backend available is always panic, whatever the threshold');
  const r = pool.acquire();
  assert.ok(r.ok && r.panic);
  pool.release(r.backend, 'cancelled', 0);
  // The two ejections end a millisecond or so apart; the first one back ends the panic.
  await waitFor(() => log.some((l) => l.startsWith('panic ej false')), 1000);
  await waitFor(() => pool.describe().available === 2, 1000);
});

test('update keeps backends; checks restart only when the health spec changes', async (t) => {
  const ups = await startUpstreams(2, { name: 'r' });
  t.after(() => Promise.all(ups.map((u) => u.close())));
  const spec = testServiceSpec('r', { health: { kind: 'http', intervalMs: 30, fall: 2, rise: 2 } });
  const { log, events } = recordEvents();
  const pool = new Pool(spec, testRoundRobin(), events);
  t.after(() => pool.close());
  pool.setMembers(members(ups));
  const [a, b] = pool.backends;
  assert.ok(a && b);
  await waitFor(() => a.consecutiveCheckOk >= 3 && b.consecutiveCheckOk >= 3, 2000);

  // Same health settings in a new snapshot object, new panic mode and balancer: nothing restarts.
  const balancer = testRoundRobin();
  pool.update(testServiceSpec('r', { health: { kind: 'http', intervalMs: 30, fall: 2, rise: 2 }, panic: { mode: 'fail' } }), balancer);
  assert.ok(a.consecutiveCheckOk >= 3, 'check history kept');
  assert.equal(pool.describe().panicMode, 'fail');
  assert.equal(pool.describe().balancer, 'test-round-robin');
  assert.deepEqual([...pool.backends], [a, b]);

  // A new path: checks restart against it.
  ups[0]?.setHealth(503);
  pool.update(testServiceSpec('r', { health: { kind: 'http', path: '/ready', intervalMs: 30, fall: 2, rise: 2 } }), balancer);
  assert.equal(a.consecutiveCheckOk, 0);
  // '/ready' is not the helper's health path: the default handler answers 200 there.
  await waitFor(() => a.lastCheckReason === 'HTTP 200 from /ready', 2000);
  assert.equal(a.active, 'healthy');

  // Checks off: every backend is healthy at once and no more checks arrive.
  ups[0]?.setStatus(500);
  await waitFor(() => a.active === 'unhealthy', 2000);
  pool.update(testServiceSpec('r'), balancer);
  assert.equal(a.active, 'healthy');
  assert.equal(a.lastCheckReason, 'no active check');
  assert.equal(log.at(-1), `health r ${a.key} true`);
  const seen = (ups[0]?.requests ?? 0) + (ups[0]?.healthChecks ?? 0);
  await sleep(120);
  assert.ok((ups[0]?.requests ?? 0) + (ups[0]?.healthChecks ?? 0) <= seen + 1);

  // Checks back on: backends start over as unchecked.
  pool.update(testServiceSpec('r', { health: { kind: 'tcp', intervalMs: 30 } }), balancer);
  assert.equal(a.active, 'unchecked');
  await waitFor(() => a.active === 'healthy' && a.lastCheckReason === 'TCP connect ok', 2000);
});

test('describe() gives every backend state an operator needs, as JSON', async (t) => {
  const pool = new Pool(
    testServiceSpec('d', { passive: { consecutiveFailures: 1, baseEjectionMs: 5000, maxEjectedPercent: 50 } }),
    testRoundRobin(),
  );
  t.after(() => pool.close());
  pool.setMembers(addresses(3));
  const [a, b] = pool.backends;
  assert.ok(a && b);
  pool.release(a, 'http-5xx', 1);
  const pick = pool.acquire();
  assert.ok(pick.ok);
  const now = Date.now();
  const d = JSON.parse(JSON.stringify(pool.describe(now))) as ReturnType<Pool['describe']>;
  assert.equal(d.service, 'd');
  assert.equal(d.total, 3);
  assert.equal(d.available, 2);
  assert.equal(d.panic, false);
  assert.equal(d.summary, '2 of 3 backends available');
  const da = d.backends[0];
  assert.ok(da);
  assert.equal(da.key, '127.0.0.1:8000');
  assert.equal(da.ejected, true);
  assert.equal(da.ejectedUntil, new Date(a.ejectedUntil).toISOString());
  assert.equal(da.ejectionRemainingMs, a.ejectedUntil - now);
  assert.equal(da.ejections, 1);
  assert.match(da.lastEjectReason, /^1 consecutive failures \(last: http-5xx\)/);
  assert.equal(da.active, 'healthy');
  assert.equal(da.score, 0);
  assert.equal(da.scoreReason, 'round robin');
  assert.equal(d.backends.find((x) => x.key === pick.backend.key)?.inflight, 1);
  pool.release(pick.backend, 'success', 1);
  await sleep(1);
});

test('a throwing event listener does not break the pool', () => {
  const pool = new Pool(testServiceSpec('x', { passive: { consecutiveFailures: 1, maxEjectedPercent: 100 } }), testRoundRobin(), {
    onMembersChange: () => {
      throw new Error('logger down');
    },
    onEject: () => {
      throw new Error('logger down');
    },
    onPanic: () => {
      throw new Error('logger down');
    },
  });
  try {
    pool.setMembers(addresses(1));
    const b = pool.backends[0];
    assert.ok(b);
    pool.release(b, 'reset', 1);
    assert.equal(b.isEjected(Date.now()), true);
    assert.ok(pool.acquire().ok);
  } finally {
    pool.close();
  }
});
