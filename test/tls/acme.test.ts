/**
 * ACME against a real CA: Debian's pebble, started per test, validating
 * challenges that this test serves from the manager (HTTP-01 on pebble's
 * httpPort, TLS-ALPN-01 on its tlsPort).
 */
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import * as http from 'node:http';
import { request } from 'node:https';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type { AddressInfo, Server, Socket } from 'node:net';
import * as tls from 'node:tls';
import { pino } from 'pino';
import type { AcmeChallenge, AcmeSpec } from '../../src/config/types.js';
import { AcmeManager, ariCertId, type AcmeTimings } from '../../src/tls/acme.js';
import { startPebble, type Pebble } from '../helpers/pebble.js';

const fast: AcmeTimings = { backoffMinMs: 100, backoffMaxMs: 1_000, leaseMs: 5_000, leasePollMs: 100, pollMinMs: 50, pollMaxMs: 300 };

interface Issued {
  readonly domain: string;
  readonly cert: string;
  readonly key: string;
  readonly notAfter: Date;
}

interface Harness {
  readonly pebble: Pebble;
  readonly storage: string;
  readonly httpHits: string[];
  readonly tlsHits: string[];
  readonly logs: Record<string, unknown>[];
  readonly managers: AcmeManager[];
  manager(opts?: { challenges?: AcmeChallenge[]; renewBeforeMs?: number; directory?: string; timings?: AcmeTimings }): { m: AcmeManager; issued: Issued[]; next(): Promise<Issued> };
}

async function harness(t: TestContext): Promise<Harness> {
  const storage = mkdtempSync(path.join(tmpdir(), 'perimeter-acme-'));
  const managers: AcmeManager[] = [];
  const httpHits: string[] = [];
  const tlsHits: string[] = [];
  const logs: Record<string, unknown>[] = [];
  const log = pino({ level: 'debug' }, { write: (s: string) => void logs.push(JSON.parse(s) as Record<string, unknown>) });

  // What a perimeter http listener does for /.well-known/acme-challenge/.
  const httpServer = http.createServer((req, res) => {
    const m = /^\/\.well-known\/acme-challenge\/([A-Za-z0-9_-]+)$/.exec(req.url ?? '');
    const answer = m ? managers.map((x) => x.httpChallenge(m[1]!)).find((v) => v !== undefined) : undefined;
    httpHits.push(req.url ?? '');
    res.writeHead(answer ? 200 : 404, { 'content-type': 'text/plain' }).end(answer ?? 'not found');
  });
  // What a perimeter https listener does for a handshake offering acme-tls/1.
  const tlsConnections = new Set<Socket>();
  const tlsServer = tls.createServer({
    ALPNProtocols: ['acme-tls/1'],
    SNICallback: (name, cb) => {
      tlsHits.push(name);
      const pair = managers.map((x) => x.tlsAlpnCertificate(name)).find((v) => v !== undefined);
      cb(pair ? null : new Error('no challenge'), pair ? tls.createSecureContext(pair) : undefined);
    },
  });
  tlsServer.on('connection', (s: Socket) => {
    tlsConnections.add(s);
    s.on('close', () => tlsConnections.delete(s));
  });
  tlsServer.on('tlsClientError', () => undefined);
  const started: { pebble?: Pebble } = {};
  // Registered before anything can fail, so a failed start leaves nothing running (a leftover
  // listener or pebble keeps the test process alive for ever).
  t.after(async () => {
    await Promise.all(managers.map((m) => m.close()));
    httpServer.closeAllConnections();
    for (const s of tlsConnections) s.destroy();
    await new Promise((r) => (httpServer.listening ? httpServer.close(r) : r(undefined)));
    await new Promise((r) => (tlsServer.listening ? tlsServer.close(r) : r(undefined)));
    await started.pebble?.stop();
    rmSync(storage, { recursive: true, force: true });
  });
  // The challenge listeners take free ports first and pebble is told them: a port picked free
  // and bound later can be taken in between by a test running beside this one.
  const httpPort = await listen(httpServer);
  const tlsPort = await listen(tlsServer);
  const pebble = await startPebble({ httpPort, tlsPort });
  started.pebble = pebble;

  return {
    pebble,
    storage,
    httpHits,
    tlsHits,
    logs,
    managers,
    manager(opts = {}) {
      const spec: AcmeSpec = {
        directory: opts.directory ?? pebble.directoryUrl,
        email: 'platform@example.com',
        storage,
        challenges: opts.challenges ?? ['http-01', 'tls-alpn-01'],
        caFile: pebble.caFile,
        ...(opts.renewBeforeMs !== undefined ? { renewBeforeMs: opts.renewBeforeMs } : {}),
      };
      const issued: Issued[] = [];
      const waiters: ((i: Issued) => void)[] = [];
      let seen = 0;
      const m = new AcmeManager(spec, log, {
        onCertificate(domain, pem) {
          const i = { domain, ...pem };
          issued.push(i);
          waiters.shift()?.(i);
        },
      }, opts.timings ?? fast);
      managers.push(m);
      return {
        m,
        issued,
        // The next certificate event after those already consumed.
        next: () =>
          new Promise<Issued>((resolve, reject) => {
            const i = issued[seen];
            if (i) {
              seen++;
              resolve(i);
              return;
            }
            const timer = setTimeout(() => reject(new Error(`no certificate in time; logs: ${JSON.stringify(logs.slice(-5))}`)), 15_000);
            waiters.push((x) => {
              clearTimeout(timer);
              seen++;
              resolve(x);
            });
          }),
      };
    },
  };
}

