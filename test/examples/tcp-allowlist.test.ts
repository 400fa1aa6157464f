/**
 * examples/tcp-allowlist, run as its banner tells a user to: `npm run
 * example:tcp` (its compiled start script), then `nc` (here: a socket) before and after
 * `perimeter allow add`. The example's data directory is removed before and
 * after, so every run starts with an empty allowlist.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { startExample } from '../helpers/example.js';
import { promisify } from 'node:util';
import net from 'node:net';
import { rm } from 'node:fs/promises';

const exec = promisify(execFile);
const DATA = 'examples/tcp-allowlist/data';

/** Connect to the TCP listener, send a line, and collect what comes back until close or 1.5 s. */
function session(line: string): Promise<string> {
  return new Promise((resolve) => {
    let got = '';
    const s = net.connect({ host: '127.0.0.1', port: 2222 }, () => s.write(line));
    s.on('data', (d: Buffer) => {
      got += d.toString();
      if (got.includes(line)) s.end();
    });
    s.on('error', () => {});
    s.on('close', () => resolve(got));
    setTimeout(() => s.destroy(), 1500).unref();
  });
}

test('the TCP example: closed while the allowlist is empty; `perimeter allow add` lets 127.0.0.1 through to the backend', { timeout: 120_000 }, async (t) => {
  await rm(DATA, { recursive: true, force: true });
  // What `npm run example:tcp` runs after its build (npm test has built already;
  // a second tsc writing dist/ while other tests import from it is avoided).
  const ex = startExample(t, 'node', ['dist/examples/tcp-allowlist/start.js']);
  t.after(() => rm(DATA, { recursive: true, force: true }));
  // Ready when the admin API answers (the TCP listener opens with it).
  const deadline = Date.now() + 100_000;
  let ready = false;
  while (Date.now() < deadline && !ready) {
    if (ex.output().includes('Ctrl-C stops it')) {
      ready = await exec('curl', ['-sf', '--max-time', '3', 'http://127.0.0.1:9911/api/health'], { timeout: 5000 }).then(
        () => true,
        () => false,
      );
    }
    if (!ready) await new Promise((r) => setTimeout(r, 300));
  }
  assert.ok(ready, `the example did not come up; output:\n${ex.output()}`);

  assert.equal(await session('hello\n'), '', 'an address not on the allowlist gets nothing back');
  const cli = ['dist/src/cli/main.js', 'allow'];
  const add = await exec('node', [...cli, 'add', 'content-partners', '127.0.0.1', '--partner', 'Demo Records', '--reason', 'trying the example', '-c', 'examples/tcp-allowlist'], { timeout: 20_000 });
  assert.match(add.stdout, /127\.0\.0\.1\/32/);
  let answer = '';
  for (let i = 0; i < 20 && !answer.includes('upload-demo: hello'); i++) {
    answer = await session('hello\n');
    if (!answer) await new Promise((r) => setTimeout(r, 100));
  }
  assert.match(answer, /^upload-demo: hello .*127\.0\.0\.1/);
  assert.match(answer, /hello\n$/, 'the backend echoes the line');
  const check = await exec('node', [...cli, 'check', '127.0.0.1', 'content-partners', '-c', 'examples/tcp-allowlist'], { timeout: 20_000 });
  assert.match(check.stdout, /Demo Records/);

  ex.signal('SIGINT');
  const code = await Promise.race([ex.exited, new Promise<string>((r) => setTimeout(() => r('timeout'), 15_000))]);
  assert.notEqual(code, 'timeout', 'the example did not stop on SIGINT');
});
