import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import http from 'node:http';
import type net from 'node:net';
import { WebSocket, WebSocketServer } from 'ws';
import { startUpstream } from '../helpers/upstream.js';
import { rawRequest, startPerimeter } from '../helpers/perimeter.js';
import { webConfig } from './fixtures.js';
import { echoes } from '../helpers/ws.js';
import { freeSlabs } from '../../src/net/slabs.js';

function get(url: string, headers: Record<string, string> = {}, agent?: http.Agent): Promise<{ status: number; headers: http.IncomingHttpHeaders; body: string }> {
  return new Promise((resolve, reject) => {
    const req = http.get(url, { headers, agent }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks).toString() }));
    });
    req.on('error', reject);
  });
}

test('a two-line site is served by its backends, round robin over keep-alive', async (t) => {
  const a = await startUpstream({ name: 'a' });
  const b = await startUpstream({ name: 'b' });
  const p = await startPerimeter(webConfig({ services: { app: [a.port, b.port] }, sites: { 'www.example.com': 'app' }, defaults: '  balancer: round-robin' }));
  t.after(async () => {
    await p.close();
    await a.close();
    await b.close();
  });
  const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
  const seen = new Set<string>();
  for (let i = 0; i < 10; i++) {
    const r = await get(`${p.url()}/x?i=${i}`, { host: 'www.example.com' }, agent);
    assert.equal(r.status, 200);
    seen.add(r.body.trim());
  }
  agent.destroy();
  assert.deepEqual([...seen].sort(), ['a', 'b']);
  assert.equal(a.requests + b.requests, 10);
  // Upstream keep-alive: 10 requests did not need 10 connections.
  assert.ok(a.connections + b.connections <= 4, `connections: ${a.connections + b.connections}`);
  const rec = p.records.at(-1)!;
  assert.equal(rec.site, 'www.example.com');
  assert.equal(rec.service, 'app');
  assert.equal(rec.status, 200);
  assert.match(rec.requestId, /^[0-9a-f-]{18}[0-9a-f]{8}$/);
});

test('unknown host gets 421 with a stable code, JSON when asked', async (t) => {
  const a = await startUpstream();
  const p = await startPerimeter(webConfig({ services: { app: [a.port] }, sites: { 'www.example.com': 'app' } }));
  t.after(async () => {
    await p.close();
    await a.close();
  });
  const html = await get(`${p.url()}/`, { host: 'nobody.example.com' });
  assert.equal(html.status, 421);
  assert.equal(html.headers['x-perimeter-error'], 'PRM_UNKNOWN_SITE');
  assert.match(html.body, /PRM_UNKNOWN_SITE/);
  assert.match(html.headers['content-type'] ?? '', /text\/html/);
  assert.ok(html.headers['x-request-id']);
  const json = await get(`${p.url()}/`, { host: 'nobody.example.com', accept: 'application/json' });
  const body = JSON.parse(json.body) as { error: { code: string; request_id: string } };
  assert.equal(body.error.code, 'PRM_UNKNOWN_SITE');
  assert.equal(body.error.request_id, json.headers['x-request-id']);
  assert.equal(a.requests, 0);
});

test('wildcard sites match subdomains; exact names win', async (t) => {
  const a = await startUpstream({ name: 'wild' });
  const b = await startUpstream({ name: 'exact' });
  const p = await startPerimeter(webConfig({ services: { w: [a.port], e: [b.port] }, sites: { '*.example.com': 'w', 'www.example.com': 'e' } }));
  t.after(async () => {
    await p.close();
    await a.close();
    await b.close();
  });
  assert.equal((await get(`${p.url()}/`, { host: 'x.y.example.com' })).body, 'wild\n');
  assert.equal((await get(`${p.url()}/`, { host: 'WWW.Example.com:80' })).body, 'exact\n');
});

