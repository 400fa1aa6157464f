import { test } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import { mkdir, rm, symlink, writeFile } from 'node:fs/promises';
import { formatIssue, loadConfig, parsedFileCount } from '../../src/config/load.js';
import { configDir, minimalPlatform, repoRoot } from './fixtures.js';

test('the quickstart example loads into a snapshot', async () => {
  const r = await loadConfig(path.join(repoRoot, 'examples/quickstart'));
  assert.ok(r.ok, r.ok ? '' : r.issues.map(formatIssue).join('\n'));
  const s = r.snapshot;
  const web = s.clusters.get('web');
  assert.deepEqual(web?.listen.http, { host: '127.0.0.1', port: 8080 });
  assert.equal(web?.isDefault, true);
  assert.deepEqual([...s.sites.keys()].sort(), ['localhost', 'www.example.com']);
  const svc = s.services.get('web-frontend');
  assert.equal(svc?.source, 'static');
  assert.equal(svc?.health.path, '/healthz');
  assert.equal(svc?.health.intervalMs, 2000);
  assert.deepEqual(s.discovery.static.get('web-frontend')?.map((b) => `${b.host}:${b.port}/${b.weight}`), [
    '127.0.0.1:9101/1',
    '127.0.0.1:9102/1',
    '127.0.0.1:9103/2',
  ]);
  assert.ok(Object.isFrozen(s));
});

test('a minimal configuration gets the built-in defaults', async () => {
  const c = await configDir({ 'perimeter.yaml': minimalPlatform, 'sites/team.yaml': 'WWW.Example.com.:\n  service: web-frontend\n' });
  try {
    const r = await loadConfig(c.dir);
    assert.ok(r.ok, r.ok ? '' : r.issues.map(formatIssue).join('\n'));
    const site = r.snapshot.sites.get('www.example.com');
    assert.ok(site, 'host names are lower-cased without the trailing dot');
    assert.equal(site.cluster, 'web');
    assert.equal(site.owner, '');
    assert.deepEqual(site.pos, { file: 'sites/team.yaml', line: 1, column: 1 });
    assert.deepEqual(site.timeouts, { requestHeaderMs: 10_000, clientIdleMs: 60_000, connectMs: 3_000, responseMs: 60_000, upstreamIdleMs: 4_000 });
    const web = r.snapshot.clusters.get('web')!;
    assert.deepEqual(web.listen.http, { host: '', port: 8080 });
    assert.deepEqual(web.limits, { headerBytes: 32 * 1024, headerCount: 100, uriLength: 8 * 1024, bodyBytes: 0 });
    const svc = r.snapshot.services.get('web-frontend')!;
    assert.equal(svc.balancer, 'latency');
    assert.deepEqual(svc.health.expectStatus, [[200, 399]]);
    assert.equal(svc.health.jitter, 0.1);
    assert.deepEqual(svc.panic, { thresholdPercent: 50, mode: 'serve-all' });
    assert.equal(r.snapshot.source, path.resolve(c.dir));
  } finally {
    await c.cleanup();
  }
});

