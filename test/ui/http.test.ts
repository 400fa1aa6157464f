/** The admin web UI over HTTP: login, sessions, cookies, CSRF, Origin checks, throttling, headers and escaping. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { request } from '../admin/harness.js';
import { PASSWORD, TOKEN, USER, UiClient, csrfOf, startUiPerimeter } from './harness.js';

const CSP = "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

test('login with a local account: session cookie flags, pages behind it, logout ends the session', async (t) => {
  const p = await startUiPerimeter();
  t.after(() => p.closeAll());
  const c = new UiClient(p.admin);

  const anon = await c.get('/ui/sites');
  assert.equal(anon.status, 303);
  assert.equal(anon.headers.location, '/ui/login?next=%2Fui%2Fsites');
  const loginPage = await c.get('/ui/login?next=%2Fui%2Fsites');
  assert.equal(loginPage.status, 200);
  for (const [h, v] of Object.entries({ 'content-security-policy': CSP, 'x-content-type-options': 'nosniff', 'referrer-policy': 'no-referrer', 'cache-control': 'no-store' })) {
    assert.equal(loginPage.headers[h], v, h);
  }
  assert.match(loginPage.text, /<label for="f-user">User name<\/label>/);
  assert.doesNotMatch(loginPage.text, /<script/i, 'no script at all');
  assert.doesNotMatch(loginPage.text, /Admin token/, 'no token form without token-file');
  const loginCookie = c.lastSetCookies.find((s) => /^perimeter_login_\d+=/.test(s));
  assert.ok(loginCookie && /HttpOnly/.test(loginCookie) && /SameSite=Strict/.test(loginCookie));

  const wrong = await c.post('/ui/login', { csrf: csrfOf(loginPage.text)!, method: 'password', user: USER, password: 'not the password', next: '/ui/sites' });
  assert.equal(wrong.status, 401);
  assert.match(wrong.text, /Wrong user name or password/);
  assert.ok(!wrong.text.includes('not the password'), 'the password is not echoed');
  assert.match(wrong.text, /value="alice"/, 'the user name is kept in the form');

  const ok = await c.post('/ui/login', { csrf: csrfOf(wrong.text)!, method: 'password', user: USER, password: PASSWORD, next: '/ui/sites' });
  assert.equal(ok.status, 303, ok.text);
  assert.equal(ok.headers.location, '/ui/sites');
  const session = c.lastSetCookies.find((s) => /^perimeter_admin_\d+=/.test(s));
  assert.ok(session, 'session cookie set');
  assert.match(session, /^perimeter_admin_\d+=[A-Za-z0-9_-]{43}; Path=\/; HttpOnly; SameSite=Strict; Secure$/, 'Secure on a loopback host, where Chromium accepts it over http');

  const sites = await c.get('/ui/sites');
  assert.equal(sites.status, 200);
  assert.match(sites.text, /<th scope="row">www\.example\.com<\/th>/);
  assert.match(sites.text, /Signed in as <strong>alice<\/strong>/);
  assert.equal(sites.headers['content-security-policy'], CSP);
  assert.equal(sites.headers['cache-control'], 'no-store');
  const backends = await c.get('/ui/backends');
  assert.equal(backends.status, 200);
  assert.match(backends.text, /<h2 id="svc-app">app<\/h2>/);
  assert.match(backends.text, /127\.0\.0\.1:\d+/);
  const config = await c.get('/ui/config');
  assert.equal(config.status, 200);
  assert.match(config.text, /<dt>Generation<\/dt><dd>1<\/dd>/);
  const css = await c.get('/ui/static/style.css');
  assert.equal(css.status, 200);
  assert.match(String(css.headers['content-type']), /^text\/css/);

  // An open redirect is not possible through next=.
  const c2 = new UiClient(p.admin);
  const evil = await c2.submit('/ui/login', '/ui/login', { method: 'password', user: USER, password: PASSWORD, next: '//evil.example/ui/' });
  assert.equal(evil.headers.location, '/ui/');

  const logout = await c.post('/ui/logout', { csrf: csrfOf(sites.text)! });
  assert.equal(logout.status, 303);
  assert.equal(logout.headers.location, '/ui/login?out=1');
  assert.ok(c.lastSetCookies.some((s) => /^perimeter_admin_\d+=;.*Max-Age=0/.test(s)));
  // The old id no longer works even if a client kept it.
  const stale = await request(`${p.admin}/ui/sites`, { headers: { cookie: /^[^;]+/.exec(session)![0] } });
  assert.equal(stale.status, 303);
  // The JSON API's rules are unchanged (no token configured here: open on loopback).
  assert.equal((await request(`${p.admin}/api/config`)).status, 200);
  for (const line of p.logs) assert.ok(!line.includes(PASSWORD) && !line.includes('not the password'), `a log line shows a password: ${line}`);
});

test('POSTs need the session CSRF token and a same-origin Origin; login needs its own form token', async (t) => {
  const p = await startUiPerimeter();
  t.after(() => p.closeAll());
  const c = new UiClient(p.admin);
  // Login without the form's cookie-bound token (login CSRF).
  const noForm = await c.post('/ui/login', { method: 'password', user: USER, password: PASSWORD });
  assert.equal(noForm.status, 403);
  assert.ok(!c.hasSession());
  const foreignLogin = await c.submit('/ui/login', '/ui/login', { method: 'password', user: USER, password: PASSWORD }, { origin: 'https://evil.example' });
  assert.equal(foreignLogin.status, 403);
  assert.ok(!c.hasSession());

  assert.equal((await c.login()).status, 303);
  const page = await c.get('/ui/config');
  const csrf = csrfOf(page.text)!;
  assert.ok(csrf.length >= 40);

  // Logout is a state-changing POST: refused ones leave the session alive.
  const none = await c.post('/ui/logout', {});
  assert.equal(none.status, 403);
  assert.match(none.text, /security token is missing or out of date/);
  const wrong = await c.post('/ui/logout', { csrf: csrf.slice(0, -2) + (csrf.endsWith('AA') ? 'BB' : 'AA') });
  assert.equal(wrong.status, 403);
  const foreign = await c.post('/ui/logout', { csrf }, { origin: 'http://evil.example' });
  assert.equal(foreign.status, 403);
  assert.match(foreign.text, /another origin/);
  const crossSite = await c.post('/ui/logout', { csrf }, { 'sec-fetch-site': 'cross-site' });
  assert.equal(crossSite.status, 403);
  assert.equal((await c.get('/ui/config')).status, 200, 'still logged in after refused POSTs');

  // Another session's token is not this session's.
  const other = new UiClient(p.admin);
  await other.login();
  const otherCsrf = csrfOf((await other.get('/ui/config')).text)!;
  assert.notEqual(otherCsrf, csrf);
  assert.equal((await c.post('/ui/logout', { csrf: otherCsrf })).status, 403);

  // Same origin with the right token works.
  const ok = await c.post('/ui/logout', { csrf }, { origin: p.admin, 'sec-fetch-site': 'same-origin' });
  assert.equal(ok.status, 303);
  assert.equal((await c.get('/ui/config')).status, 303, 'logged out');
  // A POST without a session is refused, not redirected.
  assert.equal((await c.post('/ui/logout', { csrf })).status, 403);
  // Not a form, or too big.
  await other.get('/ui/config');
  assert.equal((await other.post('/ui/logout', { csrf: otherCsrf }, { 'content-type': 'application/json' })).status, 415);
  const big = await other.post('/ui/logout', { csrf: otherCsrf, pad: 'x'.repeat(70_000) });
  assert.equal(big.status, 413);
  assert.equal((await other.get('/ui/config')).status, 200);
});

test('failed logins are throttled per source address: the sixth try in a minute is refused even with the right password', async (t) => {
  const p = await startUiPerimeter();
  t.after(() => p.closeAll());
  const c = new UiClient(p.admin);
  for (let i = 0; i < 5; i++) {
    const r = await c.submit('/ui/login', '/ui/login', { method: 'password', user: i % 2 ? USER : 'mallory', password: `guess-${i}` });
    assert.equal(r.status, 401, `try ${i}`);
  }
  const right = await c.submit('/ui/login', '/ui/login', { method: 'password', user: USER, password: PASSWORD });
  assert.equal(right.status, 429);
  assert.match(right.text, /Too many failed logins from your address/);
  assert.ok(Number(right.headers['retry-after']) >= 1 && Number(right.headers['retry-after']) <= 60);
  assert.ok(!c.hasSession());
  // The throttle is per address: after the window (simulated by clearing this store's record) the account works.
  const ui = p.runtime.admin!.ui;
  assert.ok(ui.throttle.retryAfterMs('127.0.0.1') > 0);
  const logged = p.logs.filter((l) => l.includes('"admin-login"'));
  assert.ok(logged.some((l) => l.includes('throttled')));
  assert.ok(logged.some((l) => l.includes('unknown user')), 'an unknown name is not logged as typed (it may be a password)');
  assert.ok(!logged.some((l) => l.includes('mallory')));
});

test('token login (actor "token"); a changed token ends token sessions; no login method configured says how to set one', async (t) => {
  const p = await startUiPerimeter({ users: false, token: true, listen: '0.0.0.0' });
  t.after(() => p.closeAll());
  // The JSON API still needs the bearer token.
  assert.equal((await request(`${p.admin}/api/config`)).status, 401);
  const c = new UiClient(p.admin);
  const form = await c.get('/ui/login');
  assert.match(form.text, /Admin token/);
  assert.doesNotMatch(form.text, /f-user/);
  const wrong = await c.submit('/ui/login', '/ui/login', { method: 'token', token: TOKEN + 'x' });
  assert.equal(wrong.status, 401);
  assert.match(wrong.text, /Wrong token/);
  const ok = await c.submit('/ui/login', '/ui/login', { method: 'token', token: TOKEN });
  assert.equal(ok.status, 303);
  const page = await c.get('/ui/config');
  assert.match(page.text, /Signed in as <strong>token<\/strong>/);
  assert.ok(!page.text.includes(TOKEN));
  // A name, not an address, in Host: allowed with a token; the cookie is not Secure there (plain http, not loopback).
  const named = new UiClient(p.admin, { host: 'admin.example.net' });
  const r = await named.submit('/ui/login', '/ui/login', { method: 'token', token: TOKEN });
  assert.equal(r.status, 303);
  assert.doesNotMatch(named.lastSetCookies.find((s) => /^perimeter_admin_\d+=/.test(s))!, /Secure/);

  // Reload with another token: the old token's sessions end.
  await writeFile(join(p.dir, 'admin.token'), 'another-token-0123456789abcdef\n');
  const reload = await request(`${p.admin}/api/reload`, { method: 'POST', headers: { authorization: `Bearer ${TOKEN}` } });
  assert.equal(reload.status, 200, reload.text);
  assert.equal((await c.get('/ui/config')).status, 303);

  const q = await startUiPerimeter({ users: false });
  t.after(() => q.closeAll());
  const d = new UiClient(q.admin);
  const none = await d.get('/ui/login');
  assert.match(none.text, /No way to log in is configured/);
  assert.match(none.text, /perimeter admin-user add NAME/);
  assert.doesNotMatch(none.text, /<form/);
  const tryIt = await d.post('/ui/login', { csrf: /perimeter_login_\d+=([^;]+)/.exec(d.lastSetCookies.join(';'))![1]!, method: 'password', user: USER, password: PASSWORD });
  assert.equal(tryIt.status, 401);
  assert.ok(!d.hasSession());
  // Without a token, a DNS-rebinding Host is refused (as for the API).
  const rebound = await request(`${q.admin}/ui/login`, { headers: { host: 'evil.example:80' } });
  assert.equal(rebound.status, 403);
});

test('values from configuration errors are escaped on the configuration page', async (t) => {
  const p = await startUiPerimeter();
  t.after(() => p.closeAll());
  const c = new UiClient(p.admin);
  await c.login();
  // A refused reload whose error quotes the hostile key.
  await writeFile(join(p.dir, 'perimeter.yaml'), `${await readFile(join(p.dir, 'perimeter.yaml'), 'utf8')}"<script>alert(1)</script>": 1\n`);
  const reload = await request(`${p.admin}/api/reload`, { method: 'POST' });
  assert.equal(reload.status, 409);
  assert.match(reload.text, /<script>alert\(1\)<\/script>/, 'the error quotes the key');
  const page = await c.get('/ui/config');
  assert.equal(page.status, 200);
  assert.doesNotMatch(page.text, /<script>/);
  assert.match(page.text, /&lt;script&gt;alert\(1\)&lt;\/script&gt;/);
  assert.match(page.text, /refused/);
});
