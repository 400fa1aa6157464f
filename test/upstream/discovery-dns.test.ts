import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import * as dgram from 'node:dgram';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startDnsServer } from '../helpers/dns-server.js';
import type { TestDnsServer } from '../helpers/dns-server.js';
import { Discovery } from '../../src/upstream/discovery/index.js';
import type { DiscoveryOptions } from '../../src/upstream/discovery/index.js';
import { DnsClient, systemNameservers } from '../../src/net/dns-client.js';
import type { DiscoverySpec, DnsSrvSpec } from '../../src/config/types.js';
import type { MemberAddress } from '../../src/upstream/types.js';
import { memoryLog } from '../helpers/memory-log.js';

const DOMAIN = 'services.test';

function recorder() {
  const calls: { at: number; members: string[] }[] = [];
  return {
    calls,
    fn: (members: readonly MemberAddress[]) => void calls.push({ at: Date.now(), members: show(members) }),
    last: () => calls.at(-1)?.members,
  };
}

function show(members: readonly MemberAddress[]): string[] {
  return members.map((m) => `${m.host}:${m.port}/${m.weight}`);
}

async function until(cond: () => boolean, timeoutMs: number, what: string): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(10);
  }
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

function dnsSpec(server: TestDnsServer, over: Partial<DnsSrvSpec> = {}): DiscoverySpec {
  return {
    static: new Map(),
    dnsSrv: { domain: DOMAIN, servers: [{ host: server.host, port: server.port }], minTtlMs: 50, maxTtlMs: 10_000, timeoutMs: 1000, ...over },
  };
}

async function withDns(
  fn: (dns: TestDnsServer, make: (over?: Partial<DnsSrvSpec>, opts?: DiscoveryOptions) => { d: Discovery; log: ReturnType<typeof memoryLog> }) => Promise<void>,
): Promise<void> {
  const dns = await startDnsServer();
  const made: Discovery[] = [];
  try {
    await fn(dns, (over = {}, opts = {}) => {
      const log = memoryLog();
      const d = new Discovery(dnsSpec(dns, over), log, opts);
      made.push(d);
      return { d, log };
    });
  } finally {
    for (const d of made) d.close();
    await dns.close();
  }
}

test('dns-srv: resolves SRV then A/AAAA end to end; weight 0 counts as 1', () =>
  withDns(async (dns, make) => {
    dns.setSrv('_web-frontend._tcp.services.test', [
      { target: 'a.hosts.test', port: 9001, weight: 0 },
      { target: 'b.hosts.test', port: 9002, weight: 7 },
    ]);
    dns.setA('a.hosts.test', ['127.0.0.10', '127.0.0.11']);
    dns.setAAAA('a.hosts.test', ['::1']);
    dns.setA('b.hosts.test', ['127.0.0.12']);
    const { d } = make();
    const rec = recorder();
    d.watch('web-frontend', 'dns-srv', rec.fn);
    assert.equal(rec.calls.length, 0, 'DNS answers arrive asynchronously');
    await until(() => rec.calls.length === 1, 2000, 'first answer');
    assert.deepEqual(rec.last(), ['127.0.0.10:9001/1', '127.0.0.11:9001/1', '127.0.0.12:9002/7', '::1:9001/1']);
    assert.equal(dns.queriesFor('_web-frontend._tcp.services.test', 'SRV'), 1);
    assert.equal(dns.queriesFor('a.hosts.test', 'A'), 1);
    assert.equal(dns.queriesFor('a.hosts.test', 'AAAA'), 1);
  }));

test('dns-srv: uses addresses from the additional section without extra queries', () =>
  withDns(async (dns, make) => {
    dns.setSrv('_api._tcp.services.test', [{ target: 'a.hosts.test', port: 80, weight: 2 }]);
    dns.setA('a.hosts.test', ['127.0.0.20']);
    dns.setAdditional(true);
    const { d } = make();
    const rec = recorder();
    d.watch('api', 'dns-srv', rec.fn);
    await until(() => rec.calls.length === 1, 2000, 'first answer');
    assert.deepEqual(rec.last(), ['127.0.0.20:80/2']);
    assert.equal(dns.queries, 1, 'only the SRV query was needed');
  }));

test('dns-srv: only the lowest priority group with addresses is used', () =>
  withDns(async (dns, make) => {
    dns.setSrv(
      '_api._tcp.services.test',
      [
        { target: 'primary.hosts.test', port: 80, priority: 10 },
        { target: 'backup.hosts.test', port: 81, priority: 20 },
      ],
      1,
    );
    dns.setA('primary.hosts.test', ['127.0.0.30'], 1);
    dns.setA('backup.hosts.test', ['127.0.0.31'], 1);
    const { d } = make({ minTtlMs: 100, maxTtlMs: 200 });
    const rec = recorder();
    d.watch('api', 'dns-srv', rec.fn);
    await until(() => rec.calls.length === 1, 2000, 'first answer');
    assert.deepEqual(rec.last(), ['127.0.0.30:80/1']);
    // The primary target loses its address (NXDOMAIN): the backup group takes over.
    dns.remove('primary.hosts.test');
    await until(() => rec.calls.length === 2, 2000, 'fallback to the backup group');
    assert.deepEqual(rec.last(), ['127.0.0.31:81/1']);
  }));

