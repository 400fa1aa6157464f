/**
 * The acceptance audit: testssl.sh (Debian package) against a default HTTPS
 * listener finds nothing of severity MEDIUM or above, and sees HSTS.
 * The script is scripts/testssl.sh, runnable by hand.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';

test('testssl.sh: no finding of severity MEDIUM or above on a default HTTPS listener; HSTS present', { timeout: 400_000 }, () => {
  const r = spawnSync('bash', ['scripts/testssl.sh'], { encoding: 'utf8', timeout: 380_000 });
  const out = `${r.stdout}\n${r.stderr}`;
  assert.equal(r.status, 0, out);
  assert.match(out, /, 0 findings of severity MEDIUM or above/);
  assert.match(out, /HSTS: 365 days/);
});
