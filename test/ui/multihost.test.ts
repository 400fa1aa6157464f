/**
 * The multi-host acceptance: two perimeter processes (the real CLI,
 * control process plus a worker each) share one PostgreSQL database, created
 * for this run and dropped after. Each has a tcp listener in front of an echo
 * backend and an admin listener. An entry added in the web UI of process A
 * (driven by Chromium) lets its 127.0.0.x source through process B's tcp
 * listener within a second; removing it in the UI keeps the established
 * session open and refuses new ones.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { hashPassword } from '../../src/admin/ui/users.js';
import { freePort, runPerimeter, type RunningPerimeter } from '../helpers/cli.js';
import { startEcho } from '../tcp/harness.js';
import { PASSWORD, USER } from './harness.js';
import { openBrowser } from './browser.js';

const PG = 'postgres://postgres@127.0.0.1:5432';
const SOURCE = '127.0.0.77';

/** Connect from `source` and try an echo: 'echo' when the bytes came back, 'closed' when perimeter closed it first. */
function tryEcho(port: number, source: string, timeoutMs = 800): Promise<'echo' | 'closed'> {
  return new Promise((resolve) => {
    const sock = net.connect({ port, host: '127.0.0.1', localAddress: source });
    const probe = `probe-${randomBytes(4).toString('hex')}`;
    let got = '';
    const done = (r: 'echo' | 'closed'): void => {
      clearTimeout(timer);
      sock.destroy();
      resolve(r);
    };
    const timer = setTimeout(() => done('closed'), timeoutMs);
    sock.on('connect', () => sock.write(probe));
    sock.on('data', (d: Buffer) => {
      got += d.toString();
      if (got.includes(probe)) done('echo');
    });
    sock.on('error', () => done('closed'));
    sock.on('close', () => done('closed'));
  });
}

/** An open session through the proxy that echoes on demand. */
async function openSession(port: number, source: string): Promise<{ echo(text: string): Promise<string>; closed(): boolean; end(): void }> {
  const sock = net.connect({ port, host: '127.0.0.1', localAddress: source });
  let closed = false;
  sock.on('close', () => (closed = true));
  sock.on('error', () => (closed = true));
  await new Promise<void>((resolve, reject) => {
    sock.once('connect', () => resolve());
    sock.once('error', reject);
  });
  return {
    echo: (text) =>
      new Promise((resolve, reject) => {
        let got = '';
        const timer = setTimeout(() => reject(new Error(`no echo of ${text} within 2 s (closed: ${closed})`)), 2000);
        const onData = (d: Buffer): void => {
          got += d.toString();
          if (got.includes(text)) {
            clearTimeout(timer);
            sock.off('data', onData);
            resolve(got);
          }
        };
        sock.on('data', onData);
        sock.write(text);
      }),
    closed: () => closed,
    end: () => sock.destroy(),
  };
}

/** Poll until `want` (bounded: at most `withinMs`); returns the milliseconds it took, or throws. */
async function until(what: string, withinMs: number, probe: () => Promise<boolean>): Promise<number> {
  const start = Date.now();
  for (let i = 0; i < 200; i++) {
    if (await probe()) return Date.now() - start;
    if (Date.now() - start > withinMs) break;
    await new Promise((r) => setTimeout(r, 25));
  }
  throw new Error(`${what}: not within ${withinMs} ms`);
}

interface Host {
  readonly dir: string;
  readonly run: RunningPerimeter;
  readonly admin: string;
  readonly tcpPort: number;
}

