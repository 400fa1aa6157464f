import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import http2 from 'node:http2';
import tls from 'node:tls';
import { startUpstream, type Upstream } from '../helpers/upstream.js';
import { settledClientConnections, startPerimeter, type TestPerimeter } from '../helpers/perimeter.js';
import { makeCert } from '../helpers/certs.js';
import { tlsPlatformYaml } from '../helpers/tls-platform.js';

interface Setup {
  readonly p: TestPerimeter;
  readonly up: Upstream;
  readonly port: number;
}

async function setup(t: { after(fn: () => Promise<void>): void }): Promise<Setup> {
  const dir = await mkdtemp(join(tmpdir(), 'perimeter-h2-'));
  const cert = makeCert(dir, 'a', ['a.example.com', 'localhost', 'other.example.com']);
  const up = await startUpstream();
  const p = await startPerimeter({
    perimeter: tlsPlatformYaml({ backendPort: up.port, certs: [cert] }),
    sites: { 'team.yaml': 'a.example.com:\n  service: app\nlocalhost:\n  service: app\n' },
  });
  t.after(async () => {
    await p.close();
    await up.close();
    await rm(dir, { recursive: true, force: true });
  });
  return { p, up, port: p.runtime.bound().find((l) => l.protocol === 'https')!.port };
}

function connect(port: number, servername = 'a.example.com'): http2.ClientHttp2Session {
  const s = http2.connect(`https://${servername}:${port}`, { host: '127.0.0.1', servername, rejectUnauthorized: false } as http2.SecureClientSessionOptions);
  s.on('error', () => {});
  return s;
}

interface H2Response {
  status: number;
  headers: http2.IncomingHttpHeaders;
  body: Buffer;
}

function request(session: http2.ClientHttp2Session, headers: http2.OutgoingHttpHeaders, body?: Buffer): Promise<H2Response> {
  return new Promise((resolve, reject) => {
    const req = session.request({ ':authority': 'a.example.com', ...headers }, { endStream: body === undefined });
    let head: http2.IncomingHttpHeaders = {};
    const parts: Buffer[] = [];
    req.on('response', (h) => (head = h));
    req.on('data', (c: Buffer) => parts.push(c));
    req.on('end', () => resolve({ status: Number(head[':status']), headers: head, body: Buffer.concat(parts) }));
    req.on('error', reject);
    if (body !== undefined) req.end(body);
  });
}

test('GET and POST over HTTP/2: routed, HSTS, X-Forwarded-Proto https, large bodies both ways, recorded as HTTP/2', async (t) => {
  const { p, up, port } = await setup(t);
  const session = connect(port);
  t.after(() => void session.close());
  const alpn = await new Promise<string | false>((r) => session.once('connect', () => r((session.socket as tls.TLSSocket).alpnProtocol ?? false)));
  assert.equal(alpn, 'h2');

  const r = await request(session, { ':path': '/x?q=1', cookie: 'a=1', 'x-forwarded-proto': 'http' });
  assert.equal(r.status, 200);
  assert.equal(r.headers['strict-transport-security'], 'max-age=31536000; includeSubDomains');
  assert.equal(r.headers['connection'], undefined);
  const got = up.received[0]!;
  assert.equal(got.url, '/x?q=1');
  assert.equal(got.headers['host'], 'a.example.com');
  assert.equal(got.headers['x-forwarded-proto'], 'https');
  assert.match(String(got.headers['forwarded']), /proto=https/);
  assert.equal(got.headers['cookie'], 'a=1');
  const rec = p.records.at(-1)!;
  assert.equal(rec.httpVersion, 'HTTP/2');
  assert.equal(rec.site, 'a.example.com');
  assert.equal(rec.status, 200);

  // Upload 3 MiB without content-length (chunked to the backend) and with it.
  const big = Buffer.alloc(3 * 1024 * 1024, 'x');
  up.setHandler((_req, res, body) => {
    res.setHeader('content-type', 'text/plain');
    res.end(`got ${body.length}`);
  });
  const post = await request(session, { ':method': 'POST', ':path': '/up' }, big);
  assert.equal(post.status, 200);
  assert.equal(post.body.toString(), `got ${big.length}`);
  const post2 = await request(session, { ':method': 'POST', ':path': '/up', 'content-length': String(big.length) }, big);
  assert.equal(post2.body.toString(), `got ${big.length}`);
  assert.equal(up.received.at(-1)!.headers['content-length'], String(big.length));

  // Download 4 MiB, chunked by the backend, and with a length.
  const down = Buffer.alloc(4 * 1024 * 1024, 'y');
  up.setHandler((req, res) => {
    if (req.url === '/len') res.setHeader('content-length', down.length);
    res.write(down.subarray(0, 1000));
    setTimeout(() => res.end(down.subarray(1000)), 20);
  });
  for (const path of ['/chunked', '/len']) {
    const d = await request(session, { ':path': path });
    assert.equal(d.status, 200);
    assert.equal(d.body.length, down.length, path);
    assert.equal(d.headers['transfer-encoding'], undefined);
  }
  const head = await request(session, { ':method': 'HEAD', ':path': '/len' });
  assert.equal(head.status, 200);
  assert.equal(head.body.length, 0);
});

