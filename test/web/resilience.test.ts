/**
 * Issue 2 acceptance, resilience: perimeter in-process with real YAML, real
 * backends on loopback, real load. A backend killed under load leaves
 * rotation and costs idempotent requests nothing; a POST is never delivered
 * twice; panic mode serves (or fails fast); passive ejection works through
 * the proxy.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import net from 'node:net';
import { startUpstream, waitFor, type Upstream } from '../helpers/upstream.js';
import { settledClientConnections, startPerimeter, type TestPerimeter } from '../helpers/perimeter.js';
import { runLoad, summarize } from '../helpers/load.js';
import { webConfig } from './fixtures.js';

const SITE = 'www.example.com';

/** webConfig plus a `services.app` block (YAML flow maps, one per line). */
function appConfig(ports: readonly number[], service: string): { perimeter: string; sites: Record<string, string> } {
  const c = webConfig({ services: { app: ports }, sites: { [SITE]: 'app' } });
  return { ...c, perimeter: `${c.perimeter}services:\n  app:\n${service}\n` };
}

async function closeAll(p: TestPerimeter | undefined, ups: readonly Upstream[]): Promise<void> {
  await p?.close();
  await Promise.all(ups.map((u) => u.close()));
}

function request(
  port: number,
  opts: { method?: string; path?: string; headers?: Record<string, string>; body?: string },
): Promise<{ status: number; headers: http.IncomingHttpHeaders; body: string }> {
  return new Promise((resolve, reject) => {
    const headers: Record<string, string> = { host: SITE, ...opts.headers };
    if (opts.body !== undefined) headers['content-length'] = String(Buffer.byteLength(opts.body));
    const req = http.request({ host: '127.0.0.1', port, method: opts.method ?? 'GET', path: opts.path ?? '/', headers, agent: false }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks).toString() }));
    });
    req.setTimeout(5000, () => req.destroy(new Error('request timeout')));
    req.on('error', reject);
    req.end(opts.body);
  });
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

test('a backend killed under load leaves rotation within interval × fall; GETs see zero errors', async (t) => {
  const ups = await Promise.all(['a', 'b', 'c'].map((name) => startUpstream({ name })));
  for (const u of ups) u.setDelay(3); // keep requests in flight when the kill lands
  const [a, b, c] = ups as [Upstream, Upstream, Upstream];
  const intervalMs = 100;
  const fall = 3;
  // Passive ejection off: this measures the active checks' bound on its own.
  const p = await startPerimeter(
    appConfig(
      [a.port, b.port, c.port],
      `    balancer: round-robin
    health: { type: http, path: /healthz, interval: ${intervalMs}ms, timeout: 80ms, jitter: 0%, rise: 2, fall: ${fall} }
    passive: { consecutive-failures: 0 }`,
    ),
  );
  // Default retry budget: retries after a refused connect do not draw on it,
  // and the few requests in flight on the killed backend fit its minimum.
  t.after(() => closeAll(p, ups));
  const pool = p.runtime.pool('app')!;
  const killedKey = `127.0.0.1:${b.port}`;

  let killedAt = 0;
  let leftAt = 0;
  const watch = setInterval(() => {
    if (killedAt && !leftAt && !pool.describe().backends.find((x) => x.key === killedKey)!.available) leftAt = Date.now();
  }, 5);
  t.after(() => clearInterval(watch));

  const report = await runLoad({
    port: p.port(),
    host: SITE,
    concurrency: 8,
    durationMs: 3000,
    events: [
      {
        atMs: 1000,
        run: async () => {
          killedAt = Date.now();
          await b.stop();
        },
      },
    ],
  });
  clearInterval(watch);
  t.diagnostic(summarize(report));
  t.diagnostic(`killed backend left rotation ${leftAt - killedAt} ms after the kill (bound ${intervalMs * fall} ms + slack)`);

  assert.ok(killedAt > 0, 'the kill happened during the load');
  assert.ok(leftAt > 0, 'the killed backend left rotation');
  // interval × fall, plus one interval for the check in flight at the kill and scheduling slack.
  assert.ok(leftAt - killedAt <= intervalMs * (fall + 1) + 150, `left rotation after ${leftAt - killedAt} ms`);
  const d = pool.describe().backends.find((x) => x.key === killedKey)!;
  assert.equal(d.active, 'unhealthy');

  assert.ok(report.total > 200, `enough load: ${summarize(report)}`);
  const failedRecs = p.records.filter((r) => r.status !== 200).map((r) => `${r.status} ${r.errorCode} attempts=${r.attempts} retries=${r.retries} ${r.reason}`);
  assert.deepEqual(failedRecs, [], `no errors: ${summarize(report)}`);
  assert.deepEqual(report.failed, [], `no errors: ${summarize(report)}`);
  assert.equal(report.statuses.get(200), report.total);

  const recs = p.records.filter((r) => r.site === SITE);
  assert.equal(recs.length, report.total);
  const retried = recs.filter((r) => r.retries > 0);
  assert.ok(retried.length > 0, 'some requests were retried');
  for (const r of retried) assert.equal(r.status, 200);
  // Once out of rotation it gets nothing: no request that started later needed a retry.
  const settled = leftAt + 50;
  const late = recs.filter((r) => r.startMs > settled);
  assert.ok(late.length > 50);
  assert.equal(late.filter((r) => r.retries > 0 || r.backend === killedKey).length, 0);
  t.diagnostic(`${retried.length} requests retried; all answered 200`);
});

