import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { startUpstream } from '../helpers/upstream.js';
import { webConfig } from '../web/fixtures.js';
import { snapshotToJSON } from '../../src/config/load.js';
import { AdminServer } from '../../src/admin/server.js';
import { freePort } from '../helpers/cli.js';
import { captureLog, request, startAdminPerimeter, withAdmin } from './harness.js';

const ENDPOINTS = ['/', '/metrics', '/api/config', '/api/sites', '/api/pools', '/api/backends'];

test('with a token (required off loopback), every request needs Authorization: Bearer; the token is never shown', async (t) => {
  const token = randomBytes(24).toString('hex');
  const a = await startUpstream({ name: 'a' });
  // Off loopback: allowed because token-file is set (relative to the config directory).
  const cfg = await withAdmin(webConfig({ services: { app: [a.port] }, sites: { 'www.example.com': 'app' } }), `admin:\n  listen: "0.0.0.0:${await freePort()}"\n  token-file: admin.token\n`);
  const p = await startAdminPerimeter({ ...cfg, extra: { 'admin.token': `${token}\n` } });
  t.after(async () => {
    await p.close();
    await a.close();
  });
  assert.equal(p.runtime.snapshot!.admin!.token, token, 'read from the file, newline dropped');
  const json = JSON.stringify(snapshotToJSON(p.runtime.snapshot!));
  assert.ok(!json.includes(token), 'snapshotToJSON shows the token');
  assert.match(json, /"token":"<redacted>"/);

  for (const path of [...ENDPOINTS, '/api/nothing']) {
    const none = await request(`${p.admin}${path}`);
    assert.equal(none.status, 401, `${path} without a token`);
    assert.equal(none.headers['www-authenticate'], 'Bearer realm="perimeter-admin"');
    assert.match((JSON.parse(none.text) as { error: string }).error, /no bearer token/);
  }
  const wrongs = [`Bearer ${token.slice(0, -1)}${token.endsWith('0') ? '1' : '0'}`, 'Bearer short', `Basic ${Buffer.from(`admin:${token}`).toString('base64')}`, token, `Bearer ${token} extra`];
  for (const authorization of wrongs) {
    const r = await request(`${p.admin}/api/config`, { headers: { authorization } });
    assert.equal(r.status, 401, authorization);
  }
  const wrong = await request(`${p.admin}/api/config`, { headers: { authorization: 'Bearer 0123456789abcdef0123' } });
  assert.equal(wrong.headers['www-authenticate'], 'Bearer realm="perimeter-admin", error="invalid_token"');
  const reloadDenied = await request(`${p.admin}/api/reload`, { method: 'POST' });
  assert.equal(reloadDenied.status, 401);
  assert.equal(p.runtime.generation, 1);

  const texts: string[] = [];
  for (const path of ENDPOINTS) {
    const r = await request(`${p.admin}${path}`, { headers: { authorization: `Bearer ${token}` } });
    assert.equal(r.status, 200, path);
    texts.push(r.text);
  }
  // The scheme is case-insensitive (RFC 9110).
  assert.equal((await request(`${p.admin}/api/config`, { headers: { authorization: `bearer ${token}` } })).status, 200);
  const reload = await request(`${p.admin}/api/reload`, { method: 'POST', headers: { authorization: `Bearer ${token}` } });
  assert.equal(reload.status, 200, reload.text);
  texts.push(reload.text);
  for (const text of texts) assert.ok(!text.includes(token), 'a response shows the token');
  assert.ok(p.logs.length > 0);
  for (const line of p.logs) assert.ok(!line.includes(token), `the event log shows the token: ${line}`);
});

test('denied admin requests are logged (rate-limited, without any token); a reloaded token applies to the next request', async (t) => {
  const a = await startUpstream({ name: 'a' });
  const p = await startAdminPerimeter(await withAdmin(webConfig({ services: { app: [a.port] }, sites: { 'www.example.com': 'app' } })));
  const { log, lines } = captureLog();
  const first = randomBytes(16).toString('hex');
  const second = randomBytes(16).toString('hex');
  const listen = { host: '127.0.0.1', port: 0 };
  const admin = await AdminServer.start({ listen, token: first }, p.runtime.adminSource(), { log });
  t.after(async () => {
    await admin.close();
    await p.close();
    await a.close();
  });
  const url = `http://127.0.0.1:${admin.port()}/api/config`;
  for (let i = 0; i < 3; i++) assert.equal((await request(url, { headers: { authorization: `Bearer wrong-${second}` } })).status, 401);
  const denied = lines.filter((l) => l.includes('admin-denied'));
  assert.equal(denied.length, 1, 'one report for a burst');
  assert.match(denied[0]!, /wrong bearer token/);
  assert.match(denied[0]!, /127\.0\.0\.1/);
  for (const l of lines) assert.ok(!l.includes(first) && !l.includes(second), l);

  assert.equal((await request(url, { headers: { authorization: `Bearer ${first}` } })).status, 200);
  admin.update({ listen, token: second });
  assert.equal((await request(url, { headers: { authorization: `Bearer ${first}` } })).status, 401);
  assert.equal((await request(url, { headers: { authorization: `Bearer ${second}` } })).status, 200);
  admin.update({ listen });
  assert.equal((await request(url)).status, 200, 'no token configured: loopback without auth');
});