test('values merge: built-in ← defaults ← cluster / service override ← site', async () => {
  const c = await configDir({
    'perimeter.yaml': `clusters:
  web:
    default: true
    listen: { http: "127.0.0.1:8080" }
    timeouts: { connect: 1s, request-header: 5s }
    limits: { header-bytes: 16k, body-bytes: 10m }
    trusted-proxies: ["10.0.0.0/8", "FD00::/8", "192.0.2.7"]
    log: { omit: [query, cookies, query] }
  api:
    listen: { http: "[::1]:8081" }
defaults:
  balancer: round-robin
  timeouts: { response: 30s }
  health: { interval: 10s, jitter: 25%, expect-status: "200,204,300-302" }
  retries: { attempts: 1, budget: 10 }
discovery:
  static:
    web-frontend: ["10.0.0.1:80", { address: "[2001:db8::1]:8080", weight: 3 }, "backend.internal:81"]
  dns-srv: { domain: Services.Example.NET., servers: ["127.0.0.1:5353", "::1"], min-ttl: 2s }
services:
  web-frontend: { balancer: least-request, health: { type: tcp, fall: 5 }, panic: { mode: fail } }
  checkout: { passive: { consecutive-failures: 0 } }
`,
    'sites/a.yaml': `www.example.com:
  service: web-frontend
  owner: playlist-team
  timeouts: { connect: 2s, client-idle: 2m }
api.example.com:
  service: checkout
  cluster: api
  health: { path: /ready }
"*.apps.example.com":
  service: checkout
`,
  });
  try {
    const r = await loadConfig(c.dir);
    assert.ok(r.ok, r.ok ? '' : r.issues.map(formatIssue).join('\n'));
    const s = r.snapshot;
    const web = s.clusters.get('web')!;
    assert.deepEqual(web.timeouts, { requestHeaderMs: 5_000, clientIdleMs: 60_000, connectMs: 1_000, responseMs: 30_000, upstreamIdleMs: 4_000 });
    assert.deepEqual(web.limits, { headerBytes: 16_384, headerCount: 100, uriLength: 8_192, bodyBytes: 10 * 1024 * 1024 });
    assert.deepEqual(web.trustedProxies, ['10.0.0.0/8', 'fd00::/8', '192.0.2.7/32']);
    assert.deepEqual(web.logOmit, ['query', 'cookies']);
    assert.deepEqual(s.clusters.get('api')!.listen.http, { host: '::1', port: 8081 });
    assert.equal(s.clusters.get('api')!.isDefault, false);

    const www = s.sites.get('www.example.com')!;
    assert.deepEqual(www.timeouts, { requestHeaderMs: 5_000, clientIdleMs: 120_000, connectMs: 2_000, responseMs: 30_000, upstreamIdleMs: 4_000 });
    assert.equal(www.owner, 'playlist-team');
    assert.equal(s.sites.get('api.example.com')!.cluster, 'api');
    assert.equal(s.sites.get('*.apps.example.com')!.cluster, 'web');

    const fe = s.services.get('web-frontend')!;
    assert.equal(fe.source, 'static');
    assert.equal(fe.balancer, 'least-request');
    assert.equal(fe.health.kind, 'tcp');
    assert.equal(fe.health.fall, 5);
    assert.equal(fe.health.intervalMs, 10_000);
    assert.equal(fe.health.jitter, 0.25);
    assert.deepEqual(fe.health.expectStatus, [[200, 200], [204, 204], [300, 302]]);
    assert.equal(fe.panic.mode, 'fail');
    assert.deepEqual(fe.retries, { attempts: 1, budgetPercent: 10, minRetryConcurrency: 3 });

    const co = s.services.get('checkout')!;
    assert.equal(co.source, 'dns-srv', 'not static, no file registry: DNS SRV');
    assert.equal(co.balancer, 'round-robin');
    assert.equal(co.health.path, '/ready');
    assert.equal(co.passive.consecutiveFailures, 0);

    assert.deepEqual(
      s.discovery.static.get('web-frontend'),
      [
        { host: '10.0.0.1', port: 80, weight: 1 },
        { host: '2001:db8::1', port: 8080, weight: 3 },
        { host: 'backend.internal', port: 81, weight: 1 },
      ],
    );
    assert.deepEqual(s.discovery.dnsSrv, {
      domain: 'services.example.net',
      servers: [
        { host: '127.0.0.1', port: 5353 },
        { host: '::1', port: 53 },
      ],
      minTtlMs: 2_000,
      maxTtlMs: 300_000,
      timeoutMs: 2_000,
    });
    assert.deepEqual(r.warnings, []);
  } finally {
    await c.cleanup();
  }
});

test('a file registry takes services that are not static, before DNS SRV; its path is made absolute', async () => {
  const c = await configDir({
    'perimeter.yaml': `${minimalPlatform}  file: { path: registry/services.yaml }
  dns-srv: { domain: services.example.net }
`,
    'registry/services.yaml': 'checkout: ["127.0.0.1:9100"]\n',
    'sites/a.yaml': 'www.example.com: { service: web-frontend }\nshop.example.com: { service: checkout }\n',
  });
  try {
    const r = await loadConfig(c.dir);
    assert.ok(r.ok, r.ok ? '' : r.issues.map(formatIssue).join('\n'));
    assert.equal(r.snapshot.services.get('web-frontend')!.source, 'static');
    assert.equal(r.snapshot.services.get('checkout')!.source, 'file');
    assert.equal(r.snapshot.discovery.file?.path, path.join(path.resolve(c.dir), 'registry/services.yaml'));
  } finally {
    await c.cleanup();
  }
});

