import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startDnsServer } from '../helpers/dns-server.js';
import type { TestDnsServer } from '../helpers/dns-server.js';
import { Discovery } from '../../src/upstream/discovery/index.js';
import type { DiscoverySpec, DnsSrvSpec, StaticBackend } from '../../src/config/types.js';
import type { MemberAddress } from '../../src/upstream/types.js';
import { memoryLog } from '../helpers/memory-log.js';

function recorder() {
  const calls: string[][] = [];
  return {
    calls,
    fn: (members: readonly MemberAddress[]) => void calls.push(members.map((m) => `${m.host}:${m.port}/${m.weight}`)),
    last: () => calls.at(-1),
  };
}

async function until(cond: () => boolean, timeoutMs: number, what: string): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(10);
  }
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

const backend = (host: string, port: number, weight = 1): StaticBackend => ({ host, port, weight });

function dnsOf(server: TestDnsServer, over: Partial<DnsSrvSpec> = {}): DnsSrvSpec {
  return { domain: 'services.test', servers: [{ host: server.host, port: server.port }], minTtlMs: 50, maxTtlMs: 10_000, timeoutMs: 1000, ...over };
}

test('static: members are delivered synchronously from watch(), sorted', () => {
  const log = memoryLog();
  const d = new Discovery({ static: new Map([['web', [backend('127.0.0.2', 80, 3), backend('127.0.0.1', 80)]]]) }, log);
  try {
    const rec = recorder();
    d.watch('web', 'static', rec.fn);
    assert.deepEqual(rec.calls, [['127.0.0.1:80/1', '127.0.0.2:80/3']]);
    const none = recorder();
    d.watch('unknown', 'static', none.fn);
    assert.deepEqual(none.calls, [[]]);
    assert.ok(log.warnings().some((w) => w.msg.includes('no static members')));
  } finally {
    d.close();
  }
});

test('subscribers of one service share one watcher; the last unsubscribe stops it', async () => {
  const dns = await startDnsServer();
  const d = new Discovery({ static: new Map(), dnsSrv: dnsOf(dns, { maxTtlMs: 100 }) }, memoryLog());
  try {
    dns.setSrv('_web._tcp.services.test', [{ target: '127.0.0.1', port: 80 }], 1);
    const a = recorder();
    const b = recorder();
    const offA = d.watch('web', 'dns-srv', a.fn);
    const offB = d.watch('web', 'dns-srv', b.fn);
    await until(() => a.calls.length === 1 && b.calls.length === 1, 2000, 'both subscribers answered');
    assert.equal(dns.queriesFor('_web._tcp.services.test'), 1, 'one query for two subscribers');

    const late = recorder();
    const offLate = d.watch('web', 'dns-srv', late.fn);
    assert.deepEqual(late.calls, [['127.0.0.1:80/1']], 'a late subscriber gets the known list at once');

    offA();
    offA(); // idempotent
    offLate();
    const q = dns.queries;
    await until(() => dns.queries > q, 2000, 'a refresh while one subscriber remains');
    offB();
    await sleep(50); // let a query already in flight land
    const stoppedAt = dns.queries;
    await sleep(300);
    assert.equal(dns.queries, stoppedAt, 'no queries after the last unsubscribe');

    // A subscriber that throws does not stop the others.
    dns.setSrv('_api._tcp.services.test', [{ target: '127.0.0.3', port: 80 }], 1);
    const ok = recorder();
    d.watch('api', 'dns-srv', () => {
      throw new Error('boom');
    });
    d.watch('api', 'dns-srv', ok.fn);
    await until(() => ok.calls.length === 1, 2000, 'the second subscriber');
  } finally {
    d.close();
    await dns.close();
  }
});

