/**
 * HTTP/2 towards backends (`protocol: h2c`): a real node:http2 cleartext
 * backend behind perimeter, reached by HTTP/1.1 clients and by HTTP/2
 * clients on an HTTPS listener. Headers the backend sees, streaming both
 * ways, trailers, multiplexing on one session, GOAWAY mid-run, a backend
 * that is down, h2c health checks, upgrades refused, and a service without
 * `protocol` still spoken to in HTTP/1.1.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import http2 from 'node:http2';
import type net from 'node:net';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePort } from '../helpers/cli.js';
import { startPerimeter, type TestPerimeter } from '../helpers/perimeter.js';
import { makeCert } from '../helpers/certs.js';
import { waitFor } from '../helpers/upstream.js';

interface Seen {
  readonly path: string;
  readonly headers: http2.IncomingHttpHeaders;
  readonly version: string;
}

interface H2Backend {
  readonly port: number;
  readonly seen: Seen[];
  /** Sessions the backend accepted so far. */
  sessions(): number;
  readonly live: Set<http2.ServerHttp2Session>;
  /** Requests being held by /hold. */
  held: { release(): void; count(): number };
  close(): Promise<void>;
}

/** A cleartext HTTP/2 (prior knowledge) backend. */
async function startH2Backend(): Promise<H2Backend> {
  const server = http2.createServer();
  const seen: Seen[] = [];
  const live = new Set<http2.ServerHttp2Session>();
  let sessions = 0;
  let waiting: (() => void)[] = [];
  let holdOpen = true;
  const refused = new Set<string>();
  server.on('session', (s) => {
    sessions++;
    live.add(s);
    s.on('close', () => live.delete(s));
    s.on('error', () => {});
  });
  server.on('stream', (stream, headers) => {
    stream.on('error', () => {});
    const path = String(headers[':path']);
    seen.push({ path, headers, version: '2.0' });
    const url = new URL(path, 'http://x');
    switch (url.pathname) {
      case '/echo': {
        // Streams the request body back as it arrives.
        stream.respond({ ':status': 200, 'content-type': 'application/octet-stream', 'x-backend': 'h2c' });
        stream.on('data', (c: Buffer) => stream.write(c));
        stream.on('end', () => stream.end());
        return;
      }
      case '/grpc': {
        // gRPC's shape: headers, a message, then trailers with the status.
        stream.respond({ ':status': 200, 'content-type': 'application/grpc' }, { waitForTrailers: true });
        stream.on('wantTrailers', () => stream.sendTrailers({ 'grpc-status': '0', 'grpc-message': 'fine' }));
        stream.resume();
        stream.on('end', () => stream.end(Buffer.from([0, 0, 0, 0, 2, 0x08, 0x01])));
        return;
      }
      case '/hold': {
        stream.resume();
        const answer = (): void => {
          if (stream.destroyed) return;
          stream.respond({ ':status': 200, 'content-length': '2' });
          stream.end('ok');
        };
        if (holdOpen) waiting.push(answer);
        else answer();
        return;
      }
      case '/refuse-once': {
        // The backend refuses the first stream (RFC 9113 §8.7: not processed).
        const key = String(headers['x-key']);
        if (!refused.has(key)) {
          refused.add(key);
          stream.close(http2.constants.NGHTTP2_REFUSED_STREAM);
          return;
        }
        stream.resume();
        stream.respond({ ':status': 200, 'content-length': '2' });
        stream.end('ok');
        return;
      }
      case '/healthz':
        stream.respond({ ':status': 204 });
        stream.end();
        return;
      default: {
        stream.resume();
        const body = JSON.stringify({ path });
        stream.respond({ ':status': 200, 'content-type': 'application/json', 'content-length': String(Buffer.byteLength(body)) });
        stream.end(body);
      }
    }
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as net.AddressInfo).port;
  return {
    port,
    seen,
    live,
    sessions: () => sessions,
    held: {
      release() {
        holdOpen = false;
        const w = waiting;
        waiting = [];
        for (const f of w) f();
      },
      count: () => waiting.length,
    },
    async close() {
      for (const s of live) s.destroy();
      await new Promise<void>((r) => server.close(() => r()));
    },
  };
}

interface Setup {
  readonly p: TestPerimeter;
  readonly httpPort: number;
  readonly httpsPort: number;
}

/** perimeter with an http and an https cluster, service `grpc` (h2c) on `ports`, `plain` (HTTP/1.1) on `plainPort`. */
async function setup(t: { after(fn: () => Promise<void>): void }, ports: readonly number[], opts: { plainPort?: number; health?: string; geo?: boolean } = {}): Promise<Setup> {
  const dir = await mkdtemp(join(tmpdir(), 'perimeter-h2up-'));
  const cert = makeCert(dir, 'a', ['secure.example.com']);
  const plain = opts.plainPort ?? ports[0]!;
  const p = await startPerimeter({
    perimeter: `clusters:
  web:
    default: true
    listen: { http: "127.0.0.1:0" }
    trusted-proxies: ["127.0.0.1/32"]
  secure:
    listen: { https: "127.0.0.1:0" }
    tls:
      certificates:
        - { cert: "${cert.cert}", key: "${cert.key}" }
      redirect: false
defaults:
  health: { type: none }
  retries: { attempts: 3 }
services:
  grpc:
    protocol: h2c
${opts.health ?? ''}
discovery:
  static:
    grpc: [${ports.map((x) => `"127.0.0.1:${x}"`).join(', ')}]
    plain: ["127.0.0.1:${plain}"]
access-log:
  path: "off"
${opts.geo ? '' : 'geo:\n  country-db: off\n  asn-db: off\n'}`,
    sites: {
      'team.yaml': 'api.example.com:\n  service: grpc\nplain.example.com:\n  service: plain\nsecure.example.com:\n  service: grpc\n  cluster: secure\n',
    },
  });
  t.after(async () => {
    await p.close();
    await rm(dir, { recursive: true, force: true });
  });
  return { p, httpPort: p.port('web'), httpsPort: p.port('secure') };
}

interface H1Response {
  status: number;
  headers: http.IncomingHttpHeaders;
  trailers: NodeJS.Dict<string>;
  body: Buffer;
}

function h1(port: number, opts: { path: string; host?: string; method?: string; headers?: Record<string, string>; body?: string; agent?: http.Agent }): Promise<H1Response> {
  return new Promise((resolve, reject) => {
    const req = http.request(
      { host: '127.0.0.1', port, method: opts.method ?? 'GET', path: opts.path, headers: { host: opts.host ?? 'api.example.com', ...opts.headers }, agent: opts.agent ?? false },
      (res) => {
        const parts: Buffer[] = [];
        res.on('data', (c: Buffer) => parts.push(c));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, trailers: res.trailers, body: Buffer.concat(parts) }));
        res.on('error', reject);
      },
    );
    req.setTimeout(10_000, () => req.destroy(new Error('timeout')));
    req.on('error', reject);
    req.end(opts.body);
  });
}

