/** `perimeter validate` and `perimeter schema` run as a user runs them: the compiled CLI in a child process. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import path from 'node:path';
import { configDir, repoRoot } from './fixtures.js';

const cli = path.join(repoRoot, 'dist/src/cli/main.js');

function perimeter(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, [cli, ...args], { cwd: repoRoot, timeout: 15_000 }, (err, stdout, stderr) => {
      const code = err ? (typeof err.code === 'number' ? err.code : -1) : 0;
      resolve({ code, stdout, stderr });
    });
  });
}

test('validate: a good directory exits 0 and says how many sites and clusters', async () => {
  const r = await perimeter(['validate', 'examples/quickstart']);
  assert.equal(r.code, 0, r.stderr);
  assert.equal(r.stdout, 'ok: 2 sites in 1 cluster\n');
});

test('validate: a bad directory exits 1 listing every error with its fix and a summary', async () => {
  const c = await configDir({
    'perimeter.yaml': 'clusters:\n  web:\n    listen: { http: ":8080" }\ndiscovery:\n  static:\n    web-frontend: ["127.0.0.1:9001"]\n',
    'sites/a.yaml': 'www.example.com:\n  sevice: web-frontend\n',
    'sites/b.yaml': 'shop.example.com:\n  service: web-frontend\n  hsts: false\n',
  });
  try {
    const r = await perimeter(['validate', c.dir]);
    assert.equal(r.code, 1);
    assert.equal(r.stdout, '');
    const lines = r.stderr.trimEnd().split('\n');
    assert.deepEqual(lines, [
      "sites/a.yaml:1:1: error: missing required key 'service' in 'www.example.com'",
      "  fix: add 'service: <name>' with the service-discovery name of the backends, e.g. 'service: web-frontend'",
      "sites/a.yaml:2:3: error: unknown key 'sevice'; did you mean 'service'?",
      "  fix: rename it to 'service'",
      "sites/b.yaml:3:3: error: 'hsts' is a security default that a site cannot change; it is set by the platform team in perimeter.yaml",
      "  fix: remove 'hsts' from the site, or ask the platform team to change it for the cluster",
      '3 errors in 2 files',
    ]);

    const j = await perimeter(['validate', '--json', c.dir]);
    assert.equal(j.code, 1);
    const doc = JSON.parse(j.stdout) as { ok: boolean; errors: { file: string; line: number; column: number; message: string; fix: string }[] };
    assert.equal(doc.ok, false);
    assert.deepEqual(
      doc.errors.map((e) => `${e.file}:${e.line}:${e.column}`),
      ['sites/a.yaml:1:1', 'sites/a.yaml:2:3', 'sites/b.yaml:3:3'],
    );
  } finally {
    await c.cleanup();
  }
});

test('validate: usage errors exit 2', async () => {
  const none = await perimeter(['validate']);
  assert.equal(none.code, 2);
  assert.match(none.stderr, /Usage: perimeter validate/);
  const missing = await perimeter(['validate', path.join(repoRoot, 'no-such-dir')]);
  assert.equal(missing.code, 2);
  assert.match(missing.stderr, /is not a directory/);
  const flag = await perimeter(['validate', '--strict', 'examples/quickstart']);
  assert.equal(flag.code, 2);
});

test('schema: prints the JSON Schema of both file kinds, or one', async () => {
  const all = await perimeter(['schema']);
  assert.equal(all.code, 0, all.stderr);
  const doc = JSON.parse(all.stdout) as { $defs: Record<string, unknown> };
  assert.deepEqual(Object.keys(doc.$defs).sort(), ['platform', 'site']);
  const site = await perimeter(['schema', 'site']);
  assert.equal(site.code, 0);
  assert.equal((JSON.parse(site.stdout) as { title: string }).title, 'perimeter site file');
  const bad = await perimeter(['schema', 'sites']);
  assert.equal(bad.code, 2);
});