test('hop-by-hop headers are removed, forwarding headers set by perimeter only', async (t) => {
  const a = await startUpstream({
    handler: (req, res) => {
      res.setHeader('connection', 'keep-alive, x-backend-hop');
      res.setHeader('x-backend-hop', 'secret');
      res.setHeader('keep-alive', 'timeout=5');
      res.end('ok');
    },
  });
  const p = await startPerimeter(webConfig({ services: { app: [a.port] }, sites: { 'www.example.com': 'app' } }));
  t.after(async () => {
    await p.close();
    await a.close();
  });
  const r = await rawRequest(
    p.port(),
    'GET /h HTTP/1.1\r\nHost: www.example.com\r\nConnection: keep-alive, X-Custom-Hop\r\nX-Custom-Hop: 1\r\nKeep-Alive: 300\r\nTE: trailers\r\n' +
      'Proxy-Authorization: Basic Zm9vOmJhcg==\r\nX-Forwarded-For: 6.6.6.6\r\nX-Forwarded-Proto: https\r\nX-Forwarded-Host: evil.example\r\n' +
      'Forwarded: for=6.6.6.6\r\nX-Real-IP: 6.6.6.6\r\nX-Request-Id: forged\r\nX-Keep: yes\r\n\r\n',
    { waitMs: 500 },
  );
  assert.deepEqual(r.statuses, [200]);
  assert.doesNotMatch(r.text, /x-backend-hop|keep-alive: timeout/i);
  const h = a.received[0]!.headers;
  assert.equal(h['x-custom-hop'], undefined);
  assert.equal(h['keep-alive'], undefined);
  assert.equal(h['te'], undefined);
  assert.equal(h['proxy-authorization'], undefined);
  assert.equal(h['x-real-ip'], undefined);
  assert.equal(h['x-forwarded-for'], '127.0.0.1');
  assert.equal(h['x-forwarded-proto'], 'http');
  assert.equal(h['x-forwarded-host'], 'www.example.com');
  assert.equal(h['forwarded'], 'for=127.0.0.1;host=www.example.com;proto=http');
  assert.notEqual(h['x-request-id'], 'forged');
  assert.equal(h['x-keep'], 'yes');
});

test('a trusted proxy peer keeps and extends forwarding headers', async (t) => {
  const a = await startUpstream();
  const p = await startPerimeter(webConfig({ services: { app: [a.port] }, sites: { 'www.example.com': 'app' }, cluster: '    trusted-proxies: ["127.0.0.0/8"]' }));
  t.after(async () => {
    await p.close();
    await a.close();
  });
  await get(`${p.url()}/`, { host: 'www.example.com', 'x-forwarded-for': '203.0.113.7', 'x-forwarded-proto': 'https', 'x-request-id': 'abc-123', forwarded: 'for=203.0.113.7' });
  const h = a.received[0]!.headers;
  assert.equal(h['x-forwarded-for'], '203.0.113.7, 127.0.0.1');
  assert.equal(h['x-forwarded-proto'], 'https');
  assert.equal(h['x-request-id'], 'abc-123');
  assert.equal(h['forwarded'], 'for=203.0.113.7, for=127.0.0.1;host=www.example.com;proto=http');
});

test('bodies stream both ways without buffering whole (chunked and content-length)', async (t) => {
  let firstChunkAt = 0;
  const a = await startUpstream({
    handler: (req, res) => {
      // Echo as it arrives.
      res.writeHead(200, { 'content-type': 'application/octet-stream' });
      req.once('data', () => (firstChunkAt = Date.now()));
      req.pipe(res);
    },
  });
  // The test helper buffers bodies; use a raw echo server instead.
  const echo = http.createServer((req, res) => {
    res.writeHead(200);
    req.once('data', () => (firstChunkAt = Date.now()));
    req.pipe(res);
  });
  await new Promise<void>((r) => echo.listen(0, '127.0.0.1', r));
  const echoPort = (echo.address() as net.AddressInfo).port;
  const p = await startPerimeter(webConfig({ services: { app: [echoPort] }, sites: { 'www.example.com': 'app' } }));
  t.after(async () => {
    await p.close();
    await a.close();
    echo.close();
  });
  const start = Date.now();
  const got = await new Promise<{ firstByteAt: number; total: number }>((resolve, reject) => {
    const req = http.request(`${p.url()}/up`, { method: 'POST', headers: { host: 'www.example.com' } }, (res) => {
      let total = 0;
      let firstByteAt = 0;
      res.on('data', (c: Buffer) => {
        if (!firstByteAt) firstByteAt = Date.now();
        total += c.length;
      });
      res.on('end', () => resolve({ firstByteAt, total }));
    });
    req.on('error', reject);
    // 4 MiB in 64 KiB pieces over ~400 ms: the first bytes must come back long before the end.
    let sent = 0;
    const piece = Buffer.alloc(64 * 1024, 0x61);
    const timer = setInterval(() => {
      req.write(piece);
      sent += piece.length;
      if (sent >= 4 * 1024 * 1024) {
        clearInterval(timer);
        req.end();
      }
    }, 6);
  });
  const end = Date.now();
  assert.equal(got.total, 4 * 1024 * 1024);
  assert.ok(firstChunkAt - start < (end - start) / 2, 'backend saw the first chunk before the client finished');
  assert.ok(got.firstByteAt - start < (end - start) / 2, 'client saw the first echoed bytes before it finished sending');
});

