import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import http from 'node:http';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import http2 from 'node:http2';
import https from 'node:https';
import net from 'node:net';
import tls from 'node:tls';
import v8 from 'node:v8';
import vm from 'node:vm';
import { startUpstream } from '../helpers/upstream.js';
import { startPerimeter, writeConfig, type TestPerimeter } from '../helpers/perimeter.js';
import { freePort, runPerimeter } from '../helpers/cli.js';
import { makeCert, type TestCert } from '../helpers/certs.js';
import { WebSocket, WebSocketServer } from 'ws';
import { echoes } from '../helpers/ws.js';
import { tlsPlatformYaml } from '../helpers/tls-platform.js';
import { leanTlsCounts, leanTlsEnabled } from '../../src/tls/lean.js';
import { handleSocketsSupported } from '../../src/net/handle-socket.js';

const SUPPORTED = [20, 22, 24].includes(Number(process.versions.node.split('.')[0]));

function platform(backendPort: number, cert: TestCert, https = '127.0.0.1:0', services?: Record<string, number>): string {
  return tlsPlatformYaml({ backendPort, certs: [cert], listen: `{ https: "${https}" }`, services });
}

const SITES = { 'team.yaml': 'a.example.com:\n  service: app\n' };

async function fixture(t: TestContext): Promise<{ p: TestPerimeter; port: number; server: net.Server; dir: string; cert: TestCert; backendPort: number }> {
  const dir = await mkdtemp(join(tmpdir(), 'perimeter-lean-'));
  const cert = makeCert(dir, 'a', ['a.example.com']);
  const up = await startUpstream();
  const p = await startPerimeter({ perimeter: platform(up.port, cert), sites: SITES });
  t.after(async () => {
    await p.close();
    await up.close();
    await rm(dir, { recursive: true, force: true });
  });
  const port = p.runtime.bound().find((l) => l.protocol === 'https')!.port;
  // The listener's net.Server (internal): its connection count must include lean connections.
  const listeners = (p.runtime as unknown as { listeners: Map<string, { proto: string; server: net.Server }> }).listeners;
  const server = [...listeners.values()].find((l) => l.proto === 'https')!.server;
  return { p, port, server, dir, cert, backendPort: up.port };
}

function get1(port: number, agent?: https.Agent): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    https
      .get({ host: '127.0.0.1', port, path: '/x', servername: 'a.example.com', headers: { host: 'a.example.com' }, rejectUnauthorized: false, agent: agent ?? false }, (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (c: string) => (body += c));
        res.on('end', () => resolve({ status: res.statusCode!, body }));
      })
      .on('error', reject);
  });
}

function get2(port: number): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = http2.connect(`https://a.example.com:${port}`, { host: '127.0.0.1', servername: 'a.example.com', rejectUnauthorized: false } as http2.SecureClientSessionOptions);
    s.on('error', reject);
    const req = s.request({ ':path': '/h2', ':authority': 'a.example.com' });
    req.on('response', (h) => {
      req.resume();
      req.on('end', () => {
        s.close();
        resolve(Number(h[':status']));
      });
    });
    req.on('error', reject);
    req.end();
  });
}

function connections(server: net.Server): Promise<number> {
  return new Promise((resolve, reject) => server.getConnections((err, n) => (err ? reject(err) : resolve(n))));
}