test('every error of every file is reported at once, sorted by file and position', async () => {
  const c = await configDir({
    'perimeter.yaml': `clusters:
  web:
    listen: { http: ":8080" }
    timeouts: { conect: 2s }
discovery:
  static:
    web-frontend: ["127.0.0.1"]
`,
    'sites/a.yaml': 'www.example.com:\n  service: web-frontend\n  hsts: off\n',
    'sites/b.yaml': 'shop.example.com:\n  servce: web-frontend\nwww.example.com:\n  service: web-frontend\n',
    'sites/c.yml': 'https://blog.example.com:\n  service: web-frontend\n  cluster: wbe\n',
    'sites/README.md': 'not a site file: ignored\n',
  });
  try {
    const r = await loadConfig(c.dir);
    assert.equal(r.ok, false);
    if (r.ok) return;
    const got = r.issues.map((i) => `${i.file}:${i.line}:${i.column}`);
    assert.deepEqual(got, [
      'perimeter.yaml:4:17', // unknown key conect
      'perimeter.yaml:7:20', // backend without port
      'sites/a.yaml:3:3', // hsts
      'sites/b.yaml:1:1', // missing service
      'sites/b.yaml:2:3', // servce
      'sites/b.yaml:3:1', // duplicate of a.yaml
      'sites/c.yml:1:1', // URL as a site name
    ]);
    assert.deepEqual(new Set(r.issues.map((i) => i.file)).size, 4);
    assert.match(r.issues[5]!.message, /sites\/a\.yaml:1:1 and sites\/b\.yaml:3:1/);
  } finally {
    await c.cleanup();
  }
});

test('warnings do not refuse a configuration', async () => {
  const c = await configDir({
    'perimeter.yaml': `${minimalPlatform}    spare: []
  file: { path: missing.yaml }
services:
  web-frontnd: { balancer: round-robin }
`,
    'sites/a.yaml': 'www.example.com: { service: web-frontend }\n',
  });
  try {
    const r = await loadConfig(c.dir);
    assert.ok(r.ok, r.ok ? '' : r.issues.map(formatIssue).join('\n'));
    assert.deepEqual(
      r.warnings.map((w) => `${w.file}:${w.line}:${w.column}: ${w.message}`),
      [
        "perimeter.yaml:7:5: static service 'spare' has no backends; its sites will answer 503",
        `perimeter.yaml:8:17: registry file ${path.join(path.resolve(c.dir), 'missing.yaml')} does not exist yet`,
        "perimeter.yaml:10:3: no site uses service 'web-frontnd'; did you mean 'web-frontend'?",
      ],
    );
  } finally {
    await c.cleanup();
  }
});

test('a configuration without sites is valid; a site may name the only cluster implicitly', async () => {
  const c = await configDir({ 'perimeter.yaml': minimalPlatform });
  try {
    const r = await loadConfig(c.dir);
    assert.ok(r.ok);
    assert.equal(r.snapshot.sites.size, 0);
    assert.equal(r.snapshot.services.size, 0);
  } finally {
    await c.cleanup();
  }
});

test('formatIssue names file, line and column, then the fix', () => {
  const text = formatIssue({ file: 'sites/a.yaml', line: 3, column: 5, message: "unknown key 'sevice'; did you mean 'service'?", fix: "rename it to 'service'" });
  assert.equal(text, "sites/a.yaml:3:5: error: unknown key 'sevice'; did you mean 'service'?\n  fix: rename it to 'service'");
});

