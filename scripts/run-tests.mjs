// Runs every compiled test file with node's built-in runner.
// Usage: node scripts/run-tests.mjs [substring filter...]
import { readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { spawnSync } from 'node:child_process';

function walk(dir, out) {
  for (const name of readdirSync(dir)) {
    const p = join(dir, name);
    if (statSync(p).isDirectory()) walk(p, out);
    else if (name.endsWith('.test.js')) out.push(p);
  }
  return out;
}

const filters = process.argv.slice(2);
const files = walk('dist/test', []).filter((f) => filters.length === 0 || filters.some((s) => f.includes(s))).sort();
if (files.length === 0) {
  console.error('no test files found under dist/test');
  process.exit(1);
}
// Build the geolocation ASN database once (first use compiles it from the
// npm package's CSV, 4-12 s) instead of in several test processes at once.
try {
  const { ensureBuiltinAsnDb } = await import('../dist/src/geo/builtin.js');
  await ensureBuiltinAsnDb();
} catch (err) {
  console.error(`warning: could not prepare the built-in ASN database: ${err instanceof Error ? err.message : String(err)}`);
}
// Tests that rebuild dist/ (the quickstart runs `npm start`, which runs tsc)
// run alone afterwards: tsc rewriting modules while other tests start
// perimeter processes from dist/ would hand those a half-written file.
const REBUILDS_DIST = ['dist/test/examples/quickstart.test.js'];
const together = files.filter((f) => !REBUILDS_DIST.includes(f));
const alone = files.filter((f) => REBUILDS_DIST.includes(f));
let status = 0;
for (const batch of [together, alone]) {
  if (batch.length === 0) continue;
  const res = spawnSync(process.execPath, ['--test', '--test-concurrency=2', '--test-timeout=420000', ...batch], { stdio: 'inherit' });
  if (res.status !== 0) status = res.status ?? 1;
}
process.exit(status);