async function until(what: string, cond: () => Promise<boolean> | boolean, ms = 5000): Promise<void> {
  const end = Date.now() + ms;
  while (!(await cond())) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

test('on the supported Node.js majors HTTPS listeners take the lean TLS path, for HTTP/1.1 and HTTP/2, and count its connections', async (t) => {
  assert.equal(leanTlsEnabled, SUPPORTED && process.env.PERIMETER_LEAN_TLS !== '0');
  if (!leanTlsEnabled) return;
  const { port, server } = await fixture(t);
  const before = { ...leanTlsCounts };
  const r = await get1(port);
  assert.equal(r.status, 200);
  assert.equal(await get2(port), 200);
  // Keep-alive: several requests on one lean connection.
  const agent = new https.Agent({ keepAlive: true, maxSockets: 1 });
  for (let i = 0; i < 3; i++) assert.equal((await get1(port, agent)).status, 200);
  assert.equal(leanTlsCounts.accepted - before.accepted, 3);
  assert.equal(leanTlsCounts.secured - before.secured, 3);
  assert.equal(await connections(server), 1, 'the kept-alive connection is counted by its server');
  agent.destroy();
  await until('the server to count no connection', async () => (await connections(server)) === 0);
});

test('handshakes that fail or are abandoned close cleanly, are reported, and leave the connection count at 0', { timeout: 30_000 }, async (t) => {
  if (!leanTlsEnabled) return;
  const { port, server } = await fixture(t);
  const before = { ...leanTlsCounts };
  // A client that offers only TLS 1.1: refused.
  const old = await new Promise<string>((resolve) => {
    const s = tls.connect({ port, host: '127.0.0.1', servername: 'a.example.com', rejectUnauthorized: false, minVersion: 'TLSv1', maxVersion: 'TLSv1.1', ciphers: 'DEFAULT@SECLEVEL=0' }, () => resolve('connected'));
    s.on('error', (e: Error & { code?: string }) => resolve(e.code ?? e.message));
  });
  assert.notEqual(old, 'connected');
  // Plain HTTP to the HTTPS port: not a ClientHello.
  const plain = await new Promise<string>((resolve) => {
    const s = net.connect(port, '127.0.0.1', () => s.write('GET / HTTP/1.1\r\nHost: a.example.com\r\n\r\n'));
    let got = '';
    s.on('data', (d: Buffer) => (got += d.toString('latin1')));
    s.on('error', () => {});
    s.on('close', () => resolve(got));
  });
  assert.doesNotMatch(plain, /HTTP\/1\.1 200/);
  // Half a ClientHello, then the client goes away; and a connection closed at once.
  const hello = await new Promise<Buffer>((resolve) => {
    const cap = net.createServer((c) => c.once('data', (d: Buffer) => {
      resolve(d);
      c.destroy();
      cap.close();
    }));
    cap.listen(0, '127.0.0.1', () => {
      const c = tls.connect({ port: (cap.address() as net.AddressInfo).port, host: '127.0.0.1', servername: 'a.example.com', rejectUnauthorized: false });
      c.on('error', () => {});
    });
  });
  for (const bytes of [hello.subarray(0, 40), Buffer.alloc(0)]) {
    await new Promise<void>((resolve) => {
      const s = net.connect(port, '127.0.0.1', () => {
        if (bytes.length > 0) s.write(bytes);
        setTimeout(() => s.destroy(), 50);
      });
      s.on('error', () => {});
      s.on('close', () => resolve());
    });
  }
  await until('every failed connection to be closed', async () => (await connections(server)) === 0);
  assert.equal(leanTlsCounts.accepted - before.accepted, 4);
  assert.equal(leanTlsCounts.secured - before.secured, 0);
  assert.ok(leanTlsCounts.failed - before.failed >= 3, `failed: ${leanTlsCounts.failed - before.failed}`);
  // The listener still serves.
  assert.equal((await get1(port)).status, 200);
});

test('connections in their handshake survive garbage collections (the TCP handle keeps its TLSWrap alive)', { timeout: 60_000 }, async (t) => {
  if (!leanTlsEnabled) return;
  const { port } = await fixture(t);
  v8.setFlagsFromString('--expose-gc');
  const gc = vm.runInNewContext('gc') as () => void;
  let ok = 0;
  for (let round = 0; round < 10; round++) {
    const batch = Array.from({ length: 10 }, () => get1(port).then((r) => r.status === 200 && ok++));
    gc();
    await new Promise((r) => setImmediate(r));
    gc();
    await Promise.all(batch);
  }
  assert.equal(ok, 100);
});

test('in cluster workers the lean path serves HTTPS and HTTP/2; PERIMETER_LEAN_TLS=0 leaves it to node:tls, which serves the same', { timeout: 90_000 }, async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'perimeter-lean-cli-'));
  const cert = makeCert(dir, 'a', ['a.example.com']);
  const up = await startUpstream();
  t.after(async () => {
    await up.close();
    await rm(dir, { recursive: true, force: true });
  });
  for (const lean of [true, false]) {
    const port = await freePort();
    await writeConfig(dir, { perimeter: platform(up.port, cert, `127.0.0.1:${port}`), sites: SITES });
    const saved = process.env.PERIMETER_LEAN_TLS;
    if (!lean) process.env.PERIMETER_LEAN_TLS = '0';
    const p = runPerimeter(dir, ['--workers', '2', '--no-watch', '--drain-timeout', '2s']);
    if (saved === undefined) delete process.env.PERIMETER_LEAN_TLS;
    else process.env.PERIMETER_LEAN_TLS = saved;
    try {
      await p.waitForLog((l) => l.event?.action === 'workers-started', 30_000);
      const listens = p.lines.filter((l) => l.event?.action === 'listen' && (l as { protocol?: string }).protocol === 'https');
      assert.ok(listens.length >= 2, 'each worker listens');
      for (const l of listens) assert.equal((l as { tlsPath?: string }).tlsPath, lean && leanTlsEnabled ? 'lean' : 'node:tls');
      for (let i = 0; i < 6; i++) assert.equal((await get1(port)).status, 200);
      assert.equal(await get2(port), 200);
      p.kill('SIGTERM');
      const exit = await p.exited;
      assert.equal(exit.code, 0, p.stderr());
    } finally {
      p.kill('SIGKILL');
    }
  }
});

