/**
 * The access log: the line format (ECS fields, the cluster's log policy) and
 * the file writer (batching, flush, close, logrotate reopen, several
 * processes appending to one file). Real files in a temp directory.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, renameSync, rmSync, writeFileSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { AccessLog, accessLogLine } from '../../src/audit/access-log.js';
import type { LogOmit } from '../../src/config/types.js';
import { header, sampleRecord } from './records.js';

const PAYMENT: readonly LogOmit[] = ['query', 'cookies', 'authorization'];

function tempDir(t: { after(fn: () => void): void }): string {
  const dir = mkdtempSync(path.join(tmpdir(), 'perimeter-access-log-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

/** Every line of a file parsed as JSON (throws on a torn or invalid line). */
function readLines(file: string): Record<string, unknown>[] {
  if (!existsSync(file)) return [];
  const text = readFileSync(file, 'utf8');
  if (text === '') return [];
  assert.ok(text.endsWith('\n'), `${file} ends in the middle of a line`);
  return text
    .slice(0, -1)
    .split('\n')
    .map((l, i) => {
      try {
        return JSON.parse(l) as Record<string, unknown>;
      } catch {
        throw new Error(`${file} line ${i + 1} is not JSON: ${l.slice(0, 200)}`);
      }
    });
}

function requestId(line: Record<string, unknown>): string {
  return ((line.http as Record<string, unknown>).request as Record<string, unknown>).id as string;
}

/** Write `n` records in batches, yielding to the event loop between batches as a busy worker does. */
async function writeMany(log: AccessLog, from: number, n: number, omit: readonly LogOmit[] = []): Promise<void> {
  const rec = sampleRecord();
  for (let i = from; i < from + n; i++) {
    rec.requestId = `r-${i}`;
    log.write(rec, omit);
    if (i % 200 === 199) await new Promise((r) => setImmediate(r));
  }
}

test('accessLogLine maps a proxied request to ECS fields', () => {
  const rec = sampleRecord({
    headers: [
      header('Host', 'www.example.com'),
      header('User-Agent', 'curl/8.5.0'),
      header('Referer', 'https://www.example.com/start?from=mail'),
      header('Cookie', 'session=abc; theme=dark'),
      header('Cookie', 'consent=yes'),
      header('Authorization', 'bearer eyJhbGciOi.payload.sig'),
    ],
    retries: 1,
    attempts: 2,
  });
  const line = accessLogLine(rec, []);
  assert.ok(!line.includes('\n'));
  assert.deepEqual(JSON.parse(line), {
    '@timestamp': '2025-01-02T03:04:05.678Z',
    ecs: { version: '8.11.0' },
    event: { duration: 12345679 },
    client: { ip: '192.0.2.7', port: 54321 },
    url: { domain: 'www.example.com', path: '/search', query: 'q=shoes&page=2' },
    http: {
      version: '1.1',
      request: { id: 'a1b2c3d4e5f6a7b8-00000001', method: 'GET', bytes: 312, referrer: 'https://www.example.com/start?from=mail' },
      response: { status_code: 200, bytes: 5120 },
    },
    user_agent: { original: 'curl/8.5.0' },
    perimeter: {
      listener: '0.0.0.0:8080',
      cluster: 'web',
      site: 'www.example.com',
      service: 'web-frontend',
      backend: '10.0.0.5:8080',
      attempts: 2,
      retries: 1,
      panic: false,
      upstream: { status: 200, duration_ms: 11.2 },
      cookie_names: ['session', 'theme', 'consent'],
      authorization_scheme: 'Bearer',
    },
  });
});

test('accessLogLine for an answer perimeter gave itself: error code and reason, no upstream, absent parts left out', () => {
  const unknownSite = accessLogLine(
    sampleRecord({ target: '/', headers: [], site: '', service: '', backend: '', upstreamStatus: 0, attempts: 0, status: 421, errorCode: 'PRM_UNKNOWN_SITE', reason: "no site for host 'nope.example.com'", upstreamMs: 0 }),
    [],
  );
  const u = JSON.parse(unknownSite) as Record<string, Record<string, unknown>>;
  assert.deepEqual(u.url, { domain: 'www.example.com', path: '/' });
  assert.deepEqual(u.error, { code: 'PRM_UNKNOWN_SITE' });
  assert.deepEqual(u.perimeter, { listener: '0.0.0.0:8080', cluster: 'web', attempts: 0, retries: 0, panic: false, reason: "no site for host 'nope.example.com'" });
  assert.equal(u.user_agent, undefined);

  // A request line that could not be read: no url, method or version.
  const garbage = JSON.parse(accessLogLine(sampleRecord({ host: '', method: '', target: '', httpVersion: '', headers: [], attempts: 0, status: 400, errorCode: 'PRM_BAD_REQUEST', reason: 'bad request line' }), [])) as Record<
    string,
    Record<string, unknown>
  >;
  assert.equal(garbage.url, undefined);
  assert.deepEqual(garbage.http, { request: { id: 'a1b2c3d4e5f6a7b8-00000001', bytes: 312 }, response: { status_code: 400, bytes: 5120 } });

  // Panic mode, HTTP/1.0, empty query string.
  const p = JSON.parse(accessLogLine(sampleRecord({ panic: true, httpVersion: 'HTTP/1.0', target: '/a?' }), [])) as Record<string, Record<string, unknown>>;
  assert.equal(p.perimeter!.panic, true);
  assert.equal(p.http!.version, '1.0');
  assert.deepEqual(p.url, { domain: 'www.example.com', path: '/a' });
});

