import { test } from 'node:test';
import assert from 'node:assert/strict';
import { copyFileSync, mkdtempSync, readFileSync, rmSync, utimesSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { X509Certificate } from 'node:crypto';
import tls from 'node:tls';
import { CertStore } from '../../src/tls/cert-store.js';
import { makeCert } from '../helpers/certs.js';
import { memoryLog } from '../helpers/memory-log.js';

/** The event.action of a log line. */
const action = (l: { obj: object }): string | undefined => (l.obj as { event?: { action?: string } }).event?.action;

function context(store: CertStore, name: string): Promise<tls.SecureContext | undefined> {
  return new Promise((resolve, reject) => store.sni(name, (err, ctx) => (err ? reject(err) : resolve(ctx))));
}

/** The certificate a context serves, as a client sees it in a handshake. */
async function served(ctx: tls.SecureContext, name: string): Promise<string> {
  const server = tls.createServer({ SNICallback: (_n, cb) => cb(null, ctx) });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()));
  try {
    const port = (server.address() as { port: number }).port;
    return await new Promise<string>((resolve, reject) => {
      const s = tls.connect({ port, host: '127.0.0.1', servername: name, rejectUnauthorized: false }, () => {
        resolve(s.getPeerX509Certificate()!.fingerprint256);
        s.destroy();
      });
      s.on('error', reject);
    });
  } finally {
    server.close();
  }
}

const fingerprint = (file: string): string => new X509Certificate(readFileSync(file)).fingerprint256;

test('a reload keeps the TLS context of a certificate whose files did not change, and builds a new one when they did', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'perimeter-certstore-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const a = makeCert(dir, 'a', ['a.example.com']);
  const b = makeCert(dir, 'b', ['b.example.com']);
  const store = new CertStore({ minVersion: 'TLSv1.2' }, memoryLog());
  t.after(() => store.close());
  const files = [{ certFile: a.cert, keyFile: a.key }, { certFile: b.cert, keyFile: b.key }];

  store.setFiles(files, { minVersion: 'TLSv1.2' });
  const a1 = await context(store, 'a.example.com');
  const b1 = await context(store, 'b.example.com');
  assert.ok(a1 && b1);
  assert.equal(await served(a1, 'a.example.com'), fingerprint(a.cert));

  // The same files again (a reload that changed a site): the same contexts.
  store.setFiles(files, { minVersion: 'TLSv1.2' });
  assert.equal(await context(store, 'a.example.com'), a1);
  assert.equal(await context(store, 'b.example.com'), b1);

  // a's files replaced by another certificate for the same name: a new context serving it; b's stays.
  const next = makeCert(dir, 'next', ['a.example.com']);
  copyFileSync(next.cert, a.cert);
  copyFileSync(next.key, a.key);
  store.setFiles(files, { minVersion: 'TLSv1.2' });
  const a2 = await context(store, 'a.example.com');
  assert.ok(a2);
  assert.notEqual(a2, a1);
  assert.equal(await served(a2, 'a.example.com'), fingerprint(next.cert));
  assert.equal(await context(store, 'b.example.com'), b1);

  // Another minimum version is another context, from the same files.
  store.setFiles(files, { minVersion: 'TLSv1.3' });
  assert.notEqual(await context(store, 'a.example.com'), a2);
  assert.notEqual(await context(store, 'b.example.com'), b1);

  // A broken replacement still refuses the configuration (nothing is reused by path alone).
  copyFileSync(b.key, a.key);
  assert.throws(() => store.setFiles(files, { minVersion: 'TLSv1.3' }), /a\.pem.*does not belong/);
});

test('a certificate file touched but not changed is not reloaded; a changed one is', { timeout: 20_000 }, async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'perimeter-certstore-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const a = makeCert(dir, 'a', ['a.example.com']);
  const log = memoryLog();
  const store = new CertStore({ minVersion: 'TLSv1.2' }, log);
  t.after(() => store.close());
  store.setFiles([{ certFile: a.cert, keyFile: a.key }], { minVersion: 'TLSv1.2' });
  const a1 = await context(store, 'a.example.com');

  const later = new Date(Date.now() + 5000);
  utimesSync(a.cert, later, later);
  utimesSync(a.key, later, later);
  // The watcher's debounce is 200 ms and the poll runs every 2 s: give both a chance.
  await new Promise((r) => setTimeout(r, 2600));
  assert.equal(await context(store, 'a.example.com'), a1);
  assert.deepEqual(log.lines.filter((l) => action(l) === 'certificate-reloaded'), []);

  const next = makeCert(dir, 'next', ['a.example.com']);
  copyFileSync(next.key, a.key);
  copyFileSync(next.cert, a.cert);
  const deadline = Date.now() + 8000;
  while (log.lines.every((l) => action(l) !== 'certificate-reloaded') && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
  const a2 = await context(store, 'a.example.com');
  assert.notEqual(a2, a1);
  assert.equal(await served(a2!, 'a.example.com'), fingerprint(next.cert));
});
