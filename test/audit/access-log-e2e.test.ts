/**
 * The access log through the real `perimeter run` (control process and two
 * workers sharing one file): each cluster's log policy, every request of a
 * load run accounted for, and a logrotate rename + SIGUSR1 mid-run.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readFileSync, renameSync } from 'node:fs';
import { mkdtemp, mkdir, rm, writeFile } from 'node:fs/promises';
import http from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startUpstream } from '../helpers/upstream.js';
import { runLoad } from '../helpers/load.js';
import { freePort, runPerimeter, type RunningPerimeter } from '../helpers/cli.js';

/** Remove once the runtime opens snapshot.accessLog and writes each record with its cluster's policy. */

interface Line {
  readonly url?: { readonly domain?: string; readonly path?: string; readonly query?: string };
  readonly http: { readonly request: { readonly id: string; readonly referrer?: string }; readonly response: { readonly status_code: number } };
  readonly perimeter: { readonly cluster: string; readonly cookie_names?: string[]; readonly authorization_scheme?: string };
}

function readLines(file: string): { text: string; lines: Line[] } {
  if (!existsSync(file)) return { text: '', lines: [] };
  const text = readFileSync(file, 'utf8');
  const body = text.endsWith('\n') ? text.slice(0, -1) : text;
  assert.ok(text === '' || text.endsWith('\n'), `${file} ends inside a line`);
  return { text, lines: body === '' ? [] : body.split('\n').map((l) => JSON.parse(l) as Line) };
}

/** Poll until `count()` reaches `want` (the log is flushed within ~200 ms) or the time is up. */
async function waitForCount(count: () => number, want: number, ms = 5000): Promise<number> {
  const until = Date.now() + ms;
  let n = count();
  while (n < want && Date.now() < until) {
    await new Promise((r) => setTimeout(r, 100));
    n = count();
  }
  return n;
}

function get(port: number, host: string, path: string, headers: Record<string, string>): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = http.get({ host: '127.0.0.1', port, path, headers: { host, ...headers }, agent: false }, (res) => {
      res.resume();
      res.on('end', () => resolve(res.statusCode ?? 0));
    });
    req.on('error', reject);
    req.setTimeout(5000, () => req.destroy(new Error('timeout')));
  });
}

async function start(t: { after(fn: () => Promise<void>): void }, withPayment: boolean): Promise<{ p: RunningPerimeter; file: string; webPort: number; payPort: number }> {
  const app = await startUpstream({ name: 'app' });
  const [webPort, payPort] = [await freePort(), await freePort()];
  const dir = await mkdtemp(join(tmpdir(), 'perimeter-access-e2e-'));
  const file = join(dir, 'logs', 'access.log');
  await mkdir(join(dir, 'config', 'sites'), { recursive: true });
  await writeFile(
    join(dir, 'config', 'perimeter.yaml'),
    `clusters:
  web:
    default: true
    listen: { http: "127.0.0.1:${webPort}" }
${
  withPayment
    ? `  payment:
    listen: { http: "127.0.0.1:${payPort}" }
    log: { omit: [query, cookies, authorization] }
`
    : ''
}access-log: { path: ${JSON.stringify(file)} }
defaults:
  health: { type: none }
discovery:
  static:
    app: ["127.0.0.1:${app.port}"]
`,
  );
  await writeFile(
    join(dir, 'config', 'sites', 'shop.yaml'),
    `www.example.com:\n  service: app\n${withPayment ? 'pay.example.com:\n  service: app\n  cluster: payment\n' : ''}`,
  );
  const p = runPerimeter(join(dir, 'config'), ['--workers', '2', '--no-watch', '--drain-timeout', '2s']);
  t.after(async () => {
    p.kill('SIGKILL');
    await app.close();
    await rm(dir, { recursive: true, force: true });
  });
  await p.waitForLog((l) => l.event?.action === 'workers-started');
  return { p, file, webPort, payPort };
}

test('the payment cluster logs no query, cookie or authorization value; the web cluster logs the query but no cookie or authorization value', { timeout: 30_000}, async (t) => {
  const { p, file, webPort, payPort } = await start(t, true);
  const secrets = { query: 'card=4111111111111111&cvv=SECRETCVV', cookie: 'session=SECRETCOOKIE', token: 'TOKENVALUE' };
  const headers = {
    cookie: `${secrets.cookie}; theme=dark`,
    authorization: `Bearer ${secrets.token}`,
    referer: `https://pay.example.com/cart?${secrets.query}`,
  };
  assert.equal(await get(payPort, 'pay.example.com', `/checkout?${secrets.query}`, headers), 200);
  assert.equal(await get(webPort, 'www.example.com', `/search?${secrets.query}`, headers), 200);

  await waitForCount(() => readLines(file).lines.length, 2);
  p.kill('SIGTERM');
  await p.exited;
  const { text, lines } = readLines(file);
  assert.equal(lines.length, 2, text);
  const pay = lines.find((l) => l.perimeter.cluster === 'payment');
  const web = lines.find((l) => l.perimeter.cluster === 'web');
  assert.ok(pay && web, text);

  const payText = JSON.stringify(pay);
  for (const s of ['4111111111111111', 'SECRETCVV', 'SECRETCOOKIE', 'TOKENVALUE', 'session', 'Bearer', '?']) assert.ok(!payText.includes(s), `payment line contains '${s}': ${payText}`);
  assert.deepEqual(pay.url, { domain: 'pay.example.com', path: '/checkout' });
  assert.equal(pay.http.request.referrer, 'https://pay.example.com/cart');

  const webText = JSON.stringify(web);
  for (const s of ['SECRETCOOKIE', 'TOKENVALUE', 'dark']) assert.ok(!webText.includes(s), `web line contains '${s}': ${webText}`);
  assert.equal(web.url?.query, secrets.query);
  assert.deepEqual(web.perimeter.cookie_names, ['session', 'theme']);
  assert.equal(web.perimeter.authorization_scheme, 'Bearer');
});

test('every request of a load run is in the access log, across a logrotate rename and SIGUSR1 mid-run', { timeout: 40_000}, async (t) => {
  const { p, file, webPort } = await start(t, false);
  const report = await runLoad({
    port: webPort,
    host: 'www.example.com',
    concurrency: 8,
    maxRequests: 4000,
    ratePerSecond: 1000,
    durationMs: 15_000,
    events: [
      {
        atMs: 1500,
        run: () => {
          if (existsSync(file)) renameSync(file, file + '.1');
          p.kill('SIGUSR1');
        },
      },
    ],
  });
  assert.equal(report.failed.length, 0, `failed requests: ${report.failed.length}`);
  const count = (): number => readLines(file + '.1').lines.length + readLines(file).lines.length;
  const seen = await waitForCount(count, report.total);
  p.kill('SIGTERM');
  await p.exited;
  const rotated = readLines(file + '.1').lines;
  const current = readLines(file).lines;
  t.diagnostic(`${report.total} requests in ${report.elapsedMs} ms; rotated file ${rotated.length} lines, new file ${current.length} lines (${seen} before SIGTERM)`);
  assert.equal(rotated.length + current.length, report.total);
  assert.ok(rotated.length > 0 && current.length > 0, 'the reopen happened mid-run');
  assert.equal(new Set([...rotated, ...current].map((l) => l.http.request.id)).size, report.total);
});
