/** Every CLI command is documented: a section of docs/cli.md and a row of README's command table. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { usage } from '../../src/cli/main.js';

test('docs/cli.md and README.md cover every command, with its exit statuses', () => {
  const names = [...usage.matchAll(/^ {2}([a-z]+) {2,}/gm)].map((m) => m[1]!);
  assert.ok(names.length >= 6, `commands found in usage: ${names.join(', ')}`);
  const doc = readFileSync('docs/cli.md', 'utf8');
  const readme = readFileSync('README.md', 'utf8');
  for (const name of names) {
    const section = doc.split(new RegExp(`^## ${name}$`, 'm'))[1];
    assert.ok(section, `docs/cli.md has no '## ${name}' section`);
    assert.match(section.split(/^## /m)[0]!, /Exit status/, `docs/cli.md's ${name} section states its exit status`);
    assert.match(readme, new RegExp(`^\\| \`perimeter ${name}\\b`, 'm'), `README.md's command table has no row for ${name}`);
  }
});
