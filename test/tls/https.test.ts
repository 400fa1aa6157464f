import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import http from 'node:http';
import https from 'node:https';
import tls from 'node:tls';
import net from 'node:net';
import { startUpstream } from '../helpers/upstream.js';
import { startPerimeter, writeConfig } from '../helpers/perimeter.js';
import { freePort, runPerimeter } from '../helpers/cli.js';
import { makeCert, type TestCert } from '../helpers/certs.js';
import { tlsPlatformYaml } from '../helpers/tls-platform.js';

function tlsConfig(backendPort: number, certs: { cert: string; key: string }[], extra = ''): { perimeter: string; sites: Record<string, string> } {
  return {
    perimeter: tlsPlatformYaml({ backendPort, certs, listen: '{ http: "127.0.0.1:0", https: "127.0.0.1:0" }', extra }),
    sites: { 'team.yaml': 'a.example.com:\n  service: app\nb.example.com:\n  service: app\n"*.c.example.com":\n  service: app\n' },
  };
}

/** The first bytes a TLS client sends (its ClientHello), captured on a plain TCP listener. */
async function captureClientHello(servername: string): Promise<Buffer> {
  const server = net.createServer();
  const got = new Promise<Buffer>((resolve) => server.once('connection', (s) => s.once('data', (d: Buffer) => {
    resolve(d);
    s.destroy();
  })));
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()));
  const c = tls.connect({ port: (server.address() as net.AddressInfo).port, host: '127.0.0.1', servername, rejectUnauthorized: false });
  c.on('error', () => {});
  const hello = await got;
  c.destroy();
  server.close();
  return hello;
}

/** A perimeter with one certificate (a.example.com) in front of one upstream, torn down after the test. */
async function tlsFixture(t: TestContext): Promise<{ dir: string; a: TestCert; up: Awaited<ReturnType<typeof startUpstream>>; p: Awaited<ReturnType<typeof startPerimeter>> }> {
  const dir = await mkdtemp(join(tmpdir(), 'perimeter-tls-'));
  const a = makeCert(dir, 'a', ['a.example.com']);
  const up = await startUpstream();
  const p = await startPerimeter(tlsConfig(up.port, [a]));
  t.after(async () => {
    await p.close();
    await up.close();
    await rm(dir, { recursive: true, force: true });
  });
  return { dir, a, up, p };
}

function handshake(port: number, servername: string | undefined, opts: tls.ConnectionOptions = {}): Promise<{ cert?: tls.PeerCertificate; error?: string; socket?: tls.TLSSocket }> {
  return new Promise((resolve) => {
    const s = tls.connect({ port, host: '127.0.0.1', servername, rejectUnauthorized: false, ...opts }, () => resolve({ cert: s.getPeerCertificate(), socket: s }));
    s.on('error', (e: Error & { code?: string }) => resolve({ error: e.code ?? e.message }));
  });
}

function httpsGet(port: number, host: string, path = '/', agent?: https.Agent): Promise<{ status: number; headers: http.IncomingHttpHeaders; body: string; socketCert: string }> {
  return new Promise((resolve, reject) => {
    const req = https.get({ host: '127.0.0.1', port, path, servername: host, headers: { host }, rejectUnauthorized: false, agent }, (res) => {
      const cn = (res.socket as tls.TLSSocket).getPeerCertificate().subject?.CN;
      const socketCert = Array.isArray(cn) ? cn.join(',') : (cn ?? '');
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => (body += c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body, socketCert }));
    });
    req.on('error', reject);
  });
}

