/** The ACME storage lease and the back-off schedule, without a CA. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { backoffDelay } from '../../src/tls/acme.js';
import { AcmeStorage, fileNameOf } from '../../src/tls/storage.js';

test('a lease is held by one storage user at a time, released, and taken over once expired', async (t) => {
  const root = mkdtempSync(path.join(tmpdir(), 'perimeter-acme-lease-'));
  t.after(() => rmSync(root, { recursive: true, force: true }));
  const a = new AcmeStorage(root, 'https://ca.example/dir');
  const b = new AcmeStorage(root, 'https://ca.example/dir');
  assert.equal(a.dir, b.dir);
  assert.notEqual(a.owner, b.owner);

  const la = await a.acquireLease('www.example.com', 60_000);
  assert.ok(la);
  assert.equal(await b.acquireLease('www.example.com', 60_000), undefined, 'held by a');
  assert.ok(await b.acquireLease('api.example.com', 60_000), 'other domains are independent');
  assert.equal(await la.renew(), true);
  await la.release();
  const lb = await b.acquireLease('www.example.com', 60_000);
  assert.ok(lb, 'free after release');
  await lb.release();

  // A dead host's lease: expired, so taken over; and only once among racers.
  writeFileSync(path.join(a.dir, 'locks', 'www.example.com.lock'), JSON.stringify({ owner: 'dead:1:0', expires: Date.now() - 1 }));
  const racers = [new AcmeStorage(root, 'https://ca.example/dir'), new AcmeStorage(root, 'https://ca.example/dir'), a, b];
  const got = await Promise.all(racers.map((s) => s.acquireLease('www.example.com', 60_000)));
  assert.equal(got.filter((l) => l !== undefined).length, 1);
  // A holder that lost its lease cannot extend it.
  const winner = got.find((l) => l !== undefined)!;
  writeFileSync(path.join(a.dir, 'locks', 'www.example.com.lock'), JSON.stringify({ owner: 'someone-else', expires: Date.now() + 60_000 }));
  assert.equal(await winner.renew(), false);
});

test('different directory URLs get different storage; domain file names are safe', () => {
  const root = mkdtempSync(path.join(tmpdir(), 'perimeter-acme-dirs-'));
  try {
    const prod = new AcmeStorage(root, 'https://acme-v02.api.letsencrypt.org/directory');
    const staging = new AcmeStorage(root, 'https://acme-staging-v02.api.letsencrypt.org/directory');
    assert.notEqual(prod.dir, staging.dir);
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
  assert.equal(fileNameOf('WWW.Example.com'), 'www.example.com');
  assert.equal(fileNameOf('*.example.com'), '_wildcard_.example.com');
  assert.throws(() => fileNameOf('../etc/passwd'));
  assert.throws(() => fileNameOf('a/b'));
});

test('back-off doubles from the minimum up to the cap, with jitter between half and all of it', () => {
  const min = 60_000;
  const max = 6 * 3600_000;
  assert.equal(backoffDelay(1, min, max, () => 1), 60_000);
  assert.equal(backoffDelay(1, min, max, () => 0), 30_000);
  assert.equal(backoffDelay(2, min, max, () => 1), 120_000);
  assert.equal(backoffDelay(5, min, max, () => 1), 960_000);
  assert.equal(backoffDelay(20, min, max, () => 1), max);
  assert.equal(backoffDelay(1000, min, max, () => 0), max / 2);
});
