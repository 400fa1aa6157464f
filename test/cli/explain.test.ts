/**
 * `perimeter explain` as a user runs it (compiled CLI, child process) on
 * configurations it does not need a running perimeter for: the text form,
 * listener selection, trusted proxies, discovery sources, exit codes.
 * Agreement with the real proxy is test/cli/explain-agrees.test.ts.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, mkdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { freePort } from '../helpers/cli.js';
import type { Explanation } from '../../src/web/explain.js';
import { perimeter } from './helpers.js';

async function tempDir(files: Record<string, string>): Promise<{ dir: string; cleanup: () => Promise<void> }> {
  const dir = await mkdtemp(path.join(tmpdir(), 'perimeter-explain-'));
  for (const [rel, text] of Object.entries(files)) {
    await mkdir(path.dirname(path.join(dir, rel)), { recursive: true });
    await writeFile(path.join(dir, rel), text);
  }
  return { dir, cleanup: () => rm(dir, { recursive: true, force: true }) };
}

const config = {
  'perimeter.yaml': `clusters:
  web:
    default: true
    listen: { http: "127.0.0.1:8080" }
    trusted-proxies: ["10.0.0.0/8"]
  payment:
    listen: { http: "127.0.0.1:8443" }
    log: { omit: [query, cookies, authorization] }
defaults:
  retries: { attempts: 1 }
discovery:
  static:
    frontend: ["10.0.0.5:8080", { address: "10.0.0.6:8080", weight: 3 }]
    pay: ["10.0.0.9:8080"]
    nothing: []
  file: { path: registry.yaml }
services:
  pay:
    panic: { mode: fail, threshold: 25% }
`,
  'registry.yaml': 'services:\n  catalog: ["10.0.1.1:80"]\n',
  'sites/web-team.yaml': `www.example.com:
  service: frontend
  owner: web-team
  timeouts: { connect: 1s }
catalog.example.com:
  service: catalog
empty.example.com:
  service: nothing
`,
  'sites/payments.yaml': `pay.example.com:
  service: pay
  cluster: payment
`,
};

async function explainJson(dir: string, args: string[]): Promise<{ code: number; ex: Explanation; stderr: string }> {
  const r = await perimeter(['explain', dir, ...args, '--json']);
  return { code: r.code, ex: JSON.parse(r.stdout || 'null') as Explanation, stderr: r.stderr };
}

test('explain: the text form, aligned, with the reasons', async (t) => {
  const c = await tempDir(config);
  t.after(c.cleanup);
  const r = await perimeter(['explain', c.dir, '--host', 'WWW.Example.com:8080', '--path', '/cart?id=1', '--method', 'POST', '--from', '192.0.2.7']);
  assert.equal(r.code, 0, r.stderr);
  const [table = '', why = ''] = r.stdout.split('\n\nwhy:\n');
  const lines = table.split('\n');
  assert.deepEqual(
    lines.map((l) => l.slice(0, 12)),
    ['request     ', 'outcome     ', 'cluster     ', 'site        ', 'service     ', 'backends    ', '            ', 'panic       ', 'retries     ', 'forwarding  ', 'timeouts    ', 'limits      ', 'log         '],
  );
  assert.equal(lines[1], 'outcome     routed to a backend');
  assert.equal(lines[2], 'cluster     web (listener http://127.0.0.1:8080)');
  assert.equal(lines[3], 'site        www.example.com (exact), declared in sites/web-team.yaml:1:1, owner web-team');
  assert.equal(lines[5], 'backends    10.0.0.5:8080  weight 1  unknown');
  assert.equal(lines[6], '            10.0.0.6:8080  weight 3  unknown');
  assert.match(lines[8]!, /POST is not idempotent; up to 1 more try/);
  assert.equal(lines[9], 'forwarding  untrusted client: X-Forwarded-For replaced');
  assert.match(lines[10]!, /connect 1s/);
  assert.match(why, /^ {2}- Host 'WWW\.Example\.com:8080' is matched as 'www\.example\.com'/m);
  assert.match(why, /- site www\.example\.com declared in sites\/web-team\.yaml:1:1 \(owner web-team\), cluster web/);
  assert.match(why, /- client 192\.0\.2\.7 is not in trusted-proxies of cluster web \(10\.0\.0\.0\/8\)/);
  assert.match(why, /- POST is not idempotent: it may be retried up to 1 more time on other backends only when the request cannot have reached a backend/);
  assert.match(why, /pass --admin URL to see it/);
});

test('explain: trusted proxies, IPv4-mapped addresses, the chosen listener', async (t) => {
  const c = await tempDir(config);
  t.after(c.cleanup);
  const trusted = await explainJson(c.dir, ['--host', 'www.example.com', '--from', '::ffff:10.1.2.3']);
  assert.equal(trusted.code, 0);
  assert.deepEqual(trusted.ex.forwarding, { trustedPeer: true, xForwardedFor: 'appended' });
  assert.equal(trusted.ex.request.from, '10.1.2.3');

  // Without --cluster/--port: the listener of the cluster that declares the site.
  const pay = await explainJson(c.dir, ['--host', 'pay.example.com', '--path', '/charge?card=1']);
  assert.equal(pay.code, 0);
  assert.equal(pay.ex.cluster, 'payment');
  assert.deepEqual(pay.ex.logPolicy, { omit: ['query', 'cookies', 'authorization'] });
  assert.deepEqual(pay.ex.panic, { mode: 'fail', thresholdPercent: 25 });
  assert.equal(pay.ex.forwarding.trustedPeer, false);

  // On the web listener (by port) the payment site is unknown: 421, exit 1.
  const wrong = await explainJson(c.dir, ['--host', 'pay.example.com', '--port', '8080']);
  assert.equal(wrong.code, 1);
  assert.equal(wrong.ex.status, 421);
  assert.equal(wrong.ex.errorCode, 'PRM_UNKNOWN_SITE');
  assert.ok(wrong.ex.reasons.some((x) => x.includes('is site pay.example.com of cluster payment')));

  const unknown = await explainJson(c.dir, ['--host', 'nope.example.com']);
  assert.equal(unknown.code, 1);
  assert.equal(unknown.ex.cluster, 'web');
  assert.ok(unknown.ex.reasons.some((x) => x.includes('default cluster web')));
});

test('explain: discovery sources: static, registry file (resolved at run time), an empty list', async (t) => {
  const c = await tempDir(config);
  t.after(c.cleanup);
  const file = await explainJson(c.dir, ['--host', 'catalog.example.com']);
  assert.equal(file.code, 0);
  assert.equal(file.ex.serviceSource, 'file');
  assert.equal(file.ex.backendsFrom, 'run time');
  assert.deepEqual(file.ex.backends, []);
  assert.ok(file.ex.reasons.some((x) => x.includes('resolved at run time')));
  const text = await perimeter(['explain', c.dir, '--host', 'catalog.example.com']);
  assert.match(text.stdout, /^backends +resolved at run time \(pass --admin to see them\)$/m);

  const empty = await explainJson(c.dir, ['--host', 'empty.example.com']);
  assert.equal(empty.code, 1);
  assert.equal(empty.ex.status, 503);
  assert.equal(empty.ex.errorCode, 'PRM_NO_BACKEND');

  const bad = await explainJson(c.dir, ['--host', 'www.example.com', '--path', '/a b']);
  assert.equal(bad.code, 1);
  assert.equal(bad.ex.status, 400);
});

test('explain: exit 3 when --admin cannot be reached; 1 with errors for an invalid configuration', async (t) => {
  const c = await tempDir(config);
  const broken = await tempDir({ ...config, 'sites/bad.yaml': 'x.example.com:\n  sevice: frontend\n' });
  t.after(async () => {
    await c.cleanup();
    await broken.cleanup();
  });
  const port = await freePort();
  const down = await perimeter(['explain', c.dir, '--host', 'www.example.com', '--admin', `http://127.0.0.1:${port}`]);
  assert.equal(down.code, 3);
  assert.match(down.stderr, /cannot reach the admin API/);
  const invalid = await perimeter(['explain', broken.dir, '--host', 'www.example.com']);
  assert.equal(invalid.code, 1);
  assert.match(invalid.stderr, /sites\/bad\.yaml:2:3: error: unknown key 'sevice'/);
});

test('explain: usage errors exit 2', async (t) => {
  const c = await tempDir(config);
  t.after(c.cleanup);
  const cases: [string[], RegExp][] = [
    [[c.dir], /--host is required/],
    [['--host', 'www.example.com'], /expected one configuration directory/],
    [[c.dir, '--host', 'a', '--port', '8080', '--cluster', 'web'], /not both/],
    [[c.dir, '--host', 'a', '--from', 'somewhere'], /is not an IP address/],
    [[c.dir, '--host', 'a', '--port', '9999'], /no cluster listens on port 9999/],
    [[c.dir, '--host', 'a', '--cluster', 'wbe'], /no cluster 'wbe'.*clusters: web, payment/],
    [[c.dir, '--host', 'a', '--bogus'], /Unknown option/],
    [['/nonexistent/dir', '--host', 'a'], /is not a directory/],
  ];
  for (const [args, message] of cases) {
    const r = await perimeter(['explain', ...args]);
    assert.equal(r.code, 2, `${args.join(' ')}: ${r.stderr}`);
    assert.match(r.stderr, message);
  }
  const help = await perimeter(['explain', '--help']);
  assert.equal(help.code, 0);
  assert.match(help.stdout, /Exit status: 0 the request would be routed/);
});
