/** GET /api/tcp, the worker merge behind it, and `perimeter tcp`. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { freePort } from '../helpers/cli.js';
import { writeConfig } from '../helpers/perimeter.js';
import { mergeTcpDescriptions, type TcpListenerDescription } from '../../src/tcp/proxy.js';
import { connectFrom, entry, startEcho, startTcpPerimeter } from './harness.js';

const run = promisify(execFile);

test('GET /api/tcp shows each listener with its address, allowlist, sessions, bytes and connection results', { timeout: 30_000 }, async (t) => {
  const b = await startEcho();
  t.after(() => b.close());
  const admin = await freePort();
  const p = await startTcpPerimeter({ backends: [b.port], extra: `admin:\n  listen: "127.0.0.1:${admin}"`, health: '{ type: none }' });
  try {
    p.runtime.allowlists.set('partners', [entry('partners', '127.0.0.2/32')]);
    const c = await connectFrom(p.tcpPort(), '127.0.0.2');
    c.socket.write('12345');
    await c.waitFor('12345');
    const denied = await connectFrom(p.tcpPort(), '127.0.0.3');
    await denied.closed;
    const res = await fetch(`http://127.0.0.1:${admin}/api/tcp`);
    assert.equal(res.status, 200);
    const body = (await res.json()) as { listeners: TcpListenerDescription[] };
    assert.equal(body.listeners.length, 1);
    const l = body.listeners[0]!;
    assert.equal(l.name, 'upload');
    assert.equal(l.address, `127.0.0.1:${p.tcpPort()}`);
    assert.equal(l.service, 'sftp');
    assert.equal(l.allowlist, 'partners');
    assert.equal(l.allowlistEntries, 1);
    assert.equal(l.activeSessions, 1);
    assert.equal(l.bytesIn, 5);
    assert.equal(l.bytesOut, 5);
    assert.deepEqual(l.connections, { accepted: 1, denied_allowlist: 1 });
    assert.equal(l.draining, false);
    c.socket.end();
    await c.closed;
  } finally {
    await p.close();
    await b.close();
    await rm(p.accessLog, { force: true });
  }
});

test('the control process sums the workers’ views', () => {
  const base: TcpListenerDescription = {
    name: 'upload',
    listen: ':2222',
    address: '0.0.0.0:2222',
    port: 2222,
    service: 'sftp',
    allowlist: 'partners',
    allowlistEntries: 3,
    proxyProtocol: 'off',
    trustedLoadBalancers: [],
    limits: { connections: 10, perSource: 2 },
    timeouts: { connectMs: 1, idleMs: 2, proxyHeaderMs: 3 },
    activeSessions: 2,
    bytesIn: 10,
    bytesOut: 20,
    connections: { accepted: 5, denied_allowlist: 1 },
    draining: false,
  };
  const merged = mergeTcpDescriptions([[base], [{ ...base, activeSessions: 1, bytesIn: 1, bytesOut: 2, connections: { accepted: 1, limit_source: 4 }, allowlistEntries: 2 }]]);
  assert.equal(merged.length, 1);
  assert.equal(merged[0]!.activeSessions, 3);
  assert.equal(merged[0]!.bytesIn, 11);
  assert.equal(merged[0]!.bytesOut, 22);
  assert.deepEqual(merged[0]!.connections, { accepted: 6, denied_allowlist: 1, limit_source: 4 });
  assert.equal(merged[0]!.allowlistEntries, 2);
  // A worker without the list admits nobody: the merge says so.
  assert.equal(mergeTcpDescriptions([[base], [{ ...base, allowlistEntries: null }]])[0]!.allowlistEntries, null);
});

test('perimeter tcp lists the listeners (table and --json); bad input gets exit 1 or 2', { timeout: 60_000 }, async () => {
  const dir = await mkdtemp(join(tmpdir(), 'perimeter-tcp-cli-'));
  try {
    await writeConfig(dir, {
      perimeter: `clusters:
  web:
    listen: { http: ":8080" }
tcp:
  lb-upload:
    listen: "10.0.0.5:22"
    service: sftp-ingest
    allowlist: content-partners
    trusted-load-balancers: ["10.0.0.0/29"]
    limits: { connections: 2000, per-source: 20 }
    timeouts: { idle: 30m }
  content-upload:
    listen: ":2222"
    service: sftp-ingest
    allowlist: content-partners
    proxy-protocol: v2
discovery:
  static:
    sftp-ingest: ["10.1.0.7:22"]
`,
      sites: {},
    });
    const json = await run(process.execPath, ['dist/src/cli/main.js', 'tcp', '--json', dir]);
    const rows = JSON.parse(json.stdout) as { name: string; listen: string; proxyProtocol: string; trustedLoadBalancers: string[]; maxPerSource: number; idleTimeoutMs: number; file: string; line: number }[];
    assert.deepEqual(rows.map((r) => r.name), ['content-upload', 'lb-upload']);
    assert.equal(rows[0]!.proxyProtocol, 'v2');
    assert.equal(rows[0]!.listen, ':2222');
    assert.deepEqual(rows[1]!.trustedLoadBalancers, ['10.0.0.0/29']);
    assert.equal(rows[1]!.maxPerSource, 20);
    assert.equal(rows[1]!.idleTimeoutMs, 1_800_000);
    assert.equal(`${rows[1]!.file}:${rows[1]!.line}`, 'perimeter.yaml:5');
    const table = await run(process.execPath, ['dist/src/cli/main.js', 'tcp', dir]);
    assert.match(table.stdout, /^NAME\s+LISTEN\s+SERVICE\s+ALLOWLIST/);
    assert.match(table.stdout, /lb-upload\s+10\.0\.0\.5:22\s+sftp-ingest\s+content-partners\s+off\s+10\.0\.0\.0\/29\s+2000 total, 20\/source\s+connect 5s, idle 30m, header 5s\s+perimeter\.yaml:5:3/);
    await assert.rejects(run(process.execPath, ['dist/src/cli/main.js', 'tcp', join(dir, 'missing')]), (e: { code: number }) => e.code === 2);
    await writeConfig(dir, { perimeter: 'clusters:\n  web:\n    listen: { http: ":8080" }\ntcp:\n  up:\n    listen: ":22"\n    service: s\n', sites: {} });
    await assert.rejects(run(process.execPath, ['dist/src/cli/main.js', 'tcp', dir]), (e: { code: number; stderr: string }) => e.code === 1 && /perimeter\.yaml:\d+:\d+/.test(e.stderr));
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});