test('a retry never goes back to the backend that just failed', async (t) => {
  const down = await startUpstream({ name: 'down' });
  const up = await startUpstream({ name: 'up' });
  await down.stop();
  // least-request over two idle backends picks either at random, so a retry
  // that does not exclude the refused backend lands on it again half the time.
  const p = await startPerimeter(
    appConfig(
      [down.port, up.port],
      `    balancer: least-request
    passive: { consecutive-failures: 0 }
    retries: { attempts: 1, budget: 20%, min-concurrency: 3 }`,
    ),
  );
  t.after(() => closeAll(p, [down, up]));
  const statuses: number[] = [];
  for (let i = 0; i < 40; i++) statuses.push((await request(p.port(), { path: `/r${i}` })).status);
  const bad = p.records.filter((r) => r.status !== 200).map((r) => `${r.status} attempts=${r.attempts} ${r.reason}`);
  assert.ok(p.records.some((r) => r.retries === 1), 'some first attempts hit the stopped backend');
  assert.deepEqual(bad, []);
  assert.equal(up.requests, 40);
});

test('a POST is never delivered twice, with resets and a kill under load', async (t) => {
  const ups = await Promise.all(['a', 'b', 'c'].map((name) => startUpstream({ name })));
  const [a, b, c] = ups as [Upstream, Upstream, Upstream];
  for (const u of ups) u.setDelay(2);
  b.setFail('reset', 0.5);
  const p = await startPerimeter(
    appConfig(
      [a.port, b.port, c.port],
      `    balancer: round-robin
    passive: { consecutive-failures: 0 }
    retries: { attempts: 2, budget: 50%, min-concurrency: 8 }`,
    ),
  );
  t.after(() => closeAll(p, ups));

  const report = await runLoad({
    port: p.port(),
    host: SITE,
    concurrency: 8,
    durationMs: 2500,
    request: (n) => ({ method: 'POST', path: `/order`, headers: { 'content-type': 'text/plain' }, body: `id=${n}` }),
    events: [{ atMs: 1200, run: () => c.stop() }],
  });
  t.diagnostic(summarize(report));

  const deliveries = new Map<string, number>();
  for (const u of ups) {
    for (const r of u.received) {
      assert.equal(r.method, 'POST');
      const id = r.body.toString();
      deliveries.set(id, (deliveries.get(id) ?? 0) + 1);
    }
  }
  const twice = [...deliveries].filter(([, n]) => n > 1);
  assert.deepEqual(twice, [], 'no POST delivered more than once');

  let ok = 0;
  let bad = 0;
  for (const r of report.results) {
    const id = `id=${r.n}`;
    const delivered = deliveries.get(id) ?? 0;
    if (r.status === 200) {
      ok++;
      assert.equal(delivered, 1, `${id} answered 200 by ${String(r.headers['x-upstream'])} and delivered once`);
      assert.ok(r.headers['x-upstream'], 'a 200 comes from a backend');
    } else {
      bad++;
      assert.equal(r.error, '', `${id}: perimeter answered (no transport error)`);
      assert.equal(r.status, 502, `${id}: status ${r.status}`);
      assert.match(String(r.headers['x-perimeter-error']), /^PRM_UPSTREAM_(RESET|CONNECT)$/);
      assert.ok(delivered <= 1);
    }
  }
  // Every id delivered belongs to a request we sent.
  for (const id of deliveries.keys()) assert.match(id, /^id=\d+$/);
  assert.ok(ok > 100, `enough POSTs succeeded (${ok})`);
  assert.ok(bad > 0, 'the resetting backend made some POSTs fail');
  // A reset after the request reached a backend is never retried.
  const recs = p.records.filter((r) => r.method === 'POST' && r.errorCode === 'PRM_UPSTREAM_RESET');
  assert.ok(recs.length > 0);
  for (const r of recs) assert.match(r.reason, /not safe to retry/);
  t.diagnostic(`${ok} POSTs answered 200 (each delivered once), ${bad} answered 502 (none delivered twice)`);
});

