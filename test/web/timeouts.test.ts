import { test } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import net from 'node:net';
import { spawn } from 'node:child_process';
import { startUpstream } from '../helpers/upstream.js';
import { startPerimeter } from '../helpers/perimeter.js';
import { webConfig } from './fixtures.js';

test('a client sending headers one byte a second is cut at the header timeout; others are served meanwhile', async (t) => {
  const upstream = await startUpstream();
  const p = await startPerimeter(
    webConfig({ services: { app: [upstream.port] }, sites: { 'www.example.com': 'app' }, cluster: '    timeouts: { request-header: 2s, client-idle: 30s }' }),
  );
  t.after(async () => {
    await p.close();
    await upstream.close();
  });
  const head = 'GET / HTTP/1.1\r\nHost: www.example.com\r\nX-Slow: ' + 'a'.repeat(100) + '\r\n\r\n';
  const slow = net.connect(p.port(), '127.0.0.1');
  let received = '';
  slow.on('data', (c: Buffer) => (received += c.toString('latin1')));
  const t0 = Date.now();
  let i = 0;
  const drip = setInterval(() => {
    if (!slow.destroyed && i < head.length) slow.write(head[i++]!);
  }, 1000);
  const closedAt = new Promise<number>((resolve) => slow.on('close', () => resolve(Date.now())));
  slow.on('error', () => {});

  // Meanwhile, normal clients are served promptly.
  const agent = new http.Agent({ keepAlive: true, maxSockets: 4 });
  const latencies: number[] = [];
  for (let n = 0; n < 40; n++) {
    const s = Date.now();
    const status = await new Promise<number>((resolve, reject) => {
      http
        .get(`${p.url()}/`, { headers: { host: 'www.example.com' }, agent }, (res) => {
          res.resume();
          res.on('end', () => resolve(res.statusCode ?? 0));
        })
        .on('error', reject);
    });
    assert.equal(status, 200);
    latencies.push(Date.now() - s);
    await new Promise((r) => setTimeout(r, 25));
  }
  agent.destroy();
  const end = await closedAt;
  clearInterval(drip);
  const cutAfter = end - t0;
  assert.ok(cutAfter >= 1900 && cutAfter < 3500, `slow client cut after ${cutAfter} ms`);
  assert.match(received, /^HTTP\/1\.1 408 /);
  assert.match(received, /PRM_HEADER_TIMEOUT/);
  assert.ok(i < head.length, 'the slow client never finished its head');
  assert.equal(upstream.received.filter((r) => r.headers['x-slow']).length, 0);
  latencies.sort((a, b) => a - b);
  assert.ok(latencies[Math.floor(latencies.length * 0.9)]! < 200, `p90 latency ${latencies[Math.floor(latencies.length * 0.9)]} ms while a slow client was connected`);
  const rec = p.records.find((r) => r.errorCode === 'PRM_HEADER_TIMEOUT');
  assert.ok(rec, 'the header timeout leaves a record');
});

test('idle keep-alive connections are closed after client-idle', async (t) => {
  const upstream = await startUpstream();
  const p = await startPerimeter(webConfig({ services: { app: [upstream.port] }, sites: { 'www.example.com': 'app' }, cluster: '    timeouts: { client-idle: 1s }' }));
  t.after(async () => {
    await p.close();
    await upstream.close();
  });
  const sock = net.connect(p.port(), '127.0.0.1');
  sock.on('error', () => {});
  let data = '';
  sock.on('data', (c: Buffer) => (data += c.toString()));
  sock.write('GET / HTTP/1.1\r\nHost: www.example.com\r\n\r\n');
  const t0 = Date.now();
  await new Promise<void>((resolve) => sock.on('close', () => resolve()));
  const took = Date.now() - t0;
  assert.match(data, /^HTTP\/1\.1 200 /);
  assert.ok(took >= 900 && took < 2500, `closed after ${took} ms`);
});

test('a connection that never sends a byte is closed after client-idle', async (t) => {
  const upstream = await startUpstream();
  const p = await startPerimeter(webConfig({ services: { app: [upstream.port] }, sites: { 'www.example.com': 'app' }, cluster: '    timeouts: { client-idle: 1s, request-header: 5s }' }));
  t.after(async () => {
    await p.close();
    await upstream.close();
  });
  const sock = net.connect(p.port(), '127.0.0.1');
  sock.on('error', () => {});
  const t0 = Date.now();
  await new Promise<void>((resolve) => sock.on('close', () => resolve()));
  const took = Date.now() - t0;
  assert.ok(took >= 900 && took < 2500, `closed after ${took} ms`);
});

test('upstream connect timeout gives 504 PRM_UPSTREAM_CONNECT_TIMEOUT, then the next backend is tried', async (t) => {
  // A listener that never accepts and whose accept queue is full: Linux drops
  // further SYNs, so a connect to it hangs. python3 listens without accepting.
  const py = spawn('python3', ['-c', 'import socket,sys,time\ns=socket.socket()\ns.bind(("127.0.0.1",0))\ns.listen(0)\nprint(s.getsockname()[1],flush=True)\ntime.sleep(60)'], { stdio: ['ignore', 'pipe', 'inherit'] });
  t.after(() => py.kill());
  const port = await new Promise<number>((resolve) => py.stdout.once('data', (d: Buffer) => resolve(Number(d.toString().trim()))));
  const fillers: net.Socket[] = [];
  for (let i = 0; i < 3; i++) {
    const s = net.connect(port, '127.0.0.1');
    s.on('error', () => {});
    fillers.push(s);
  }
  t.after(() => fillers.forEach((s) => s.destroy()));
  await new Promise((r) => setTimeout(r, 200));
  const good = await startUpstream({ name: 'good' });
  t.after(() => good.close());
  const hung = await startPerimeter(
    webConfig({ services: { app: [port] }, sites: { 'www.example.com': { service: 'app', extra: '  timeouts: { connect: 500ms }' } } }),
  );
  t.after(() => hung.close());
  const t0 = Date.now();
  const r1 = await getStatus(hung.url());
  const took = Date.now() - t0;
  assert.equal(r1.status, 504);
  assert.equal(r1.code, 'PRM_UPSTREAM_CONNECT_TIMEOUT');
  assert.ok(took >= 400 && took < 2500, `took ${took} ms`);
  // With a second backend, the connect timeout is retried there (the request never reached the first).
  const both = await startPerimeter(
    webConfig({ services: { app: [port, good.port] }, sites: { 'www.example.com': { service: 'app', extra: '  timeouts: { connect: 500ms }' } }, defaults: '  balancer: round-robin' }),
  );
  t.after(() => both.close());
  for (let i = 0; i < 4; i++) assert.equal((await getStatus(both.url())).status, 200);
  assert.ok(both.records.some((r) => r.retries > 0), 'some request was retried after a connect timeout');
});

function getStatus(url: string): Promise<{ status: number; code: string | undefined }> {
  return new Promise((resolve, reject) => {
    http
      .get(`${url}/`, { headers: { host: 'www.example.com' } }, (res) => {
        res.resume();
        res.on('end', () => resolve({ status: res.statusCode ?? 0, code: res.headers['x-perimeter-error'] as string | undefined }));
      })
      .on('error', reject);
  });
}
