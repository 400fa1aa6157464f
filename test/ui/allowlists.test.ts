/** Allowlist pages over HTTP against the real store (SQLite in the data directory): escaping, CSRF on changes, edit, expire, validation. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { UiClient, startUiPerimeter } from './harness.js';
import type { AllowEntry } from '../../src/allowlist/types.js';

const HOSTILE = `<script>alert(1)</script>`;

test('allowlist pages: hostile values escaped; changes need CSRF and same origin; edit and expire; errors re-render the form', async (t) => {
  const p = await startUiPerimeter({ extraYaml: '' });
  t.after(() => p.closeAll());
  const service = p.runtime.adminSource().allowlists?.();
  assert.ok(service, 'the single process runs the allowlist store');
  const c = new UiClient(p.admin);
  assert.equal((await c.login()).status, 303);

  const fields = { list: 'content-partners', cidr: '198.51.100.7', partner: `Evil "partner" ${HOSTILE}`, note: HOSTILE, expiresAt: '', reason: `why ${HOSTILE}` };
  // Refused POSTs add nothing.
  assert.equal((await c.post('/ui/add', fields)).status, 403, 'no CSRF token');
  assert.equal((await c.post('/ui/add', { ...fields, csrf: 'x'.repeat(43) })).status, 403, 'wrong CSRF token');
  assert.equal((await c.submit('/ui/add', '/ui/add', fields, { origin: 'http://evil.example' })).status, 403, 'foreign Origin');
  assert.equal((await c.submit('/ui/add', '/ui/add', fields, { origin: 'null', 'sec-fetch-site': 'cross-site' })).status, 403, 'cross-site');
  assert.deepEqual(await service.entries('content-partners'), []);

  const added = await c.submit('/ui/add', '/ui/add', fields, { origin: 'null', 'sec-fetch-site': 'same-origin' });
  assert.equal(added.status, 303, added.text);
  assert.match(String(added.headers.location), /^\/ui\/lists\/content-partners\?done=added#entry-/);
  const [entry] = (await service.entries('content-partners')) as AllowEntry[];
  assert.ok(entry);
  assert.equal(entry.cidr, '198.51.100.7/32');
  assert.equal(entry.addedBy, 'alice');
  assert.equal(entry.note, HOSTILE);

  for (const path of ['/ui/lists/content-partners?done=added', '/ui/history', `/ui/lists/content-partners/entries/${entry.id}/history`, '/ui/search?address=198.51.100.7', `/ui/lists/content-partners/entries/${entry.id}/edit`]) {
    const page = await c.get(path);
    assert.equal(page.status, 200, path);
    assert.doesNotMatch(page.text, /<script/i, `${path} has a raw <script>`);
    assert.match(page.text, /&lt;script&gt;alert\(1\)&lt;\/script&gt;/, `${path} shows the note escaped`);
  }
  const list = await c.get('/ui/lists/content-partners?done=added');
  assert.match(list.text, /<p class="flash" role="status">Entry added\.<\/p>/);
  assert.match(list.text, /Evil &quot;partner&quot;/);
  const overview = await c.get('/ui/');
  assert.match(overview.text, /<a href="\/ui\/lists\/content-partners">content-partners<\/a><\/th><td>1<\/td>/);
  // Unknown flash keys show nothing.
  assert.doesNotMatch((await c.get('/ui/lists/content-partners?done=%3Cb%3Ex')).text, /class="flash"/);

  // Validation: the service's message on the field, the input kept, 422.
  const bad = await c.submit('/ui/add', '/ui/add', { ...fields, cidr: '10.0.0.0/33', partner: 'Kept Partner' });
  assert.equal(bad.status, 422);
  assert.match(bad.text, /id="f-cidr"[^>]*value="10\.0\.0\.0\/33"[^>]*aria-describedby="f-cidr-hint f-cidr-error" aria-invalid="true"/);
  assert.match(bad.text, /<span class="field-error" id="f-cidr-error">/);
  assert.match(bad.text, /value="Kept Partner"/);
  const everyone = await c.submit('/ui/add', '/ui/add', { ...fields, cidr: '0.0.0.0/0' });
  assert.equal(everyone.status, 422);
  assert.match(everyone.text, /id="f-cidr-error"/);
  const noReason = await c.submit('/ui/add', '/ui/add', { ...fields, reason: '' });
  assert.equal(noReason.status, 422);
  assert.match(noReason.text, /id="f-reason-error"/);
  const badExpiry = await c.submit('/ui/add', '/ui/add', { ...fields, expiresAt: 'next tuesday' });
  assert.equal(badExpiry.status, 422);
  assert.match(badExpiry.text, /id="f-expiresAt-error"/);
  assert.equal((await service.entries('content-partners')).length, 1, 'nothing else was added');

  // Edit: new note and an expiry (UTC), recorded with the reason.
  const editPath = `/ui/lists/content-partners/entries/${entry.id}/edit`;
  const edited = await c.submit(editPath, editPath, { cidr: '198.51.100.0/24', partner: 'Acme', note: 'widened', expiresAt: '2099-01-02T03:04', reason: 'ticket OPS-2' });
  assert.equal(edited.status, 303, edited.text);
  const [after] = await service.entries('content-partners');
  assert.equal(after!.cidr, '198.51.100.0/24');
  assert.equal(after!.expiresAt, '2099-01-02T03:04:00.000Z');
  assert.equal(after!.id, entry.id);

  // Expire: stays listed, marked expired; search no longer admits the address.
  const expirePath = `/ui/lists/content-partners/entries/${entry.id}/expire`;
  assert.equal((await c.submit(expirePath, expirePath, { reason: '' })).status, 422, 'a reason is required');
  const expired = await c.submit(expirePath, expirePath, { reason: 'partner paused' });
  assert.equal(expired.status, 303);
  const listed = await c.get('/ui/lists/content-partners?done=expired');
  assert.match(listed.text, new RegExp(`<tr id="entry-${entry.id}" class="expired">`));
  assert.match(listed.text, /<span class="tag bad">expired<\/span>/);
  const search = await c.get('/ui/search?address=198.51.100.7&list=content-partners');
  assert.match(search.text, /Not allowed/);
  const badSearch = await c.get('/ui/search?address=not-an-address');
  assert.equal(badSearch.status, 422);
  assert.match(badSearch.text, /id="f-address-error"/);

  const history = await c.get(`/ui/lists/content-partners/entries/${entry.id}/history`);
  const actions = [...history.text.matchAll(/<td>alice<\/td><td>(\w+)<\/td>/g)].map((m) => m[1]);
  assert.deepEqual(actions, ['expire', 'update', 'add']);
  assert.match(history.text, /ticket OPS-2/);
  assert.match(history.text, /partner paused/);

  // Unknown entries and lists are 404s, not errors.
  assert.equal((await c.get('/ui/lists/content-partners/entries/00000000-0000-0000-0000-000000000000/edit')).status, 404);
  assert.equal((await c.get('/ui/nothing')).status, 404);
  assert.equal((await c.get('/ui/lists/%E0%A4%A')).status, 404);
  for (const line of p.logs) assert.ok(!line.includes('correct horse'), line);
});

test('a degraded store puts a banner on every page and changes are refused (503, nothing changed); recovery clears it', async (t) => {
  const pgmod = (await import('pg')).default;
  const db = `perimeter_ui_deg_${Math.random().toString(36).slice(2, 10)}`;
  const admin = new pgmod.Client({ connectionString: 'postgres://postgres@127.0.0.1:5432/test' });
  await admin.connect();
  await admin.query(`CREATE DATABASE ${db}`);
  t.after(async () => {
    await admin.query(`ALTER DATABASE ${db} ALLOW_CONNECTIONS true`).catch(() => undefined);
    await admin.query(`DROP DATABASE IF EXISTS ${db} WITH (FORCE)`);
    await admin.end();
  });
  const p = await startUiPerimeter({ extraYaml: `allowlists:\n  store: postgres\n  postgres: { url: "postgres://postgres@127.0.0.1:5432/${db}" }\n` });
  t.after(() => p.closeAll());
  const service = p.runtime.adminSource().allowlists?.();
  assert.equal(service?.kind, 'postgres');
  const c = new UiClient(p.admin);
  await c.login();
  const fields = { list: 'content-partners', cidr: '192.0.2.10', partner: 'Acme', note: '', expiresAt: '', reason: 'before the outage' };
  assert.equal((await c.submit('/ui/add', '/ui/add', fields)).status, 303);
  assert.doesNotMatch((await c.get('/ui/')).text, /class="banner"/);

  // Cut the database off: no new connections, existing ones terminated.
  await admin.query(`ALTER DATABASE ${db} ALLOW_CONNECTIONS false`);
  await admin.query('SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()', [db]);
  const start = Date.now();
  while (service!.health().state !== 'degraded' && Date.now() - start < 15_000) {
    // A write attempt makes the service notice at once if its listener has not yet.
    await c.submit('/ui/add', '/ui/add', { ...fields, cidr: '192.0.2.11' }).catch(() => undefined);
    await new Promise((r) => setTimeout(r, 200));
  }
  assert.equal(service!.health().state, 'degraded');
  for (const path of ['/ui/', '/ui/lists/content-partners', '/ui/config']) {
    const page = await c.get(path);
    assert.match(page.text, /<div class="banner" role="alert"><strong>Allowlist store degraded:<\/strong>/, path);
    assert.ok(!page.text.includes('postgres://'), 'no connection URL on the page');
  }
  // What the proxies enforce is still shown.
  assert.match((await c.get('/ui/lists/content-partners')).text, /192\.0\.2\.10\/32/);
  const refused = await c.submit('/ui/add', '/ui/add', { ...fields, cidr: '192.0.2.12' });
  assert.equal(refused.status, 503);
  assert.match(refused.text, /Nothing was changed/);

  await admin.query(`ALTER DATABASE ${db} ALLOW_CONNECTIONS true`);
  const back = Date.now();
  while (service!.health().state !== 'ok' && Date.now() - back < 20_000) await new Promise((r) => setTimeout(r, 200));
  assert.equal(service!.health().state, 'ok');
  assert.doesNotMatch((await c.get('/ui/')).text, /class="banner"/);
  assert.equal((await c.submit('/ui/add', '/ui/add', { ...fields, cidr: '192.0.2.13', reason: 'after the outage' })).status, 303);
});