test('SNI picks each site\'s certificate; an unknown name gets a TLS alert, not a certificate', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'perimeter-tls-'));
  const a = makeCert(dir, 'a', ['a.example.com']);
  const b = makeCert(dir, 'b', ['b.example.com', '*.c.example.com']);
  const up = await startUpstream();
  const p = await startPerimeter(tlsConfig(up.port, [a, b]));
  t.after(async () => {
    await p.close();
    await up.close();
    await rm(dir, { recursive: true, force: true });
  });
  const port = p.runtime.bound().find((l) => l.protocol === 'https')!.port;
  const ha = await handshake(port, 'a.example.com');
  assert.equal(ha.cert?.subject.CN, 'a.example.com');
  ha.socket?.destroy();
  const hb = await handshake(port, 'x.c.example.com');
  assert.equal(hb.cert?.subject.CN, 'b.example.com');
  hb.socket?.destroy();
  for (const name of ['unknown.example.com', undefined]) {
    const h = await handshake(port, name);
    // OpenSSL 3.0 (Node 20) says SSLV3_ALERT_..., 3.5 (Node 24) SSL/TLS_ALERT_...: the alert is handshake_failure either way.
    assert.match(h.error ?? 'connected', /^ERR_SSL_(SSLV3|SSL\/TLS)_ALERT_HANDSHAKE_FAILURE$/, `SNI ${name}`);
  }
});

test('HTTPS responses carry HSTS and X-Forwarded-Proto https; old protocols and CBC suites are refused', async (t) => {
  const { up, p } = await tlsFixture(t);
  const port = p.runtime.bound().find((l) => l.protocol === 'https')!.port;
  const r = await httpsGet(port, 'a.example.com', '/x');
  assert.equal(r.status, 200);
  assert.equal(r.headers['strict-transport-security'], 'max-age=31536000; includeSubDomains');
  assert.equal(up.received[0]!.headers['x-forwarded-proto'], 'https');
  assert.match(String(up.received[0]!.headers['forwarded']), /proto=https/);
  // perimeter's own answers carry it too.
  const e = await httpsGet(port, 'a.example.com', '/x');
  assert.ok(e.headers['strict-transport-security']);
  const old = await handshake(port, 'a.example.com', { maxVersion: 'TLSv1.1', minVersion: 'TLSv1' });
  assert.ok(old.error, 'TLS 1.1 refused');
  const cbc = await handshake(port, 'a.example.com', { maxVersion: 'TLSv1.2', ciphers: 'ECDHE-ECDSA-AES128-SHA256:ECDHE-ECDSA-AES128-SHA' });
  assert.ok(cbc.error, 'CBC suites refused');
  const t13 = await handshake(port, 'a.example.com', { minVersion: 'TLSv1.3' });
  assert.equal(t13.socket?.getProtocol(), 'TLSv1.3');
  t13.socket?.destroy();
  const t12 = await handshake(port, 'a.example.com', { maxVersion: 'TLSv1.2' });
  assert.equal(t12.socket?.getProtocol(), 'TLSv1.2');
  assert.match(t12.socket!.getCipher().name, /GCM|CHACHA20/);
  assert.equal((t12.socket?.getEphemeralKeyInfo() as { type?: string } | null)?.type, 'ECDH');
  t12.socket?.destroy();
});

test('the certificate expiry metric reports each served certificate', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'perimeter-tls-'));
  const a = makeCert(dir, 'a', ['a.example.com'], { days: 20 });
  const up = await startUpstream();
  const p = await startPerimeter(tlsConfig(up.port, [a]));
  t.after(async () => {
    await p.close();
    await up.close();
    await rm(dir, { recursive: true, force: true });
  });
  const text = await p.runtime.metrics.registry.metrics();
  assert.match(text, /perimeter_certificate_expiry_days\{cluster="web",name="a.example.com",source="file"\} (19|20)/);
});

/** A session ticket from one connection (read until the server's tickets arrived), then whether a second connection resumed with it. */
async function resumes(port: number, maxVersion: tls.SecureVersion): Promise<boolean> {
  const session = await new Promise<Buffer | undefined>((resolve, reject) => {
    const s = tls.connect({ port, host: '127.0.0.1', servername: 'a.example.com', rejectUnauthorized: false, maxVersion });
    let got: Buffer | undefined;
    s.on('session', (sess: Buffer) => {
      got = sess;
      // TLS 1.2: the ticket is part of the handshake.
      if (maxVersion === 'TLSv1.2') s.destroy();
    });
    // TLS 1.3 tickets come after the handshake: ask for a page and wait for the answer.
    s.once('secureConnect', () => s.write('GET / HTTP/1.1\r\nHost: a.example.com\r\nConnection: close\r\n\r\n'));
    s.on('data', () => {});
    s.on('close', () => resolve(got));
    s.on('error', reject);
  });
  if (session === undefined) throw new Error(`no ${maxVersion} session ticket arrived`);
  const again = await handshake(port, 'a.example.com', { session, maxVersion });
  const reused = again.socket?.isSessionReused() ?? false;
  again.socket?.destroy();
  return reused;
}