test('dns-srv: re-resolves when the TTL expires, not before', () =>
  withDns(async (dns, make) => {
    dns.setSrv('_web._tcp.services.test', [{ target: 'a.hosts.test', port: 80 }], 1);
    dns.setA('a.hosts.test', ['127.0.0.40'], 1);
    const { d } = make({ minTtlMs: 50, maxTtlMs: 10_000 });
    const rec = recorder();
    d.watch('web', 'dns-srv', rec.fn);
    await until(() => rec.calls.length === 1, 2000, 'first answer');
    const first = rec.calls[0]!.at;
    dns.setA('a.hosts.test', ['127.0.0.41'], 1);
    await sleep(700);
    assert.equal(rec.calls.length, 1, 'no update before the 1 s TTL');
    assert.equal(dns.queriesFor('_web._tcp.services.test'), 1, 'no query before the TTL');
    await until(() => rec.calls.length === 2, 2000, 'update after the TTL');
    const after = rec.calls[1]!.at - first;
    assert.ok(after >= 900 && after < 1600, `update arrived ${after} ms after the first answer`);
    assert.deepEqual(rec.last(), ['127.0.0.41:80/1']);
  }));

test('dns-srv: TTLs are clamped to [minTtlMs, maxTtlMs]', () =>
  withDns(async (dns, make) => {
    // TTL 3600 s, max 200 ms: re-resolved every ~200 ms.
    dns.setSrv('_long._tcp.services.test', [{ target: '127.0.0.50', port: 80 }], 3600);
    // TTL 0, min 300 ms: no faster than every 300 ms.
    dns.setSrv('_zero._tcp.services.test', [{ target: '127.0.0.51', port: 80 }], 0);
    const { d } = make({ minTtlMs: 300, maxTtlMs: 300 });
    const long = recorder();
    const zero = recorder();
    d.watch('long', 'dns-srv', long.fn);
    d.watch('zero', 'dns-srv', zero.fn);
    await until(() => long.calls.length === 1 && zero.calls.length === 1, 2000, 'first answers');
    dns.setSrv('_long._tcp.services.test', [{ target: '127.0.0.52', port: 80 }], 3600);
    await until(() => long.calls.length === 2, 1000, 'max-ttl refresh');
    await sleep(1000);
    const zeroQueries = dns.queriesFor('_zero._tcp.services.test');
    assert.ok(zeroQueries >= 3 && zeroQueries <= 6, `TTL 0 clamped to 300 ms: ${zeroQueries} queries in ~1.3 s`);
  }));

test('dns-srv: keeps the last good answer while DNS drops or SERVFAILs, then recovers', () =>
  withDns(async (dns, make) => {
    dns.setSrv('_web._tcp.services.test', [{ target: 'a.hosts.test', port: 80 }], 1);
    dns.setA('a.hosts.test', ['127.0.0.60'], 1);
    const { d, log } = make({ minTtlMs: 100, maxTtlMs: 200, timeoutMs: 100 });
    const rec = recorder();
    d.watch('web', 'dns-srv', rec.fn);
    await until(() => rec.calls.length === 1, 2000, 'first answer');

    for (const mode of ['drop', 'servfail'] as const) {
      dns.failMode(mode);
      const before = dns.queries;
      const warned = log.warnings().length;
      await sleep(800);
      assert.ok(dns.queries > before, `${mode}: it kept retrying`);
      assert.ok(log.warnings().length > warned, `${mode}: failures are logged`);
      assert.equal(rec.calls.length, 1, `${mode}: nothing delivered, the last good answer stands`);
      const w = log.warnings().at(-1)!;
      assert.match(w.msg, /keeping the last good answer/);
      assert.equal((w.obj as { err: { code: string } }).err.code, mode === 'drop' ? 'DNS_TIMEOUT' : 'DNS_SERVFAIL');
    }
    // Backoff: under drop (2 × 100 ms timeout per round) and servfail, far fewer queries than a hot loop.
    dns.setA('a.hosts.test', ['127.0.0.61'], 1);
    dns.failMode('none');
    await until(() => rec.calls.length === 2, 3000, 'recovery');
    assert.deepEqual(rec.last(), ['127.0.0.61:80/1']);
    assert.ok(log.lines.some((l) => l.msg.includes('recovered')));
  }));

