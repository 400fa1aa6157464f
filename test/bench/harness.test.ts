/**
 * The benchmark harness's pure parts (bench/harness.ts) and its idle-client
 * helper: what `npm run bench` computes its tables from. Needs no nginx,
 * HAProxy or wrk.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  haproxyConf, median, nginxBackendConf, nginxProxyConf, parseCpuInfo, parseProcStatTicks, parseStubStatus, parseVmRssKiB, parseWrk,
  parseWrkTime, perimeterPlatformYaml, perimeterSitesYaml, rotate, roundRatios, socketErrorTotal, summarize,
  summarizeProfile, SMALL_BODY, table, type CpuProfile,
  parseH2load,
  parseWrkSize,
  nginxTlsConf,
  haproxyTcpConf,
  perimeterTlsPlatformYaml,
  perimeterTcpPlatformYaml,
  versusPeer,
  formatPeerComparison,
  formatPeerLatency,
  benchCertArgs,
  BENCH_HOST,
  type PeerFigures,
  parseEnvOptions,
} from '../../bench/harness.js';
import { freePorts } from '../../bench/fixtures.js';
import { loadConfig } from '../../src/config/load.js';

// Verbatim output of wrk 4.1.0 (Debian) with --latency, one run with errors.
const WRK_OUT = `Running 3s test @ http://127.0.0.1:41217/small
  1 threads and 50 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     2.61ms    3.14ms  52.67ms   93.72%
    Req/Sec    21.05k     1.63k   23.51k    76.67%
  Latency Distribution
     50%    1.98ms
     75%    2.33ms
     90%    3.45ms
     99%   18.40ms
  62873 requests in 3.00s, 14.63MB read
  Socket errors: connect 0, read 12, write 3, timeout 1
  Non-2xx or 3xx responses: 7
Requests/sec:  20952.67
Transfer/sec:      4.88MB
`;

test('wrk output: throughput, percentiles in µs, socket errors and non-2xx', () => {
  const r = parseWrk(WRK_OUT);
  assert.equal(r.requests, 62873);
  assert.equal(r.durationS, 3);
  assert.equal(r.rps, 20952.67);
  assert.deepEqual(r.latencyUs, { p50: 1980, p75: 2330, p90: 3450, p99: 18400 });
  assert.deepEqual(r.socketErrors, { connect: 0, read: 12, write: 3, timeout: 1 });
  assert.equal(socketErrorTotal(r), 16);
  assert.equal(r.non2xx, 7);
});

test('wrk output without errors, and microsecond and second units', () => {
  const clean = WRK_OUT.replace(/ {2}Socket errors.*\n/, '').replace(/ {2}Non-2xx.*\n/, '').replace('1.98ms', '17.00us').replace('18.40ms', '1.02s');
  const r = parseWrk(clean);
  assert.equal(r.latencyUs.p50, 17);
  assert.equal(r.latencyUs.p99, 1_020_000);
  assert.equal(socketErrorTotal(r), 0);
  assert.equal(r.non2xx, 0);
  assert.equal(parseWrkTime('1.50m'), 90_000_000);
  assert.throws(() => parseWrkTime('12'), /not a wrk time/);
});

test('wrk output that is not a finished run is an error, not zeros', () => {
  assert.throws(() => parseWrk('unable to connect to 127.0.0.1:1 Connection refused\n'), /no summary/);
  assert.throws(() => parseWrk(WRK_OUT.replace(/ {2}Latency Distribution[\s\S]*?99%.*\n/, '')), /--latency/);
});

test('medians, min–max and per-round ratios', () => {
  assert.equal(median([3, 1, 2]), 2);
  assert.equal(median([4, 1, 3, 2]), 2.5);
  assert.ok(Number.isNaN(median([])));
  assert.deepEqual(summarize([10, 30, 20]), { median: 20, min: 10, max: 30, n: 3 });
  // Ratio within each round, then the median: a slow round for everyone does not move it.
  const r = roundRatios([20, 10, 30], [40, 20, 50]);
  assert.equal(r.median, 0.5);
  assert.equal(r.min, 0.5);
  assert.equal(r.max, 0.6);
  assert.equal(roundRatios([1], []).n, 0);
});

test('bench:builds --env: variables per build; a malformed option or an unknown build is an error', () => {
  const env = parseEnvOptions(['off:PERIMETER_LEAN_TLS=0', 'off:GLIBC_TUNABLES=glibc.malloc.tcache_count=256', 'on:X='], ['on', 'off']);
  assert.deepEqual(env.get('off'), { PERIMETER_LEAN_TLS: '0', GLIBC_TUNABLES: 'glibc.malloc.tcache_count=256' });
  assert.deepEqual(env.get('on'), { X: '' });
  assert.equal(parseEnvOptions([], ['on']).size, 0);
  assert.throws(() => parseEnvOptions(['PERIMETER_LEAN_TLS=0'], ['on']), /expected --env NAME:KEY=VALUE/);
  assert.throws(() => parseEnvOptions(['on:1X=0'], ['on']), /expected --env NAME:KEY=VALUE/);
  assert.throws(() => parseEnvOptions(['other:X=1'], ['on', 'off']), /'other', which is no build here \(builds: on, off\)/);
});

test('rounds rotate the order of contenders', () => {
  assert.deepEqual(rotate(['a', 'b', 'c'], 0), ['a', 'b', 'c']);
  assert.deepEqual(rotate(['a', 'b', 'c'], 1), ['b', 'c', 'a']);
  assert.deepEqual(rotate(['a', 'b', 'c'], 4), ['b', 'c', 'a']);
});

test('stub_status, VmRSS and the text table', () => {
  const s = parseStubStatus('Active connections: 2 \nserver accepts handled requests\n 105 105 998877 \nReading: 0 Writing: 1 Waiting: 1 \n');
  assert.deepEqual(s, { accepts: 105, handled: 105, requests: 998877 });
  assert.throws(() => parseStubStatus('<html>404</html>'), /stub_status/);
  assert.equal(parseVmRssKiB('Name:\tnode\nVmRSS:\t   51234 kB\nRssAnon:\t 1 kB\n'), 51234);
  assert.equal(table(['a', 'bb'], [['xyz', '1']]), 'a    bb\n---  --\nxyz   1');
});

test('/proc/PID/stat: utime and stime, counted from the last parenthesis of the command name', () => {
  const rest = 'S 1 2 2 0 -1 4194560 100 0 0 0 1234 567 0 0 20 0 1 0 99 3133440 388';
  assert.deepEqual(parseProcStatTicks(`4771 (node) ${rest}`), { user: 1234, system: 567 });
  assert.deepEqual(parseProcStatTicks(`4772 (a) b (c)) ${rest}`), { user: 1234, system: 567 });
  assert.throws(() => parseProcStatTicks('4773 (node) S 1'), /not a \/proc\/PID\/stat line/);
});

test('configurations: the same two answers behind every proxy, and perimeter accepts its own', async () => {
  assert.equal(Buffer.byteLength(SMALL_BODY), 100);
  const backend = nginxBackendConf('/tmp/x', { port: 9000, statusPort: 9001 });
  assert.match(backend, /worker_processes 1;/);
  assert.match(backend, /listen 127\.0\.0\.1:9000/);
  assert.match(backend, /return 200 "x{99}\\n"/);
  assert.match(backend, /stub_status/);
  const proxy = nginxProxyConf('/tmp/x', 'nginx', { port: 9100, backendPort: 9000, workers: 2 });
  assert.match(proxy, /worker_processes 2;/);
  assert.match(proxy, /keepalive \d+;/);
  assert.match(proxy, /proxy_set_header Connection "";/);
  assert.match(proxy, /include \/tmp\/x\/nginx\.change\.conf;/);
  const ha = haproxyConf('/tmp/x', { port: 9200, backendPort: 9000, generation: 3 });
  assert.match(ha, /nbthread 1/);
  assert.match(ha, /http-reuse always/);
  assert.match(ha, /X-Bench-Generation 3/);
  assert.match(ha, /server b1 127\.0\.0\.1:9000/);

  const dir = mkdtempSync(join(tmpdir(), 'bench-config-'));
  try {
    mkdirSync(join(dir, 'sites'));
    writeFileSync(join(dir, 'perimeter.yaml'), perimeterPlatformYaml({ port: 9300, backendPort: 9000 }));
    for (const generation of [0, 7]) {
      writeFileSync(join(dir, 'sites', 'bench.yaml'), perimeterSitesYaml(generation));
      const loaded = await loadConfig(dir);
      assert.ok(loaded.ok, loaded.ok ? '' : JSON.stringify(loaded.issues));
      const hosts = [...loaded.snapshot.sites.values()].map((s) => s.host).sort();
      assert.deepEqual(hosts, generation ? ['bench.test', 'change-7.bench.test'] : ['bench.test']);
      assert.equal(loaded.snapshot.accessLog, undefined, 'no access log, as nginx and HAProxy in the bench');
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('CPU profile summary: self time per function and per category', () => {
  const profile: CpuProfile = {
    nodes: [
      { id: 1, callFrame: { functionName: '(root)', url: '', lineNumber: -1 } },
      { id: 2, callFrame: { functionName: '(idle)', url: '', lineNumber: -1 } },
      { id: 3, callFrame: { functionName: 'parseRequestHead', url: 'file:///work/main/dist/src/web/http1.js', lineNumber: 109 } },
      { id: 4, callFrame: { functionName: 'writev', url: '', lineNumber: -1 } },
      { id: 5, callFrame: { functionName: 'onStreamRead', url: 'node:internal/stream_base_commons', lineNumber: 167 } },
    ],
    samples: [2, 3, 3, 4, 5, 3],
    timeDeltas: [1000, 1000, 1000, 2000, 1000, 1000],
  };
  const s = summarizeProfile(profile, 2);
  assert.equal(s.totalMs, 7);
  // writev (2 ms) comes before idle and onStreamRead (1 ms each).
  assert.deepEqual(s.top.map((e) => [e.name, e.where, e.category, e.selfMs]), [
    ['parseRequestHead', 'src/web/http1.js:110', 'perimeter', 3],
    ['writev', '', 'native', 2],
  ]);
  const cat = Object.fromEntries(s.categories.map((c) => [c.category, c.share]));
  assert.equal(cat.perimeter, 3 / 7);
  assert.equal(cat.native, 2 / 7);
  assert.equal(cat['node internals'], 1 / 7);
});

test('idle-clients helper holds keep-alive connections after one answered request each', async () => {
  const sockets = new Set<Socket>();
  let requests = 0;
  const server = createServer((s) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
    s.on('data', () => {
      requests++;
      s.write('HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nhello');
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as { port: number }).port;
  try {
    const child = spawn(process.execPath, ['dist/bench/idle-clients.js', String(port), '120', '150', 'bench.test', '/small'], { stdio: ['ignore', 'pipe', 'inherit'] });
    let out = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    let openSeen = 0;
    const timer = setInterval(() => {
      if (out.includes('"phase":"open"') && !openSeen) openSeen = sockets.size;
    }, 5);
    const code = await new Promise<number | null>((r) => child.on('exit', r));
    clearInterval(timer);
    assert.equal(code, 0);
    const [open, held] = out.trim().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>);
    assert.equal(open!.phase, 'open');
    assert.equal(open!.answered, 120);
    assert.equal(open!.failed, 0);
    assert.equal(held!.phase, 'held');
    assert.equal(held!.open, 120);
    assert.equal(held!.closedByPeer, 0);
    assert.equal(requests, 120);
    assert.equal(openSeen, 120, 'every connection was still open on the server while the helper held them');
  } finally {
    for (const s of sockets) s.destroy();
    await new Promise<void>((r) => server.close(() => r()));
  }
});

const H2LOAD_OUT = `starting benchmark...
spawning thread #0: 10 total client(s). Timing-based test with 0s of warm-up time and 2s of main duration for measurements.
Application protocol: h2

finished in 2.00s, 24183.50 req/s, 1.42MB/s
requests: 48367 total, 48467 started, 48367 done, 48360 succeeded, 4 failed, 2 errored, 1 timeout
status codes: 48360 2xx, 0 3xx, 3 4xx, 1 5xx
traffic: 2.83MB (2971580) total, 427.49KB (437752) headers (space savings 91.05%), 4.61MB (4836700) data
                     min         max         mean         sd        +/- sd
time for request:      512us     25.61ms      3.91ms      1.21ms    78.10%
time for connect:     4.62ms      9.49ms      6.93ms      1.69ms    60.00%
`;

test('h2load output: req/s, errors, non-2xx, mean and max time; wrk Transfer/sec', () => {
  const r = parseH2load(H2LOAD_OUT);
  assert.equal(r.rps, 24183.5);
  assert.equal(r.requests, 48367);
  assert.equal(r.succeeded, 48360);
  assert.equal(r.errors, 7);
  assert.equal(r.non2xx, 4);
  assert.equal(r.meanUs, 3910);
  assert.equal(r.maxUs, 25610);
  assert.throws(() => parseH2load('connect: Connection refused\n'), /no summary/);
  assert.equal(parseWrk(WRK_OUT).bytesPerS, 4.88 * 1024 * 1024);
  assert.equal(parseWrkSize('1.22GB'), 1.22 * 1024 ** 3);
  assert.throws(() => parseWrkSize('12 parsecs'), /not a wrk size/);
});

test('TLS and TCP configurations: same certificate and groups; perimeter accepts its own', async () => {
  const ng = nginxTlsConf('/tmp/x', 'nginx-tls', { port: 9400, backendPort: 9000, cert: '/tmp/x/c.pem', key: '/tmp/x/k.pem' });
  assert.match(ng, /listen 127\.0\.0\.1:9400 ssl http2/);
  assert.match(ng, /ssl_certificate \/tmp\/x\/c\.pem;/);
  assert.match(ng, /ssl_ecdh_curve X25519:prime256v1:secp384r1;/);
  assert.match(ng, /ssl_session_cache shared/);
  const full = nginxTlsConf('/tmp/x', 'nginx-tls-full', { port: 9401, backendPort: 9000, cert: '/tmp/x/c.pem', key: '/tmp/x/k.pem', resumption: false });
  assert.match(full, /ssl_session_tickets off;\s+ssl_session_cache off;/);
  const ha = haproxyTcpConf('/tmp/x', { port: 9500, backendPort: 9000 });
  assert.match(ha, /mode tcp/);
  assert.match(ha, /nbthread 1/);
  assert.match(ha, /server b1 127\.0\.0\.1:9000/);
  const dir = mkdtempSync(join(tmpdir(), 'bench-tls-config-'));
  try {
    mkdirSync(join(dir, 'sites'));
    // A real certificate file: the loader reads it.
    const { execFileSync } = await import('node:child_process');
    execFileSync('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', join(dir, 'k.pem'), '-out', join(dir, 'c.pem'), '-days', '2', '-subj', '/CN=localhost', '-addext', 'subjectAltName=DNS:localhost,DNS:bench.test'], { stdio: 'ignore' });
    writeFileSync(join(dir, 'perimeter.yaml'), perimeterTlsPlatformYaml({ httpsPort: 9600, backendPort: 9000, cert: join(dir, 'c.pem'), key: join(dir, 'k.pem') }));
    writeFileSync(join(dir, 'sites', 'bench.yaml'), perimeterSitesYaml(0, ['localhost']));
    const tls = await loadConfig(dir);
    assert.ok(tls.ok, tls.ok ? '' : JSON.stringify(tls.issues));
    assert.deepEqual([...tls.snapshot.sites.keys()].sort(), ['bench.test', 'localhost']);
    assert.equal(tls.snapshot.clusters.get('web')?.listen.https?.port, 9600);
    assert.equal(tls.snapshot.clusters.get('web')?.tls?.sessionTickets, true);
    writeFileSync(join(dir, 'perimeter.yaml'), perimeterTlsPlatformYaml({ httpsPort: 9600, backendPort: 9000, cert: join(dir, 'c.pem'), key: join(dir, 'k.pem'), resumption: false }));
    const noTickets = await loadConfig(dir);
    assert.ok(noTickets.ok, noTickets.ok ? '' : JSON.stringify(noTickets.issues));
    assert.equal(noTickets.snapshot.clusters.get('web')?.tls?.sessionTickets, false);
    writeFileSync(join(dir, 'perimeter.yaml'), perimeterTcpPlatformYaml({ httpPort: 9700, tcpPort: 9701, adminPort: 9702, backendPort: 9000 }));
    writeFileSync(join(dir, 'sites', 'bench.yaml'), perimeterSitesYaml(0));
    const tcp = await loadConfig(dir);
    assert.ok(tcp.ok, tcp.ok ? '' : JSON.stringify(tcp.issues));
    assert.equal(tcp.snapshot.tcp.get('bench')?.allowlist, 'bench');
    assert.equal(tcp.snapshot.tcp.get('bench')?.listen.port, 9701);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('TLS floors: node:tls answers itself, or passes the request to a kept-alive backend and adds Connection: close; node:http2 passes each stream to the backend', async () => {
  const { execFileSync } = await import('node:child_process');
  const { request } = await import('node:https');
  const dir = mkdtempSync(join(tmpdir(), 'bench-tls-floor-'));
  const backendRequests: string[] = [];
  let backendConnections = 0;
  const backend = createServer((s) => {
    backendConnections++;
    s.on('data', (d: Buffer) => {
      backendRequests.push(d.toString('latin1'));
      s.write('HTTP/1.1 200 OK\r\nContent-Length: 7\r\n\r\nbackend');
    });
  });
  const children: ReturnType<typeof spawn>[] = [];
  try {
    execFileSync('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', join(dir, 'k.pem'), '-out', join(dir, 'c.pem'), '-days', '2', '-subj', '/CN=localhost', '-addext', 'subjectAltName=DNS:localhost'], { stdio: 'ignore' });
    await new Promise<void>((r) => backend.listen(0, '127.0.0.1', r));
    const backendPort = (backend.address() as { port: number }).port;
    const free = async (): Promise<number> => {
      const s = createServer();
      await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
      const p = (s.address() as { port: number }).port;
      await new Promise<void>((r) => s.close(() => r()));
      return p;
    };
    const get = (port: number): Promise<{ status: number; connection: string; body: string }> =>
      new Promise((resolve, reject) => {
        const req = request({ host: '127.0.0.1', port, servername: 'localhost', path: '/small', rejectUnauthorized: false, agent: false }, (res) => {
          let body = '';
          res.on('data', (d: Buffer) => (body += d.toString()));
          res.on('end', () => resolve({ status: res.statusCode ?? 0, connection: String(res.headers.connection), body }));
        });
        req.on('error', reject);
        req.end();
      });
    const started = async (mode: string): Promise<number> => {
      const port = await free();
      const child = spawn(process.execPath, ['dist/bench/tls-floor.js', mode, String(port), join(dir, 'c.pem'), join(dir, 'k.pem'), String(backendPort)], { stdio: 'ignore' });
      children.push(child);
      for (let i = 0; i < 100; i++) {
        try {
          await get(port);
          return port;
        } catch {
          await new Promise((r) => setTimeout(r, 50));
        }
      }
      throw new Error(`tls-floor ${mode} did not start`);
    };
    const answer = await get(await started('answer'));
    assert.deepEqual(answer, { status: 200, connection: 'close', body: SMALL_BODY });
    assert.equal(backendRequests.length, 0, 'answer mode never asks the backend');
    const proxyPort = await started('proxy');
    const before = backendRequests.length;
    const proxied = [await get(proxyPort), await get(proxyPort), await get(proxyPort)];
    for (const p of proxied) assert.deepEqual(p, { status: 200, connection: 'close', body: 'backend' });
    assert.equal(backendRequests.length - before, 3);
    assert.match(backendRequests.at(-1)!, /^GET \/small HTTP\/1\.1\r\n/);
    assert.equal(backendConnections, 1, 'one backend connection, kept alive across client connections');

    // h2proxy: the HTTP/2 floor; every stream a request to the backend, over kept-alive connections.
    const { connect: h2connect } = await import('node:http2');
    const h2Port = await started('h2proxy');
    const session = h2connect(`https://localhost:${h2Port}`, { rejectUnauthorized: false });
    try {
      const stream = (): Promise<{ status: number; length: string; body: string }> =>
        new Promise((resolve, reject) => {
          const req = session.request({ ':path': '/small' });
          let status = 0;
          let length = '';
          let body = '';
          req.on('response', (h) => {
            status = Number(h[':status']);
            length = String(h['content-length']);
          });
          req.on('data', (d: Buffer) => (body += d.toString()));
          req.on('end', () => resolve({ status, length, body }));
          req.on('error', reject);
          req.end();
        });
      const beforeH2 = backendRequests.length;
      const streams = await Promise.all([stream(), stream(), stream(), stream()]);
      for (const r of streams) assert.deepEqual(r, { status: 200, length: '7', body: 'backend' });
      assert.equal(backendRequests.length - beforeH2, 4);
    } finally {
      session.close();
    }
  } finally {
    for (const c of children) c.kill('SIGKILL');
    await new Promise<void>((r) => backend.close(() => r()));
    rmSync(dir, { recursive: true, force: true });
  }
});

test('bench --only: names the scenarios it knows and refuses others before starting anything', async () => {
  const run = (args: string[]): Promise<{ code: number | null; out: string }> =>
    new Promise((resolve) => {
      const child = spawn(process.execPath, ['dist/bench/run.js', ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
      let out = '';
      child.stdout.on('data', (d: Buffer) => (out += d.toString()));
      child.stderr.on('data', (d: Buffer) => (out += d.toString()));
      child.on('exit', (code) => resolve({ code, out }));
    });
  const help = await run(['--help']);
  assert.equal(help.code, 0);
  assert.match(help.out, /--only LIST .*memory, http, tls, workers, reload, tcp/);
  const bad = await run(['--only', 'tls,nope']);
  assert.equal(bad.code, 2);
  assert.match(bad.out, /--only: unknown scenario nope \(known: memory, http, tls, workers, reload, tcp\)/);
});

test('≥ 2× a Node.js peer: per-round throughput ratios ≥ 2 on small and 64 KiB, added latency ≤ half at p50 and p99', () => {
  const perimeter: PeerFigures = { smallRps: [30_000, 20_000, 28_000], largeRps: [10_000, 9_000, 9_500], addedP50Us: 60, addedP99Us: 400 };
  const peer: PeerFigures = { smallRps: [12_000, 8_000, 15_000], largeRps: [4_500, 4_000, 4_600], addedP50Us: 150, addedP99Us: 1200 };
  const v = versusPeer('Fastify', perimeter, peer);
  // Ratios within each round (2.5, 2.5, 1.87), then the median: the round where everyone was slow does not move it.
  assert.equal(v.small.median, 2.5);
  assert.equal(v.small.n, 3);
  assert.equal(v.large.median, 10_000 / 4_500); // of 2.22, 2.25, 2.07
  assert.equal(v.p50, 0.4);
  assert.equal(v.p99, 1 / 3);
  assert.equal(v.met, true);
  assert.equal(formatPeerComparison(v), 'Fastify 2.50×, 2.22×, 0.40, 0.33');
  assert.equal(formatPeerLatency(v, true), 'Fastify 0.40, 0.33');
  // Exactly 2× and exactly half still meet it.
  assert.equal(versusPeer('p', { ...perimeter, smallRps: [2], largeRps: [2], addedP50Us: 75, addedP99Us: 600 }, { ...peer, smallRps: [1], largeRps: [1] }).met, true);
  // Each part alone can fail it.
  assert.equal(versusPeer('p', { ...perimeter, largeRps: [8_000, 7_000, 9_000] }, peer).met, false, '64 KiB below 2×');
  assert.equal(versusPeer('p', { ...perimeter, smallRps: [20_000, 15_000, 29_000] }, peer).met, false, 'small below 2×');
  assert.equal(versusPeer('p', { ...perimeter, addedP50Us: 76 }, peer).met, false, 'p50 more than half');
  assert.equal(versusPeer('p', { ...perimeter, addedP99Us: 601 }, peer).met, false, 'p99 more than half');
  // A peer that added no latency: no ratio to show, and only a perimeter adding none or less meets it.
  const quiet = versusPeer('p', perimeter, { ...peer, addedP50Us: 0 });
  assert.ok(Number.isNaN(quiet.p50));
  assert.equal(quiet.met, false);
  assert.equal(versusPeer('p', { ...perimeter, addedP50Us: -4 }, { ...peer, addedP50Us: -1 }).met, true);
  // A peer that did not run: nothing measured is never met.
  const missing = versusPeer('http-proxy', perimeter, { smallRps: [], largeRps: [], addedP50Us: Number.NaN, addedP99Us: Number.NaN });
  assert.equal(missing.met, false);
  assert.equal(formatPeerComparison(missing), 'http-proxy –, –, –, –');
});

test('benchCertArgs: openssl makes the one RSA-2048 certificate every TLS contender serves, for localhost and the bench host', () => {
  const dir = mkdtempSync(join(tmpdir(), 'bench-cert-'));
  try {
    const cert = join(dir, 'cert.pem');
    const made = spawnSync('openssl', benchCertArgs(cert, join(dir, 'key.pem')), { encoding: 'utf8' });
    assert.equal(made.status, 0, made.stderr);
    const text = spawnSync('openssl', ['x509', '-in', cert, '-noout', '-text'], { encoding: 'utf8' }).stdout;
    assert.match(text, /Public-Key: \(2048 bit\)/);
    assert.match(text, /rsaEncryption/);
    assert.match(text, new RegExp(`DNS:localhost, DNS:${BENCH_HOST.replace('.', '\\.')}`));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('freePorts: n ports on 127.0.0.1 that a server can then listen on', async () => {
  const ports = await freePorts(3);
  assert.equal(ports.length, 3);
  for (const port of ports) {
    assert.ok(port > 0 && port < 65536, `port ${port}`);
    const server = createServer();
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(port, '127.0.0.1', () => resolve());
    });
    await new Promise<void>((resolve) => server.close(() => resolve()));
  }
  assert.deepEqual(await freePorts(0), []);
});

test('parseCpuInfo: family, model and AVX-512 IFMA of the first processor', () => {
  const proc = (family: string, model: string, flags: string): string =>
    `processor\t: 0\nvendor_id\t: AuthenticAMD\ncpu family\t: ${family}\nmodel\t\t: ${model}\nmodel name\t: AMD EPYC\nflags\t\t: ${flags}\n`;
  assert.deepEqual(parseCpuInfo(`${proc('26', '2', 'fpu avx2 avx512f avx512ifma sha_ni')}\n${proc('25', '1', 'fpu')}\n`), { family: 26, model: 2, avx512ifma: true });
  // Only the first processor counts; a flag that merely starts with the name is not it.
  assert.deepEqual(parseCpuInfo(`${proc('6', '143', 'fpu avx512ifmax')}\n${proc('6', '143', 'avx512ifma')}`), { family: 6, model: 143, avx512ifma: false });
  assert.deepEqual(parseCpuInfo(''), { family: null, model: null, avx512ifma: false });
});