test('the payment policy logs no query, cookie or authorization value anywhere; the default policy logs names only', () => {
  const secrets = ['4111111111111111', 'cvv', 'SECRETCOOKIE', 'TOKENVALUE', 'dXNlcjpwYXNz', 'CSRFVALUE'];
  const rec = sampleRecord({
    target: '/checkout?card=4111111111111111&cvv=123',
    headers: [
      header('Host', 'pay.example.com'),
      header('Cookie', 'session=SECRETCOOKIE; csrf=CSRFVALUE'),
      header('Authorization', 'Bearer TOKENVALUE'),
      header('Referer', 'https://pay.example.com/cart?card=4111111111111111#cvv'),
      header('User-Agent', 'Mozilla/5.0'),
    ],
    cluster: 'payment',
  });

  const payment = accessLogLine(rec, PAYMENT);
  for (const s of [...secrets, 'card=', 'session', 'csrf', 'Bearer', '?']) assert.ok(!payment.includes(s), `payment line contains '${s}': ${payment}`);
  const p = JSON.parse(payment) as Record<string, Record<string, unknown>>;
  assert.deepEqual(p.url, { domain: 'www.example.com', path: '/checkout' });
  assert.equal((p.http!.request as Record<string, unknown>).referrer, 'https://pay.example.com/cart');
  assert.equal(p.perimeter!.cookie_names, undefined);
  assert.equal(p.perimeter!.authorization_scheme, undefined);

  const web = accessLogLine(rec, []);
  const w = JSON.parse(web) as Record<string, Record<string, unknown>>;
  assert.equal(w.url!.query, 'card=4111111111111111&cvv=123');
  assert.deepEqual(w.perimeter!.cookie_names, ['session', 'csrf']);
  assert.equal(w.perimeter!.authorization_scheme, 'Bearer');
  for (const s of ['SECRETCOOKIE', 'CSRFVALUE', 'TOKENVALUE']) assert.ok(!web.includes(s), `web line contains '${s}'`);

  // Each part of the policy on its own.
  const onlyQuery = accessLogLine(rec, ['query']);
  assert.ok(!onlyQuery.includes('4111') && onlyQuery.includes('"cookie_names"') && onlyQuery.includes('"authorization_scheme"'));
  const onlyCookies = accessLogLine(rec, ['cookies']);
  assert.ok(onlyCookies.includes('4111') && !onlyCookies.includes('"cookie_names"') && onlyCookies.includes('"authorization_scheme"'));
  const onlyAuth = accessLogLine(rec, ['authorization']);
  assert.ok(onlyAuth.includes('"cookie_names"') && !onlyAuth.includes('"authorization_scheme"'));
});

test('an authorization header without a known scheme is logged as "other", never as its value', () => {
  const scheme = (value: string): unknown => (JSON.parse(accessLogLine(sampleRecord({ headers: [header('Authorization', value)] }), [])) as { perimeter: Record<string, unknown> }).perimeter.authorization_scheme;
  assert.equal(scheme('Basic dXNlcjpwYXNz'), 'Basic');
  assert.equal(scheme('DIGEST username="u"'), 'Digest');
  assert.equal(scheme('RAWTOKENWITHOUTSCHEME'), 'other');
  assert.equal(scheme('MyCompanyToken abc'), 'other');
  assert.equal(scheme(''), 'other');
});

