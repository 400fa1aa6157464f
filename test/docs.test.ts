import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { Errors } from '../src/core/errors.js';

test('docs/errors.md lists every error code with its status', () => {
  const doc = readFileSync('docs/errors.md', 'utf8');
  for (const d of Object.values(Errors)) {
    assert.match(doc, new RegExp('\\| `' + d.code + '` \\| ' + d.status + ' \\|'), `${d.code} missing from docs/errors.md`);
  }
});

test('error codes are unique', () => {
  const codes = Object.values(Errors).map((d) => d.code);
  assert.equal(new Set(codes).size, codes.length);
});
