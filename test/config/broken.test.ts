/**
 * The broken-configuration corpus: each directory under test/config/broken
 * holds a configuration and expect.json listing every error it must give,
 * in order, as file:line:column and a message fragment.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { loadConfig } from '../../src/config/load.js';
import { repoRoot } from './fixtures.js';

interface Expectation {
  readonly description: string;
  readonly errors: readonly { readonly at: string; readonly message: string }[];
}

const corpus = path.join(repoRoot, 'test/config/broken');
const cases = readdirSync(corpus, { withFileTypes: true })
  .filter((d) => d.isDirectory())
  .map((d) => d.name)
  .sort();

test('the corpus has at least 24 broken configurations', () => {
  assert.ok(cases.length >= 24, `only ${cases.length} cases`);
});

for (const name of cases) {
  const dir = path.join(corpus, name);
  const expect = JSON.parse(readFileSync(path.join(dir, 'expect.json'), 'utf8')) as Expectation;
  test(`broken config ${name}: ${expect.description}`, async () => {
    const result = await loadConfig(dir);
    assert.equal(result.ok, false, 'the configuration must be refused');
    if (result.ok) return;
    const got = result.issues.map((i) => `${i.file}:${i.line}:${i.column}: ${i.message}`);
    assert.equal(result.issues.length, expect.errors.length, `expected ${expect.errors.length} errors, got:\n${got.join('\n')}`);
    expect.errors.forEach((e, n) => {
      const issue = result.issues[n]!;
      assert.equal(`${issue.file}:${issue.line}:${issue.column}`, e.at, `error ${n + 1}: ${got[n]}`);
      assert.ok(issue.message.includes(e.message), `error ${n + 1}: '${issue.message}' does not contain '${e.message}'`);
      assert.ok(issue.fix.length > 0, `error ${n + 1} has no fix`);
    });
  });
}
