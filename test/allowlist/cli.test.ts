/**
 * `perimeter allow` as a real process against a real `perimeter run
 * --workers 2` (control process + two workers): changes go through the
 * admin API (token from the config directory), reach both workers' tables
 * (seen in the metrics aggregated from every process), exit statuses.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtemp, mkdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePort, runPerimeter } from '../helpers/cli.js';

interface Run {
  readonly code: number;
  readonly stdout: string;
  readonly stderr: string;
}

function allow(args: string[]): Promise<Run> {
  return new Promise((resolve) => {
    execFile(process.execPath, ['dist/src/cli/main.js', 'allow', ...args], { timeout: 30_000 }, (err, stdout, stderr) => {
      const code = err ? (typeof (err as { code?: unknown }).code === 'number' ? (err as { code: number }).code : 99) : 0;
      resolve({ code, stdout, stderr });
    });
  });
}

function sample(text: string, name: string, list: string): number | undefined {
  const line = text.split('\n').find((l) => l.startsWith(`${name}{list="${list}"}`));
  return line === undefined ? undefined : Number(line.split(' ').pop());
}

async function until<T>(fn: () => Promise<T | undefined>, ms: number, what: string): Promise<T> {
  const start = Date.now();
  for (let i = 0; i < 500; i++) {
    const v = await fn();
    if (v !== undefined) return v;
    if (Date.now() - start > ms) break;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`${what}: not within ${ms} ms`);
}

test('perimeter allow against perimeter run --workers 2: add, ls, check, history, rm; workers get every change', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'perimeter-allow-cli-'));
  const adminPort = await freePort();
  const token = randomBytes(24).toString('hex');
  await mkdir(join(dir, 'sites'));
  await writeFile(join(dir, 'admin.token'), `${token}\n`, { mode: 0o600 });
  await writeFile(
    join(dir, 'perimeter.yaml'),
    `clusters:
  web:
    listen: { http: "127.0.0.1:${await freePort()}" }
admin:
  listen: "127.0.0.1:${adminPort}"
  token-file: admin.token
access-log:
  path: "off"
`,
  );
  const p = runPerimeter(dir, ['--workers', '2']);
  const metrics = async (): Promise<string> => {
    const r = await fetch(`http://127.0.0.1:${adminPort}/metrics`, { headers: { authorization: `Bearer ${token}` } });
    return r.text();
  };
  try {
    await p.waitForLog((l) => l.event?.action === 'workers-started', 20_000);
    const c = ['-c', dir];

    const added = await allow(['add', 'content-partners', '198.51.100.7', '--partner', 'Acme Records', '--note', 'SFTP', '--expires', '2099-01-01', '--reason', 'ticket 123', '--as', 'alice', ...c]);
    assert.equal(added.code, 0, added.stderr);
    assert.match(added.stdout, /added to content-partners: 198\.51\.100\.7\/32 \(Acme Records: SFTP; entry [0-9a-f-]{36}, added by api:alice/);
    const id = /entry ([0-9a-f-]{36})/.exec(added.stdout)![1]!;

    // Control process + both workers replaced their table (counter summed over processes), all hold 1 entry (gauge: min over processes).
    await until(async () => {
      const m = await metrics();
      return (sample(m, 'perimeter_allowlist_table_updates_total', 'content-partners') ?? 0) >= 3 && sample(m, 'perimeter_allowlist_entries', 'content-partners') === 1 ? true : undefined;
    }, 1000, 'both workers have the first entry');
    const before = sample(await metrics(), 'perimeter_allowlist_table_updates_total', 'content-partners')!;
    const second = await allow(['add', 'content-partners', '2001:db8:5::/48', '--partner', 'Acme Records', '--reason', 'IPv6 too', ...c]);
    assert.equal(second.code, 0, second.stderr);
    await until(async () => {
      const m = await metrics();
      return (sample(m, 'perimeter_allowlist_table_updates_total', 'content-partners') ?? 0) >= before + 3 && sample(m, 'perimeter_allowlist_entries', 'content-partners') === 2 ? true : undefined;
    }, 1000, 'both workers have the second entry');

    const refused = await allow(['add', 'content-partners', '0.0.0.0/0', '--partner', 'Everyone', '--reason', 'oops', ...c]);
    assert.equal(refused.code, 1);
    assert.match(refused.stderr, /whole internet/);
    assert.match(refused.stderr, /^fix: /m);
    const usage = await allow(['add', 'content-partners', '198.51.100.8', '--partner', 'Acme', ...c]);
    assert.equal(usage.code, 2);
    assert.match(usage.stderr, /--reason/);

    const ls = await allow(['ls', 'content-partners', ...c]);
    assert.equal(ls.code, 0, ls.stderr);
    assert.match(ls.stdout, /198\.51\.100\.7\/32\s+Acme Records\s+2099-01-01T00:00:00\.000Z/);
    assert.match(ls.stdout, /2001:db8:5::\/48/);
    const lsJson = await allow(['ls', '--json', ...c]);
    assert.deepEqual((JSON.parse(lsJson.stdout) as { lists: { name: string; entries: number }[] }).lists.map((l) => [l.name, l.entries]), [['content-partners', 2]]);

    const yes = await allow(['check', '198.51.100.7', 'content-partners', ...c]);
    assert.equal(yes.code, 0);
    assert.match(yes.stdout, new RegExp(`198\\.51\\.100\\.7 is allowed on content-partners by 198\\.51\\.100\\.7/32 \\(Acme Records: SFTP; entry ${id}`));
    const no = await allow(['check', '198.51.100.8', 'content-partners', ...c]);
    assert.equal(no.code, 1);
    assert.match(no.stdout, /not allowed on content-partners/);
    assert.equal((await allow(['check', '2001:db8:5::1', ...c])).code, 0, 'every list when none is named');

    const rm1 = await allow(['rm', id, '--reason', 'contract ended', '--as', 'bob', ...c]);
    assert.equal(rm1.code, 0, rm1.stderr);
    assert.equal((await allow(['check', '198.51.100.7', 'content-partners', ...c])).code, 1);
    await until(async () => (sample(await metrics(), 'perimeter_allowlist_entries', 'content-partners') === 1 ? true : undefined), 1000, 'workers saw the removal');
    assert.equal((await allow(['rm', id, '--reason', 'again', ...c])).code, 1, 'unknown id');

    const hist = await allow(['history', 'content-partners', ...c]);
    assert.equal(hist.code, 0);
    const rows = hist.stdout.trim().split('\n').slice(1);
    assert.equal(rows.length, 3);
    assert.match(rows[0]!, /api:bob\s+remove\s+content-partners\s+198\.51\.100\.7\/32.*contract ended/);
    assert.match(rows[2]!, /api:alice\s+add\s+content-partners\s+198\.51\.100\.7\/32.*ticket 123/);

    // Wrong token / nothing listening: exit 3.
    await writeFile(join(dir, 'wrong.token'), 'x'.repeat(32));
    assert.equal((await allow(['ls', '--token-file', join(dir, 'wrong.token'), ...c])).code, 3);
    const down = await allow(['ls', '--admin', `127.0.0.1:${await freePort()}`]);
    assert.equal(down.code, 3);
    assert.match(down.stderr, /cannot reach the admin API/);
    assert.doesNotMatch(p.lines.map((l) => JSON.stringify(l)).join('\n'), new RegExp(token), 'the token is never logged');
  } finally {
    p.kill('SIGTERM');
    await p.exited;
    await rm(dir, { recursive: true, force: true });
  }
});