/** Listen on a free loopback port and give it; an error (not a hang) when it cannot. */
function listen(server: Server): Promise<number> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      server.off('error', reject);
      resolve((server.address() as AddressInfo).port);
    });
  });
}

/** Serve the certificate and connect with pebble's root as the only trust anchor. */
async function verifyServes(issued: Issued, root: string): Promise<void> {
  const server = tls.createServer({ cert: issued.cert, key: issued.key });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as { port: number }).port;
  try {
    await new Promise<void>((resolve, reject) => {
      const s = tls.connect({ host: '127.0.0.1', port, servername: issued.domain, ca: root }, () => {
        try {
          assert.equal(s.authorized, true, String(s.authorizationError));
          const leaf = s.getPeerX509Certificate();
          assert.ok(leaf?.checkHost(issued.domain), 'leaf names the domain');
          resolve();
        } catch (e) {
          reject(e as Error);
        } finally {
          s.end();
        }
      });
      s.on('error', reject);
    });
  } finally {
    await new Promise((r) => server.close(r));
  }
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

test('HTTP-01: a new domain gets a certificate that chains to the CA root, stored 0600 in a 0700 directory', { timeout: 30_000 }, async (t) => {
  const h = await harness(t);
  h.pebble.addDomain('www.example.test');
  const { m, next } = h.manager({ challenges: ['http-01'] });
  m.setDomains(['www.example.test']);
  const got = await next();
  assert.equal(got.domain, 'www.example.test');
  assert.ok(got.notAfter.getTime() > Date.now() + 86400_000);
  assert.ok(h.httpHits.some((u) => u.startsWith('/.well-known/acme-challenge/')), 'pebble fetched the HTTP-01 response');
  assert.equal(h.tlsHits.length, 0);
  await verifyServes(got, await h.pebble.root());
  assert.equal(m.orders, 1);
  assert.deepEqual([...m.certificates().keys()], ['www.example.test']);
  assert.equal(m.certificates().get('www.example.test')?.source, 'acme');
  // The answered challenge is withdrawn.
  const token = h.httpHits.find((u) => u.startsWith('/.well-known/'))!.split('/').pop()!;
  assert.equal(m.httpChallenge(token), undefined);

  assert.equal(statSync(h.storage).mode & 0o777, 0o700);
  const [caDir] = readdirSync(h.storage);
  const files = [path.join(h.storage, caDir!, 'account.key'), path.join(h.storage, caDir!, 'certs', 'www.example.test.pem')];
  for (const f of files) assert.equal(statSync(f).mode & 0o777, 0o600, f);
  assert.ok(h.logs.some((l) => l.event === 'acme.order' && l.domain === 'www.example.test'));
});

