/**
 * `perimeter reload` against a real running perimeter (`perimeter run` in a
 * child process, single process, its admin API on loopback with a token),
 * and its failures when there is nothing to talk to.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import { mkdtemp, mkdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { freePort, runPerimeter } from '../helpers/cli.js';
import { startUpstream } from '../helpers/upstream.js';
import { perimeter } from './helpers.js';

async function tempDir(files: Record<string, string>): Promise<{ dir: string; cleanup: () => Promise<void> }> {
  const dir = await mkdtemp(path.join(tmpdir(), 'perimeter-reload-'));
  for (const [rel, text] of Object.entries(files)) {
    await mkdir(path.dirname(path.join(dir, rel)), { recursive: true });
    await writeFile(path.join(dir, rel), text);
  }
  return { dir, cleanup: () => rm(dir, { recursive: true, force: true }) };
}

function get(port: number, host: string): Promise<number> {
  return new Promise((resolve, reject) => {
    http
      .get({ host: '127.0.0.1', port, path: '/', headers: { host } }, (res) => {
        res.resume();
        res.on('end', () => resolve(res.statusCode ?? 0));
      })
      .on('error', reject);
  });
}

const TOKEN = 'reload-test-token-0123456789abcdef';

test('reload: applies a new configuration, reports a refused one, needs the admin token', { timeout: 30_000 }, async (t) => {
  const backend = await startUpstream({ name: 'app' });
  const webPort = await freePort();
  const adminPort = await freePort();
  const platform = `clusters:
  web:
    listen: { http: "127.0.0.1:${webPort}" }
admin:
  listen: "127.0.0.1:${adminPort}"
  token-file: admin.token
access-log: { path: "off" }
defaults:
  health: { type: none }
discovery:
  static:
    app: ["127.0.0.1:${backend.port}"]
`;
  const c = await tempDir({ 'perimeter.yaml': platform, 'admin.token': `${TOKEN}\n`, 'sites/team.yaml': 'www.example.com:\n  service: app\n' });
  const wrongToken = path.join(c.dir, 'wrong.token');
  await writeFile(wrongToken, 'not-the-token-at-all-0000000000\n');
  const run = runPerimeter(c.dir, ['--workers', '0', '--no-watch']);
  t.after(async () => {
    run.kill('SIGTERM');
    await run.exited;
    await backend.close();
    await c.cleanup();
  });
  await run.waitForLog((l) => l.event?.action === 'listen' && String(l.message).includes('admin'));
  const admin = `http://127.0.0.1:${adminPort}`;
  assert.equal(await get(webPort, 'www.example.com'), 200);
  assert.equal(await get(webPort, 'new.example.com'), 421);

  // Without the token the admin API refuses: exit 3 and say what to pass.
  const noToken = await perimeter(['reload', '--admin', admin]);
  assert.equal(noToken.code, 3, noToken.stderr);
  assert.match(noToken.stderr, /refused \/api\/reload with 401: it needs a token, pass --token-file FILE/);
  const wrong = await perimeter(['reload', '--admin', admin, '--token-file', wrongToken]);
  assert.equal(wrong.code, 3, wrong.stderr);
  assert.match(wrong.stderr, /the token was not accepted/);

  // A good change: DIR gives the admin address and the token file.
  await writeFile(path.join(c.dir, 'sites/team.yaml'), 'www.example.com:\n  service: app\nnew.example.com:\n  service: app\n');
  const ok = await perimeter(['reload', c.dir]);
  assert.equal(ok.code, 0, ok.stderr);
  assert.equal(ok.stdout, 'reloaded: generation 2\n');
  assert.equal(await get(webPort, 'new.example.com'), 200);

  // A broken change is refused with file:line:column, and generation 2 keeps serving.
  await writeFile(path.join(c.dir, 'sites/broken.yaml'), 'shop.example.com:\n  sevice: app\n');
  const refused = await perimeter(['reload', '--admin', admin, '--token-file', path.join(c.dir, 'admin.token')]);
  assert.equal(refused.code, 1, refused.stderr);
  assert.equal(refused.stdout, '');
  assert.match(refused.stderr, /sites\/broken\.yaml:2:3: error: unknown key 'sevice'; did you mean 'service'\?/);
  assert.match(refused.stderr, /reload refused: generation 2 keeps serving\n$/);
  assert.equal(await get(webPort, 'new.example.com'), 200);
  assert.equal(await get(webPort, 'www.example.com'), 200);
});

test('reload: exit 3 with how to enable admin.listen when there is no admin API to reach', async (t) => {
  const closedPort = await freePort();
  const noAdmin = await tempDir({ 'perimeter.yaml': 'clusters:\n  web:\n    listen: { http: ":8080" }\n' });
  // The rest of this configuration is invalid: reload still finds admin.listen in it.
  const broken = await tempDir({ 'perimeter.yaml': `clusters: 42\nadmin:\n  listen: "127.0.0.1:${closedPort}"\n` });
  t.after(async () => {
    await noAdmin.cleanup();
    await broken.cleanup();
  });

  const none = await perimeter(['reload', noAdmin.dir]);
  assert.equal(none.code, 3);
  assert.match(none.stderr, /has no admin\.listen/);
  assert.match(none.stderr, /admin:\n +listen: "127\.0\.0\.1:9901"/);

  const down = await perimeter(['reload', broken.dir]);
  assert.equal(down.code, 3);
  assert.match(down.stderr, new RegExp(`cannot reach the admin API at http://127\\.0\\.0\\.1:${closedPort}: ECONNREFUSED`));
  assert.match(down.stderr, /Is perimeter running with an admin listener\?/);

  const byUrl = await perimeter(['reload', '--admin', `127.0.0.1:${closedPort}`]);
  assert.equal(byUrl.code, 3);
  assert.match(byUrl.stderr, /ECONNREFUSED/);
});

test('reload: usage errors exit 2', async () => {
  const none = await perimeter(['reload']);
  assert.equal(none.code, 2);
  assert.match(none.stderr, /Usage: perimeter reload/);
  assert.equal((await perimeter(['reload', '--bogus', 'x'])).code, 2);
  assert.equal((await perimeter(['reload', 'a', 'b'])).code, 2);
  const missingToken = await perimeter(['reload', '--admin', 'http://127.0.0.1:1', '--token-file', '/nonexistent/token']);
  assert.equal(missingToken.code, 2);
  assert.match(missingToken.stderr, /cannot read token file/);
  const help = await perimeter(['reload', '--help']);
  assert.equal(help.code, 0);
  assert.match(help.stdout, /Exit status: 0 reloaded, 1 the new configuration was refused/);
});