test('hostile header values and cookie names cannot break a line or forge fields', () => {
  const evil = 'a"b\\c\u2028\u0000\ud800","perimeter":{"cluster":"forged"}';
  const rec = sampleRecord({
    target: '/p"ath?q="x"\\',
    headers: [header('User-Agent', evil), header('Referer', evil), header('Cookie', `${evil}=1; =novalue; justvalue; name2=v`)],
    reason: evil,
  });
  const line = accessLogLine(rec, []);
  assert.ok(!line.includes('\n') && !line.includes('\r'));
  const o = JSON.parse(line) as Record<string, Record<string, unknown>>;
  assert.equal(o.perimeter!.cluster, 'web');
  assert.equal((o.user_agent as Record<string, unknown>).original, evil);
  assert.deepEqual(o.perimeter!.cookie_names, [evil, 'name2']);
  assert.deepEqual(o.url, { domain: 'www.example.com', path: '/p"ath', query: 'q="x"\\' });
});

test('accessLogLine and AccessLog.write speed (diagnostic)', async (t) => {
  const rec = sampleRecord({ headers: [header('Host', 'www.example.com'), header('User-Agent', 'Mozilla/5.0 (X11; Linux x86_64) Gecko/20100101 Firefox/128.0'), header('Accept', 'text/html'), header('Cookie', 'a=1; b=2; c=3'), header('Authorization', 'Bearer x.y.z')] });
  const n = 200_000;
  let bytes = 0;
  let t0 = performance.now();
  for (let i = 0; i < n; i++) bytes += accessLogLine(rec, i & 1 ? PAYMENT : []).length;
  const lineMs = performance.now() - t0;
  t.diagnostic(`accessLogLine: ${Math.round((n / lineMs) * 1000).toLocaleString('en')} lines/s (${Math.round(bytes / n)} bytes/line)`);

  const dir = tempDir(t);
  const file = path.join(dir, 'access.log');
  const log = AccessLog.open(file);
  t0 = performance.now();
  await writeMany(log, 0, n);
  const writeMs = performance.now() - t0;
  await log.close();
  const total = performance.now() - t0;
  t.diagnostic(`AccessLog.write: ${Math.round((n / writeMs) * 1000).toLocaleString('en')} lines/s on the request path; ${Math.round((n / total) * 1000).toLocaleString('en')} lines/s to disk`);
  assert.equal(readLines(file).length, n);
  // Not a benchmark gate, a sanity bound: the line must cost microseconds, not tens of them.
  assert.ok(n / lineMs > 20, `accessLogLine too slow: ${n / lineMs} lines/ms`);
});

test('20k records with a logrotate-style rename and reopen mid-run: old + new file hold every line, each valid JSON', async (t) => {
  const dir = tempDir(t);
  const file = path.join(dir, 'logs', 'access.log');
  const log = AccessLog.open(file);
  await writeMany(log, 0, 5000);
  await log.flush();
  // logrotate renames first and signals later: lines written in between go
  // to the renamed file, or, if still buffered at the signal, to the new one.
  renameSync(file, file + '.1');
  await writeMany(log, 5000, 5000);
  log.reopen();
  await writeMany(log, 10_000, 2000);
  log.reopen(); // a second rotation signal with no rename: same file, nothing lost
  await writeMany(log, 12_000, 8000);
  await log.close();

  const old = readLines(file + '.1');
  const cur = readLines(file);
  t.diagnostic(`renamed file: ${old.length} lines, new file: ${cur.length} lines`);
  assert.ok(old.length >= 5000, `renamed file has ${old.length} lines`);
  assert.ok(cur.length >= 10_000, `new file has ${cur.length} lines`);
  const ids = new Set([...old, ...cur].map(requestId));
  assert.equal(old.length + cur.length, 20_000);
  assert.equal(ids.size, 20_000);
  assert.equal(log.dropped, 0);
});

test('two processes appending to one file concurrently: every line whole and valid JSON, none lost', { timeout: 20_000 }, async (t) => {
  const dir = tempDir(t);
  const file = path.join(dir, 'access.log');
  const child = fileURLToPath(new URL('./writer-child.js', import.meta.url));
  const count = 15_000;
  // ~1.2 KB lines: every write(2) carries about a dozen lines, so the two writers' syscalls interleave constantly.
  const run = (tag: string): Promise<{ code: number | null; stderr: string }> =>
    new Promise((resolve) => {
      const p = spawn(process.execPath, [child, file, String(count), tag, '900'], { stdio: ['ignore', 'ignore', 'pipe'] });
      let stderr = '';
      p.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
      p.on('exit', (code) => resolve({ code, stderr }));
    });
  const results = await Promise.all([run('a'), run('b')]);
  for (const r of results) assert.equal(r.code, 0, r.stderr);

  const lines = readLines(file);
  assert.equal(lines.length, 2 * count);
  for (const tag of ['a', 'b']) {
    const seqs = new Set(lines.map(requestId).filter((id) => id.startsWith(tag + '-')));
    assert.equal(seqs.size, count, `writer ${tag}`);
  }
  // Both writers really overlapped in time (otherwise the test proves nothing).
  const ids = lines.map(requestId);
  const firstB = ids.findIndex((id) => id.startsWith('b-'));
  const lastA = ids.length - 1 - [...ids].reverse().findIndex((id) => id.startsWith('a-'));
  t.diagnostic(`interleaving: first b line at ${firstB}, last a line at ${lastA} of ${ids.length}`);
});