test('TLS-ALPN-01: the certificate is obtained through an acme-tls/1 handshake', { timeout: 30_000 }, async (t) => {
  const h = await harness(t);
  h.pebble.addDomain('alpn.example.test');
  const { m, next } = h.manager({ challenges: ['tls-alpn-01'] });
  m.setDomains(['alpn.example.test']);
  const got = await next();
  assert.ok(h.tlsHits.includes('alpn.example.test'), 'pebble made the acme-tls/1 handshake');
  assert.equal(h.httpHits.length, 0, 'no HTTP-01 validation');
  await verifyServes(got, await h.pebble.root());
  assert.equal(m.tlsAlpnCertificate('alpn.example.test'), undefined, 'challenge certificate withdrawn');
});

test('restart: a new manager on the same storage reuses the certificate without ordering', { timeout: 30_000 }, async (t) => {
  const h = await harness(t);
  h.pebble.addDomain('keep.example.test');
  const first = h.manager();
  first.m.setDomains(['keep.example.test']);
  const a = await first.next();
  await first.m.close();
  assert.equal(h.pebble.issued, 1);

  const second = h.manager();
  second.m.setDomains(['keep.example.test']);
  const b = await second.next();
  assert.equal(b.cert, a.cert);
  assert.equal(b.key, a.key);
  await sleep(500);
  assert.equal(second.m.orders, 0);
  assert.equal(h.pebble.issued, 1, 'the CA issued nothing more');
  assert.ok(h.logs.some((l) => l.event === 'acme.certificate.stored'));
});

test('renewal: a certificate within renew-before is renewed and announced again', { timeout: 30_000 }, async (t) => {
  const h = await harness(t);
  h.pebble.addDomain('renew.example.test');
  // Pebble issues certificates for years; a renew-before longer than that
  // makes every certificate due at once.
  const { m, next } = h.manager({ renewBeforeMs: 50 * 365 * 86400_000 });
  m.setDomains(['renew.example.test']);
  const a = await next();
  const b = await next();
  await m.close();
  assert.notEqual(b.cert, a.cert);
  assert.notEqual(b.key, a.key, 'a renewal uses a fresh key');
  assert.ok(m.orders >= 2);
  assert.ok(h.logs.some((l) => l.event === 'acme.renewal' && l.domain === 'renew.example.test'));
  await verifyServes(b, await h.pebble.root());
});

test('two managers on one storage directory order once; the other picks the certificate up', { timeout: 30_000 }, async (t) => {
  const h = await harness(t);
  h.pebble.addDomain('shared.example.test');
  const one = h.manager();
  const two = h.manager();
  one.m.setDomains(['shared.example.test']);
  two.m.setDomains(['shared.example.test']);
  const [a, b] = await Promise.all([one.next(), two.next()]);
  assert.equal(a.cert, b.cert);
  assert.equal(one.m.orders + two.m.orders, 1);
  await sleep(300);
  assert.equal(h.pebble.issued, 1);
  assert.ok(h.logs.some((l) => l.event === 'acme.lease.busy'));
});

test('a stale lease of a dead host is taken over', { timeout: 30_000 }, async (t) => {
  const h = await harness(t);
  h.pebble.addDomain('stale.example.test');
  const { m, next } = h.manager();
  // Created after the manager made the storage layout.
  const [caDir] = readdirSync(h.storage);
  writeFileSync(path.join(h.storage, caDir!, 'locks', 'stale.example.test.lock'), JSON.stringify({ owner: 'dead-host:1:0', expires: Date.now() - 1_000 }));
  m.setDomains(['stale.example.test']);
  await next();
  assert.equal(m.orders, 1);
});