test('a POST refused at connect is retried on another backend and delivered exactly once', async (t) => {
  const down = await startUpstream({ name: 'down' });
  const up = await startUpstream({ name: 'up' });
  await down.stop(); // still in the pool: health checks are off
  const p = await startPerimeter(
    appConfig(
      [down.port, up.port],
      `    balancer: round-robin
    passive: { consecutive-failures: 0 }
    retries: { attempts: 1, budget: 20%, min-concurrency: 3 }`,
    ),
  );
  t.after(() => closeAll(p, [down, up]));

  const big = 'x'.repeat(32 * 1024); // held until the connection is up, then sent
  for (let i = 0; i < 6; i++) {
    const body = i % 2 === 0 ? `id=${i}` : `id=${i};${big}`;
    const r = await request(p.port(), { method: 'POST', path: '/submit', body });
    assert.equal(r.status, 200, `POST ${i}: ${r.status} ${r.body}`);
    assert.equal(r.headers['x-upstream'], 'up');
  }
  const ids = up.received.map((r) => r.body.toString().split(';')[0]);
  assert.deepEqual(ids, ['id=0', 'id=1', 'id=2', 'id=3', 'id=4', 'id=5']);
  assert.equal(up.received[1]!.body.length, `id=1;`.length + big.length);
  const recs = p.records.filter((r) => r.method === 'POST');
  const retried = recs.filter((r) => r.retries === 1);
  assert.ok(retried.length >= 2, `round robin sent some first attempts to the stopped backend (${retried.length})`);
  for (const r of retried) {
    assert.equal(r.status, 200);
    assert.equal(r.attempts, 2);
    assert.equal(r.backend, `127.0.0.1:${up.port}`);
  }
});