function h2client(port: number): http2.ClientHttp2Session {
  const s = http2.connect(`https://secure.example.com:${port}`, { host: '127.0.0.1', servername: 'secure.example.com', rejectUnauthorized: false } as http2.SecureClientSessionOptions);
  s.on('error', () => {});
  return s;
}

test('HTTP/1.1 client → h2c backend: routed over HTTP/2 with the header rules, geo, hop-by-hop removed, recorded', async (t) => {
  const b = await startH2Backend();
  t.after(() => b.close());
  const { p, httpPort } = await setup(t, [b.port], { geo: true });
  const r = await h1(httpPort, {
    path: '/x?q=1',
    headers: {
      connection: 'keep-alive, x-hop',
      'x-hop': 'drop me',
      'keep-alive': 'timeout=5',
      'x-forwarded-for': '8.8.8.8',
      'x-geo-country': 'ZZ',
      'x-team': 'kept',
      cookie: 'a=1',
    },
  });
  assert.equal(r.status, 200);
  assert.deepEqual(JSON.parse(r.body.toString()), { path: '/x?q=1' });
  const seen = b.seen.find((s) => s.path === '/x?q=1');
  assert.ok(seen, 'the backend got the request');
  const h = seen.headers;
  assert.equal(h[':method'], 'GET');
  assert.equal(h[':authority'], 'api.example.com');
  assert.equal(h[':scheme'], 'http');
  assert.equal(h.host, undefined);
  assert.equal(h['x-team'], 'kept');
  assert.equal(h.cookie, 'a=1');
  assert.equal(h['x-hop'], undefined, 'fields named in Connection are hop-by-hop');
  assert.equal(h['keep-alive'], undefined);
  assert.equal(h.connection, undefined);
  assert.equal(h.te, 'trailers');
  assert.equal(h['x-forwarded-for'], '8.8.8.8, 127.0.0.1', 'trusted peer: its X-Forwarded-For is extended');
  assert.equal(h['x-forwarded-proto'], 'http');
  assert.equal(h['x-forwarded-host'], 'api.example.com');
  assert.match(String(h.forwarded), /for=127\.0\.0\.1;host=api\.example\.com;proto=http$/);
  assert.match(String(h['x-request-id']), /^[0-9a-f-]{20,}$/);
  assert.equal(h['x-geo-country'], 'US', 'geo from the trusted X-Forwarded-For, the client value replaced');
  assert.equal(h['x-geo-asn'], '15169');
  assert.equal(r.headers['x-request-id'], undefined);
  const rec = p.records.find((x) => x.target === '/x?q=1');
  assert.ok(rec);
  assert.equal(rec.status, 200);
  assert.equal(rec.upstreamStatus, 200);
  assert.equal(rec.service, 'grpc');
  assert.equal(rec.backend, `127.0.0.1:${b.port}`);
  assert.equal(rec.httpVersion, 'HTTP/1.1');
  assert.equal(rec.attempts, 1);
});