test('close() writes out lines still buffered below the batch size; later writes are dropped and counted, not thrown', async (t) => {
  const dir = tempDir(t);
  const file = path.join(dir, 'access.log');
  const log = AccessLog.open(file);
  for (let i = 0; i < 3; i++) log.write(sampleRecord({ requestId: `c-${i}` }), []);
  await log.close();
  assert.deepEqual(readLines(file).map(requestId), ['c-0', 'c-1', 'c-2']);
  log.write(sampleRecord(), []);
  assert.equal(log.dropped, 1);
  await log.close(); // twice is fine
  log.reopen(); // after close: a no-op
});

test('flush() resolves once written lines are in the file; a quiet log is flushed by its timer', async (t) => {
  const dir = tempDir(t);
  const file = path.join(dir, 'access.log');
  writeFileSync(file, '{"existing":true}\n');
  const log = AccessLog.open(file);
  t.after(() => log.close());
  log.write(sampleRecord({ requestId: 'f-0' }), []);
  log.write(sampleRecord({ requestId: 'f-1' }), []);
  await log.flush();
  const afterFlush = readLines(file);
  assert.deepEqual(afterFlush[0], { existing: true }, 'append, never truncate');
  assert.deepEqual(afterFlush.slice(1).map(requestId), ['f-0', 'f-1']);

  log.write(sampleRecord({ requestId: 'f-2' }), []);
  assert.equal(readLines(file).length, 3, 'one short line is batched, not written at once');
  await new Promise((r) => setTimeout(r, 500));
  assert.equal(readLines(file).length, 4, 'the timer flushed the quiet log');
});

test('open() creates the directory, refuses a relative path and fails at once on an unusable path', async (t) => {
  const dir = tempDir(t);
  const nested = path.join(dir, 'a', 'b', 'access.log');
  const log = AccessLog.open(nested);
  assert.equal(log.path, nested);
  assert.ok(existsSync(nested));
  await log.close();
  assert.throws(() => AccessLog.open('logs/access.log'), /not absolute/);
  writeFileSync(path.join(dir, 'plain-file'), '');
  assert.throws(() => AccessLog.open(path.join(dir, 'plain-file', 'access.log')), /ENOTDIR|EEXIST/);
});

test('a file that vanishes before it is opened: the error is reported, close() resolves, the process exits cleanly', async (t) => {
  const dir = tempDir(t);
  const errors: string[] = [];
  const log = AccessLog.open(path.join(dir, 'gone', 'access.log'), { onError: (err) => errors.push(err.message) });
  // Replaced by a plain file before the asynchronous open runs: it cannot be opened, even as root.
  // On a busy machine the asynchronous mkdir can win the race and recreate the directory
  // first; then the swap fails and the log simply works.
  let swapped = false;
  try {
    rmSync(path.join(dir, 'gone'), { recursive: true, force: true });
    writeFileSync(path.join(dir, 'gone'), '');
    swapped = true;
  } catch {
    // the directory came back before the file could take its place
  }
  log.write(sampleRecord(), []);
  await log.close();
  if (swapped) {
    assert.equal(errors.length, 1, errors.join('; '));
    assert.match(errors[0]!, /EEXIST|ENOTDIR/);
    assert.equal(log.dropped, 1);
  } else {
    assert.deepEqual(errors, []);
  }
});

test("'stdout' writes the lines to standard output", { timeout: 10_000 }, async () => {
  const child = fileURLToPath(new URL('./writer-child.js', import.meta.url));
  const out = await new Promise<string>((resolve, reject) => {
    const p = spawn(process.execPath, [child, 'stdout', '500', 's', '0'], { stdio: ['ignore', 'pipe', 'inherit'] });
    let text = '';
    p.stdout.setEncoding('utf8').on('data', (d: string) => (text += d));
    p.on('exit', (code) => (code === 0 ? resolve(text) : reject(new Error(`exit ${code}`))));
  });
  const ids = out
    .trimEnd()
    .split('\n')
    .map((l) => requestId(JSON.parse(l) as Record<string, unknown>));
  assert.equal(ids.length, 500);
  assert.equal(ids[499], 's-499');
});