test('a reload parses only the files whose text changed, and its result is what a fresh load gives', async () => {
  const sites: Record<string, string> = {};
  for (let i = 0; i < 20; i++) sites[`sites/s${i}.yaml`] = `s${i}.example.com:\n  service: web-frontend\n  owner: team-${i}\n`;
  const c = await configDir({ 'perimeter.yaml': minimalPlatform, ...sites });
  try {
    const before = parsedFileCount();
    const first = await loadConfig(c.dir, { blockingReads: true, reuseParsed: true });
    assert.ok(first.ok, first.ok ? '' : first.issues.map(formatIssue).join('\n'));
    assert.equal(parsedFileCount() - before, 21, 'the first load parses every file');

    const again = await loadConfig(c.dir, { reuseParsed: true });
    assert.equal(parsedFileCount() - before, 21, 'nothing changed: nothing parsed');
    assert.ok(again.ok);
    assert.deepEqual(again.snapshot, first.snapshot);

    // One site file changes (same length, other text): that one is parsed again, and what it says counts.
    await writeFile(path.join(c.dir, 'sites/s7.yaml'), 's7.example.com:\n  service: web-frontend\n  owner: team-X\n');
    const changed = await loadConfig(c.dir, { blockingReads: true, reuseParsed: true });
    assert.equal(parsedFileCount() - before, 22);
    assert.ok(changed.ok);
    assert.equal(changed.snapshot.sites.get('s7.example.com')?.owner, 'team-X');
    assert.equal(changed.snapshot.sites.get('s8.example.com')?.owner, 'team-8');

    // An error in a changed file names the new text's position, not the cached file's.
    await writeFile(path.join(c.dir, 'sites/s3.yaml'), '# moved down\n\ns3.example.com:\n  service: web-frontend\n  sevice: x\n');
    const broken = await loadConfig(c.dir, { reuseParsed: true });
    assert.equal(broken.ok, false);
    assert.deepEqual(
      broken.ok ? [] : broken.issues.map((i) => `${i.file}:${i.line}:${i.column}`),
      ['sites/s3.yaml:5:3'],
    );
    // Fixed again: the same result as a fresh load of the same files in another directory.
    await writeFile(path.join(c.dir, 'sites/s3.yaml'), sites['sites/s3.yaml']!);
    const fixed = await loadConfig(c.dir, { reuseParsed: true });
    const fresh = await configDir({ 'perimeter.yaml': minimalPlatform, ...sites, 'sites/s7.yaml': 's7.example.com:\n  service: web-frontend\n  owner: team-X\n' });
    try {
      const reference = await loadConfig(fresh.dir);
      assert.ok(fixed.ok && reference.ok);
      assert.deepEqual(fixed.snapshot.sites, reference.snapshot.sites);
      assert.deepEqual(fixed.snapshot.services, reference.snapshot.services);
    } finally {
      await fresh.cleanup();
    }

    // A load that does not ask to reuse parses everything and leaves the kept files alone.
    const counted = parsedFileCount();
    const oneOff = await loadConfig(c.dir);
    assert.ok(oneOff.ok);
    assert.equal(parsedFileCount() - counted, 21);
    await loadConfig(c.dir, { reuseParsed: true });
    assert.equal(parsedFileCount() - counted, 21, 'the kept files are still those of the last reusing load');

    // A removed file is gone from the next load.
    await rm(path.join(c.dir, 'sites/s0.yaml'));
    const removed = await loadConfig(c.dir, { reuseParsed: true });
    assert.ok(removed.ok);
    assert.equal(removed.snapshot.sites.has('s0.example.com'), false);
    assert.equal(removed.snapshot.sites.size, 19);
  } finally {
    await c.cleanup();
  }
});

test('site files: *.yaml and *.yml regular files and links to them; not dot-files, directories or links to directories', async () => {
  const c = await configDir({
    'perimeter.yaml': minimalPlatform,
    'sites/a.yaml': 'a.example.com:\n  service: web-frontend\n',
    'sites/b.yml': 'b.example.com:\n  service: web-frontend\n',
    'sites/.c.yaml': 'c.example.com:\n  service: web-frontend\n',
    'sites/d.yaml.orig': 'd.example.com:\n  service: web-frontend\n',
    'elsewhere/e.yaml': 'e.example.com:\n  service: web-frontend\n',
  });
  try {
    await mkdir(path.join(c.dir, 'sites/dir.yaml'));
    await writeFile(path.join(c.dir, 'sites/dir.yaml/f.yaml'), 'f.example.com:\n  service: web-frontend\n');
    await symlink(path.join(c.dir, 'elsewhere/e.yaml'), path.join(c.dir, 'sites/e.yaml'));
    await symlink(path.join(c.dir, 'elsewhere'), path.join(c.dir, 'sites/linked-dir.yaml'));
    await symlink(path.join(c.dir, 'missing.yaml'), path.join(c.dir, 'sites/dangling.yaml'));
    for (const blockingReads of [false, true]) {
      const r = await loadConfig(c.dir, { blockingReads });
      assert.ok(r.ok, r.ok ? '' : r.issues.map(formatIssue).join('\n'));
      assert.deepEqual([...r.snapshot.sites.keys()].sort(), ['a.example.com', 'b.example.com', 'e.example.com']);
      assert.equal(r.snapshot.sites.get('e.example.com')?.pos.file, 'sites/e.yaml');
    }
  } finally {
    await c.cleanup();
  }
});