test('HTTP/1.1 over a lean TLS connection (driven on its TLSWrap): a large answer to a slow reader, an upload, pipelined requests and a websocket arrive intact', { timeout: 60_000 }, async (t) => {
  assert.equal(handleSocketsSupported, SUPPORTED);
  const big = Buffer.alloc(4 * 1024 * 1024);
  for (let i = 0; i < big.length; i++) big[i] = (i * 7 + (i >> 11)) & 0xff;
  const bigHash = createHash('sha256').update(big).digest('hex');
  const up = await startUpstream({
    handler: (req, res, body) => {
      if (req.url === '/big') res.end(big);
      else if (req.url === '/upload') res.end(`${body.length} ${createHash('sha256').update(body).digest('hex')}`);
      else res.end(`path=${req.url}`);
    },
  });
  const wsHttp = http.createServer();
  const wss = new WebSocketServer({ server: wsHttp });
  wss.on('connection', (ws) => ws.on('message', (m) => ws.send(`echo:${m.toString()}`)));
  await new Promise<void>((r) => wsHttp.listen(0, '127.0.0.1', r));
  const dir = await mkdtemp(join(tmpdir(), 'perimeter-lean-h1-'));
  const cert = makeCert(dir, 'a', ['a.example.com', 'ws.example.com']);
  const p = await startPerimeter({
    perimeter: platform(up.port, cert, '127.0.0.1:0', { ws: (wsHttp.address() as net.AddressInfo).port }),
    sites: { 'team.yaml': 'a.example.com:\n  service: app\nws.example.com:\n  service: ws\n' },
  });
  t.after(async () => {
    await p.close();
    await up.close();
    wss.close();
    wsHttp.close();
    await rm(dir, { recursive: true, force: true });
  });
  const port = p.runtime.bound().find((l) => l.protocol === 'https')!.port;
  const before = leanTlsCounts.secured;

  // 4 MiB to a client that stops reading for a while: perimeter's writes queue, wait and drain.
  const got = await new Promise<{ status: number; hash: string; length: number }>((resolve, reject) => {
    https
      .get({ host: '127.0.0.1', port, path: '/big', servername: 'a.example.com', headers: { host: 'a.example.com' }, rejectUnauthorized: false, agent: false }, (res) => {
        const h = createHash('sha256');
        let length = 0;
        res.pause();
        setTimeout(() => {
          res.on('data', (c: Buffer) => {
            h.update(c);
            length += c.length;
          });
          res.resume();
        }, 500);
        res.on('end', () => resolve({ status: res.statusCode!, hash: h.digest('hex'), length }));
      })
      .on('error', reject);
  });
  assert.deepEqual(got, { status: 200, hash: bigHash, length: big.length });

  // 1 MiB up.
  const upload = big.subarray(0, 1024 * 1024);
  const uploaded = await new Promise<string>((resolve, reject) => {
    const req = https.request({ host: '127.0.0.1', port, path: '/upload', method: 'POST', servername: 'a.example.com', headers: { host: 'a.example.com', 'content-length': upload.length }, rejectUnauthorized: false, agent: false }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => (body += c));
      res.on('end', () => resolve(body));
    });
    req.on('error', reject);
    req.end(upload);
  });
  assert.equal(uploaded, `${upload.length} ${createHash('sha256').update(upload).digest('hex')}`);

  // Three pipelined requests in one write, the last with Connection: close.
  const pipelined = await new Promise<{ text: string; closed: boolean }>((resolve, reject) => {
    const s = tls.connect({ port, host: '127.0.0.1', servername: 'a.example.com', rejectUnauthorized: false, ALPNProtocols: ['http/1.1'] }, () => {
      s.write('GET /1 HTTP/1.1\r\nHost: a.example.com\r\n\r\nGET /2 HTTP/1.1\r\nHost: a.example.com\r\n\r\nGET /3 HTTP/1.1\r\nHost: a.example.com\r\nConnection: close\r\n\r\n');
    });
    let text = '';
    s.setEncoding('latin1');
    s.on('data', (d: string) => (text += d));
    s.on('error', reject);
    s.on('close', () => resolve({ text, closed: true }));
  });
  assert.equal(pipelined.text.match(/HTTP\/1\.1 200/g)?.length, 3);
  assert.ok(pipelined.text.indexOf('path=/1') < pipelined.text.indexOf('path=/2') && pipelined.text.indexOf('path=/2') < pipelined.text.indexOf('path=/3'));

  // A websocket: the connection becomes a tunnel both ways.
  // servername: passed on to tls.connect (not in ws's types).
  const ws = new WebSocket(`wss://127.0.0.1:${port}/chat`, { headers: { host: 'ws.example.com' }, servername: 'ws.example.com', rejectUnauthorized: false } as WebSocket.ClientOptions);
  assert.deepEqual(await echoes(ws, ['one', 'two']), ['echo:one', 'echo:two']);
  ws.close();

  // A client that goes away in the middle of the large answer: perimeter closes its side, nothing is left.
  await new Promise<void>((resolve) => {
    const s = tls.connect({ port, host: '127.0.0.1', servername: 'a.example.com', rejectUnauthorized: false, ALPNProtocols: ['http/1.1'] }, () => s.write('GET /big HTTP/1.1\r\nHost: a.example.com\r\n\r\n'));
    s.once('data', () => s.destroy());
    s.on('error', () => {});
    s.on('close', () => resolve());
  });
  const listeners = (p.runtime as unknown as { listeners: Map<string, { proto: string; server: net.Server }> }).listeners;
  const server = [...listeners.values()].find((l) => l.proto === 'https')!.server;
  await until('every connection to be closed', async () => (await connections(server)) === 0, 10_000);
  assert.equal((await get1(port)).status, 200);
  if (leanTlsEnabled) assert.equal(leanTlsCounts.secured - before, 6);
});
