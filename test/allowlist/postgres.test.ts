/**
 * The PostgreSQL store against the PostgreSQL on this machine (127.0.0.1:5432,
 * database test), each run in its own schema: LISTEN/NOTIFY between two
 * service instances, and database access cut mid-run through a TCP relay
 * (the shared server itself is never stopped).
 */
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import pg from 'pg';
import { Registry } from 'prom-client';
import { openAllowlistStore, type AllowlistStoreService } from '../../src/allowlist/service.js';
import { AllowlistUnavailableError } from '../../src/allowlist/store.js';
import { AllowlistHost } from '../../src/allowlist/host.js';
import { AllowlistTables } from '../../src/allowlist/tables.js';
import { silentLogger } from '../../src/core/log.js';
import type { Snapshot } from '../../src/config/types.js';

const PG = { host: '127.0.0.1', port: 5432, user: 'postgres', database: 'test' };
const url = (port = PG.port): string => `postgres://${PG.user}@${PG.host}:${port}/${PG.database}`;
const schemas: string[] = [];
const ctx = { actor: 'alice', reason: 'ticket 9' };

function newSchema(): string {
  const s = `perimeter_allow_test_${process.pid}_${Math.floor(Math.random() * 1e9)}`;
  schemas.push(s);
  return s;
}

after(async () => {
  const c = new pg.Client(PG);
  await c.connect();
  for (const s of schemas) await c.query(`DROP SCHEMA IF EXISTS "${s}" CASCADE`);
  await c.end();
});

async function until(cond: () => boolean | Promise<boolean>, ms: number, what: string): Promise<number> {
  const start = Date.now();
  for (let i = 0; i < 2000; i++) {
    if (await cond()) return Date.now() - start;
    if (Date.now() - start > ms) break;
    await new Promise((r) => setTimeout(r, 20));
  }
  throw new Error(`${what}: not within ${ms} ms`);
}