test('streaming both ways: each request chunk is echoed before the next is sent (HTTP/1.1 client, chunked)', async (t) => {
  const b = await startH2Backend();
  t.after(() => b.close());
  const { httpPort } = await setup(t, [b.port]);
  const got: string[] = [];
  await new Promise<void>((resolve, reject) => {
    const req = http.request({ host: '127.0.0.1', port: httpPort, method: 'POST', path: '/echo', headers: { host: 'api.example.com', 'transfer-encoding': 'chunked' }, agent: false });
    req.on('error', reject);
    req.setTimeout(10_000, () => req.destroy(new Error('timeout')));
    let n = 0;
    const next = (): void => {
      if (n === 5) {
        req.end();
        return;
      }
      req.write(`part-${n++};`);
    };
    req.on('response', (res) => {
      assert.equal(res.statusCode, 200);
      assert.equal(res.headers['x-backend'], 'h2c');
      res.setEncoding('latin1');
      let pending = '';
      res.on('data', (c: string) => {
        pending += c;
        // Every echoed part arrives before the client sends the next one.
        while (pending.includes(';')) {
          const i = pending.indexOf(';');
          got.push(pending.slice(0, i));
          pending = pending.slice(i + 1);
          next();
        }
      });
      res.on('end', () => resolve());
    });
    req.flushHeaders();
    next();
  });
  assert.deepEqual(got, ['part-0', 'part-1', 'part-2', 'part-3', 'part-4']);
});

test('a large body both ways with Content-Length, HTTP/2 client on the HTTPS listener', async (t) => {
  const b = await startH2Backend();
  t.after(() => b.close());
  const { httpsPort } = await setup(t, [b.port]);
  const session = h2client(httpsPort);
  t.after(() => void session.close());
  const payload = Buffer.alloc(3 * 1024 * 1024 + 17, 'abcdefghij');
  const { status, body } = await new Promise<{ status: number; body: Buffer }>((resolve, reject) => {
    const req = session.request({ ':method': 'POST', ':path': '/echo', ':authority': 'secure.example.com', 'content-length': String(payload.length) });
    let status = 0;
    const parts: Buffer[] = [];
    req.on('response', (h) => (status = Number(h[':status'])));
    req.on('data', (c: Buffer) => parts.push(c));
    req.on('end', () => resolve({ status, body: Buffer.concat(parts) }));
    req.on('error', reject);
    req.end(payload);
  });
  assert.equal(status, 200);
  assert.equal(body.length, payload.length);
  assert.ok(body.equals(payload));
  const seen = b.seen.find((s) => s.path === '/echo');
  assert.equal(seen?.headers['content-length'], String(payload.length));
  assert.equal(seen?.headers['x-forwarded-proto'], 'https');
});