test('dns-srv: retries on the next server when one does not answer', async () => {
  const silent = dgram.createSocket('udp4'); // takes queries, never answers
  await new Promise<void>((r) => silent.bind(0, '127.0.0.1', r));
  try {
    await withDns(async (dns, make) => {
      dns.setSrv('_web._tcp.services.test', [{ target: '127.0.0.70', port: 80 }]);
      const { d } = make({
        timeoutMs: 150,
        servers: [
          { host: '127.0.0.1', port: silent.address().port },
          { host: dns.host, port: dns.port },
        ],
      });
      const rec = recorder();
      const t0 = Date.now();
      d.watch('web', 'dns-srv', rec.fn);
      await until(() => rec.calls.length === 1, 2000, 'answer from the second server');
      assert.deepEqual(rec.last(), ['127.0.0.70:80/1']);
      assert.ok(Date.now() - t0 >= 140, 'the first server was given its timeout');
    });
  } finally {
    silent.close();
  }
});

test('dns-srv: a truncated UDP answer is retried over TCP', () =>
  withDns(async (dns, make) => {
    dns.setSrv('_web._tcp.services.test', [{ target: 'a.hosts.test', port: 80 }]);
    dns.setA('a.hosts.test', ['127.0.0.80']);
    dns.setTruncateUdp(true);
    const { d } = make();
    const rec = recorder();
    d.watch('web', 'dns-srv', rec.fn);
    await until(() => rec.calls.length === 1, 8000, 'answer over TCP');
    assert.deepEqual(rec.last(), ['127.0.0.80:80/1']);
    assert.ok(dns.log.some((q) => q.type === 'SRV' && q.transport === 'tcp'));
  }));

test('dns-srv: NXDOMAIN for a service never seen is an empty answer at once', () =>
  withDns(async (dns, make) => {
    const { d, log } = make();
    const rec = recorder();
    d.watch('nothing', 'dns-srv', rec.fn);
    await until(() => rec.calls.length === 1, 2000, 'empty answer');
    assert.deepEqual(rec.last(), []);
    assert.ok(log.lines.some((l) => l.msg.includes('no members')));
  }));

test('dns-srv: records removed (NXDOMAIN) empty the service only after the grace period', () =>
  withDns(async (dns, make) => {
    dns.setSrv('_web._tcp.services.test', [{ target: '127.0.0.90', port: 80 }], 1);
    dns.setNegativeTtl(0);
    const { d, log } = make({ minTtlMs: 100, maxTtlMs: 100 }, { emptyGraceMs: 600 });
    const rec = recorder();
    d.watch('web', 'dns-srv', rec.fn);
    await until(() => rec.calls.length === 1, 2000, 'first answer');
    dns.remove('_web._tcp.services.test');
    const removedAt = Date.now();
    await until(() => log.warnings().some((w) => w.msg.includes('grace period')), 1000, 'grace warning');
    await until(() => rec.calls.length === 2, 2000, 'empty list after the grace');
    const after = rec.calls[1]!.at - removedAt;
    assert.ok(after >= 550, `emptied ${after} ms after removal, grace is 600 ms`);
    assert.deepEqual(rec.last(), []);
  }));

test('dns-srv: with emptyGraceMs 0 an empty answer is delivered at the next refresh', () =>
  withDns(async (dns, make) => {
    dns.setSrv('_web._tcp.services.test', [{ target: '127.0.0.91', port: 80 }], 1);
    const { d } = make({ minTtlMs: 100, maxTtlMs: 100 }, { emptyGraceMs: 0 });
    const rec = recorder();
    d.watch('web', 'dns-srv', rec.fn);
    await until(() => rec.calls.length === 1, 2000, 'first answer');
    dns.remove('_web._tcp.services.test');
    await until(() => rec.calls.length === 2, 500, 'empty list');
    assert.deepEqual(rec.last(), []);
  }));

test('dns client: reads nameservers from a resolv.conf', () => {
  const dir = mkdtempSync(join(tmpdir(), 'perimeter-resolv-'));
  try {
    const file = join(dir, 'resolv.conf');
    writeFileSync(file, '# comment\nsearch example.net\nnameserver 10.0.0.2\nnameserver fe80::1%eth0\nnameserver not-an-ip\noptions ndots:2\n');
    assert.deepEqual(systemNameservers(file), [
      { host: '10.0.0.2', port: 53 },
      { host: 'fe80::1', port: 53 },
    ]);
    assert.deepEqual(systemNameservers(join(dir, 'missing')), []);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('dns client: close() aborts a query in flight', async () => {
  const dns = await startDnsServer();
  try {
    dns.failMode('drop');
    const client = new DnsClient({ servers: [{ host: dns.host, port: dns.port }], timeoutMs: 5000 });
    const p = client.query('x.test', 'A');
    await until(() => dns.queries === 1, 1000, 'query sent');
    client.close();
    await assert.rejects(p, (e: { code?: string }) => e.code === 'DNS_CLOSED');
  } finally {
    await dns.close();
  }
});
