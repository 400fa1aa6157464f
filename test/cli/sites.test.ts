/** `perimeter sites`: the audit inventory, run as a user runs it (compiled CLI, child process). */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, mkdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { perimeter } from './helpers.js';

async function tempDir(files: Record<string, string>): Promise<{ dir: string; cleanup: () => Promise<void> }> {
  const dir = await mkdtemp(path.join(tmpdir(), 'perimeter-sites-'));
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
  payment:
    listen: { http: ":8443" }
    log: { omit: [query, cookies, authorization] }
discovery:
  static:
    frontend: ["10.0.0.5:8080"]
    pay: ["10.0.0.9:8080"]
`,
  'sites/web-team.yaml': `# the web team's sites
www.example.com:
  service: frontend
  owner: web-team

"*.apps.example.com":
  service: frontend
`,
  'sites/payments.yml': `pay.example.com:
  service: pay
  cluster: payment
  owner: payments
`,
};

test('sites: an aligned table of every site, sorted by cluster then host', async (t) => {
  const c = await tempDir(config);
  t.after(c.cleanup);
  const r = await perimeter(['sites', c.dir]);
  assert.equal(r.code, 0, r.stderr);
  assert.equal(
    r.stdout,
    [
      'HOST                CLUSTER  SERVICE   OWNER     LISTENERS              TLS                       HSTS             CERTIFICATE  DECLARED IN',
      'pay.example.com     payment  pay       payments  http://*:8443          none (no https listener)  off (needs TLS)  -            sites/payments.yml:1:1',
      '*.apps.example.com  web      frontend  -         http://127.0.0.1:8080  none (no https listener)  off (needs TLS)  -            sites/web-team.yaml:6:1',
      'www.example.com     web      frontend  web-team  http://127.0.0.1:8080  none (no https listener)  off (needs TLS)  -            sites/web-team.yaml:2:1',
      '',
    ].join('\n'),
  );
});

test('sites --json: the inventory rows', async (t) => {
  const c = await tempDir(config);
  t.after(c.cleanup);
  const r = await perimeter(['sites', '--json', c.dir]);
  assert.equal(r.code, 0, r.stderr);
  const rows = JSON.parse(r.stdout) as { host: string; cluster: string; service: string; owner: string; listeners: string[]; tls: string; hsts: string; file: string; line: number; column: number }[];
  assert.deepEqual(
    rows.map((x) => [x.host, x.cluster, x.service, x.owner, x.listeners, `${x.file}:${x.line}:${x.column}`]),
    [
      ['pay.example.com', 'payment', 'pay', 'payments', ['http://*:8443'], 'sites/payments.yml:1:1'],
      ['*.apps.example.com', 'web', 'frontend', '', ['http://127.0.0.1:8080'], 'sites/web-team.yaml:6:1'],
      ['www.example.com', 'web', 'frontend', 'web-team', ['http://127.0.0.1:8080'], 'sites/web-team.yaml:2:1'],
    ],
  );
  for (const x of rows) {
    assert.equal(typeof x.tls, 'string');
    assert.equal(typeof x.hsts, 'string');
  }
});

test('sites: an invalid configuration exits 1 with its errors, nothing on stdout', async (t) => {
  const c = await tempDir({ ...config, 'sites/bad.yaml': 'shop.example.com:\n  service: nope\n' });
  t.after(c.cleanup);
  const r = await perimeter(['sites', c.dir]);
  assert.equal(r.code, 1);
  assert.equal(r.stdout, '');
  assert.match(r.stderr, /^sites\/bad\.yaml:2:12: error: .*nope/m);
  assert.match(r.stderr, /is invalid; fix it first/);
  const j = await perimeter(['sites', '--json', c.dir]);
  assert.equal(j.code, 1);
  assert.equal(j.stdout, '');
});

test('sites: usage errors exit 2', async () => {
  const none = await perimeter(['sites']);
  assert.equal(none.code, 2);
  assert.match(none.stderr, /Usage: perimeter sites/);
  assert.equal((await perimeter(['sites', '/nonexistent/dir'])).code, 2);
  assert.equal((await perimeter(['sites', '--csv', 'examples/quickstart'])).code, 2);
  const help = await perimeter(['sites', '--help']);
  assert.equal(help.code, 0);
  assert.match(help.stdout, /--json/);
});

test('sites shows each HTTPS site\'s certificate (issuer, expiry, source), HSTS and TLS versions', async (t) => {
  const { mkdtemp, rm } = await import('node:fs/promises');
  const { tmpdir } = await import('node:os');
  const { join } = await import('node:path');
  const { makeCert } = await import('../helpers/certs.js');
  const certDir = await mkdtemp(join(tmpdir(), 'perimeter-sites-cert-'));
  const a = makeCert(certDir, 'a', ['secure.example.com'], { days: 40 });
  const c = await tempDir({
    'perimeter.yaml': `clusters:
  web:
    listen: { http: "127.0.0.1:8080", https: "127.0.0.1:8443" }
    tls:
      certificates:
        - { cert: "${a.cert}", key: "${a.key}" }
discovery:
  static:
    app: ["127.0.0.1:9001"]
`,
    'sites/a.yaml': 'secure.example.com:\n  service: app\nuncovered.example.com:\n  service: app\n',
  });
  t.after(async () => {
    await c.cleanup();
    await rm(certDir, { recursive: true, force: true });
  });
  const r = await perimeter(['sites', '--json', c.dir]);
  assert.equal(r.code, 0, r.stderr);
  const rows = JSON.parse(r.stdout) as { host: string; tls: string; hsts: string; listeners: string[]; certificate: { issuer: string; daysLeft: number; source: string } | null }[];
  const secure = rows.find((x) => x.host === 'secure.example.com')!;
  assert.deepEqual(secure.listeners, ['http://127.0.0.1:8080', 'https://127.0.0.1:8443']);
  assert.equal(secure.tls, 'TLS 1.2+1.3, http redirects');
  assert.equal(secure.hsts, 'max-age=31536000; includeSubDomains');
  assert.equal(secure.certificate?.source, 'file');
  assert.match(secure.certificate!.issuer, /CN=secure.example.com/);
  assert.ok(secure.certificate!.daysLeft >= 38 && secure.certificate!.daysLeft <= 40);
  assert.equal(rows.find((x) => x.host === 'uncovered.example.com')!.certificate, null);
  const table = await perimeter(['sites', c.dir]);
  assert.match(table.stdout, /uncovered\.example\.com .*NONE \(handshakes fail\)/);
});
