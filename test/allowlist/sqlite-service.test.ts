/**
 * The allowlist service on the SQLite store: validation with fixes, entry +
 * audit in one transaction, expiry, and a second process (a second service
 * on the same file) seeing changes through data_version polling.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { sqliteBinding } from '../../src/allowlist/sqlite.js';
import { openAllowlistStore, parseExpiry, type AllowlistStoreService } from '../../src/allowlist/service.js';
import { AllowlistNotFoundError, AllowlistUnavailableError } from '../../src/allowlist/store.js';
import { AllowlistInputError } from '../../src/allowlist/types.js';

const ctx = { actor: 'alice', reason: 'ticket 123' };

async function withStore(fn: (svc: AllowlistStoreService, file: string, dir: string) => Promise<void>): Promise<void> {
  const dir = await mkdtemp(join(tmpdir(), 'perimeter-allow-'));
  const file = join(dir, 'data', 'nested', 'allowlists.db');
  const svc = await openAllowlistStore({ kind: 'sqlite', file }, { sqlitePollMs: 100 });
  try {
    await fn(svc, file, dir);
  } finally {
    await svc.close();
    await rm(dir, { recursive: true, force: true });
  }
}

async function refused(p: Promise<unknown>, field: string, message: RegExp, fix?: RegExp): Promise<void> {
  await assert.rejects(p, (err: unknown) => {
    assert.ok(err instanceof AllowlistInputError, String(err));
    assert.equal(err.field, field);
    assert.match(err.message, message);
    if (fix) assert.match(err.fix, fix);
    return true;
  });
}

async function until(cond: () => boolean | Promise<boolean>, ms: number, what: string): Promise<number> {
  const start = Date.now();
  for (let i = 0; i < 1000; i++) {
    if (await cond()) return Date.now() - start;
    if (Date.now() - start > ms) break;
    await new Promise((r) => setTimeout(r, 20));
  }
  throw new Error(`${what}: not within ${ms} ms`);
}

test('sqlite: file and directory created, WAL mode, add → lookup, audit after', async () => {
  await withStore(async (svc, file) => {
    assert.ok((await stat(file)).isFile());
    const db = new Database(file, { readonly: true, ...sqliteBinding() });
    assert.equal(db.pragma('journal_mode', { simple: true }), 'wal');
    db.close();
    assert.equal(svc.health().state, 'ok');
    assert.equal(svc.health().store, 'sqlite');

    const e = await svc.add({ list: 'content-partners', cidr: '198.51.100.7', partner: ' Acme Records ', note: 'SFTP', expiresAt: '2099-01-01' }, ctx);
    assert.match(e.id, /^[0-9a-f-]{36}$/);
    assert.equal(e.cidr, '198.51.100.7/32');
    assert.equal(e.partner, 'Acme Records');
    assert.equal(e.addedBy, 'alice');
    assert.equal(e.expiresAt, '2099-01-01T00:00:00.000Z');
    // In memory at once (the writing process), and what check() reports.
    assert.equal(svc.tables.get('content-partners')?.lookup('198.51.100.7')?.id, e.id);
    const ok = await svc.check('198.51.100.7', 'content-partners');
    assert.equal(ok.allowed, true);
    assert.equal(ok.entry?.id, e.id);
    assert.equal((await svc.check('::ffff:198.51.100.7', 'content-partners')).allowed, true);
    assert.equal((await svc.check('198.51.100.8', 'content-partners')).allowed, false);
    assert.equal((await svc.check('198.51.100.7', 'other')).allowed, false, 'unknown list: nobody');
    assert.deepEqual(await svc.lists(), [{ name: 'content-partners', entries: 1, listeners: [] }]);

    const h = await svc.history({ list: 'content-partners' });
    assert.equal(h.length, 1);
    assert.equal(h[0]!.action, 'add');
    assert.equal(h[0]!.actor, 'alice');
    assert.equal(h[0]!.reason, 'ticket 123');
    assert.equal(h[0]!.before, undefined);
    assert.deepEqual(h[0]!.after, e);
  });
});

test('sqlite: validation refuses with field, message and fix; nothing written', async () => {
  await withStore(async (svc) => {
    const base = { list: 'partners', cidr: '198.51.100.0/24', partner: 'Acme' };
    await refused(svc.add({ ...base, cidr: '0.0.0.0/0' }, ctx), 'cidr', /whole internet/);
    await refused(svc.add({ ...base, cidr: '::/0' }, ctx), 'cidr', /whole internet/);
    await refused(svc.add({ ...base, cidr: '198.51.100.300' }, ctx), 'cidr', /not an IP address/);
    await refused(svc.add({ ...base, cidr: '198.51.100.7/24' }, ctx), 'cidr', /host bits/, /198\.51\.100\.0\/24/);
    await refused(svc.add({ ...base, partner: '  ' }, ctx), 'partner', /required/);
    await refused(svc.add({ ...base, list: 'Content Partners' }, ctx), 'list', /not a valid list name/, /content-partners/);
    await refused(svc.add({ ...base, expiresAt: '2020-01-01' }, ctx), 'expiresAt', /in the past/);
    await refused(svc.add({ ...base, expiresAt: 'next tuesday' }, ctx), 'expiresAt', /not a date/);
    await refused(svc.add({ ...base, expiresAt: '2027-02-30' }, ctx), 'expiresAt', /not a valid date/);
    await refused(svc.add(base, { actor: 'alice', reason: '' }), 'reason', /required/);
    await refused(svc.add({ ...base, note: 'two\nlines' }, ctx), 'note', /control characters/);
    assert.deepEqual(await svc.entries('partners'), []);
    assert.deepEqual(await svc.history(), []);

    const e = await svc.add(base, ctx);
    await refused(svc.add({ ...base, partner: 'Other' }, ctx), 'cidr', /already on partners/, /edit that entry/);
    await refused(svc.check('198.51.100.0/24', 'partners'), 'cidr', /not an IP address/);
    await assert.rejects(svc.remove('no-such-id', ctx), AllowlistNotFoundError);
    await refused(svc.remove(e.id, { actor: 'alice', reason: ' ' }), 'reason', /required/);
    await refused(svc.update(e.id, { ...base, list: 'elsewhere' }, ctx), 'list', /not elsewhere/);
    assert.equal((await svc.history()).length, 1, 'only the successful add is in the history');
  });
});

test('sqlite: update, expire and remove each write one audit record with before/after', async () => {
  await withStore(async (svc) => {
    const e = await svc.add({ list: 'partners', cidr: '203.0.113.0/24', partner: 'Acme' }, ctx);
    const u = await svc.update(e.id, { list: 'partners', cidr: '203.0.113.8/29', partner: 'Acme Records', note: 'moved' }, { actor: 'bob', reason: 'smaller range' });
    assert.equal(u.cidr, '203.0.113.8/29');
    assert.equal(u.addedBy, 'alice', 'who added it stays');
    assert.equal(svc.tables.get('partners')?.lookup('203.0.113.1'), undefined);
    assert.equal(svc.tables.get('partners')?.lookup('203.0.113.9')?.id, e.id);

    const x = await svc.expire(e.id, { actor: 'bob', reason: 'contract ended' });
    assert.ok(x.expiresAt && Date.parse(x.expiresAt) <= Date.now());
    assert.equal(svc.tables.get('partners')?.lookup('203.0.113.9'), undefined, 'expired: no longer admits');
    assert.equal((await svc.entries('partners')).length, 1, 'an expired entry stays listed');
    await refused(svc.expire(e.id, ctx), 'id', /already expired/);

    const r = await svc.remove(e.id, { actor: 'carol', reason: 'cleanup' });
    assert.equal(r.id, e.id);
    assert.deepEqual(await svc.entries('partners'), []);

    const h = await svc.history({ entryId: e.id });
    assert.deepEqual(h.map((x) => x.action), ['remove', 'expire', 'update', 'add']);
    assert.deepEqual(h.map((x) => x.actor), ['carol', 'bob', 'bob', 'alice']);
    assert.equal(h[2]!.before?.cidr, '203.0.113.0/24');
    assert.equal(h[2]!.after?.cidr, '203.0.113.8/29');
    assert.equal(h[2]!.reason, 'smaller range');
    assert.equal(h[1]!.before?.expiresAt, undefined);
    assert.equal(h[1]!.after?.expiresAt, x.expiresAt);
    assert.deepEqual(h[0]!.before, x);
    assert.equal(h[0]!.after, undefined);
    assert.equal((await svc.history({ limit: 2 })).length, 2);
  });
});

test('sqlite: an entry stops matching at its expiry without any write', async () => {
  await withStore(async (svc) => {
    const soon = new Date(Date.now() + 600).toISOString();
    await svc.add({ list: 'partners', cidr: '192.0.2.1', partner: 'Brief', expiresAt: soon }, ctx);
    assert.equal((await svc.check('192.0.2.1', 'partners')).allowed, true);
    const m = svc.tables.get('partners')!;
    assert.ok(m.lookup('192.0.2.1', Date.parse(soon) - 1));
    assert.equal(m.lookup('192.0.2.1', Date.parse(soon)), undefined);
    await until(async () => !(await svc.check('192.0.2.1', 'partners')).allowed, 5000, 'expiry');
    assert.equal((await svc.history()).length, 1, 'no write happened');
  });
});

test('sqlite: a second process on the same file sees changes within a second (data_version polling)', async () => {
  await withStore(async (svc, file) => {
    const other = await openAllowlistStore({ kind: 'sqlite', file }, { sqlitePollMs: 500 });
    try {
      const e = await svc.add({ list: 'shared', cidr: '198.51.100.0/25', partner: 'Acme' }, ctx);
      const ms = await until(() => other.tables.get('shared')?.lookup('198.51.100.1')?.id === e.id, 1000, 'other process sees add');
      assert.ok(ms <= 1000);
      await other.remove(e.id, ctx);
      await until(() => svc.tables.get('shared') === undefined, 1000, 'first process sees remove');
      // A change without an audit record (by hand) reloads everything.
      const db = new Database(file, sqliteBinding());
      db.prepare("INSERT INTO allow_entries (id, list, cidr, partner, note, added_by, added_at) VALUES ('manual', 'hand', '203.0.113.5/32', 'X', '', 'dba', '2026-01-01T00:00:00.000Z')").run();
      db.close();
      await until(() => svc.tables.get('hand')?.lookup('203.0.113.5')?.id === 'manual', 1000, 'manual change seen');
    } finally {
      await other.close();
    }
  });
});

test('sqlite: listeners make empty lists known; lists() reports them', async () => {
  await withStore(async (svc) => {
    svc.setListeners(new Map([['content-partners', ['content-upload']]]));
    assert.deepEqual(await svc.lists(), [{ name: 'content-partners', entries: 0, listeners: ['content-upload'] }]);
    assert.ok(svc.tables.get('content-partners'));
    assert.equal(svc.tables.get('content-partners')?.lookup('198.51.100.7'), undefined);
  });
});

test('sqlite: an unwritable data directory is a clear error', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'perimeter-allow-'));
  try {
    const { writeFile } = await import('node:fs/promises');
    await writeFile(join(dir, 'data'), 'a file where the directory should be');
    await assert.rejects(openAllowlistStore({ kind: 'sqlite', file: join(dir, 'data', 'allowlists.db') }), /cannot open the allowlist store .*allowlists\.db/);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test('parseExpiry: dates, times, offsets', () => {
  assert.equal(parseExpiry('2027-01-01'), '2027-01-01T00:00:00.000Z');
  assert.equal(parseExpiry('2027-01-01T12:30'), '2027-01-01T12:30:00.000Z');
  assert.equal(parseExpiry('2027-01-01T12:30:00+02:00'), '2027-01-01T10:30:00.000Z');
  assert.equal(parseExpiry(''), undefined);
  assert.equal(parseExpiry(undefined), undefined);
  assert.throws(() => parseExpiry('2027-13-01'), AllowlistInputError);
  assert.ok(new AllowlistUnavailableError('x') instanceof Error);
});