test('Expect: 100-continue is relayed from the backend', async (t) => {
  const a = await startUpstream();
  const p = await startPerimeter(webConfig({ services: { app: [a.port] }, sites: { 'www.example.com': 'app' } }));
  t.after(async () => {
    await p.close();
    await a.close();
  });
  const r = await new Promise<{ sawContinue: boolean; status: number }>((resolve, reject) => {
    let sawContinue = false;
    const req = http.request(`${p.url()}/upload`, { method: 'PUT', headers: { host: 'www.example.com', expect: '100-continue', 'content-length': '5' } });
    req.on('continue', () => {
      sawContinue = true;
      req.end('hello');
    });
    req.on('response', (res) => {
      res.resume();
      res.on('end', () => resolve({ sawContinue, status: res.statusCode ?? 0 }));
    });
    req.on('error', reject);
  });
  assert.equal(r.sawContinue, true);
  assert.equal(r.status, 200);
  assert.equal(a.received[0]!.body.toString(), 'hello');
});

test('websockets are tunnelled after a 101', async (t) => {
  const server = http.createServer();
  const wss = new WebSocketServer({ server });
  wss.on('connection', (ws) => ws.on('message', (m) => ws.send(`echo:${m.toString()}`)));
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as net.AddressInfo).port;
  const p = await startPerimeter(webConfig({ services: { ws: [port] }, sites: { 'ws.example.com': 'ws' } }));
  t.after(async () => {
    await p.close();
    wss.close();
    server.close();
  });
  const ws = new WebSocket(`ws://127.0.0.1:${p.port()}/chat`, { headers: { host: 'ws.example.com' } });
  assert.deepEqual(await echoes(ws, ['one', 'two']), ['echo:one', 'echo:two']);
  ws.close();
});

test('pipelined requests are answered in order', async (t) => {
  const a = await startUpstream({ handler: (req, res) => res.end(`path=${req.url}`) });
  const p = await startPerimeter(webConfig({ services: { app: [a.port] }, sites: { 'www.example.com': 'app' } }));
  t.after(async () => {
    await p.close();
    await a.close();
  });
  const r = await rawRequest(
    p.port(),
    'GET /1 HTTP/1.1\r\nHost: www.example.com\r\n\r\nGET /2 HTTP/1.1\r\nHost: www.example.com\r\n\r\nGET /3 HTTP/1.1\r\nHost: www.example.com\r\nConnection: close\r\n\r\n',
    { waitMs: 2000 },
  );
  assert.deepEqual(r.statuses, [200, 200, 200]);
  assert.ok(r.text.indexOf('path=/1') < r.text.indexOf('path=/2') && r.text.indexOf('path=/2') < r.text.indexOf('path=/3'));
  assert.equal(r.closed, true);
});

test('HTTP/1.0 client gets a de-chunked, close-delimited answer', async (t) => {
  const a = await startUpstream({
    handler: (_req, res) => {
      res.write('part1-');
      res.end('part2');
    },
  });
  const p = await startPerimeter(webConfig({ services: { app: [a.port] }, sites: { 'www.example.com': 'app' } }));
  t.after(async () => {
    await p.close();
    await a.close();
  });
  const r = await rawRequest(p.port(), 'GET / HTTP/1.0\r\nHost: www.example.com\r\n\r\n');
  assert.deepEqual(r.statuses, [200]);
  assert.doesNotMatch(r.text, /transfer-encoding/i);
  assert.match(r.text, /\r\n\r\npart1-part2$/);
  assert.equal(r.closed, true);
});

