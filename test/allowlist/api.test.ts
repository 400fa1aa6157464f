/**
 * The allowlist admin API over HTTP on a real admin listener (in-process
 * runtime, SQLite store in the config's data directory), and its auth.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { freePort } from '../helpers/cli.js';
import { request, startAdminPerimeter, type Reply } from '../admin/harness.js';
import { startPerimeter } from '../helpers/perimeter.js';

const WEB = `clusters:
  web:
    listen: { http: "127.0.0.1:0" }
access-log:
  path: "off"
`;

async function withApi(fn: (admin: string, dir: string, logs: string[]) => Promise<void>, adminSection?: string, extra?: Record<string, string>): Promise<void> {
  const admin = adminSection ?? `admin:\n  listen: "127.0.0.1:${await freePort()}"\n`;
  const p = await startAdminPerimeter({ perimeter: WEB + admin, sites: {}, ...(extra ? { extra } : {}) });
  try {
    await fn(p.admin, p.dir, p.logs);
  } finally {
    await p.close();
  }
}

function body<T = Record<string, unknown>>(r: Reply): T {
  return JSON.parse(r.text) as T;
}

const JSONH = { 'content-type': 'application/json' };

test('api: add, list, check, edit, expire, remove, history — with actor and reason', async () => {
  await withApi(async (admin, dir, logs) => {
    assert.ok(existsSync(join(dir, 'data', 'allowlists.db')), 'SQLite file created under the data dir');
    const h = await request(`${admin}/api/health`);
    assert.equal(h.status, 200);
    assert.equal(body<{ status: string }>(h).status, 'ok');
    assert.equal(body<{ allowlists: { store: string } }>(h).allowlists.store, 'sqlite');

    const add = await request(`${admin}/api/allowlists/content-partners/entries`, {
      method: 'POST',
      headers: { ...JSONH, 'x-perimeter-actor': 'alice' },
      body: JSON.stringify({ cidr: '198.51.100.0/24', partner: 'Acme Records', note: 'SFTP', expiresAt: '2099-01-01', reason: 'ticket 123' }),
    });
    assert.equal(add.status, 201, add.text);
    const e = body<{ entry: { id: string; cidr: string; addedBy: string; expired: boolean } }>(add).entry;
    assert.equal(e.cidr, '198.51.100.0/24');
    assert.equal(e.addedBy, 'api:alice');
    assert.equal(e.expired, false);
    assert.equal(add.headers.location, `/api/allowlists/entries/${e.id}`);

    const lists = body<{ store: { state: string }; lists: { name: string; entries: number }[] }>(await request(`${admin}/api/allowlists`));
    assert.equal(lists.store.state, 'ok');
    assert.deepEqual(lists.lists.map((l) => [l.name, l.entries]), [['content-partners', 1]]);
    const entries = body<{ entries: { id: string }[] }>(await request(`${admin}/api/allowlists/content-partners/entries`));
    assert.deepEqual(entries.entries.map((x) => x.id), [e.id]);

    const chk = body<{ allowed: boolean; entry: { id: string } }>(await request(`${admin}/api/allowlists/check?address=198.51.100.7&list=content-partners`));
    assert.equal(chk.allowed, true);
    assert.equal(chk.entry.id, e.id);
    const all = body<{ allowed: boolean; results: { list: string; allowed: boolean }[] }>(await request(`${admin}/api/allowlists/check?address=203.0.113.1`));
    assert.equal(all.allowed, false);
    assert.deepEqual(all.results.map((r) => r.list), ['content-partners']);

    const put = await request(`${admin}/api/allowlists/entries/${e.id}`, { method: 'PUT', headers: JSONH, body: JSON.stringify({ note: 'SFTP and FTPS', reason: 'more protocols' }) });
    assert.equal(put.status, 200, put.text);
    const edited = body<{ entry: { note: string; cidr: string; expiresAt: string } }>(put).entry;
    assert.equal(edited.note, 'SFTP and FTPS');
    assert.equal(edited.cidr, '198.51.100.0/24', 'fields left out keep their value');
    assert.equal(edited.expiresAt, '2099-01-01T00:00:00.000Z');

    const exp = await request(`${admin}/api/allowlists/entries/${e.id}/expire`, { method: 'POST', headers: JSONH, body: JSON.stringify({ reason: 'contract paused' }) });
    assert.equal(exp.status, 200, exp.text);
    assert.equal(body<{ entry: { expired: boolean } }>(exp).entry.expired, true);
    assert.equal(body<{ allowed: boolean }>(await request(`${admin}/api/allowlists/check?address=198.51.100.7&list=content-partners`)).allowed, false);

    const del = await request(`${admin}/api/allowlists/entries/${e.id}?reason=${encodeURIComponent('contract ended')}`, { method: 'DELETE' });
    assert.equal(del.status, 200, del.text);
    const gone = await request(`${admin}/api/allowlists/entries/${e.id}`);
    assert.equal(gone.status, 404);
    assert.equal(body<{ field: string }>(gone).field, 'id');

    const hist = body<{ records: { action: string; actor: string; reason: string }[] }>(await request(`${admin}/api/allowlists/history?list=content-partners`));
    assert.deepEqual(hist.records.map((r) => `${r.action}/${r.actor}/${r.reason}`), ['remove/api/contract ended', 'expire/api/contract paused', 'update/api/more protocols', 'add/api:alice/ticket 123']);
    assert.equal(body<{ records: unknown[] }>(await request(`${admin}/api/allowlists/history?limit=1`)).records.length, 1);
    assert.ok(logs.some((l) => l.includes('"allowlist-add"') && l.includes('api:alice')), 'the change is in the event log');
  });
});

test('api: refusals are 400 with field and fix; bad bodies, methods and actors are refused', async () => {
  await withApi(async (admin) => {
    const post = (b: unknown, headers: Record<string, string> = JSONH): Promise<Reply> =>
      request(`${admin}/api/allowlists/partners/entries`, { method: 'POST', headers, body: typeof b === 'string' ? b : JSON.stringify(b) });
    const cases: [unknown, string, RegExp][] = [
      [{ cidr: '0.0.0.0/0', partner: 'A', reason: 'r' }, 'cidr', /whole internet/],
      [{ cidr: '198.51.100.7/24', partner: 'A', reason: 'r' }, 'cidr', /host bits/],
      [{ cidr: '198.51.100.300', partner: 'A', reason: 'r' }, 'cidr', /not an IP address/],
      [{ cidr: '198.51.100.7', partner: '', reason: 'r' }, 'partner', /required/],
      [{ cidr: '198.51.100.7', partner: 'A' }, 'reason', /required/],
      [{ cidr: '198.51.100.7', partner: 'A', reason: 'r', expiresAt: '2001-01-01' }, 'expiresAt', /past/],
    ];
    for (const [b, field, msg] of cases) {
      const r = await post(b);
      assert.equal(r.status, 400, `${JSON.stringify(b)}: ${r.text}`);
      const j = body<{ error: string; field: string; fix: string }>(r);
      assert.equal(j.field, field);
      assert.match(j.error, msg);
      assert.ok(j.fix.length > 10);
    }
    const badList = await request(`${admin}/api/allowlists/Bad_List/entries`, { method: 'POST', headers: JSONH, body: JSON.stringify({ cidr: '198.51.100.7', partner: 'A', reason: 'r' }) });
    assert.equal(badList.status, 400);
    assert.equal(body<{ field: string }>(badList).field, 'list');
    assert.equal((await post('{not json')).status, 400);
    assert.equal((await post('[1]')).status, 400);
    assert.equal((await post('cidr=1.2.3.4', { 'content-type': 'application/x-www-form-urlencoded' })).status, 415, 'forms cannot post (CSRF)');
    assert.equal((await post({ cidr: '198.51.100.7', partner: 'A', reason: 'r' }, { ...JSONH, 'x-perimeter-actor': 'bad actor' })).status, 400);
    assert.equal((await post('x'.repeat(70 * 1024))).status, 413);
    assert.equal((await request(`${admin}/api/allowlists/check?address=nope&list=partners`)).status, 400);
    const m = await request(`${admin}/api/allowlists`, { method: 'DELETE' });
    assert.equal(m.status, 405);
    assert.equal((await request(`${admin}/api/allowlists/entries/00000000-0000-0000-0000-000000000000`, { method: 'DELETE', headers: { ...JSONH, 'content-length': '14' }, body: '{"reason":"x"}' })).status, 404);
    assert.equal((await request(`${admin}/api/allowlists/nothing/here/at/all`)).status, 404);
    assert.equal(body<{ lists: unknown[] }>(await request(`${admin}/api/allowlists`)).lists.length, 0, 'nothing was written');
    // Cross-origin changes are refused on loopback without a token.
    const cross = await request(`${admin}/api/allowlists/partners/entries`, { method: 'POST', headers: { ...JSONH, origin: 'http://evil.example' }, body: JSON.stringify({ cidr: '198.51.100.7', partner: 'A', reason: 'r' }) });
    assert.equal(cross.status, 403);
    const index = body<{ endpoints: string[] }>(await request(`${admin}/`));
    assert.ok(index.endpoints.includes('GET /api/allowlists'));
    assert.ok(index.endpoints.includes('GET /api/health'));
  });
});

test('api: with a token every allowlist endpoint needs it', async () => {
  const token = randomBytes(24).toString('hex');
  await withApi(
    async (admin) => {
      for (const [method, path] of [['GET', '/api/allowlists'], ['POST', '/api/allowlists/p/entries'], ['GET', '/api/allowlists/check?address=1.2.3.4'], ['GET', '/api/health']] as const) {
        const r = await request(`${admin}${path}`, { method, headers: JSONH, body: method === 'POST' ? '{"cidr":"198.51.100.7","partner":"A","reason":"r"}' : undefined });
        assert.equal(r.status, 401, `${method} ${path}`);
      }
      const ok = await request(`${admin}/api/allowlists/p/entries`, { method: 'POST', headers: { ...JSONH, authorization: `Bearer ${token}` }, body: '{"cidr":"198.51.100.7","partner":"A","reason":"r"}' });
      assert.equal(ok.status, 201);
      assert.equal(body<{ entry: { addedBy: string } }>(ok).entry.addedBy, 'api');
    },
    `admin:\n  listen: "127.0.0.1:${await freePort()}"\n  token-file: admin.token\n`,
    { 'admin.token': `${token}\n` },
  );
});

test('no tcp and no admin listener: no store, no data files', async () => {
  const p = await startPerimeter({ perimeter: WEB, sites: {} });
  try {
    assert.equal(p.runtime.allowlistHost.service, undefined);
    assert.equal(existsSync(join(p.dir, 'data')), false);
  } finally {
    await p.close();
  }
});
