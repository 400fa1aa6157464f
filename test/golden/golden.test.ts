/**
 * Golden tests (as Caddy's caddyfile_adapt): each case's config/ directory
 * in, the normalized snapshot JSON out, compared to the committed
 * snapshot.json. `UPDATE_GOLDEN=1` rewrites the expected files.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { formatIssue, loadConfig, snapshotToJSON } from '../../src/config/load.js';

const here = fileURLToPath(new URL('../../../test/golden/', import.meta.url));
const update = process.env.UPDATE_GOLDEN === '1';

/** Machine-specific absolute paths become "<config>" so the files can be committed. */
function normalize(json: unknown, configDir: string): string {
  // The config directory first: it sits inside the working directory.
  const text = JSON.stringify(json, null, 2).split(JSON.stringify(configDir).slice(1, -1)).join('<config>');
  return text.split(JSON.stringify(process.cwd()).slice(1, -1)).join('<cwd>') + '\n';
}

const cases = readdirSync(here, { withFileTypes: true })
  .filter((d) => d.isDirectory() && existsSync(path.join(here, d.name, 'config')))
  .map((d) => d.name)
  .sort();

test('there are golden cases', () => {
  assert.ok(cases.length >= 2);
});

for (const name of cases) {
  test(`golden ${name}`, async () => {
    const configDir = path.join(here, name, 'config');
    const result = await loadConfig(configDir);
    assert.ok(result.ok, result.ok ? '' : result.issues.map(formatIssue).join('\n'));
    const got = normalize({ snapshot: snapshotToJSON(result.snapshot), warnings: result.warnings }, configDir);
    const expectedFile = path.join(here, name, 'snapshot.json');
    if (update || !existsSync(expectedFile)) {
      writeFileSync(expectedFile, got);
      if (!update) assert.fail(`wrote ${expectedFile}; review and commit it`);
      return;
    }
    assert.equal(got, readFileSync(expectedFile, 'utf8'), `snapshot differs from ${expectedFile}; run with UPDATE_GOLDEN=1 to accept`);
  });
}