test('TLS sessions resume with tickets (TLS 1.2 and 1.3); session-tickets: false turns resumption off', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'perimeter-tls-'));
  const a = makeCert(dir, 'a', ['a.example.com']);
  const up = await startUpstream();
  const p = await startPerimeter(tlsConfig(up.port, [a]));
  const off = await startPerimeter(tlsConfig(up.port, [a], '      session-tickets: false'));
  t.after(async () => {
    await p.close();
    await off.close();
    await up.close();
    await rm(dir, { recursive: true, force: true });
  });
  const port = p.runtime.bound().find((l) => l.protocol === 'https')!.port;
  const offPort = off.runtime.bound().find((l) => l.protocol === 'https')!.port;
  for (const v of ['TLSv1.2', 'TLSv1.3'] as const) {
    assert.equal(await resumes(port, v), true, `${v} resumes by default`);
    assert.equal(await resumes(offPort, v), false, `${v} does not resume with session-tickets: false`);
  }
});

/** One connection with `session` (if any), a request and its answer; what the client got. */
function sessionRound(port: number, session?: Buffer): Promise<{ reused: boolean; tickets: number; session?: Buffer }> {
  return new Promise((resolve, reject) => {
    const s = tls.connect({ port, host: '127.0.0.1', servername: 'a.example.com', rejectUnauthorized: false, minVersion: 'TLSv1.3', session });
    let tickets = 0;
    let latest: Buffer | undefined;
    s.on('session', (sess: Buffer) => {
      tickets++;
      latest = sess;
    });
    // TLS 1.3 tickets come after the handshake: ask for a page and read the answer to its end.
    let reused = false;
    s.once('secureConnect', () => {
      reused = s.isSessionReused();
      s.write('GET / HTTP/1.1\r\nHost: a.example.com\r\nConnection: close\r\n\r\n');
    });
    s.on('data', () => {});
    s.on('close', () => resolve({ reused, tickets, session: latest }));
    s.on('error', reject);
  });
}

