/**
 * The real CLI with a control process and two workers: reloads under load,
 * a worker killed under load, SIGTERM under load.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, mkdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import http from 'node:http';
import type net from 'node:net';
import { WebSocket, WebSocketServer } from 'ws';
import { startUpstream, type Upstream } from '../helpers/upstream.js';
import { runLoad, summarize } from '../helpers/load.js';
import { freePort, runPerimeter } from '../helpers/cli.js';

async function configDir(perimeter: string, sites: Record<string, string>): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'perimeter-proc-'));
  await mkdir(join(dir, 'sites'));
  await writeFile(join(dir, 'perimeter.yaml'), perimeter);
  for (const [f, text] of Object.entries(sites)) await writeFile(join(dir, 'sites', f), text);
  return dir;
}

function platform(port: number, services: Record<string, number[]>, extra = ''): string {
  return `clusters:
  web:
    listen: { http: "127.0.0.1:${port}" }
defaults:
  health: { type: none }
discovery:
  static:
${Object.entries(services)
  .map(([n, ps]) => `    ${n}: [${ps.map((p) => `"127.0.0.1:${p}"`).join(', ')}]`)
  .join('\n')}
${extra.includes('access-log') ? '' : 'access-log:\n  path: "off"\n'}${extra}`;
}

async function startWsBackend(): Promise<{ port: number; close(): void }> {
  const server = http.createServer();
  const wss = new WebSocketServer({ server });
  wss.on('connection', (ws) => ws.on('message', (m) => ws.send(`echo:${m.toString()}`)));
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return {
    port: (server.address() as net.AddressInfo).port,
    close() {
      wss.close();
      server.close();
    },
  };
}

test('20 reloads under steady load: zero failed requests, websocket and keep-alive kept, a broken config refused', { timeout: 60_000 }, async (t) => {
  const app = await startUpstream({ name: 'app' });
  const churn = await startUpstream({ name: 'churn' });
  const wsb = await startWsBackend();
  const port = await freePort();
  const services = { app: [app.port], churn: [churn.port], ws: [wsb.port] };
  const stable = 'stable.example.com:\n  service: app\n"ws.example.com":\n  service: ws\n';
  const dir = await configDir(platform(port, services), { 'stable.yaml': stable, 'churn.yaml': 'churn-0.example.com:\n  service: churn\n' });
  const p = runPerimeter(dir, ['--workers', '2', '--no-watch', '--drain-timeout', '2s']);
  t.after(async () => {
    p.kill('SIGKILL');
    await app.close();
    await churn.close();
    wsb.close();
    await rm(dir, { recursive: true, force: true });
  });
  await p.waitForLog((l) => l.event?.action === 'workers-started');

  // A websocket to a site no reload touches.
  const ws = new WebSocket(`ws://127.0.0.1:${port}/live`, { headers: { host: 'ws.example.com' } });
  let wsClosed = false;
  ws.on('close', () => (wsClosed = true));
  const echo = (msg: string): Promise<string> =>
    new Promise((resolve, reject) => {
      ws.once('message', (m) => resolve(m.toString()));
      ws.once('error', reject);
      ws.send(msg);
    });
  await new Promise<void>((resolve, reject) => {
    ws.once('open', () => resolve());
    ws.once('error', reject);
  });
  assert.equal(await echo('before'), 'echo:before');

  const reloads: number[] = [];
  let refused = false;
  const churnLoop = (async () => {
    await new Promise((r) => setTimeout(r, 500));
    for (let i = 1; i <= 21; i++) {
      if (i === 11) {
        // A broken configuration in the middle: refused, changes nothing.
        await writeFile(join(dir, 'sites', 'churn.yaml'), 'broken.example.com:\n  sevice: churn\n');
        const before = p.lines.length;
        p.kill('SIGHUP');
        const l = await p.waitForLog((x) => p.lines.indexOf(x) >= before && (x.event?.action === 'config-refused' || x.event?.action === 'config-reloaded'));
        refused = l.event?.action === 'config-refused';
        continue;
      }
      // Add a site, remove the previous one.
      await writeFile(join(dir, 'sites', 'churn.yaml'), `churn-${i}.example.com:\n  service: churn\n`);
      const before = p.lines.length;
      p.kill('SIGHUP');
      const l = await p.waitForLog((x) => p.lines.indexOf(x) >= before && (x.event?.action === 'config-reloaded' || x.event?.action === 'config-refused'));
      assert.equal(l.event?.action, 'config-reloaded', JSON.stringify(l));
      reloads.push(l.generation as number);
      await new Promise((r) => setTimeout(r, 350));
    }
  })();
  const report = await runLoad({ port, host: 'stable.example.com', concurrency: 8, durationMs: 10_000, ratePerSecond: 600 });
  await churnLoop;
  t.diagnostic(`${summarize(report)}; ${report.connections} client connections; reload generations ${reloads.join(',')}`);
  assert.equal(report.failed.length, 0, summarize(report));
  assert.ok(report.total / (report.elapsedMs / 1000) >= 500, `rate ${(report.total / (report.elapsedMs / 1000)).toFixed(0)}/s`);
  assert.equal(reloads.length, 20);
  assert.equal(refused, true, 'the broken configuration was refused');
  assert.deepEqual(reloads, Array.from({ length: 20 }, (_, i) => i + 2), 'the refused reload did not advance the generation');
  assert.equal(report.connections, 8, 'keep-alive connections of the untouched site stayed open');
  // The websocket survived every reload.
  assert.equal(wsClosed, false);
  assert.equal(await echo('after'), 'echo:after');
  // The last reload's site serves; a removed one does not.
  const status = (host: string): Promise<number> =>
    new Promise((resolve, reject) => {
      http.get({ host: '127.0.0.1', port, path: '/', headers: { host } }, (res) => {
        res.resume();
        resolve(res.statusCode ?? 0);
      }).on('error', reject);
    });
  assert.equal(await status('churn-21.example.com'), 200);
  assert.equal(await status('churn-5.example.com'), 421);
  ws.close();
});

test('with --workers 2, a worker killed under load costs at most its in-flight requests and is replaced', { timeout: 60_000 }, async (t) => {
  const app = await startUpstream({ name: 'app' });
  app.setDelay(20);
  const port = await freePort();
  const dir = await configDir(platform(port, { app: [app.port] }), { 'a.yaml': 'www.example.com:\n  service: app\n' });
  const p = runPerimeter(dir, ['--workers', '2', '--no-watch']);
  t.after(async () => {
    p.kill('SIGKILL');
    await app.close();
    await rm(dir, { recursive: true, force: true });
  });
  await p.waitForLog((l) => l.event?.action === 'workers-started');
  const pids = p.workerPids();
  assert.equal(pids.length, 2);
  let killedAt = 0;
  const loadStart = Date.now();
  const report = await runLoad({
    port,
    host: 'www.example.com',
    concurrency: 8,
    durationMs: 6000,
    ratePerSecond: 300,
    events: [
      {
        atMs: 2000,
        run: () => {
          killedAt = Date.now();
          process.kill(pids[0]!, 'SIGKILL');
        },
      },
    ],
  });
  await p.waitForLog((l) => l.event?.action === 'worker-replaced', 10_000);
  const exitLine = p.lines.find((l) => l.event?.action === 'worker-exit');
  assert.ok(exitLine, 'the worker exit was logged');
  t.diagnostic(`${summarize(report)}; failed: ${report.failed.map((f) => `${f.error || f.status}@${f.startMs}`).join(' ')}`);
  // Each client has at most one request in flight, so at most 8 can be lost,
  // and only around the kill.
  assert.ok(report.failed.length <= 8, summarize(report));
  const killMs = killedAt - loadStart;
  for (const f of report.failed) assert.ok(Math.abs(f.startMs - killMs) < 500, `failure at ${f.startMs} ms, the kill was at ${killMs} ms`);
  assert.equal(p.workerPids().length, 2, 'the worker was replaced');
  // After the replacement, everything is served.
  const after = await runLoad({ port, host: 'www.example.com', concurrency: 4, maxRequests: 200 });
  assert.equal(after.failed.length, 0, summarize(after));
});

test('SIGTERM under load: every request sent before the signal completes; exit within the drain deadline', { timeout: 60_000 }, async (t) => {
  let app: Upstream | undefined = await startUpstream({ name: 'app' });
  app.setDelay(300);
  const port = await freePort();
  const dir = await configDir(platform(port, { app: [app.port] }), { 'a.yaml': 'www.example.com:\n  service: app\n' });
  const p = runPerimeter(dir, ['--workers', '2', '--no-watch', '--drain-timeout', '3s']);
  t.after(async () => {
    p.kill('SIGKILL');
    await app?.close();
    app = undefined;
    await rm(dir, { recursive: true, force: true });
  });
  await p.waitForLog((l) => l.event?.action === 'workers-started');
  let signalAt = 0;
  const t0 = Date.now();
  const report = await runLoad({
    port,
    host: 'www.example.com',
    concurrency: 16,
    durationMs: 4000,
    requestTimeoutMs: 5000,
    events: [
      {
        // Mid-request: requests take 300 ms and start back to back.
        atMs: 1650,
        run: () => {
          signalAt = Date.now();
          p.kill('SIGTERM');
        },
      },
    ],
  });
  const exit = await p.exited;
  const signalMs = signalAt - t0;
  const before = report.results.filter((r) => r.startMs < signalMs - 50);
  const lost = before.filter((r) => r.status !== 200);
  t.diagnostic(`${summarize(report)}; ${before.length} requests sent before SIGTERM; exit ${exit.code} after ${exit.at - signalAt} ms`);
  assert.ok(before.length >= 32, 'requests were in flight when the signal came');
  assert.deepEqual(lost.map((r) => `${r.error || r.status}@${r.startMs}`), []);
  assert.equal(exit.code, 0);
  assert.ok(exit.at - signalAt < 3000 + 1500, `exited ${exit.at - signalAt} ms after SIGTERM`);
  // In-flight requests (300 ms each) finished: the drain did wait for them.
  assert.ok(exit.at - signalAt >= 100, `exited too early (${exit.at - signalAt} ms)`);
});

test('with workers, /metrics adds up every worker and /api/pools merges their views', { timeout: 60_000 }, async (t) => {
  const a = await startUpstream({ name: 'a' });
  const b = await startUpstream({ name: 'b' });
  const port = await freePort();
  const adminPort = await freePort();
  const dir = await configDir(
    platform(port, { app: [a.port, b.port] }, `admin:\n  listen: "127.0.0.1:${adminPort}"\naccess-log:\n  path: "off"\n`),
    { 'a.yaml': 'www.example.com:\n  service: app\n' },
  );
  const p = runPerimeter(dir, ['--workers', '2', '--no-watch']);
  t.after(async () => {
    p.kill('SIGKILL');
    await a.close();
    await b.close();
    await rm(dir, { recursive: true, force: true });
  });
  await p.waitForLog((l) => l.event?.action === 'workers-started');
  const report = await runLoad({ port, host: 'www.example.com', concurrency: 8, maxRequests: 400 });
  assert.equal(report.failed.length, 0, summarize(report));
  const get = (path: string): Promise<string> =>
    new Promise((resolve, reject) => {
      http.get({ host: '127.0.0.1', port: adminPort, path }, (res) => {
        let text = '';
        res.setEncoding('utf8');
        res.on('data', (c: string) => (text += c));
        res.on('end', () => resolve(text));
      }).on('error', reject);
    });
  const metrics = await get('/metrics');
  const m = /perimeter_requests_total\{cluster="web",site="www.example.com",code="2xx"\} (\d+)/.exec(metrics);
  assert.equal(Number(m?.[1]), 400, 'request counters of both workers add up');
  const pools = JSON.parse(await get('/api/pools')) as { pools: { service: string; backends: { key: string; scoreReason: string }[] }[] };
  const app = pools.pools.find((x) => x.service === 'app')!;
  assert.equal(app.backends.length, 2);
  // Both workers served traffic (connections are spread over them), and each reports its own view.
  assert.ok(app.backends.every((x) => /worker \d+: .*worker \d+: /.test(x.scoreReason)), JSON.stringify(app.backends));
  const config = JSON.parse(await get('/api/config')) as { workers: number; generation: number };
  assert.equal(config.workers, 2);
  assert.equal(config.generation, 1);
});

test('a change in the configuration directory reloads by itself; health checks run once, in the control process', { timeout: 60_000 }, async (t) => {
  const app = await startUpstream({ name: 'app' });
  const port = await freePort();
  const health = 'defaults:\n  health: { type: http, path: /healthz, interval: 200ms, timeout: 100ms }\n';
  const dir = await configDir(platform(port, { app: [app.port] }).replace('defaults:\n  health: { type: none }\n', health), {
    'a.yaml': 'www.example.com:\n  service: app\n',
  });
  const p = runPerimeter(dir, ['--workers', '2']);
  t.after(async () => {
    p.kill('SIGKILL');
    await app.close();
    await rm(dir, { recursive: true, force: true });
  });
  await p.waitForLog((l) => l.event?.action === 'workers-started');
  // Two workers, one checker: about 1 check per 200 ms, not 3.
  const c0 = app.healthChecks;
  await new Promise((r) => setTimeout(r, 2000));
  const checks = app.healthChecks - c0;
  assert.ok(checks >= 6 && checks <= 14, `${checks} health checks in 2 s at a 200 ms interval`);

  const before = p.lines.length;
  await writeFile(join(dir, 'sites', 'b.yaml'), 'new.example.com:\n  service: app\n');
  const l = await p.waitForLog((x) => p.lines.indexOf(x) >= before && x.event?.action === 'config-reloaded', 5000);
  assert.equal(l.trigger, 'watch');
  const status = await new Promise<number>((resolve, reject) => {
    http.get({ host: '127.0.0.1', port, path: '/', headers: { host: 'new.example.com' } }, (res) => {
      res.resume();
      resolve(res.statusCode ?? 0);
    }).on('error', reject);
  });
  assert.equal(status, 200);
});