test('perimeter\'s own errors over HTTP/2: unknown site 421 PRM_UNKNOWN_SITE, :authority/Host mismatch 400, backend down 502', async (t) => {
  const { p, up, port } = await setup(t);
  const session = connect(port);
  t.after(() => void session.close());
  const r = await request(session, { ':path': '/', ':authority': 'nobody.example.com', accept: 'application/json' });
  assert.equal(r.status, 421);
  assert.equal(r.headers['x-perimeter-error'], 'PRM_UNKNOWN_SITE');
  assert.ok(r.headers['x-request-id']);
  assert.ok(r.headers['strict-transport-security']);
  assert.equal(JSON.parse(r.body.toString()).error.code, 'PRM_UNKNOWN_SITE');
  assert.equal(p.records.at(-1)!.errorCode, 'PRM_UNKNOWN_SITE');
  assert.equal(p.records.at(-1)!.httpVersion, 'HTTP/2');

  const m = await request(session, { ':path': '/', host: 'other.example.com' });
  assert.equal(m.status, 400);
  assert.equal(m.headers['x-perimeter-error'], 'PRM_HOST_MISMATCH');

  await up.stop();
  const down = await request(session, { ':path': '/' });
  assert.equal(down.status, 502);
  assert.equal(down.headers['x-perimeter-error'], 'PRM_UPSTREAM_CONNECT');
  // The session survives errors on its streams.
  await up.restart();
  assert.equal((await request(session, { ':path': '/' })).status, 200);
});

// ---- a raw HTTP/2 client, for what node:http2 refuses to send ----

function frame(type: number, flags: number, stream: number, payload: Buffer): Buffer {
  const h = Buffer.alloc(9);
  h.writeUIntBE(payload.length, 0, 3);
  h[3] = type;
  h[4] = flags;
  h.writeUInt32BE(stream, 5);
  return Buffer.concat([h, payload]);
}

/** HPACK literal header field without indexing, new name, no Huffman (RFC 7541 §6.2.2). */
function hpack(fields: [string, string][]): Buffer {
  return Buffer.concat(
    fields.map(([n, v]) => {
      assert.ok(n.length < 127 && v.length < 127);
      return Buffer.concat([Buffer.from([0, n.length]), Buffer.from(n), Buffer.from([v.length]), Buffer.from(v)]);
    }),
  );
}

interface RawFrame {
  type: number;
  flags: number;
  stream: number;
  payload: Buffer;
}

