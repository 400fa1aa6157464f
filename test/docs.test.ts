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

test('relative links between the docs resolve, anchors included', async () => {
  const { existsSync, readdirSync } = await import('node:fs');
  const { dirname, join, normalize, relative } = await import('node:path');
  const mdIn = (dir: string): string[] => (existsSync(dir) ? readdirSync(dir).filter((f) => f.endsWith('.md')).map((f) => join(dir, f)) : []);
  const files = ['README.md', 'BENCHMARKS.md', ...mdIn('docs'), ...mdIn('examples')];
  const withoutCode = (f: string): string => readFileSync(f, 'utf8').replace(/```[\s\S]*?```/g, '');
  // GitHub's heading anchors: lower case, punctuation dropped, spaces to '-', repeats numbered.
  const anchorsOf = (f: string): Set<string> => {
    const out = new Set<string>();
    const seen = new Map<string, number>();
    for (const m of withoutCode(f).matchAll(/^#{1,6} (.+)$/gm)) {
      let a = m[1]!.replace(/`/g, '').trim().toLowerCase().replace(/[^\p{L}\p{N} _-]/gu, '').replace(/ /g, '-');
      const n = seen.get(a) ?? 0;
      seen.set(a, n + 1);
      if (n > 0) a += `-${n}`;
      out.add(a);
    }
    return out;
  };
  const broken: string[] = [];
  let checked = 0;
  for (const f of files) {
    for (const m of withoutCode(f).matchAll(/\]\(([^)\s]+)\)/g)) {
      const link = m[1]!;
      if (/^[a-z]+:/i.test(link)) continue; // https:, mailto:
      const [path, anchor] = link.split('#') as [string, string | undefined];
      const target = path === '' ? f : normalize(join(dirname(f), path));
      if (relative('.', target).startsWith('..')) continue; // outside the repository (../shared)
      checked++;
      if (!existsSync(target)) broken.push(`${f}: ${link} (no such file)`);
      else if (anchor && target.endsWith('.md') && !anchorsOf(target).has(anchor)) broken.push(`${f}: ${link} (no such heading)`);
    }
  }
  assert.ok(checked > 100, `only ${checked} links found: is the pattern right?`);
  assert.deepEqual(broken, []);
});
