/**
 * Background threads of the control process (src/core/priority.ts): with
 * workers, every thread of the control process but its main thread runs at
 * nice +10 (the loader thread too, from the first reload on), while the
 * main thread and the workers forked from it keep their nice value. Linux
 * only: it reads /proc.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, mkdir, rm, writeFile } from 'node:fs/promises';
import os, { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startUpstream } from '../helpers/upstream.js';
import { freePort, runPerimeter } from '../helpers/cli.js';
import { rawRequest } from '../helpers/perimeter.js';
import { threadNices as threads } from '../helpers/threads.js';
import { BACKGROUND_NICE_STEPS } from '../../src/core/priority.js';

test('with workers, the control process runs its threads but the main thread at nice +10; the main thread and workers keep theirs', { skip: process.platform !== 'linux', timeout: 60_000 }, async (t) => {
  const app = await startUpstream({ name: 'app' });
  const port = await freePort();
  const dir = await mkdtemp(join(tmpdir(), 'perimeter-prio-'));
  await mkdir(join(dir, 'sites'));
  const platform = `clusters:\n  web:\n    listen: { http: "127.0.0.1:${port}" }\ndefaults:\n  health: { type: none }\ndiscovery:\n  static:\n    app: ["127.0.0.1:${app.port}"]\naccess-log:\n  path: "off"\n`;
  await writeFile(join(dir, 'perimeter.yaml'), platform);
  await writeFile(join(dir, 'sites', 'a.yaml'), 'a.example.com:\n  service: app\n');
  const p = runPerimeter(dir, ['--workers', '1', '--no-watch']);
  t.after(async () => {
    p.kill('SIGTERM');
    await p.exited;
    await app.close();
    await rm(dir, { recursive: true, force: true });
  });
  const started = await p.waitForLog((l) => l.event?.action === 'workers-started', 30_000);
  const before = threads(p.pid);
  assert.ok(before.length > 4, `the control process has helper threads: ${JSON.stringify(before)}`);
  assert.equal(started.backgroundThreadsLowered, before.length - 1, 'every thread but the main thread was lowered');

  // A reload starts the loader thread; it joins the background.
  await writeFile(join(dir, 'sites', 'b.yaml'), 'b.example.com:\n  service: app\n');
  p.kill('SIGHUP');
  // The loader thread starts and loads at nice +10: on two CPUs saturated by other work it gets
  // about a tenth of one, and its first start compiles the loader's modules (15 s was too short
  // once, with a load test running beside the suite).
  await p.waitForLog((l) => l.event?.action === 'config-reloaded', 45_000);
  const control = threads(p.pid);
  assert.ok(control.length > before.length, 'the loader thread started');
  const [main, ...rest] = control;
  const base = os.getPriority(); // what the CLI inherited from this test
  assert.equal(main!.nice, base, 'the main thread, which forks workers, is untouched');
  for (const x of rest) assert.equal(x.nice, Math.min(19, base + BACKGROUND_NICE_STEPS), `thread ${x.tid}: ${JSON.stringify(control)}`);

  const [worker] = p.workerPids();
  assert.ok(worker !== undefined);
  for (const x of threads(worker)) assert.equal(x.nice, base, `worker thread ${x.tid}`);

  // And the reloaded configuration serves.
  const res = await rawRequest(port, 'GET / HTTP/1.1\r\nHost: b.example.com\r\nConnection: close\r\n\r\n');
  assert.deepEqual(res.statuses, [200]);
});