test('failures back off: a CA refusing every request is retried with growing delays, not hammered', { timeout: 30_000 }, async (t) => {
  const h = await harness(t);
  let requests = 0;
  const refusing = http.createServer((_req, res) => {
    requests++;
    res.writeHead(400, { 'content-type': 'application/problem+json' }).end(JSON.stringify({ type: 'urn:ietf:params:acme:error:malformed', detail: 'no' }));
  });
  await new Promise<void>((r) => refusing.listen(0, '127.0.0.1', r));
  t.after(() => new Promise((r) => refusing.close(r)));
  const { m } = h.manager({ directory: `http://127.0.0.1:${(refusing.address() as { port: number }).port}/dir`, timings: { ...fast, backoffMinMs: 100, backoffMaxMs: 400 } });
  m.setDomains(['down.example.test']);
  await sleep(1_500);
  await m.close();
  assert.ok(requests >= 3 && requests <= 20, `requests: ${requests}`);
  const failures = h.logs.filter((l) => l.event === 'acme.order.failed');
  // 100·(0.5..1), 200·…, 400·…, 400·…: at most ~8 tries in 1.5 s, at least 3.
  assert.ok(failures.length >= 3 && failures.length <= 9, `failures: ${failures.length}`);
  const delays = failures.map((l) => l.retryInMs as number);
  assert.ok(delays.every((d) => d <= 400));
  assert.ok(delays.slice(2).every((d) => d >= 200), `delays grow: ${delays.join(',')}`);
});

test('ARI: the CA suggested window decides renewal; the renewal order names the certificate it replaces', { timeout: 30_000 }, async (t) => {
  const h = await harness(t);
  h.pebble.addDomain('ari.example.test');
  // Pebble 2.4 has no renewalInfo: a directory in front of it adds one.
  const ca = readFileSync(h.pebble.caFile, 'utf8');
  const asked: string[] = [];
  const renewNow = new Set<string>();
  const front = http.createServer((req, res) => {
    if (req.url === '/dir') {
      request(h.pebble.directoryUrl, { ca }, (up) => {
        let body = '';
        up.on('data', (c: Buffer) => (body += c.toString()));
        up.on('end', () => {
          const dir = JSON.parse(body) as Record<string, unknown>;
          dir.renewalInfo = `http://127.0.0.1:${(front.address() as { port: number }).port}/renewal-info`;
          res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(dir));
        });
      }).end();
      return;
    }
    const id = /^\/renewal-info\/(.+)$/.exec(req.url ?? '')?.[1];
    if (!id) return void res.writeHead(404).end();
    asked.push(id);
    const now = Date.now();
    const window = renewNow.has(id) ? { start: new Date(now - 7200_000), end: new Date(now - 3600_000) } : { start: new Date(now + 30 * 86400_000), end: new Date(now + 31 * 86400_000) };
    res.writeHead(200, { 'content-type': 'application/json', 'retry-after': '3600' }).end(JSON.stringify({ suggestedWindow: window }));
  });
  await new Promise<void>((r) => front.listen(0, '127.0.0.1', r));
  t.after(() => new Promise((r) => front.close(r)));

  const { m, next } = h.manager({ directory: `http://127.0.0.1:${(front.address() as { port: number }).port}/dir` });
  m.setDomains(['ari.example.test']);
  const a = await next();
  // The first certificate's window is in the future: no renewal.
  await sleep(300);
  assert.equal(m.orders, 1);
  const idA = ariCertId(a.cert)!;
  assert.ok(asked.includes(idA));
  const leaf = new X509Certificate(a.cert);
  assert.equal(Buffer.from(idA.split('.')[1]!, 'base64url').toString('hex').replace(/^0+/, '').toUpperCase(), leaf.serialNumber.toUpperCase().replace(/^0+/, ''));

  // Restart with the CA now asking for renewal of that certificate.
  await m.close();
  renewNow.add(idA);
  const again = h.manager({ directory: `http://127.0.0.1:${(front.address() as { port: number }).port}/dir` });
  again.m.setDomains(['ari.example.test']);
  const stored = await again.next();
  assert.equal(stored.cert, a.cert);
  const renewed = await again.next();
  assert.notEqual(renewed.cert, a.cert);
  assert.equal(again.m.orders, 1);
  await sleep(300);
  assert.equal(again.m.orders, 1, 'the new certificate is not due');
  assert.ok(h.logs.some((l) => l.event === 'acme.ari.window'));
  assert.ok(h.logs.some((l) => l.event === 'acme.renewal' && l.replaces === idA), 'the order carried replaces');
});
