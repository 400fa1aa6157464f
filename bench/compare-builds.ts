/**
 * Compare perimeter builds with each other and with nginx in interleaved
 * rounds: the lab method behind the request-path changes in BENCHMARKS.md.
 *
 *   node dist/bench/compare-builds.js [--rounds 6] [--seconds 4] [--path /small] [--connections 50] [--tls | --h2] [--env NAME:KEY=VALUE ...] NAME=DIST ...
 *
 * DIST is a build's `dist` directory (`dist/src/cli/main.js` inside it), with
 * the project's node_modules reachable from it (e.g. a copy of an earlier
 * build next to a `node_modules` symlink). Layout as the bench's pinned one:
 * a backend nginx and wrk on CPU 1, nginx proxy_pass and one perimeter per
 * build on CPU 0. Each round runs every contender once, the order rotating;
 * for each it prints req/s, the ratio to nginx in that round, and the user
 * and system CPU time per request of the proxy's request-path process (from
 * /proc), which drifts less with the machine's noise than req/s does.
 * `--env NAME:KEY=VALUE` (repeatable) starts build NAME with KEY=VALUE in its
 * environment, so one build can run twice with a switch (for example
 * `--env off:PERIMETER_LEAN_TLS=0 on=dist off=dist`).
 * With --tls: the bench's full-handshake scenario instead (HTTPS listeners,
 * the bench's RSA-2048 certificate and groups, resumption off on both, a new
 * connection per request), so the figures are per TLS connection.
 * With --h2: the bench's HTTP/2 scenario instead (HTTPS listeners, h2load
 * -t1 -c10 -m10, keep-alive and resumption as in the bench), figures per request.
 * Needs nginx, wrk and taskset; starts everything on 127.0.0.1 ports chosen
 * at random and stops it all on exit.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { BENCH_HOST, median, nginxBackendConf, parseH2load, nginxChangeInclude, nginxProxyConf, nginxTlsConf, parseProcStatTicks, parseWrk, perimeterPlatformYaml, perimeterSitesYaml, perimeterTlsPlatformYaml, rotate, parseEnvOptions } from './harness.js';
import { freePort, machineKind, makeBenchCert } from './fixtures.js';

const { values: opt, positionals } = parseArgs({
  allowPositionals: true,
  options: { rounds: { type: 'string', default: '6' }, seconds: { type: 'string', default: '4' }, path: { type: 'string', default: '/small' }, connections: { type: 'string', default: '50' }, tls: { type: 'boolean', default: false }, h2: { type: 'boolean', default: false }, help: { type: 'boolean', default: false }, env: { type: 'string', multiple: true, default: [] } },
});
const builds = positionals.map((p) => {
  const eq = p.indexOf('=');
  if (eq <= 0) throw new Error(`expected NAME=DIST, got '${p}'`);
  return { name: p.slice(0, eq), dist: resolve(p.slice(eq + 1)) };
});
const envOf = parseEnvOptions(opt.env, builds.map((b) => b.name));
if (builds.length === 0 || opt.help || (opt.tls && opt.h2)) {
  process.stderr.write('usage: compare-builds.js [--rounds N] [--seconds S] [--path P] [--connections C] [--tls | --h2] [--env NAME:KEY=VALUE ...] NAME=DIST ...\n');
  process.exit(opt.help ? 0 : 2);
}
/** HTTPS listeners: full handshakes (--tls) or HTTP/2 streams (--h2). */
const https = opt.tls || opt.h2;

const dir = mkdtempSync(join(tmpdir(), 'perimeter-compare-'));
const children: ChildProcess[] = [];
process.on('exit', () => {
  for (const c of children) {
    try {
      if (c.pid !== undefined) process.kill(-c.pid, 'SIGTERM'); // the process group: nginx's workers, perimeter's worker
    } catch {
      // already gone
    }
  }
  rmSync(dir, { recursive: true, force: true });
});
process.on('SIGINT', () => process.exit(130));

function start(cpu: string, cmd: string, argv: string[], env?: Record<string, string>): ChildProcess {
  const c = spawn('taskset', ['-c', cpu, cmd, ...argv], { stdio: 'ignore', detached: true, env: env === undefined ? process.env : { ...process.env, ...env } });
  children.push(c);
  return c;
}

async function waitListening(port: number): Promise<void> {
  for (let i = 0; i < 300; i++) {
    const up = await new Promise<boolean>((res) => {
      const c = net.connect(port, '127.0.0.1', () => {
        c.destroy();
        res(true);
      });
      c.on('error', () => res(false));
    });
    if (up) return;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`nothing listening on ${port} after 30 s`);
}

/** The newest child of `pid` (nginx's worker; perimeter's data-plane worker). */
function childOf(pid: number): number {
  const out = spawnSync('pgrep', ['-n', '-P', String(pid)], { encoding: 'utf8' }).stdout.trim();
  if (!out) throw new Error(`process ${pid} has no child`);
  return Number(out);
}

/** utime and stime (clock ticks, 100 per second here) of a process. */
function ticks(pid: number): [number, number] {
  const t = parseProcStatTicks(readFileSync(`/proc/${pid}/stat`, 'utf8'));
  return [t.user, t.system];
}

/** One load: wrk (HTTP/1.1; --tls: a new TLS connection per request) or, with --h2, h2load -c10 -m10. `tail`: wrk's p99, h2load's maximum (it has no percentiles). */
function load(port: number, seconds: number): { rps: number; requests: number; tail: number } {
  if (opt.h2) {
    const r = spawnSync('taskset', ['-c', '1', 'h2load', '-t1', '-c10', '-m10', `-D${seconds}`, `https://localhost:${port}${opt.path}`], { encoding: 'utf8' });
    const h = parseH2load(r.stdout + r.stderr);
    return { rps: h.rps, requests: h.requests, tail: h.maxUs };
  }
  const w = wrk(port, seconds);
  return { rps: w.rps, requests: w.requests, tail: w.latencyUs.p99 };
}