test('trailers (gRPC grpc-status) reach HTTP/2 clients, and HTTP/1.1 clients in the chunked trailer section', async (t) => {
  const b = await startH2Backend();
  t.after(() => b.close());
  const { httpPort, httpsPort } = await setup(t, [b.port]);
  const session = h2client(httpsPort);
  t.after(() => void session.close());
  const r = await new Promise<{ headers: http2.IncomingHttpHeaders; trailers: http2.IncomingHttpHeaders | undefined; body: Buffer }>((resolve, reject) => {
    const req = session.request({ ':method': 'POST', ':path': '/grpc', ':authority': 'secure.example.com', 'content-type': 'application/grpc', te: 'trailers' });
    let headers: http2.IncomingHttpHeaders = {};
    let trailers: http2.IncomingHttpHeaders | undefined;
    const parts: Buffer[] = [];
    req.on('response', (h) => (headers = h));
    req.on('trailers', (h) => (trailers = h));
    req.on('data', (c: Buffer) => parts.push(c));
    req.on('end', () => resolve({ headers, trailers, body: Buffer.concat(parts) }));
    req.on('error', reject);
    req.end(Buffer.from([0, 0, 0, 0, 0]));
  });
  assert.equal(r.headers[':status'], 200);
  assert.equal(r.headers['content-type'], 'application/grpc');
  assert.deepEqual([...r.body], [0, 0, 0, 0, 2, 0x08, 0x01]);
  assert.ok(r.trailers, 'trailers arrived');
  assert.equal(r.trailers['grpc-status'], '0');
  assert.equal(r.trailers['grpc-message'], 'fine');

  const r1 = await h1(httpPort, { path: '/grpc', method: 'POST', headers: { 'content-type': 'application/grpc', te: 'trailers', connection: 'te' }, body: '\0\0\0\0\0' });
  assert.equal(r1.status, 200);
  assert.equal(r1.headers['transfer-encoding'], 'chunked');
  assert.equal(r1.trailers['grpc-status'], '0');
  assert.equal(r1.trailers['grpc-message'], 'fine');
});

test('multiplexing: 24 concurrent requests share one backend session', async (t) => {
  const b = await startH2Backend();
  t.after(() => b.close());
  const { httpPort } = await setup(t, [b.port]);
  const agent = new http.Agent({ keepAlive: true, maxSockets: 64 });
  t.after(() => agent.destroy());
  const n = 24;
  const all = Promise.all(Array.from({ length: n }, (_, i) => h1(httpPort, { path: `/hold?i=${i}`, agent })));
  // All of them are in flight at the backend at once before any is answered.
  await waitFor(() => b.held.count() === n, 10_000);
  b.held.release();
  const rs = await all;
  assert.deepEqual(
    rs.map((r) => r.status),
    rs.map(() => 200),
  );
  assert.equal(b.sessions(), 1, 'one h2c session carried every request');
  // And it is reused by later requests.
  await h1(httpPort, { path: '/after', agent });
  assert.equal(b.sessions(), 1);
});

test('backend GOAWAY mid-run: no idempotent request fails; the pool moves to a new session', async (t) => {
  const b = await startH2Backend();
  t.after(() => b.close());
  const { p, httpPort } = await setup(t, [b.port]);
  const agent = new http.Agent({ keepAlive: true, maxSockets: 8 });
  t.after(() => agent.destroy());
  const total = 240;
  let sent = 0;
  let goaways = 0;
  const statuses: number[] = [];
  const errors: string[] = [];
  const worker = async (): Promise<void> => {
    while (sent < total) {
      const i = sent++;
      if (i > 0 && i % 40 === 0) {
        // Every 40 requests: the backend shuts its sessions down. Half the
        // time it says it processed nothing (last-stream-id 0), so streams in
        // flight are refused and must be retried.
        goaways++;
        for (const s of b.live) {
          try {
            s.goaway(http2.constants.NGHTTP2_NO_ERROR, goaways % 2 === 0 ? 0 : 2 ** 31 - 1);
            s.close();
          } catch {
            // already closing
          }
        }
      }
      try {
        const r = await h1(httpPort, { path: `/g?i=${i}`, agent });
        statuses.push(r.status);
        if (r.status !== 200) errors.push(`${i}: ${r.status} ${String(r.headers['x-perimeter-error'])}`);
      } catch (err) {
        errors.push(`${i}: ${String(err)}`);
      }
    }
  };
  await Promise.all(Array.from({ length: 8 }, worker));
  assert.deepEqual(errors, []);
  assert.equal(statuses.length, total);
  assert.ok(goaways >= 5);
  assert.ok(b.sessions() >= 2, `new sessions after GOAWAY (${b.sessions()})`);
  t.diagnostic(`requests retried: ${p.records.filter((r) => r.retries > 0).length}`);
});

