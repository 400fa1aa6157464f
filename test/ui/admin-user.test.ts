/** `perimeter admin-user`: the real CLI writing the users file the running admin UI reads. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseUsers, verifyPassword } from '../../src/admin/ui/users.js';
import { UiClient, startUiPerimeter } from './harness.js';

function cli(args: string[], stdin?: string): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, ['dist/src/cli/main.js', 'admin-user', ...args], { stdio: ['pipe', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.on('close', (code) => resolve({ code, stdout, stderr }));
    child.stdin.end(stdin ?? '');
  });
}

test('admin-user add/rm/ls write the users file (0600, scrypt hashes only) and refuse short passwords', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'perimeter-admin-user-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const file = join(dir, 'users');
  const pw = 'a long enough passphrase';

  const added = await cli(['add', 'bob', '--password-stdin', '--users-file', file], `${pw}\n`);
  assert.equal(added.code, 0, added.stderr);
  assert.match(added.stdout, /added user bob/);
  assert.equal((await stat(file)).mode & 0o777, 0o600);
  const text = await readFile(file, 'utf8');
  assert.match(text, /^bob:\$scrypt\$ln=15,r=8,p=1\$[A-Za-z0-9+/]+\$[A-Za-z0-9+/]+\n$/);
  assert.ok(!text.includes(pw));
  assert.ok(await verifyPassword(pw, parseUsers(text, file).users.get('bob')), 'the trailing newline from stdin is not part of the password');
  assert.equal(await verifyPassword(`${pw}\n`, parseUsers(text, file).users.get('bob')), false);

  const short = await cli(['add', 'carol', '--password-stdin', '--users-file', file], 'short\n');
  assert.equal(short.code, 1);
  assert.match(short.stderr, /too short: use at least 12 characters/);
  assert.equal(await readFile(file, 'utf8'), text, 'nothing written');
  const badName = await cli(['add', 'no spaces', '--password-stdin', '--users-file', file], `${pw}\n`);
  assert.equal(badName.code, 1);

  // A second user, then a new password for the first: the other line stays, in place.
  assert.equal((await cli(['add', 'carol', '--password-stdin', '--users-file', file], 'carols passphrase here\n')).code, 0);
  const upd = await cli(['add', 'bob', '--password-stdin', '--users-file', file], 'bobs new passphrase\n');
  assert.equal(upd.code, 0);
  assert.match(upd.stdout, /updated the password of user bob/);
  const after = parseUsers(await readFile(file, 'utf8'), file);
  assert.deepEqual([...after.users.keys()], ['bob', 'carol']);
  assert.ok(await verifyPassword('bobs new passphrase', after.users.get('bob')));
  assert.equal(await verifyPassword(pw, after.users.get('bob')), false);

  const ls = await cli(['ls', '--users-file', file]);
  assert.equal(ls.stdout, 'bob\ncarol\n');
  assert.equal((await cli(['rm', 'bob', '--users-file', file])).code, 0);
  assert.equal((await cli(['ls', '--users-file', file])).stdout, 'carol\n');
  assert.equal((await cli(['rm', 'bob', '--users-file', file])).code, 1);

  // Usage errors: no subcommand; no users file known; a prompt needs a terminal.
  assert.equal((await cli([])).code, 2);
  await writeFile(join(dir, 'perimeter.yaml'), 'admin:\n  listen: "127.0.0.1:9901"\n');
  const noFile = await cli(['ls', '--config', dir]);
  assert.equal(noFile.code, 2);
  assert.match(noFile.stderr, /sets no admin\.users-file/);
  const noTty = await cli(['add', 'dave', '--users-file', file], `${pw}\n`);
  assert.equal(noTty.code, 2);
  assert.match(noTty.stderr, /--password-stdin/);
});

test('an account added with the CLI can log in to the running perimeter at once; a removed one is logged out', async (t) => {
  const p = await startUiPerimeter();
  t.after(() => p.closeAll());
  const pw = 'erins passphrase 2026';
  const add = await cli(['add', 'erin', '--password-stdin', '--config', p.dir], `${pw}\n`);
  assert.equal(add.code, 0, add.stderr);
  const c = new UiClient(p.admin);
  const r = await c.login('erin', pw);
  assert.equal(r.status, 303, r.text);
  const page = await c.get('/ui/config');
  assert.match(page.text, /Signed in as <strong>erin<\/strong>/);
  assert.equal((await cli(['rm', 'erin', '--config', p.dir])).code, 0);
  assert.equal((await c.get('/ui/config')).status, 303, 'the removed account is logged out');
});