test('all backends failing health: panic mode serve-all still serves, and says so', async (t) => {
  const ups = await Promise.all(['a', 'b', 'c'].map((name) => startUpstream({ name })));
  const p = await startPerimeter(
    appConfig(
      ups.map((u) => u.port),
      `    balancer: round-robin
    health: { type: http, path: /healthz, interval: 100ms, timeout: 80ms, jitter: 0%, rise: 2, fall: 2 }
    panic: { threshold: 50%, mode: serve-all }`,
    ),
  );
  t.after(() => closeAll(p, ups));
  const pool = p.runtime.pool('app')!;
  for (const u of ups) u.setHealth(503);
  await waitFor(() => pool.describe().available === 0, 3000);
  const d = pool.describe();
  assert.equal(d.panic, true);
  assert.match(d.summary, /panic.*serving all backends/);

  const seen = new Set<string>();
  for (let i = 0; i < 9; i++) {
    const r = await request(p.port(), { path: `/p${i}` });
    assert.equal(r.status, 200);
    seen.add(r.body.trim());
  }
  assert.equal(seen.size, 3, 'balanced over every backend');
  const recs = p.records.filter((r) => r.target.startsWith('/p'));
  assert.equal(recs.length, 9);
  for (const r of recs) assert.equal(r.panic, true);

  // Health comes back: panic ends and records say so.
  for (const u of ups) u.setHealth(200);
  await waitFor(() => !pool.describe().panic, 3000);
  await request(p.port(), { path: '/after' });
  assert.equal(p.records.at(-1)!.panic, false);
});

test('all backends failing health: panic mode fail answers 503 PRM_PANIC_FAIL_FAST', async (t) => {
  const ups = await Promise.all(['a', 'b'].map((name) => startUpstream({ name })));
  const p = await startPerimeter(
    appConfig(
      ups.map((u) => u.port),
      `    health: { type: http, path: /healthz, interval: 100ms, timeout: 80ms, jitter: 0%, rise: 2, fall: 2 }
    panic: { threshold: 50%, mode: fail }`,
    ),
  );
  t.after(() => closeAll(p, ups));
  const pool = p.runtime.pool('app')!;
  assert.equal((await request(p.port(), { path: '/before' })).status, 200);
  for (const u of ups) u.setHealth(503);
  await waitFor(() => pool.describe().panic, 3000);
  const served = ups.reduce((n, u) => n + u.requests, 0);

  const json = await request(p.port(), { path: '/x', headers: { accept: 'application/json' } });
  assert.equal(json.status, 503);
  assert.equal(json.headers['x-perimeter-error'], 'PRM_PANIC_FAIL_FAST');
  const body = JSON.parse(json.body) as { error: { code: string; status: number; request_id: string } };
  assert.equal(body.error.code, 'PRM_PANIC_FAIL_FAST');
  assert.equal(body.error.status, 503);
  assert.equal(body.error.request_id, json.headers['x-request-id']);
  const html = await request(p.port(), { path: '/y' });
  assert.equal(html.status, 503);
  assert.equal(html.headers['x-perimeter-error'], 'PRM_PANIC_FAIL_FAST');
  assert.match(html.body, /PRM_PANIC_FAIL_FAST/);
  assert.equal(
    ups.reduce((n, u) => n + u.requests, 0),
    served,
    'no backend was contacted',
  );
  const rec = p.records.at(-1)!;
  assert.equal(rec.status, 503);
  assert.equal(rec.errorCode, 'PRM_PANIC_FAIL_FAST');
});

