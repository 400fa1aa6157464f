/**
 * The README's first command, exactly as a new user runs it: `npm start`
 * builds, starts the demo backends and perimeter on :8080; curl through it
 * returns a backend's answer. (`npm ci` has run before the tests.)
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { startExample } from '../helpers/example.js';
import { promisify } from 'node:util';

const exec = promisify(execFile);

test('npm start serves the quickstart; curl through it reaches a demo backend', { timeout: 90_000 }, async (t) => {
  const ex = startExample(t, 'npm', ['start']);
  // Wait for the banner and the listener.
  const deadline = Date.now() + 80_000;
  let answer = '';
  while (Date.now() < deadline) {
    if (ex.output().includes('Ctrl-C stops it')) {
      try {
        const r = await exec('curl', ['-s', '--max-time', '5', 'http://localhost:8080/'], { timeout: 8000 });
        answer = r.stdout;
        if (answer.includes('"backend"')) break;
      } catch {
        // not listening yet
      }
    }
    await new Promise((r) => setTimeout(r, 300));
  }
  assert.match(answer, /"backend": "demo-[123]"/, `no backend answer; output:\n${ex.output()}`);
  const other = await exec('curl', ['-s', '-H', 'Host: www.example.com', 'http://127.0.0.1:8080/hello'], { timeout: 8000 });
  assert.match(other.stdout, /"url": "\/hello"/);
  const unknown = await exec('curl', ['-s', '-o', '/dev/null', '-w', '%{http_code}', '-H', 'Host: nobody.example', 'http://127.0.0.1:8080/'], { timeout: 8000 });
  assert.equal(unknown.stdout, '421');
  // Ctrl-C stops it cleanly.
  ex.signal('SIGINT');
  const code = await Promise.race([ex.exited, new Promise<string>((r) => setTimeout(() => r('timeout'), 15_000))]);
  assert.notEqual(code, 'timeout', 'npm start did not stop on SIGINT');
});