test('REFUSED_STREAM: a POST the backend did not process is retried; one whose body was handed over is not', async (t) => {
  const b = await startH2Backend();
  t.after(() => b.close());
  const { p, httpPort } = await setup(t, [b.port]);
  const r = await h1(httpPort, { path: '/refuse-once', method: 'POST', headers: { 'x-key': 'a', 'content-length': '0' } });
  assert.equal(r.status, 200);
  const rec = p.records.find((x) => x.target === '/refuse-once');
  assert.equal(rec?.retries, 1);
  assert.equal(b.seen.filter((s) => s.path === '/refuse-once').length, 2);
  // With a body already written into the refused stream, perimeter no longer
  // holds it: not retried, the client is told.
  const r2 = await h1(httpPort, { path: '/refuse-once', method: 'POST', headers: { 'x-key': 'b' }, body: 'payload' });
  assert.equal(r2.status, 502);
  assert.equal(r2.headers['x-perimeter-error'], 'PRM_UPSTREAM_RESET');
});

test('backend down: 502 PRM_UPSTREAM_CONNECT after retries; a connect failure is retried on another backend', async (t) => {
  const down = await freePort();
  const b = await startH2Backend();
  t.after(() => b.close());
  {
    const { p, httpPort } = await setup(t, [down]);
    const r = await h1(httpPort, { path: '/', headers: { accept: 'application/json' } });
    assert.equal(r.status, 502);
    assert.equal(r.headers['x-perimeter-error'], 'PRM_UPSTREAM_CONNECT');
    assert.equal(JSON.parse(r.body.toString()).error.code, 'PRM_UPSTREAM_CONNECT');
    const rec = p.records.at(-1)!;
    assert.equal(rec.errorCode, 'PRM_UPSTREAM_CONNECT');
    assert.ok(rec.attempts >= 2, 'retried');
  }
  {
    // One backend down, one up: every request (even a POST) is served.
    const { httpPort } = await setup(t, [down, b.port]);
    for (let i = 0; i < 6; i++) {
      const r = await h1(httpPort, { path: `/p${i}`, method: 'POST', body: 'x' });
      assert.equal(r.status, 200, `request ${i}: ${String(r.headers['x-perimeter-error'])}`);
    }
  }
});

test('h2c health checks speak HTTP/2; a websocket upgrade to an h2c service is refused with 501', async (t) => {
  const b = await startH2Backend();
  t.after(() => b.close());
  const { p, httpPort } = await setup(t, [b.port], { health: '    health: { type: http, path: /healthz, interval: 100ms, timeout: 90ms }\n' });
  const pool = p.runtime.pool('grpc')!;
  await waitFor(() => pool.describe().backends[0]?.active === 'healthy', 5_000);
  const d = pool.describe().backends[0]!;
  assert.match(d.lastCheckReason, /^HTTP\/2 204 from \/healthz$/);
  assert.ok(b.seen.some((s) => s.path === '/healthz' && s.headers['user-agent'] === 'perimeter-health'));

  const r = await h1(httpPort, { path: '/ws', headers: { connection: 'upgrade', upgrade: 'websocket' } });
  assert.equal(r.status, 501);
  assert.equal(r.headers['x-perimeter-error'], 'PRM_UPGRADE_NOT_SUPPORTED');
  assert.ok(!b.seen.some((s) => s.path === '/ws'), 'never reached the backend');
});

test('a service without protocol is still spoken to in HTTP/1.1', async (t) => {
  const versions: string[] = [];
  const server = http.createServer((req, res) => {
    versions.push(req.httpVersion);
    res.end('h1');
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  t.after(() => new Promise<void>((r) => server.close(() => r())));
  const b = await startH2Backend();
  t.after(() => b.close());
  const { p, httpPort } = await setup(t, [b.port], { plainPort: (server.address() as net.AddressInfo).port });
  assert.equal(p.runtime.pool('plain') !== undefined, true);
  const r = await h1(httpPort, { path: '/', host: 'plain.example.com' });
  assert.equal(r.status, 200);
  assert.equal(r.body.toString(), 'h1');
  assert.deepEqual(versions, ['1.1']);
});
