/**
 * The configuration loader thread (src/config/load-thread.ts): the same
 * answer as loading in-process (snapshot and errors), from a thread whose
 * nice value is the process's plus BACKGROUND_NICE_STEPS while the main thread
 * keeps its own, and loading still works once the thread is gone.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadConfig } from '../../src/config/load.js';
import { ConfigLoader } from '../../src/config/load-thread.js';
import { BACKGROUND_NICE_STEPS } from '../../src/core/priority.js';
import { threadNices } from '../helpers/threads.js';
import { writeConfig } from '../helpers/perimeter.js';
import { webConfig } from '../web/fixtures.js';

test('the loader thread answers as loadConfig does, at a lower priority than the main thread', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'perimeter-loader-'));
  const loader = new ConfigLoader();
  t.after(async () => {
    await loader.close();
    await rm(dir, { recursive: true, force: true });
  });
  await writeConfig(dir, webConfig({ services: { app: [8080, 8081] }, sites: { 'www.example.com': 'app', 'api.example.com': 'app' } }));
  const off = await loader.load(dir);
  assert.equal(loader.offThread, true);
  assert.deepEqual(off, await loadConfig(dir));
  assert.ok(off.ok);
  assert.equal(off.snapshot.sites.size, 2, 'Maps cross the thread boundary as Maps');

  // The loading thread runs at the main thread's nice value plus BACKGROUND_NICE_STEPS (capped at 19); the main thread is unchanged.
  const base = os.getPriority();
  const nices = threadNices().map((x) => x.nice);
  assert.ok(nices.includes(Math.min(19, base + BACKGROUND_NICE_STEPS)), `thread nice values ${nices.join(',')}`);
  assert.equal(os.getPriority(), base);

  // A broken configuration: the same issues, file, line and column.
  await writeConfig(dir, { perimeter: 'clusters:\n  web:\n    listen: { http: 8080 }\n    bogus: 1\n', sites: {} });
  const bad = await loader.load(dir);
  assert.equal(bad.ok, false);
  assert.deepEqual(bad, await loadConfig(dir));
});

test('after the thread is gone, loads happen in-process', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'perimeter-loader-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  await writeConfig(dir, webConfig({ services: { app: [8080] }, sites: { 'www.example.com': 'app' } }));
  const loader = new ConfigLoader();
  await loader.load(dir);
  await loader.close();
  const again = await loader.load(dir);
  assert.equal(loader.offThread, false);
  assert.deepEqual(again, await loadConfig(dir));
});
