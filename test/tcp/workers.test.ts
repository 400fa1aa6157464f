/**
 * The TCP proxy under the real CLI with two worker processes: the workers
 * accept, the allowlist reaches both from the store through the control
 * process, and /api/tcp and /metrics sum the workers' sessions.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePort, runPerimeter } from '../helpers/cli.js';
import { writeConfig } from '../helpers/perimeter.js';
import { connectFrom, metricValue, startEcho, type Client } from './harness.js';

test('with --workers 2 a TCP session works, an allowlist change reaches both workers, and the admin API sums them', { timeout: 120_000 }, async (t) => {
  const backend = await startEcho();
  t.after(() => backend.close());
  const dir = await mkdtemp(join(tmpdir(), 'perimeter-tcp-workers-'));
  const [http, admin, tcp] = [await freePort(), await freePort(), await freePort()];
  await writeConfig(dir, {
    perimeter: `clusters:
  web:
    listen: { http: "127.0.0.1:${http}" }
admin:
  listen: "127.0.0.1:${admin}"
access-log: { path: ${JSON.stringify(join(dir, 'access.log'))} }
tcp:
  upload:
    listen: "127.0.0.1:${tcp}"
    service: sftp
    allowlist: partners
services:
  sftp:
    health: { type: none }
discovery:
  static:
    sftp: ["127.0.0.1:${backend.port}"]
`,
    sites: {},
  });
  const run = runPerimeter(dir, ['--workers', '2', '--no-watch']);
  const api = `http://127.0.0.1:${admin}`;
  const clients: Client[] = [];
  try {
    await run.waitForLog((l) => l.event?.action === 'workers-started', 30_000);
    // Not listed yet: refused, nothing reaches the backend.
    const early = await connectFrom(tcp, '127.0.0.2');
    early.socket.write('x');
    await early.closed;
    assert.equal(backend.served, 0);

    const res = await fetch(`${api}/api/allowlists/partners/entries`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'x-perimeter-actor': 'tcp-test' },
      body: JSON.stringify({ cidr: '127.0.0.2', partner: 'Acme Music', reason: 'tcp workers test' }),
    });
    assert.equal(res.status, 201, await res.clone().text());
    const added = Date.now();
    // Both workers must have it: connections alternate between them.
    let admitted = 0;
    while (admitted < 4) {
      const c = await connectFrom(tcp, '127.0.0.2');
      c.socket.write(`hello${admitted};`);
      try {
        await c.waitFor(`hello${admitted};`, 300);
        clients.push(c);
        admitted++;
      } catch {
        c.socket.destroy();
        assert.ok(Date.now() - added < 2000, 'every worker admits the new entry within a second or so');
      }
    }
    const body = (await (await fetch(`${api}/api/tcp`)).json()) as { listeners: { name: string; activeSessions: number; bytesIn: number; address: string; allowlist: string }[] };
    const upload = body.listeners.find((l) => l.name === 'upload');
    assert.ok(upload, JSON.stringify(body));
    assert.equal(upload.activeSessions, 4);
    assert.equal(upload.allowlist, 'partners');
    assert.equal(upload.address, `127.0.0.1:${tcp}`);
    assert.ok(upload.bytesIn >= 4 * 7);
    const metrics = await (await fetch(`${api}/metrics`)).text();
    assert.equal(metricValue(metrics, 'perimeter_tcp_active_sessions', { listener: 'upload' }), 4);
    assert.ok(metricValue(metrics, 'perimeter_tcp_connections_total', { listener: 'upload', result: 'accepted' }) >= 4);
    assert.ok(metricValue(metrics, 'perimeter_tcp_connections_total', { listener: 'upload', result: 'denied_allowlist' }) >= 1);
    assert.equal(run.workerPids().length, 2);
    for (const c of clients) {
      c.socket.end();
      await c.closed;
    }
  } finally {
    for (const c of clients) c.socket.destroy();
    run.kill('SIGTERM');
    await run.exited;
    await backend.close();
    await rm(dir, { recursive: true, force: true });
  }
});
