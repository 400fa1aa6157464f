import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import { mkdtempSync, renameSync, rmSync, unlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Discovery, FileRegistry, parseRegistry } from '../../src/upstream/discovery/index.js';
import type { DiscoveryOptions } from '../../src/upstream/discovery/index.js';
import type { MemberAddress } from '../../src/upstream/types.js';
import { memoryLog } from '../helpers/memory-log.js';

function recorder() {
  const calls: { at: number; members: string[] }[] = [];
  return {
    calls,
    fn: (members: readonly MemberAddress[]) => void calls.push({ at: Date.now(), members: members.map((m) => `${m.host}:${m.port}/${m.weight}`) }),
    last: () => calls.at(-1)?.members,
  };
}

async function until(cond: () => boolean, timeoutMs: number, what: string): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

async function withRegistry(
  initial: string | undefined,
  fn: (ctx: { file: string; dir: string; d: Discovery; log: ReturnType<typeof memoryLog> }) => Promise<void>,
  opts: DiscoveryOptions = {},
): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'perimeter-registry-'));
  const file = join(dir, 'registry.yaml');
  if (initial !== undefined) writeFileSync(file, initial);
  const log = memoryLog();
  const d = new Discovery({ static: new Map(), file: { path: file } }, log, opts);
  try {
    await fn({ file, dir, d, log });
  } finally {
    d.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

const REGISTRY = `services:
  web-frontend:
    - "127.0.0.1:9001"
    - { address: "127.0.0.1:9002", weight: 2 }
  api: ["[::1]:9100"]
`;

test('file: the registry is read at watch() time and delivered synchronously', () =>
  withRegistry(REGISTRY, async ({ d }) => {
    const web = recorder();
    const api = recorder();
    const missing = recorder();
    d.watch('web-frontend', 'file', web.fn);
    d.watch('api', 'file', api.fn);
    d.watch('not-there', 'file', missing.fn);
    assert.deepEqual(web.last(), ['127.0.0.1:9001/1', '127.0.0.1:9002/2']);
    assert.deepEqual(api.last(), ['::1:9100/1']);
    assert.deepEqual(missing.last(), [], 'a service absent from the file has no members');
  }));

test('file: an edit in place is picked up within a second', () =>
  withRegistry(REGISTRY, async ({ d, file }) => {
    const web = recorder();
    const api = recorder();
    d.watch('web-frontend', 'file', web.fn);
    d.watch('api', 'file', api.fn);
    const t0 = Date.now();
    writeFileSync(file, REGISTRY.replace('127.0.0.1:9001', '127.0.0.1:9003'));
    await until(() => web.calls.length === 2, 1000, 'the edit');
    assert.ok(Date.now() - t0 < 1000);
    assert.deepEqual(web.last(), ['127.0.0.1:9002/2', '127.0.0.1:9003/1']);
    assert.equal(api.calls.length, 1, 'an unchanged service is not told');
  }));

test('file: a replacement by rename is picked up within a second', () =>
  withRegistry(REGISTRY, async ({ d, file, dir }) => {
    const web = recorder();
    d.watch('web-frontend', 'file', web.fn);
    const tmp = join(dir, '.registry.yaml.tmp');
    writeFileSync(tmp, 'services:\n  web-frontend: ["10.0.0.1:80"]\n');
    const t0 = Date.now();
    renameSync(tmp, file);
    await until(() => web.calls.length === 2, 1000, 'the rename');
    assert.ok(Date.now() - t0 < 1000);
    assert.deepEqual(web.last(), ['10.0.0.1:80/1']);
    // And a second rename still works (the watch is on the directory, not the replaced inode).
    writeFileSync(tmp, 'services:\n  web-frontend: ["10.0.0.2:80"]\n');
    renameSync(tmp, file);
    await until(() => web.calls.length === 3, 1000, 'the second rename');
    assert.deepEqual(web.last(), ['10.0.0.2:80/1']);
  }));

test('file: a broken file keeps the last good content and says where it is broken', () =>
  withRegistry(REGISTRY, async ({ d, file, log }) => {
    const web = recorder();
    d.watch('web-frontend', 'file', web.fn);
    writeFileSync(file, 'services:\n  web-frontend:\n    - "127.0.0.1:9001"\n    - [unclosed\n');
    await until(() => log.warnings().length === 1, 1000, 'a warning for the YAML error');
    assert.match(log.warnings()[0]!.msg, new RegExp(`${file.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}:\\d+:\\d+: .*keeping the last good content`));

    writeFileSync(file, 'services:\n  web-frontend:\n    - "127.0.0.1:9001"\n    - "127.0.0.1:notaport"\n');
    await until(() => log.warnings().length === 2, 1000, 'a warning for the bad address');
    assert.ok(log.warnings()[1]!.msg.includes(`${file}:4:7: "127.0.0.1:notaport"`), log.warnings()[1]!.msg);

    unlinkSync(file);
    await until(() => log.warnings().length === 3, 3000, 'a warning for the missing file');
    assert.match(log.warnings()[2]!.msg, /cannot read the registry file/);
    assert.equal(web.calls.length, 1, 'nothing delivered while the file was bad or missing');

    writeFileSync(file, 'services:\n  web-frontend: ["127.0.0.1:9009"]\n');
    await until(() => web.calls.length === 2, 1000, 'the fixed file');
    assert.deepEqual(web.last(), ['127.0.0.1:9009/1']);
  }));

test('file: a registry created after start is picked up', () =>
  withRegistry(
    undefined,
    async ({ d, file, log }) => {
      const web = recorder();
      d.watch('web-frontend', 'file', web.fn);
      assert.equal(web.calls.length, 0, 'no content, nothing delivered');
      assert.ok(log.warnings().some((w) => w.msg.includes('cannot read')));
      writeFileSync(file, REGISTRY);
      await until(() => web.calls.length === 1, 1000, 'the new file');
      assert.deepEqual(web.last(), ['127.0.0.1:9001/1', '127.0.0.1:9002/2']);
    },
    { filePollMs: 200 },
  ));

test('file: the stat poll finds a change when no watch event arrives', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'perimeter-registry-'));
  const file = join(dir, 'registry.yaml');
  writeFileSync(file, REGISTRY);
  const registry = new FileRegistry(file, memoryLog(), { pollMs: 100, debounceMs: 10 });
  try {
    const web = recorder();
    registry.subscribe('web-frontend', web.fn);
    // Simulate a file system without events: drop the directory watch.
    (registry as unknown as { watcher?: { close(): void } }).watcher?.close();
    (registry as unknown as { startWatch: () => void }).startWatch = () => {};
    (registry as unknown as { watcher?: unknown }).watcher = undefined;
    writeFileSync(file, 'services:\n  web-frontend: ["127.0.0.1:7000"]\n');
    await until(() => web.calls.length === 2, 1000, 'the poll');
    assert.deepEqual(web.last(), ['127.0.0.1:7000/1']);
  } finally {
    registry.close();
    rmSync(dir, { recursive: true, force: true });
  }
});

test('file: registry parsing reports every problem with file:line:column', () => {
  const bad = `services:
  web:
    - "127.0.0.1:80"
    - "host only"
    - { address: "10.0.0.1:80", weight: 0 }
    - { adress: "10.0.0.1:81" }
  api: "10.0.0.2:80"
extra: 1
`;
  const r = parseRegistry(bad, '/reg.yaml');
  assert.equal(r.ok, false);
  if (r.ok) return;
  const at = r.issues.map((i) => `${i.line}:${i.column}`);
  assert.deepEqual(at, ['4:7', '5:41', '6:9', '7:8', '8:1']);
  assert.match(r.issues[2]!.message, /unknown key "adress"/);

  const ok = parseRegistry('{"services": {"web": ["a.example.net:80", {"address": "[2001:db8::1]:443", "weight": 3}], "empty": []}}', '/r.json');
  assert.ok(ok.ok);
  if (!ok.ok) return;
  assert.deepEqual(ok.services.get('web'), [
    { host: '2001:db8::1', port: 443, weight: 3 },
    { host: 'a.example.net', port: 80, weight: 1 },
  ]);
  assert.deepEqual(ok.services.get('empty'), []);
});