test('upstream response timeout gives 504 with its code', async (t) => {
  const a = await startUpstream();
  a.setFail('hang');
  const p = await startPerimeter(
    webConfig({ services: { app: [a.port] }, sites: { 'www.example.com': { service: 'app', extra: '  timeouts: { response: 1s }' } } }),
  );
  t.after(async () => {
    await p.close();
    await a.close();
  });
  const t0 = Date.now();
  const r = await get(`${p.url()}/slow`, { host: 'www.example.com' });
  assert.equal(r.status, 504);
  assert.equal(r.headers['x-perimeter-error'], 'PRM_UPSTREAM_TIMEOUT');
  const took = Date.now() - t0;
  assert.ok(took >= 900 && took < 3000, `took ${took} ms`);
});

test('connect failure to every backend gives 502 PRM_UPSTREAM_CONNECT', async (t) => {
  const a = await startUpstream();
  const port = a.port;
  await a.close();
  const p = await startPerimeter(webConfig({ services: { app: [port] }, sites: { 'www.example.com': 'app' } }));
  t.after(() => p.close());
  const r = await get(`${p.url()}/`, { host: 'www.example.com', accept: 'application/json' });
  assert.equal(r.status, 502);
  assert.equal((JSON.parse(r.body) as { error: { code: string } }).error.code, 'PRM_UPSTREAM_CONNECT');
});

test('a listener answers nothing until its routes are in place (no 421 while a config is still being applied)', async (t) => {
  const { freePort } = await import('../helpers/cli.js');
  const a = await startUpstream();
  const port = await freePort();
  // Geo on: opening its databases happens after the bind, inside apply.
  const cfg = webConfig({ services: { app: [a.port] }, sites: { 'www.example.com': 'app' }, geo: true });
  cfg.perimeter = cfg.perimeter.replace('listen: { http: "127.0.0.1:0" }', `listen: { http: "127.0.0.1:${port}" }`);
  let stop = false;
  const statuses: number[] = [];
  const hammer = (async () => {
    while (!stop) {
      const r = await rawRequest(port, 'GET / HTTP/1.1\r\nHost: www.example.com\r\nConnection: close\r\n\r\n', { waitMs: 3000 });
      statuses.push(...r.statuses);
      if (r.statuses.length === 0) await new Promise((res) => setTimeout(res, 2));
    }
  })();
  const p = await startPerimeter(cfg);
  for (let i = 0; i < 5; i++) statuses.push(...(await rawRequest(port, 'GET / HTTP/1.1\r\nHost: www.example.com\r\nConnection: close\r\n\r\n')).statuses);
  stop = true;
  await hammer;
  t.after(async () => {
    await p.close();
    await a.close();
  });
  assert.ok(statuses.length >= 5);
  assert.deepEqual([...new Set(statuses)], [200]);
});

test('large responses arrive intact at fast and stalled clients at once (reads land in one shared buffer; copies reuse slabs)', async (t) => {
  // Distinct bytes everywhere: a slab handed back while a write still held
  // it, or the shared read buffer forwarded without a copy, shows up as a
  // wrong digest, not just a wrong length. 16 MiB is more than loopback's
  // socket buffers hold, so writes to a stalled client complete late.
  const body = randomBytes(16 * 1024 * 1024 + 12_345);
  const digest = createHash('sha256').update(body).digest('hex');
  const a = await startUpstream({ handler: (_req, res) => res.end(body) });
  const p = await startPerimeter(webConfig({ services: { app: [a.port] }, sites: { 'www.example.com': 'app' } }));
  t.after(async () => {
    await p.close();
    await a.close();
  });
  const agent = new http.Agent({ keepAlive: true, maxSockets: 8 });
  t.after(() => agent.destroy());
  const fetchOne = (stallMs: number): Promise<string> =>
    new Promise((resolve, reject) => {
      http
        .get(`${p.url()}/big`, { headers: { host: 'www.example.com' }, agent }, (res) => {
          const hash = createHash('sha256');
          if (stallMs > 0) {
            res.pause();
            setTimeout(() => res.resume(), stallMs);
          }
          res.on('data', (c: Buffer) => hash.update(c));
          res.on('end', () => resolve(hash.digest('hex')));
          res.on('error', reject);
        })
        .on('error', reject);
    });
  const got = await Promise.all([fetchOne(400), fetchOne(0), fetchOne(250), fetchOne(0), fetchOne(0), fetchOne(400)]);
  for (const d of got) assert.equal(d, digest);
  assert.ok(freeSlabs() > 0, 'large copies went through slabs and came back');
});