async function startHost(name: string, dbUrl: string, echoPort: number, usersLine: string): Promise<Host> {
  const dir = await mkdtemp(join(tmpdir(), `perimeter-ui-${name}-`));
  const adminPort = await freePort();
  const tcpPort = await freePort();
  await writeFile(join(dir, 'admin-users'), `${usersLine}\n`);
  await writeFile(join(dir, 'pg.url'), `${dbUrl}\n`);
  await writeFile(
    join(dir, 'perimeter.yaml'),
    `clusters:
  web:
    listen: { http: "127.0.0.1:0" }
admin:
  listen: "127.0.0.1:${adminPort}"
  users-file: admin-users
access-log: { path: "off" }
geo: { country-db: off, asn-db: off }
tcp:
  upload:
    listen: "127.0.0.1:${tcpPort}"
    service: sftp
    allowlist: content-partners
services:
  sftp:
    health: { interval: 200ms, timeout: 100ms, rise: 1, fall: 1 }
discovery:
  static:
    sftp: ["127.0.0.1:${echoPort}"]
allowlists:
  store: postgres
  postgres: { url-file: pg.url }
`,
  );
  const run = runPerimeter(dir, ['--workers', '1']);
  try {
    await run.waitForLog((l) => l.event?.action === 'listen' && (l as { protocol?: string }).protocol === 'tcp', 20_000);
    await run.waitForLog((l) => l.event?.action === 'listen' && typeof l.message === 'string' && l.message.startsWith('admin listening'), 20_000);
  } catch (err) {
    run.kill('SIGKILL');
    await rm(dir, { recursive: true, force: true });
    throw err;
  }
  return { dir, run, admin: `http://127.0.0.1:${adminPort}`, tcpPort };
}

async function stopHost(h: Host): Promise<void> {
  h.run.kill('SIGTERM');
  const t = setTimeout(() => h.run.kill('SIGKILL'), 10_000);
  await h.run.exited;
  clearTimeout(t);
  await rm(h.dir, { recursive: true, force: true });
}