test('passive ejection through the proxy: a backend answering 500 is ejected after consecutive-failures', async (t) => {
  const bad = await startUpstream({ name: 'bad' });
  const good = await startUpstream({ name: 'good' });
  bad.setStatus(500); // its health endpoint still answers 200
  const ejectionMs = 1000;
  const p = await startPerimeter(
    appConfig(
      [bad.port, good.port],
      `    balancer: round-robin
    health: { type: http, path: /healthz, interval: 100ms, timeout: 80ms, jitter: 0%, rise: 1, fall: 2 }
    passive: { consecutive-failures: 3, base-ejection: ${ejectionMs}ms, max-ejection: 10s, max-ejected: 50% }`,
    ),
  );
  t.after(() => closeAll(p, [bad, good]));
  const pool = p.runtime.pool('app')!;
  const badKey = `127.0.0.1:${bad.port}`;
  await waitFor(() => pool.describe().backends.every((x) => x.active === 'healthy'), 3000);

  // Round robin alternates: 6 requests give the bad backend its 3 failures.
  const statuses: number[] = [];
  for (let i = 0; i < 6; i++) statuses.push((await request(p.port(), { path: `/e${i}` })).status);
  assert.equal(bad.requests, 3);
  assert.deepEqual(statuses.filter((s) => s === 500).length, 3, '5xx from a backend is passed on, not retried');
  const ejectedAt = Date.now();
  const d = pool.describe().backends.find((x) => x.key === badKey)!;
  assert.equal(d.ejected, true);
  assert.equal(d.active, 'healthy', 'active checks still pass: passive ejection did this');
  assert.match(d.lastEjectReason, /3 consecutive failures \(last: http-5xx\)/);

  // While ejected: no traffic at all (keep well inside the ejection time).
  let n = 0;
  while (Date.now() - ejectedAt < ejectionMs - 250) {
    const r = await request(p.port(), { path: `/during${n++}` });
    assert.equal(r.status, 200);
    assert.equal(r.headers['x-upstream'], 'good');
  }
  assert.ok(n > 10, `requests during the ejection: ${n}`);
  assert.equal(bad.requests, 3, 'no traffic while ejected');

  // After the ejection time it is tried again.
  await sleep(Math.max(0, ejectedAt + ejectionMs + 50 - Date.now()));
  assert.equal(pool.describe().backends.find((x) => x.key === badKey)!.ejected, false);
  for (let i = 0; i < 4; i++) await request(p.port(), { path: `/after${i}` });
  assert.ok(bad.requests > 3, 'back in rotation after the ejection time');
});

test('connections closed by the client in any way leave nothing behind: a reset after perimeter closed, and after an answer', { timeout: 30_000 }, async (t) => {
  const up = await startUpstream({ name: 'a' });
  const p = await startPerimeter(webConfig({ services: { app: [up.port] }, sites: { [SITE]: 'app' } }));
  t.after(() => closeAll(p, [up]));
  /** One request on a new connection; `then` is what the client does once it has the answer. */
  const exchange = (head: string, then: (c: net.Socket) => void): Promise<string> =>
    new Promise((resolve, reject) => {
      const c = net.connect(p.port(), '127.0.0.1');
      let got = '';
      let done = false;
      const finish = (): void => {
        if (done) return;
        done = true;
        then(c);
      };
      c.on('data', (d: Buffer) => {
        got += d.toString('latin1');
        const end = got.indexOf('\r\n\r\n');
        if (end < 0) return;
        const length = /\r\ncontent-length: *(\d+)/i.exec(got.slice(0, end));
        if (length ? got.length >= end + 4 + Number(length[1]) : got.endsWith('\r\n0\r\n\r\n')) finish();
      });
      c.on('end', finish);
      c.on('close', () => resolve(got.split('\r\n')[0]!));
      c.on('error', reject);
      c.write(head);
    });
  for (let i = 0; i < 10; i++) {
    // perimeter answers and closes (the client asked for it); the client resets instead of a FIN.
    assert.equal(await exchange(`GET /r${i} HTTP/1.1\r\nHost: ${SITE}\r\nConnection: close\r\n\r\n`, (c) => c.resetAndDestroy()), 'HTTP/1.1 200 OK');
    // A keep-alive connection the client resets once it has its answer.
    assert.equal(await exchange(`GET /k${i} HTTP/1.1\r\nHost: ${SITE}\r\n\r\n`, (c) => c.resetAndDestroy()), 'HTTP/1.1 200 OK');
  }
  // perimeter's closing grace (1 s) is the longest anything may stay.
  assert.equal(await settledClientConnections(p, 'http', 0), 0, 'every connection is gone from the listener once closed');
});