test('a resumed TLS 1.3 connection gets a new ticket: a client keeping only its latest session resumes every time; a foreign ticket gets a full handshake', async (t) => {
  const { p } = await tlsFixture(t);
  const port = p.runtime.bound().find((l) => l.protocol === 'https')!.port;
  const first = await sessionRound(port);
  assert.ok(first.tickets >= 1 && first.session !== undefined, 'a full handshake issues tickets');
  let session: Buffer | undefined = first.session;
  for (let i = 0; i < 5; i++) {
    const r = await sessionRound(port, session);
    assert.equal(r.reused, true, `connection ${i + 2} resumes`);
    assert.ok(r.tickets >= 1, `connection ${i + 2}: a resumed connection is given a new ticket (without one, this client's next connection is a full handshake)`);
    session = r.session; // only the newest, as curl and wrk keep
  }
  // A ticket another server issued: not accepted, a full handshake instead of an error.
  const dir = await mkdtemp(join(tmpdir(), 'perimeter-tls-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const other = makeCert(dir, 'other', ['a.example.com']);
  const foreign = tls.createServer({ cert: await readFile(other.cert), key: await readFile(other.key) }, (s) => s.end('HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n'));
  await new Promise<void>((resolve) => foreign.listen(0, '127.0.0.1', () => resolve()));
  t.after(() => foreign.close());
  const fromForeign = await sessionRound((foreign.address() as net.AddressInfo).port);
  assert.ok(fromForeign.session !== undefined);
  const r = await sessionRound(port, fromForeign.session);
  assert.equal(r.reused, false);
  assert.ok(r.tickets >= 1);
});

test('the http listener redirects sites to HTTPS (301 for GET, 308 otherwise)', async (t) => {
  const { up, p } = await tlsFixture(t);
  const httpPort = p.runtime.bound().find((l) => l.protocol === 'http')!.port;
  const httpsPort = p.runtime.bound().find((l) => l.protocol === 'https')!.port;
  const req = (method: string): Promise<{ status: number; location?: string }> =>
    new Promise((resolve, reject) => {
      const r = http.request({ host: '127.0.0.1', port: httpPort, method, path: '/p?q=1', headers: { host: 'a.example.com' } }, (res) => {
        res.resume();
        resolve({ status: res.statusCode ?? 0, location: res.headers.location });
      });
      r.on('error', reject);
      r.end(method === 'POST' ? 'body' : undefined);
    });
  assert.deepEqual(await req('GET'), { status: 301, location: `https://a.example.com:${httpsPort}/p?q=1` });
  assert.deepEqual(await req('POST'), { status: 308, location: `https://a.example.com:${httpsPort}/p?q=1` });
  assert.equal(up.requests, 0, 'nothing reached a backend over plain HTTP');
});

test('a certificate replaced on disk is served to new connections; existing connections continue', async (t) => {
  const { dir, a, p } = await tlsFixture(t);
  const port = p.runtime.bound().find((l) => l.protocol === 'https')!.port;
  const agent = new https.Agent({ keepAlive: true, maxSockets: 1 });
  const first = await httpsGet(port, 'a.example.com', '/', agent);
  const before = (await handshake(port, 'a.example.com')).cert!.fingerprint256;
  // Replace cert and key the way a deploy tool does: write aside, rename over.
  const next = makeCert(dir, 'next', ['a.example.com']);
  await writeFile(join(dir, 'a.key.tmp'), await readFile(next.key));
  await writeFile(join(dir, 'a.pem.tmp'), await readFile(next.cert));
  await rename(join(dir, 'a.key.tmp'), a.key);
  await rename(join(dir, 'a.pem.tmp'), a.cert);
  let after = before;
  const deadline = Date.now() + 8000;
  while (after === before && Date.now() < deadline) {
    await new Promise((r) => setTimeout(r, 200));
    const h = await handshake(port, 'a.example.com');
    after = h.cert!.fingerprint256;
    h.socket?.destroy();
  }
  assert.notEqual(after, before, 'new connections get the new certificate');
  // The keep-alive connection made before the change still serves.
  const again = await httpsGet(port, 'a.example.com', '/', agent);
  assert.equal(first.status, 200);
  assert.equal(again.status, 200);
  agent.destroy();
});

test('a reload that adds a site serves every certificate as before, from the same files; a keep-alive HTTPS connection goes on', async (t) => {
  const { dir, a, up, p } = await tlsFixture(t);
  const port = p.runtime.bound().find((l) => l.protocol === 'https')!.port;
  const agent = new https.Agent({ keepAlive: true, maxSockets: 1 });
  t.after(() => agent.destroy());
  const first = await httpsGet(port, 'a.example.com', '/', agent);
  const before = await handshake(port, 'a.example.com');
  before.socket?.destroy();
  const config = tlsConfig(up.port, [a]);
  await p.reload({ ...config, sites: { 'team.yaml': `${config.sites['team.yaml']}d.example.com:\n  service: app\n` } });
  const after = await handshake(port, 'a.example.com');
  after.socket?.destroy();
  assert.equal(after.cert?.fingerprint256, before.cert?.fingerprint256);
  const again = await httpsGet(port, 'a.example.com', '/', agent);
  assert.equal(first.status, 200);
  assert.equal(again.status, 200);
  // The new site is routed; no certificate names it, so its handshake ends with an alert.
  const d = await handshake(port, 'd.example.com');
  assert.match(d.error ?? 'connected', /ALERT_HANDSHAKE_FAILURE/);
  // A certificate replaced before the next reload is picked up by that reload, whatever the watcher does.
  const next = makeCert(dir, 'next', ['a.example.com']);
  await writeFile(a.key, await readFile(next.key));
  await writeFile(a.cert, await readFile(next.cert));
  await p.reload(config);
  const replaced = await handshake(port, 'a.example.com');
  replaced.socket?.destroy();
  assert.notEqual(replaced.cert?.fingerprint256, before.cert?.fingerprint256);
});

test('SIGTERM does not wait for clients stuck mid-handshake (half-sent ClientHello, FIN during the handshake)', { timeout: 60_000 }, async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'perimeter-tls-drain-'));
  const a = makeCert(dir, 'a', ['a.example.com']);
  const up = await startUpstream();
  const port = await freePort();
  const cfg = tlsConfig(up.port, [a]);
  await writeConfig(dir, { perimeter: cfg.perimeter.replace('https: "127.0.0.1:0"', `https: "127.0.0.1:${port}"`).replace('http: "127.0.0.1:0", ', ''), sites: cfg.sites });
  const p = runPerimeter(dir, ['--workers', '0', '--no-watch', '--drain-timeout', '30s']);
  const stuck: net.Socket[] = [];
  t.after(async () => {
    p.kill('SIGKILL');
    for (const s of stuck) s.destroy();
    await up.close();
    await rm(dir, { recursive: true, force: true });
  });
  await p.waitForLog((l) => l.event?.action === 'listen');
  // A served request first: the listener works.
  const ok = await httpsGet(port, 'a.example.com');
  assert.equal(ok.status, 200);
  const hello = await captureClientHello('a.example.com');
  for (let i = 0; i < 4; i++) {
    const s = net.connect({ port, host: '127.0.0.1' });
    s.on('error', () => {});
    s.on('data', () => {});
    await new Promise<void>((resolve) => s.once('connect', () => resolve()));
    // Half a ClientHello record and FIN (waits in the ClientHello peek), or
    // a whole one and FIN (waits in the TLS handshake).
    s.end(i % 2 === 0 ? hello.subarray(0, 20) : hello);
    stuck.push(s);
  }
  await new Promise((r) => setTimeout(r, 200));
  const signalAt = Date.now();
  p.kill('SIGTERM');
  const exit = await p.exited;
  t.diagnostic(`exit ${exit.code} after ${exit.at - signalAt} ms`);
  assert.equal(exit.code, 0);
  // Before the fix the drain waited for the 10 s ClientHello/handshake timeouts.
  assert.ok(exit.at - signalAt < 5000, `exited ${exit.at - signalAt} ms after SIGTERM`);
});