function wrk(port: number, seconds: number): ReturnType<typeof parseWrk> {
  const target = opt.tls ? ['-H', 'Connection: close', `https://localhost:${port}${opt.path}`] : [`http://127.0.0.1:${port}${opt.path}`];
  const r = spawnSync('taskset', ['-c', '1', 'wrk', '-t1', `-c${opt.connections}`, `-d${seconds}s`, '--latency', '-H', `Host: ${BENCH_HOST}`, ...target], { encoding: 'utf8' });
  return parseWrk(r.stdout + r.stderr);
}

const backendPort = await freePort();
mkdirSync(join(dir, 'www'));
writeFileSync(join(dir, 'www', '64k'), Buffer.alloc(64 * 1024, 'x'));
writeFileSync(join(dir, 'backend.conf'), nginxBackendConf(dir, { port: backendPort, statusPort: await freePort() }));
start('1', 'nginx', ['-p', dir, '-e', join(dir, 'backend.err'), '-c', join(dir, 'backend.conf')]);
const nginxPort = await freePort();
const cert = https ? makeBenchCert(dir) : { cert: '', key: '' };
if (https) {
  writeFileSync(join(dir, 'nginx.conf'), nginxTlsConf(dir, 'nginx', { port: nginxPort, backendPort, ...cert, resumption: opt.h2 }));
} else {
  writeFileSync(join(dir, 'nginx.change.conf'), nginxChangeInclude(0));
  writeFileSync(join(dir, 'nginx.conf'), nginxProxyConf(dir, 'nginx', { port: nginxPort, backendPort, workers: 1 }));
}
const nginx = start('0', 'nginx', ['-p', dir, '-e', join(dir, 'nginx.err'), '-c', join(dir, 'nginx.conf')]);
const contenders: { name: string; port: number; root: ChildProcess; pid?: number }[] = [{ name: 'nginx', port: nginxPort, root: nginx }];
for (const b of builds) {
  const port = await freePort();
  const cdir = join(dir, b.name);
  mkdirSync(join(cdir, 'sites'), { recursive: true });
  writeFileSync(join(cdir, 'perimeter.yaml'), https ? perimeterTlsPlatformYaml({ httpsPort: port, backendPort, ...cert, resumption: opt.h2 }) : perimeterPlatformYaml({ port, backendPort }));
  writeFileSync(join(cdir, 'sites', 'bench.yaml'), perimeterSitesYaml(0, https ? ['localhost'] : []));
  contenders.push({ name: b.name, port, root: start('0', process.execPath, [join(b.dist, 'src', 'cli', 'main.js'), 'run', '--workers', '1', '--no-watch', cdir], envOf.get(b.name)) });
}
await waitListening(backendPort);
for (const c of contenders) {
  await waitListening(c.port);
  // taskset execs the proxy, so the spawned pid is nginx's master or perimeter's control process.
  c.pid = childOf(c.root.pid!);
  load(c.port, https ? 4 : 2); // warm-up (a fresh Node.js process compiles its handshake path in its first seconds)
}

const seconds = Number(opt.seconds);
process.stdout.write(`${machineKind().label}; node ${process.version} (OpenSSL ${process.versions.openssl})\n`);
const results = new Map<string, { rps: number; ratio: number; user: number; sys: number; tail: number }[]>();
for (let round = 0; round < Number(opt.rounds); round++) {
  const got = new Map<string, { rps: number; user: number; sys: number; tail: number }>();
  for (const c of rotate(contenders, round)) {
    const [u0, s0] = ticks(c.pid!);
    const r = load(c.port, seconds);
    const [u1, s1] = ticks(c.pid!);
    const per = 1e4 / Math.max(1, r.requests); // ticks are 10 ms: µs per request (per connection with --tls)
    got.set(c.name, { rps: r.rps, user: (u1 - u0) * per, sys: (s1 - s0) * per, tail: r.tail });
  }
  const ref = got.get('nginx')!.rps;
  const cells = contenders.map((c) => {
    const g = got.get(c.name)!;
    (results.get(c.name) ?? results.set(c.name, []).get(c.name)!).push({ ...g, ratio: g.rps / ref });
    return `${c.name} ${(g.rps / 1000).toFixed(1)}k ${(g.rps / ref).toFixed(2)}× user ${g.user.toFixed(1)} µs sys ${g.sys.toFixed(1)} µs`;
  });
  process.stdout.write(`round ${round + 1}: ${cells.join(' | ')}\n`);
}
const loadName = opt.h2 ? `h2load -c10 -m10 ${opt.path}` : `wrk -c${opt.connections} ${opt.path}${opt.tls ? ', full TLS handshakes (µs per connection)' : ''}`;
process.stdout.write(`\nmedians over ${opt.rounds} rounds of ${seconds} s, ${loadName}:\n`);
for (const c of contenders) {
  const xs = results.get(c.name)!;
  const m = (f: (x: (typeof xs)[number]) => number): number => median(xs.map(f));
  process.stdout.write(`${c.name.padEnd(12)} ${m((x) => x.rps).toFixed(0).padStart(7)} req/s  ${m((x) => x.ratio).toFixed(2)}× nginx  user ${m((x) => x.user).toFixed(1)} µs/req  sys ${m((x) => x.sys).toFixed(1)} µs/req  ${opt.h2 ? 'max' : 'p99'} ${(m((x) => x.tail) / 1000).toFixed(2)} ms\n`);
}
process.exit(0);