/** TLS + ALPN h2, preface and SETTINGS sent; collects the server's frames. */
async function rawSession(port: number): Promise<{ socket: tls.TLSSocket; frames: RawFrame[]; closed: Promise<void>; waitFor(pred: (f: RawFrame) => boolean, ms: number): Promise<RawFrame | undefined> }> {
  const socket = tls.connect({ port, host: '127.0.0.1', servername: 'a.example.com', ALPNProtocols: ['h2'], rejectUnauthorized: false });
  await new Promise<void>((resolve, reject) => {
    socket.once('secureConnect', resolve);
    socket.once('error', reject);
  });
  socket.on('error', () => {});
  assert.equal(socket.alpnProtocol, 'h2');
  const frames: RawFrame[] = [];
  let buf = Buffer.alloc(0);
  const waiters = new Set<() => void>();
  socket.on('data', (d: Buffer) => {
    buf = Buffer.concat([buf, d]);
    while (buf.length >= 9) {
      const len = buf.readUIntBE(0, 3);
      if (buf.length < 9 + len) break;
      frames.push({ type: buf[3]!, flags: buf[4]!, stream: buf.readUInt32BE(5), payload: buf.subarray(9, 9 + len) });
      buf = buf.subarray(9 + len);
    }
    for (const w of waiters) w();
  });
  const closed = new Promise<void>((r) => socket.once('close', () => r()));
  socket.write(Buffer.concat([Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n'), frame(4, 0, 0, Buffer.alloc(0))]));
  const waitFor = (pred: (f: RawFrame) => boolean, ms: number): Promise<RawFrame | undefined> =>
    new Promise((resolve) => {
      const check = (): void => {
        const f = frames.find(pred);
        if (f) done(f);
      };
      const timer = setTimeout(() => done(undefined), ms);
      const done = (f: RawFrame | undefined): void => {
        clearTimeout(timer);
        waiters.delete(check);
        resolve(f);
      };
      waiters.add(check);
      check();
    });
  return { socket, frames, closed, waitFor };
}

const BASE: [string, string][] = [
  [':method', 'GET'],
  [':scheme', 'https'],
  [':path', '/'],
  [':authority', 'a.example.com'],
];

test('connection-specific request headers make the stream malformed: RST_STREAM PROTOCOL_ERROR, nothing reaches a backend', async (t) => {
  const { up, port } = await setup(t);
  const raw = await rawSession(port);
  t.after(() => void raw.socket.destroy());
  const bad: [string, string][] = [
    ['connection', 'keep-alive'],
    ['keep-alive', '5'],
    ['proxy-connection', 'keep-alive'],
    ['transfer-encoding', 'chunked'],
    ['upgrade', 'websocket'],
    ['te', 'gzip'],
  ];
  let id = 1;
  for (const field of bad) {
    raw.socket.write(frame(1, 0x5, id, hpack([...BASE, field])));
    const rst = await raw.waitFor((f) => f.stream === id && (f.type === 3 || f.type === 1), 2000);
    assert.ok(rst, `${field[0]}: an answer`);
    assert.equal(rst.type, 3, `${field[0]}: RST_STREAM`);
    assert.equal(rst.payload.readUInt32BE(0), http2.constants.NGHTTP2_PROTOCOL_ERROR);
    id += 2;
  }
  // te: trailers is allowed, and the connection is still usable.
  raw.socket.write(frame(1, 0x5, id, hpack([...BASE, ['te', 'trailers']])));
  const ok = await raw.waitFor((f) => f.stream === id && f.type === 1, 2000);
  assert.ok(ok, 'te: trailers is served');
  assert.equal(up.received.length, 1);
  assert.equal(up.received[0]!.headers['te'], undefined);
});

test('many concurrent streams on one connection are all served', async (t) => {
  const { up, port } = await setup(t);
  up.setDelay(100);
  const session = connect(port);
  t.after(() => void session.close());
  const n = 120;
  const t0 = Date.now();
  const all = await Promise.all(Array.from({ length: n }, (_, i) => request(session, { ':path': `/c${i}` })));
  assert.equal(all.filter((r) => r.status === 200).length, n);
  assert.equal(up.received.length, n);
  // Concurrent, not one after another (120 × 100 ms).
  assert.ok(Date.now() - t0 < 3000, `took ${Date.now() - t0} ms`);
  const settings = session.remoteSettings;
  assert.equal(settings.maxConcurrentStreams, 128);
});

test('streams leave nothing behind: the connection gauge counts an HTTP/2 connection once, and 0 once it closes', async (t) => {
  const { p, port } = await setup(t);
  const session = connect(port);
  // One after another, then many at once: every stream's exchange is released when it is done.
  for (let i = 0; i < 30; i++) assert.equal((await request(session, { ':path': `/s${i}` })).status, 200);
  const all = await Promise.all(Array.from({ length: 60 }, (_, i) => request(session, { ':path': `/c${i}` })));
  assert.equal(all.filter((r) => r.status === 200).length, 60);
  assert.equal(await settledClientConnections(p, 'https', 1), 1, 'one HTTP/2 connection; its 90 finished streams are not counted');
  session.close();
  assert.equal(await settledClientConnections(p, 'https', 0), 0, 'nothing left once the connection closed');
});

test('a client that half-closes its HTTP/2 connection (FIN) has it closed at once, not kept until client-idle', async (t) => {
  const { p, port } = await setup(t);
  const sock = tls.connect({ host: '127.0.0.1', port, servername: 'a.example.com', ALPNProtocols: ['h2'], rejectUnauthorized: false });
  sock.on('error', () => {});
  const closed = new Promise<void>((resolve) => sock.once('close', () => resolve()));
  const session = http2.connect('https://a.example.com', { createConnection: () => sock });
  session.on('error', () => {});
  assert.equal((await request(session, { ':path': '/before-fin' })).status, 200);
  assert.equal(await settledClientConnections(p, 'https', 1), 1);
  sock.end(); // FIN: the client sends nothing more, and still reads
  const ended = await Promise.race([closed.then(() => true), new Promise<boolean>((r) => setTimeout(() => r(false), 3000))]);
  assert.ok(ended, 'perimeter ended its side too (FIN) within 3 s');
  assert.equal(await settledClientConnections(p, 'https', 0), 0, 'the session is gone, not waiting for client-idle (60 s)');
});

test('over HTTP/1.1 on the same listener, a request followed at once by FIN still gets its answer', async (t) => {
  const { port } = await setup(t);
  const sock = tls.connect({ host: '127.0.0.1', port, servername: 'a.example.com', ALPNProtocols: ['http/1.1'], rejectUnauthorized: false });
  sock.on('error', () => {});
  let text = '';
  sock.on('data', (c: Buffer) => (text += c.toString('latin1')));
  await new Promise<void>((resolve) => sock.once('secureConnect', () => resolve()));
  assert.equal(sock.alpnProtocol, 'http/1.1');
  sock.end('GET /half HTTP/1.1\r\nHost: a.example.com\r\n\r\n');
  await new Promise<void>((resolve) => sock.once('close', () => resolve()));
  assert.match(text, /^HTTP\/1\.1 200 /);
});

test('h2load completes a run over HTTP/2 with zero errors, and leaves nothing behind', { timeout: 20_000 }, async (t) => {
  const { p, up, port } = await setup(t);
  const out = await new Promise<string>((resolve, reject) => {
    execFile('h2load', ['-n', '2000', '-c', '4', '-m', '10', `https://localhost:${port}/`], { timeout: 15_000 }, (err, stdout, stderr) => {
      if (err) reject(new Error(`h2load failed: ${err.message}\n${stdout}\n${stderr}`));
      else resolve(stdout);
    });
  });
  assert.match(out, /Application protocol: h2/);
  assert.match(out, /requests: 2000 total, 2000 started, 2000 done, 2000 succeeded, 0 failed, 0 errored, 0 timeout/, out);
  assert.match(out, /status codes: 2000 2xx/);
  assert.equal(up.received.length, 2000);
  // h2load has closed its connections: none of them, and none of their 2,000 streams, is left
  // (each stream's exchange once stayed tracked for ever: about 4 KiB per request).
  assert.equal(await settledClientConnections(p, 'https', 0), 0, 'nothing left once h2load is done');
});

test('a rapid-reset flood is cut off (GOAWAY) while another client is served', { timeout: 20_000 }, async (t) => {
  const { up, port } = await setup(t);
  up.setDelay(20);
  const good = connect(port);
  const flood = connect(port);
  t.after(() => {
    good.destroy();
    flood.destroy();
  });
  await Promise.all([new Promise((r) => good.once('connect', r)), new Promise((r) => flood.once('connect', r))]);
  const goaway = new Promise<number>((resolve) => flood.once('goaway', (code: number) => resolve(code)));
  const floodClosed = new Promise<void>((resolve) => flood.once('close', () => resolve()));
  let sent = 0;
  // The flood: open a stream and reset it at once, 5000 times, in bursts of
  // 50 with a pause for the frames to leave (a client waiting for nothing).
  const flooding = (async (): Promise<void> => {
    for (let burst = 0; burst < 100 && !flood.destroyed && !flood.closed; burst++) {
      for (let i = 0; i < 50 && !flood.destroyed && !flood.closed; i++) {
        try {
          const req = flood.request({ ':path': '/flood', ':authority': 'a.example.com' });
          req.on('error', () => {});
          req.close(http2.constants.NGHTTP2_CANCEL);
          sent++;
        } catch {
          return;
        }
      }
      await new Promise((r) => setTimeout(r, 5));
    }
  })();
  // Meanwhile, the good client's requests are answered.
  const served = await Promise.all(Array.from({ length: 20 }, (_, i) => request(good, { ':path': `/good${i}` })));
  assert.equal(served.filter((r) => r.status === 200).length, 20);
  await flooding;
  const code = await Promise.race([goaway, new Promise<number>((r) => setTimeout(() => r(-1), 5000))]);
  // perimeter's guard (ENHANCE_YOUR_CALM) trips first; nghttp2's own reset
  // rate limit (INTERNAL_ERROR) is the backstop for bursts within one read.
  assert.equal(code, http2.constants.NGHTTP2_ENHANCE_YOUR_CALM, `GOAWAY after ${sent} resets`);
  const flooded = up.received.filter((r) => r.url === '/flood').length;
  assert.ok(flooded < 400, `${flooded} flood requests reached the backend`);
  await Promise.race([floodClosed, new Promise((r) => setTimeout(r, 5000))]);
  assert.ok(flood.destroyed || flood.closed, 'flood session closed');
  assert.ok(sent < 5000, `cut off before the flood ended (${sent} streams sent)`);
  // And the good client still works afterwards.
  assert.equal((await request(good, { ':path': '/after' })).status, 200);
});

test('a CONTINUATION flood is cut off', async (t) => {
  const { up, port } = await setup(t);
  const raw = await rawSession(port);
  t.after(() => void raw.socket.destroy());
  // HEADERS without END_HEADERS, then endless CONTINUATION frames (CVE-2024-27983 style).
  raw.socket.write(frame(1, 0x1, 1, hpack(BASE)));
  const filler = frame(9, 0, 1, hpack([['x-a', 'b'.repeat(100)]]));
  let written = 0;
  let closed = false;
  void raw.closed.then(() => (closed = true));
  while (!closed && written < 20_000) {
    if (!raw.socket.write(filler)) await new Promise((r) => setTimeout(r, 5));
    written++;
    if (written % 500 === 0) await new Promise((r) => setImmediate(r));
  }
  await Promise.race([raw.closed, new Promise((r) => setTimeout(r, 5000))]);
  assert.ok(closed || raw.frames.some((f) => f.type === 7), `connection closed or GOAWAY (after ${written} frames)`);
  assert.equal(up.received.length, 0);
});

test('header list limits: a head over header-bytes gets 431 PRM_HEADERS_TOO_LARGE, a far larger one is refused by HTTP/2 itself', async (t) => {
  const { up, port } = await setup(t);
  const session = connect(port);
  t.after(() => void session.close());
  // Default header-bytes is 32k.
  const r = await request(session, { ':path': '/', 'x-big': 'v'.repeat(33 * 1024) });
  assert.equal(r.status, 431);
  assert.equal(r.headers['x-perimeter-error'], 'PRM_HEADERS_TOO_LARGE');
  // Default header-count is 100.
  const many: http2.OutgoingHttpHeaders = { ':path': '/' };
  for (let i = 0; i < 101; i++) many[`x-h${i}`] = 'v';
  assert.equal((await request(session, many)).status, 431);
  // Beyond the announced SETTINGS_MAX_HEADER_LIST_SIZE nghttp2 never buffers it.
  assert.ok(session.remoteSettings.maxHeaderListSize! <= 2 * 32 * 1024 + 4096);
  const huge = await request(session, { ':path': '/', 'x-huge': 'v'.repeat(200 * 1024) }).then(
    (res) => res.status,
    (err: Error & { code?: string }) => err.code ?? 'error',
  );
  assert.notEqual(huge, 200);
  assert.equal(up.received.length, 0);
});

test('streams above SETTINGS_MAX_CONCURRENT_STREAMS (128) are refused with REFUSED_STREAM', async (t) => {
  const { up, port } = await setup(t);
  up.setDelay(300);
  const raw = await rawSession(port);
  t.after(() => void raw.socket.destroy());
  // 140 requests at once, ignoring the server's SETTINGS (as a hostile client would).
  const frames: Buffer[] = [];
  for (let i = 0; i < 140; i++) frames.push(frame(1, 0x5, 1 + 2 * i, hpack(BASE)));
  raw.socket.write(Buffer.concat(frames));
  await raw.waitFor((f) => f.type === 3, 2000);
  await new Promise((r) => setTimeout(r, 100));
  const refused = raw.frames.filter((f) => f.type === 3 && f.payload.readUInt32BE(0) === http2.constants.NGHTTP2_REFUSED_STREAM);
  assert.equal(refused.length, 12);
  assert.ok(refused.every((f) => f.stream > 2 * 128), 'the first 128 streams were accepted');
});

test('an answer before the request body ended stops the upload (RST_STREAM NO_ERROR after a complete response)', async (t) => {
  const { up, port } = await setup(t);
  const session = connect(port);
  t.after(() => void session.close());
  // Unknown site, a body that never ends: 421 at once, then the stream is closed.
  const r = await new Promise<{ status: number; body: string; rst: number | undefined }>((resolve, reject) => {
    const req = session.request({ ':method': 'POST', ':path': '/', ':authority': 'nobody.example.com' }, { endStream: false });
    req.write(Buffer.alloc(100_000, 'z'));
    let status = 0;
    let body = '';
    req.on('response', (h) => (status = Number(h[':status'])));
    req.setEncoding('utf8');
    req.on('data', (c: string) => (body += c));
    req.on('close', () => resolve({ status, body, rst: req.rstCode }));
    req.on('error', reject);
  });
  assert.equal(r.status, 421);
  assert.match(r.body, /PRM_UNKNOWN_SITE/);
  assert.equal(r.rst, http2.constants.NGHTTP2_NO_ERROR);
  assert.equal(up.received.length, 0);
  assert.equal((await request(session, { ':path': '/' })).status, 200);
});

test('client-idle closes an HTTP/2 session without open streams, and never one whose stream waits on the backend', { timeout: 20_000 }, async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'perimeter-h2-idle-'));
  const cert = makeCert(dir, 'a', ['a.example.com']);
  const up = await startUpstream();
  const p = await startPerimeter({
    perimeter: tlsPlatformYaml({ backendPort: up.port, certs: [cert], extra: '    timeouts: { client-idle: 1s, response: 10s }' }),
    sites: { 'team.yaml': 'a.example.com:\n  service: app\n' },
  });
  t.after(async () => {
    await p.close();
    await up.close();
    await rm(dir, { recursive: true, force: true });
  });
  const port = p.runtime.bound().find((l) => l.protocol === 'https')!.port;
  const closedWithin = (s: http2.ClientHttp2Session): Promise<number> => {
    const t0 = Date.now();
    return new Promise((resolve) => s.once('close', () => resolve(Date.now() - t0)));
  };

  // Idle: one answered request, then nothing. The session goes after client-idle (1 s).
  const idle = connect(port);
  assert.equal((await request(idle, { ':path': '/a' })).status, 200);
  const idleClosed = await closedWithin(idle);
  assert.ok(idleClosed >= 700 && idleClosed < 5000, `idle session closed after ${idleClosed} ms`);

  // Busy: a stream waiting 2.5 s on the backend, longer than client-idle. Not closed under it.
  up.setDelay(2500);
  const busy = connect(port);
  t.after(() => void busy.destroy());
  let busyClosedAt = 0;
  const t0 = Date.now();
  busy.once('close', () => (busyClosedAt = Date.now() - t0));
  const r = await request(busy, { ':path': '/slow' });
  assert.equal(r.status, 200);
  assert.ok(Date.now() - t0 >= 2400, 'the answer came after the backend delay');
  assert.equal(busyClosedAt, 0, 'the session stayed open while its stream waited');
  // ...and once its stream is answered, client-idle applies again.
  up.setDelay(0);
  const after = await closedWithin(busy);
  assert.ok(after < 5000, `closed ${after} ms after the answer`);
});