/** A TCP relay to PostgreSQL that a test can cut (every connection reset, new ones refused) and restore. */
async function startRelay(): Promise<{ port: number; cut(): void; restore(): void; close(): Promise<void> }> {
  let open = true;
  const pairs = new Set<[net.Socket, net.Socket]>();
  const server = net.createServer((client) => {
    if (!open) {
      client.destroy();
      return;
    }
    const upstream = net.connect(PG.port, PG.host);
    const pair: [net.Socket, net.Socket] = [client, upstream];
    pairs.add(pair);
    const end = (): void => {
      client.destroy();
      upstream.destroy();
      pairs.delete(pair);
    };
    client.on('error', end).on('close', end);
    upstream.on('error', end).on('close', end);
    client.pipe(upstream);
    upstream.pipe(client);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return {
    port: (server.address() as net.AddressInfo).port,
    cut() {
      open = false;
      for (const [a, b] of pairs) {
        a.resetAndDestroy();
        b.destroy();
      }
      pairs.clear();
    },
    restore() {
      open = true;
    },
    close: () =>
      new Promise<void>((r) => {
        for (const [a, b] of pairs) {
          a.destroy();
          b.destroy();
        }
        server.close(() => r());
      }),
  };
}

test('postgres: a write on one instance reaches the other within a second (LISTEN/NOTIFY)', async () => {
  const schema = newSchema();
  const a = await openAllowlistStore({ kind: 'postgres', url: url() }, { postgres: { schema } });
  const b = await openAllowlistStore({ kind: 'postgres', url: url() }, { postgres: { schema } });
  try {
    assert.equal(a.health().state, 'ok');
    assert.equal(a.health().store, 'postgres');
    const e = await a.add({ list: 'content-partners', cidr: '198.51.100.0/24', partner: 'Acme', note: 'SFTP' }, ctx);
    const ms = await until(() => b.tables.get('content-partners')?.lookup('198.51.100.77')?.id === e.id, 1000, 'b sees the add');
    assert.ok(ms <= 1000, `${ms} ms`);
    assert.equal((await b.check('198.51.100.77', 'content-partners')).entry?.partner, 'Acme');

    const u = await b.update(e.id, { list: 'content-partners', cidr: '198.51.100.0/25', partner: 'Acme', note: 'SFTP' }, { actor: 'bob', reason: 'narrower' });
    assert.equal(u.cidr, '198.51.100.0/25');
    await until(() => a.tables.get('content-partners')?.lookup('198.51.100.200') === undefined, 1000, 'a sees the update');
    await b.remove(e.id, { actor: 'bob', reason: 'gone' });
    await until(() => a.tables.get('content-partners') === undefined, 1000, 'a sees the removal');

    const h = await a.history({ entryId: e.id });
    assert.deepEqual(h.map((r) => r.action), ['remove', 'update', 'add']);
    assert.equal(h[1]!.before?.cidr, '198.51.100.0/24');
    assert.equal(h[1]!.after?.cidr, '198.51.100.0/25');
    assert.equal(h[0]!.actor, 'bob');
    assert.equal(h[2]!.after?.addedAt, e.addedAt, 'timestamps survive the round trip');

    // The duplicate check holds across instances (advisory lock per list).
    const results = await Promise.allSettled([
      a.add({ list: 'dups', cidr: '203.0.113.9', partner: 'X' }, ctx),
      b.add({ list: 'dups', cidr: '203.0.113.9', partner: 'Y' }, ctx),
    ]);
    assert.equal(results.filter((r) => r.status === 'fulfilled').length, 1, 'exactly one of two concurrent identical adds succeeds');
  } finally {
    await a.close();
    await b.close();
  }
});

test('postgres: access cut mid-run — last lists enforced, degraded in health and metrics, changes flow again after', async () => {
  const schema = newSchema();
  const relay = await startRelay();
  const writer = await openAllowlistStore({ kind: 'postgres', url: url() }, { postgres: { schema } });
  const registry = new Registry();
  const tables = new AllowlistTables();
  const host = new AllowlistHost({ tables, role: 'standalone', registry, log: silentLogger(), storeOptions: { postgres: { schema, heartbeatMs: 300, minBackoffMs: 200, maxBackoffMs: 800 }, retryMs: 300 } });
  const snapshot = { tcp: new Map(), admin: { listen: { host: '127.0.0.1', port: 0 } }, allowlists: { kind: 'postgres', url: url(relay.port) } } as unknown as Snapshot;
  const prepared = await host.prepare(snapshot);
  prepared.commit();
  const svc = host.service as AllowlistStoreService;
  const metric = async (): Promise<string> => (await registry.getSingleMetricAsString('perimeter_allowlist_store_up')).split('\n').find((l) => l.startsWith('perimeter_allowlist_store_up{')) ?? '';
  try {
    assert.equal(svc.health().state, 'ok');
    assert.match(await metric(), /store="postgres"\} 1$/);
    const e = await svc.add({ list: 'partners', cidr: '192.0.2.10', partner: 'Acme' }, ctx);
    assert.ok(tables.get('partners')?.lookup('192.0.2.10'));

    relay.cut();
    await until(() => svc.health().state === 'degraded', 5000, 'degraded after the cut');
    const h = svc.health();
    assert.match(h.error ?? '', /PostgreSQL/);
    assert.doesNotMatch(JSON.stringify(h), /postgres:\/\//, 'no URL in health');
    assert.match(await metric(), /store="postgres"\} 0$/);
    // Enforcement continues on the last list.
    assert.equal(tables.get('partners')?.lookup('192.0.2.10')?.id, e.id);
    assert.equal((await svc.check('192.0.2.10', 'partners')).allowed, true);
    await assert.rejects(svc.add({ list: 'partners', cidr: '192.0.2.11', partner: 'Acme' }, ctx), AllowlistUnavailableError);
    await assert.rejects(svc.history(), AllowlistUnavailableError);

    // Changed meanwhile by another host.
    const meanwhile = await writer.add({ list: 'partners', cidr: '192.0.2.12', partner: 'Other' }, ctx);
    await writer.remove(e.id, ctx);
    await new Promise((r) => setTimeout(r, 300));
    assert.equal(tables.get('partners')?.lookup('192.0.2.12'), undefined, 'not seen while cut');
    assert.equal(svc.health().state, 'degraded', 'still degraded while cut');

    relay.restore();
    await until(() => svc.health().state === 'ok', 5000, 'ok after restore');
    assert.match(await metric(), /store="postgres"\} 1$/);
    assert.equal(tables.get('partners')?.lookup('192.0.2.12')?.id, meanwhile.id, 'caught up on reconnect');
    assert.equal(tables.get('partners')?.lookup('192.0.2.10'), undefined, 'removal caught up');

    // Notifications flow again (LISTEN re-established) and writes work.
    const later = await writer.add({ list: 'partners', cidr: '192.0.2.13', partner: 'Later' }, ctx);
    await until(() => tables.get('partners')?.lookup('192.0.2.13')?.id === later.id, 1000, 'notification after recovery');
    await svc.add({ list: 'partners', cidr: '192.0.2.14', partner: 'Mine' }, ctx);
    await until(() => writer.tables.get('partners')?.lookup('192.0.2.14') !== undefined, 1000, 'writer sees it');
  } finally {
    await host.close();
    await writer.close();
    await relay.close();
  }
});

test('postgres: unreachable at start — opens degraded, no lists, connects when it can', async () => {
  const schema = newSchema();
  const relay = await startRelay();
  relay.cut();
  const svc = await openAllowlistStore({ kind: 'postgres', url: url(relay.port) }, { postgres: { schema, minBackoffMs: 200, maxBackoffMs: 500, connectTimeoutMs: 1000 }, retryMs: 300 });
  try {
    assert.equal(svc.health().state, 'degraded');
    assert.equal((await svc.check('192.0.2.1', 'partners')).allowed, false);
    relay.restore();
    await until(() => svc.health().state === 'ok', 5000, 'ok once reachable');
    await svc.add({ list: 'partners', cidr: '192.0.2.1', partner: 'Acme' }, ctx);
    assert.equal((await svc.check('192.0.2.1', 'partners')).allowed, true);
  } finally {
    await svc.close();
    await relay.close();
  }
});