test('update(): unchanged sources keep their watchers, changed ones restart', async () => {
  const dns1 = await startDnsServer();
  const dns2 = await startDnsServer();
  const dir = mkdtempSync(join(tmpdir(), 'perimeter-discovery-'));
  const file1 = join(dir, 'one.yaml');
  const file2 = join(dir, 'two.yaml');
  writeFileSync(file1, 'services:\n  files: ["127.0.0.1:1001"]\n');
  writeFileSync(file2, 'services:\n  files: ["127.0.0.1:2002"]\n');
  dns1.setSrv('_web._tcp.services.test', [{ target: '127.0.0.1', port: 1111 }], 60);
  dns2.setSrv('_web._tcp.services.test', [{ target: '127.0.0.1', port: 2222 }], 60);
  const spec = (over: { dns?: TestDnsServer; file?: string; a?: StaticBackend[] }): DiscoverySpec => ({
    static: new Map([
      ['a', over.a ?? [backend('127.0.0.1', 1)]],
      ['b', [backend('127.0.0.1', 2)]],
    ]),
    dnsSrv: dnsOf(over.dns ?? dns1),
    file: { path: over.file ?? file1 },
  });
  const d = new Discovery(spec({}), memoryLog());
  try {
    const a = recorder();
    const b = recorder();
    const web = recorder();
    const files = recorder();
    d.watch('a', 'static', a.fn);
    d.watch('b', 'static', b.fn);
    d.watch('web', 'dns-srv', web.fn);
    d.watch('files', 'file', files.fn);
    await until(() => web.calls.length === 1, 2000, 'DNS answer');
    assert.deepEqual(files.calls, [['127.0.0.1:1001/1']]);

    // The same settings in new objects: nothing restarts, nobody is told anything.
    d.update(spec({}));
    await sleep(300);
    assert.equal(dns1.queries, 1, 'the DNS watcher was kept (TTL 60 s, no new query)');
    assert.equal(a.calls.length + b.calls.length + web.calls.length + files.calls.length, 4);

    // One static service changes: only it is told.
    d.update(spec({ a: [backend('127.0.0.1', 1), backend('127.0.0.9', 9, 5)] }));
    assert.deepEqual(a.last(), ['127.0.0.1:1/1', '127.0.0.9:9/5']);
    assert.equal(b.calls.length, 1);
    assert.equal(dns1.queries, 1);

    // DNS servers change: the DNS watcher restarts against the new server.
    d.update(spec({ a: [backend('127.0.0.1', 1), backend('127.0.0.9', 9, 5)], dns: dns2 }));
    await until(() => web.calls.length === 2, 2000, 'answer from the new DNS server');
    assert.deepEqual(web.last(), ['127.0.0.1:2222/1']);
    assert.equal(files.calls.length, 1, 'the file watcher was kept');

    // The registry path changes: the file watcher restarts on the new file.
    d.update(spec({ a: [backend('127.0.0.1', 1), backend('127.0.0.9', 9, 5)], dns: dns2, file: file2 }));
    assert.deepEqual(files.last(), ['127.0.0.1:2002/1']);
    assert.equal(dns2.queries, 1, 'the DNS watcher was kept');
    assert.equal(dns1.queries, 1);
  } finally {
    d.close();
    await dns1.close();
    await dns2.close();
    rmSync(dir, { recursive: true, force: true });
  }
});

test('close(): stops every watcher', async () => {
  const dns = await startDnsServer();
  const d = new Discovery({ static: new Map(), dnsSrv: dnsOf(dns, { maxTtlMs: 50 }) }, memoryLog());
  try {
    dns.setSrv('_web._tcp.services.test', [{ target: '127.0.0.1', port: 80 }], 1);
    const rec = recorder();
    d.watch('web', 'dns-srv', rec.fn);
    await until(() => rec.calls.length === 1, 2000, 'first answer');
    d.close();
    await sleep(30);
    const q = dns.queries;
    await sleep(250);
    assert.equal(dns.queries, q);
    assert.throws(() => d.watch('web', 'dns-srv', rec.fn), /closed/);
  } finally {
    d.close();
    await dns.close();
  }
});