test('streams of one session to two sites: each request gets its own Host and forwarding fields', async (t) => {
  const { up, port } = await setup(t);
  const session = connect(port);
  t.after(() => void session.close());
  // Alternating sites on one connection, concurrently and one after another.
  const authorities = ['a.example.com', 'localhost', 'a.example.com', 'localhost', 'localhost', 'a.example.com'];
  const first = await Promise.all(authorities.slice(0, 3).map((a, i) => request(session, { ':authority': a, ':path': `/s${i}` })));
  const rest: H2Response[] = [];
  for (const [i, a] of authorities.slice(3).entries()) rest.push(await request(session, { ':authority': a, ':path': `/s${i + 3}` }));
  for (const r of [...first, ...rest]) assert.equal(r.status, 200);
  assert.equal(up.received.length, authorities.length);
  for (const got of up.received) {
    const i = Number(got.url.slice(2));
    const host = authorities[i]!;
    assert.equal(got.headers['host'], host, `request ${i}`);
    assert.equal(got.headers['x-forwarded-host'], host, `request ${i}`);
    assert.equal(got.headers['forwarded'], `for=127.0.0.1;host=${host};proto=https`, `request ${i}`);
    assert.equal(got.headers['x-forwarded-for'], '127.0.0.1', `request ${i}`);
  }
});