test('an entry added in the UI of one perimeter admits its source through another within a second; removal keeps established sessions', async (t) => {
  const db = `perimeter_ui_${randomBytes(6).toString('hex')}`;
  const admin = new pg.Client({ connectionString: `${PG}/test` });
  await admin.connect();
  await admin.query(`CREATE DATABASE ${db}`);
  const cleanups: (() => Promise<unknown>)[] = [];
  t.after(async () => {
    for (const c of cleanups.reverse()) await c().catch((err: unknown) => console.error(`cleanup: ${String(err)}`));
    await admin.query(`DROP DATABASE IF EXISTS ${db} WITH (FORCE)`);
    await admin.end();
  });
  const echo = await startEcho({ name: 'sftp' });
  cleanups.push(() => echo.close());
  const usersLine = `${USER}:${await hashPassword(PASSWORD)}`;
  const dbUrl = `${PG}/${db}`;
  const a = await startHost('a', dbUrl, echo.port, usersLine);
  cleanups.push(() => stopHost(a));
  const b = await startHost('b', dbUrl, echo.port, usersLine);
  cleanups.push(() => stopHost(b));

  // Not listed yet: closed by both, and no connection reaches the backend.
  // Counted as connections that carried bytes (`served`): `accepted` also
  // counts the TCP health probes of both hosts, every 200 ms.
  const before = echo.served;
  assert.equal(await tryEcho(b.tcpPort, SOURCE), 'closed');
  assert.equal(await tryEcho(a.tcpPort, SOURCE), 'closed');
  assert.equal(echo.served, before, 'a refused source reached the backend');

  const br = await openBrowser(t, 'multihost');
  cleanups.push(() => br.close());
  const { page } = br;
  await page.goto(`${a.admin}/ui/add?list=content-partners`);
  await page.getByLabel('User name').fill(USER);
  await page.getByLabel('Password').fill(PASSWORD);
  await page.getByRole('button', { name: 'Log in' }).click();
  await page.getByRole('heading', { level: 1, name: 'Add an allowlist entry' }).waitFor();
  assert.equal(await page.getByLabel('List').inputValue(), 'content-partners');
  await page.getByLabel('Address or CIDR range').fill(SOURCE);
  await page.getByLabel('Partner').fill('Acme Upload');
  await page.getByLabel('Reason for this change').fill('multi-host acceptance');
  await br.shot('a-add-form');
  await page.getByRole('button', { name: 'Add entry' }).click();
  await page.getByRole('heading', { level: 1, name: 'Allowlist content-partners' }).waitFor();
  // The UI answered: the change is committed in PostgreSQL. From here, B must admit the source within a second.
  const admitted = await until(`${SOURCE} admitted through B`, 1000, async () => (await tryEcho(b.tcpPort, SOURCE, 300)) === 'echo');
  t.diagnostic(`B admitted ${SOURCE} ${admitted} ms after A's UI confirmed the entry`);
  await br.shot('a-entry-added');
  assert.equal(await tryEcho(a.tcpPort, SOURCE), 'echo', 'A admits it too');
  assert.equal(await tryEcho(b.tcpPort, '127.0.0.78'), 'closed', 'another source still refused');

  // The overview says which tcp listener uses the list.
  await page.goto(`${a.admin}/ui/`);
  assert.match(await page.locator('main tbody tr', { hasText: 'content-partners' }).innerText(), /content-partners\s+1\s+upload/);
  await br.shot('a-overview');
  await page.goto(`${a.admin}/ui/lists/content-partners`);

  // B's own UI shows the entry (same database); logging in there does not log A out (cookie names carry the port).
  const pageB = await br.context.newPage();
  await pageB.goto(`${b.admin}/ui/lists/content-partners`);
  await pageB.getByLabel('User name').fill(USER);
  await pageB.getByLabel('Password').fill(PASSWORD);
  await pageB.getByRole('button', { name: 'Log in' }).click();
  await pageB.getByRole('heading', { level: 1, name: 'Allowlist content-partners' }).waitFor();
  assert.match(await pageB.locator('tbody').innerText(), /127\.0\.0\.77\/32[\s\S]*alice/);
  await pageB.screenshot({ path: join('test-results', 'screenshots', 'multihost', 'b-sees-entry.png'), fullPage: true });
  t.diagnostic(`screenshot: ${join(process.cwd(), 'test-results', 'screenshots', 'multihost', 'b-sees-entry.png')}`);
  await pageB.close();

  // An established session through B, then removal in A's UI.
  const session = await openSession(b.tcpPort, SOURCE);
  assert.match(await session.echo('before-removal'), /before-removal/);
  await page.getByRole('link', { name: /^Remove/ }).first().click();
  await page.getByLabel('Reason').fill('upload finished');
  await page.getByRole('button', { name: 'Remove this entry' }).click();
  await page.getByRole('heading', { level: 1, name: 'Allowlist content-partners' }).waitFor();
  await br.shot('a-entry-removed');
  const refused = await until(`${SOURCE} refused through B after removal`, 1000, async () => (await tryEcho(b.tcpPort, SOURCE, 300)) === 'closed');
  t.diagnostic(`B refused new connections from ${SOURCE} ${refused} ms after the removal`);
  const servedAfter = echo.served;
  assert.equal(await tryEcho(b.tcpPort, SOURCE), 'closed');
  assert.equal(await tryEcho(a.tcpPort, SOURCE), 'closed');
  assert.equal(echo.served, servedAfter, 'refused connections reached the backend');
  // The established session is still open and working.
  assert.equal(session.closed(), false);
  assert.match(await session.echo('after-removal'), /after-removal/);
  session.end();

  await page.goto(`${a.admin}/ui/history?list=content-partners`);
  const rows = await page.locator('main tbody tr').allInnerTexts();
  assert.equal(rows.length, 2);
  assert.match(rows[0]!, /alice\s+remove[\s\S]*upload finished/);
  assert.match(rows[1]!, /alice\s+add[\s\S]*multi-host acceptance/);
  await br.shot('a-history');
  assert.deepEqual(br.problems.filter((m) => !/status of 422/.test(m)), []);
});