test('a client that sends its ClientHello and then FIN is closed after the request-header timeout (no CLOSE-WAIT for ever)', { timeout: 30_000 }, async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'perimeter-tls-stuck-'));
  const a = makeCert(dir, 'a', ['a.example.com']);
  const up = await startUpstream();
  const p = await startPerimeter(tlsConfig(up.port, [a], '    timeouts: { request-header: 1s }'));
  const socks: net.Socket[] = [];
  t.after(async () => {
    for (const s of socks) s.destroy();
    await p.close();
    await up.close();
    await rm(dir, { recursive: true, force: true });
  });
  const port = p.runtime.bound().find((l) => l.protocol === 'https')!.port;
  const hello = await captureClientHello('a.example.com');
  const t0 = Date.now();
  const closedAfter = await Promise.all(
    [hello.subarray(0, 20), hello].map(
      (bytes) =>
        new Promise<number>((resolve) => {
          const s = net.connect({ port, host: '127.0.0.1' }, () => s.end(bytes));
          socks.push(s);
          s.on('error', () => {});
          s.on('data', () => {});
          s.on('close', () => resolve(Date.now() - t0));
          setTimeout(() => resolve(Number.POSITIVE_INFINITY), 8000).unref();
        }),
    ),
  );
  t.diagnostic(`closed after ${closedAfter.join(', ')} ms`);
  for (const ms of closedAfter) assert.ok(ms < 4000, `server closed the stuck connection after ${ms} ms`);
});
