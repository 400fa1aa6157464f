/**
 * The pure parts of the benchmark harness (bench/run.ts): wrk output
 * parsing, medians and ratios, configuration text for every contender, and
 * CPU profile summaries. Nothing here starts a process, so
 * test/bench/harness.test.ts runs without nginx, HAProxy or wrk.
 */

// ---------------------------------------------------------------- wrk output

export interface WrkResult {
  readonly requests: number;
  readonly durationS: number;
  readonly rps: number;
  /** Latency percentiles in microseconds (wrk --latency). */
  readonly latencyUs: { readonly p50: number; readonly p75: number; readonly p90: number; readonly p99: number };
  readonly socketErrors: { readonly connect: number; readonly read: number; readonly write: number; readonly timeout: number };
  readonly non2xx: number;
  /** wrk's Transfer/sec, in bytes per second. */
  readonly bytesPerS: number;
}

const SIZE_UNITS: Readonly<Record<string, number>> = { B: 1, KB: 1024, MB: 1024 ** 2, GB: 1024 ** 3, TB: 1024 ** 4 };

/** "1.23GB" → bytes (wrk's units are binary). */
export function parseWrkSize(text: string): number {
  const m = /^([\d.]+)(B|KB|MB|GB|TB)$/.exec(text.trim());
  if (!m) throw new Error(`not a wrk size: '${text}'`);
  return Number(m[1]) * SIZE_UNITS[m[2]!]!;
}

const TIME_UNITS: Readonly<Record<string, number>> = { us: 1, ms: 1_000, s: 1_000_000, m: 60_000_000, h: 3_600_000_000 };

/** "1.05ms" → 1050 (µs); wrk prints us, ms, s, m and h. */
export function parseWrkTime(text: string): number {
  const m = /^([\d.]+)(us|ms|s|m|h)$/.exec(text.trim());
  if (!m) throw new Error(`not a wrk time: '${text}'`);
  return Number(m[1]) * TIME_UNITS[m[2]!]!;
}

/** Parses `wrk --latency` output; throws when the summary lines are missing (wrk failed). */
export function parseWrk(output: string): WrkResult {
  const total = /(\d+) requests in ([\d.]+)(us|ms|s|m|h),/.exec(output);
  const rps = /Requests\/sec:\s+([\d.]+)/.exec(output);
  if (!total || !rps) throw new Error(`wrk output has no summary:\n${output}`);
  const pct = (p: string): number => {
    const m = new RegExp(`^\\s+${p}%\\s+([\\d.]+(?:us|ms|s|m|h))\\s*$`, 'm').exec(output);
    if (!m) throw new Error(`wrk output has no ${p}% latency (run it with --latency):\n${output}`);
    return parseWrkTime(m[1]!);
  };
  const sock = /Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)/.exec(output);
  const non2xx = /Non-2xx or 3xx responses: (\d+)/.exec(output);
  const transfer = /Transfer\/sec:\s+([\d.]+(?:B|KB|MB|GB|TB))/.exec(output);
  return {
    requests: Number(total[1]),
    durationS: parseWrkTime(`${total[2]}${total[3]}`) / 1e6,
    rps: Number(rps[1]),
    latencyUs: { p50: pct('50'), p75: pct('75'), p90: pct('90'), p99: pct('99') },
    socketErrors: sock
      ? { connect: Number(sock[1]), read: Number(sock[2]), write: Number(sock[3]), timeout: Number(sock[4]) }
      : { connect: 0, read: 0, write: 0, timeout: 0 },
    non2xx: non2xx ? Number(non2xx[1]) : 0,
    bytesPerS: transfer ? parseWrkSize(transfer[1]!) : 0,
  };
}

// ---------------------------------------------------------------- h2load output

export interface H2loadResult {
  readonly rps: number;
  readonly requests: number;
  readonly succeeded: number;
  /** failed + errored + timeout. */
  readonly errors: number;
  readonly non2xx: number;
  /** Mean and max time for a request, µs. */
  readonly meanUs: number;
  readonly maxUs: number;
}

/** h2load prints times as 123us, 1.23ms, 1.2s. */
function parseH2Time(t: string): number {
  const m = /^([\d.]+)(us|ms|s)$/.exec(t.trim());
  if (!m) throw new Error(`not an h2load time: '${t}'`);
  return Number(m[1]) * (m[2] === 'us' ? 1 : m[2] === 'ms' ? 1_000 : 1_000_000);
}

/** Parses h2load's summary; throws when it is missing (h2load failed). */
export function parseH2load(output: string): H2loadResult {
  const fin = /finished in [\d.]+m?s, ([\d.]+) req\/s/.exec(output);
  const req = /requests: (\d+) total, \d+ started, \d+ done, (\d+) succeeded, (\d+) failed, (\d+) errored, (\d+) timeout/.exec(output);
  const codes = /status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx/.exec(output);
  const time = /time for request:\s+(\S+)\s+(\S+)\s+(\S+)/.exec(output);
  if (!fin || !req) throw new Error(`h2load output has no summary:\n${output}`);
  return {
    rps: Number(fin[1]),
    requests: Number(req[1]),
    succeeded: Number(req[2]),
    errors: Number(req[3]) + Number(req[4]) + Number(req[5]),
    non2xx: codes ? Number(codes[2]) + Number(codes[3]) + Number(codes[4]) : 0,
    meanUs: time ? parseH2Time(time[3]!) : Number.NaN,
    maxUs: time ? parseH2Time(time[2]!) : Number.NaN,
  };
}

export function socketErrorTotal(r: WrkResult): number {
  const e = r.socketErrors;
  return e.connect + e.read + e.write + e.timeout;
}

// ---------------------------------------------------------------- pace (bench/pace.c)

/** One answered request of a pace run: when it was sent (µs since the epoch) and how long it took (µs). */
export interface PacedRequest {
  readonly startUs: number;
  readonly latencyUs: number;
  readonly status: number;
}

/** Parses pace's log, one "<start µs> <latency µs> <status>" line per answered request. */
export function parsePaceLog(text: string): PacedRequest[] {
  const out: PacedRequest[] = [];
  for (const line of text.split('\n')) {
    if (line === '') continue;
    const m = /^(\d+) (\d+) (\d+)$/.exec(line);
    if (!m) throw new Error(`not a pace log line: '${line}'`);
    out.push({ startUs: Number(m[1]), latencyUs: Number(m[2]), status: Number(m[3]) });
  }
  return out;
}

/** pace's summary line on stderr; throws when it is missing (pace failed). */
export function parsePaceSummary(stderr: string): { requests: number; errors: number; non2xx: number } {
  const m = /requests (\d+) errors (\d+) non2xx (\d+)/.exec(stderr);
  if (!m) throw new Error(`pace printed no summary:\n${stderr}`);
  return { requests: Number(m[1]), errors: Number(m[2]), non2xx: Number(m[3]) };
}

/** The `p`th percentile as wrk computes it: the value at rank round(p/100 × n + 0.5) of the sorted values. NaN when empty. */
export function percentile(values: readonly number[], p: number): number {
  if (values.length === 0) return Number.NaN;
  const s = Float64Array.from(values).sort();
  const rank = Math.min(s.length, Math.max(1, Math.round((p / 100) * s.length + 0.5)));
  return s[rank - 1]!;
}

/**
 * The reload scenario's split of one run with changes: the requests sent within `windowUs`
 * after a change (perimeter's reload uses its last CPU within 30 ms of the signal; BENCHMARKS.md), and the
 * requests between changes, which are the same load's steady state, at the same moments of the
 * machine. `moments` are the changes' times (µs since the epoch), ascending.
 */
export function splitByChanges(requests: readonly PacedRequest[], moments: readonly number[], windowUs: number): { after: number[]; between: number[] } {
  const after: number[] = [];
  const between: number[] = [];
  for (const r of requests) {
    // the last change at or before this request
    let lo = 0;
    let hi = moments.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (moments[mid]! <= r.startUs) lo = mid + 1;
      else hi = mid;
    }
    const last = lo > 0 ? moments[lo - 1]! : undefined;
    if (last !== undefined && r.startUs - last < windowUs) after.push(r.latencyUs);
    else between.push(r.latencyUs);
  }
  return { after, between };
}

// ---------------------------------------------------------------- statistics

export function median(values: readonly number[]): number {
  if (values.length === 0) return Number.NaN;
  const s = [...values].sort((a, b) => a - b);
  const mid = s.length >> 1;
  return s.length % 2 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
}

export interface Summary {
  readonly median: number;
  readonly min: number;
  readonly max: number;
  readonly n: number;
}

export function summarize(values: readonly number[]): Summary {
  return { median: median(values), min: Math.min(...values), max: Math.max(...values), n: values.length };
}

/**
 * Ratios of a contender to the reference measured in the same round
 * (absolute numbers drift ±30% between minutes on shared machines; ratios
 * within one round do not): the median of the per-round ratios.
 */
export function roundRatios(contender: readonly number[], reference: readonly number[]): Summary {
  const n = Math.min(contender.length, reference.length);
  const r: number[] = [];
  for (let i = 0; i < n; i++) if (reference[i]! > 0) r.push(contender[i]! / reference[i]!);
  return r.length ? summarize(r) : { median: Number.NaN, min: Number.NaN, max: Number.NaN, n: 0 };
}

/** What perimeter or a Node.js peer did in the per-core scenarios of one run. */
export interface PeerFigures {
  /** req/s per round, in round order, small (100 B) and 64 KiB responses. */
  readonly smallRps: readonly number[];
  readonly largeRps: readonly number[];
  /** Latency added over the direct backend at one connection (µs), median over rounds. */
  readonly addedP50Us: number;
  readonly addedP99Us: number;
}

export interface PeerComparison {
  readonly peer: string;
  /** perimeter's req/s ÷ the peer's, median of the per-round ratios (target ≥ PEER_FACTOR). */
  readonly small: Summary;
  readonly large: Summary;
  /** perimeter's added latency ÷ the peer's (target ≤ 1 / PEER_FACTOR); NaN when the peer added none. */
  readonly p50: number;
  readonly p99: number;
  readonly met: boolean;
}

/** Issue 4: perimeter must be "never below 2× Fastify/http-proxy". */
export const PEER_FACTOR = 2;

/**
 * The "≥ 2× Fastify/http-proxy" rule against one peer measured in the same
 * run: throughput ratios within each round (as every ratio of the bench) on
 * small and 64 KiB responses at least PEER_FACTOR, and perimeter's added
 * latency at one connection, p50 and p99, at most 1/PEER_FACTOR of the peer's.
 * The latency rule compares the added latencies themselves, not their ratio,
 * so it still decides when the peer's is zero or below; a missing figure
 * (NaN) is never met.
 */
export function versusPeer(peer: string, perimeter: PeerFigures, other: PeerFigures): PeerComparison {
  const small = roundRatios(perimeter.smallRps, other.smallRps);
  const large = roundRatios(perimeter.largeRps, other.largeRps);
  const latencyRatio = (mine: number, theirs: number): number => (theirs > 0 ? mine / theirs : Number.NaN);
  const halfOrLess = (mine: number, theirs: number): boolean => mine * PEER_FACTOR <= theirs; // false for NaN
  return {
    peer,
    small,
    large,
    p50: latencyRatio(perimeter.addedP50Us, other.addedP50Us),
    p99: latencyRatio(perimeter.addedP99Us, other.addedP99Us),
    met: small.median >= PEER_FACTOR && large.median >= PEER_FACTOR
      && halfOrLess(perimeter.addedP50Us, other.addedP50Us) && halfOrLess(perimeter.addedP99Us, other.addedP99Us),
  };
}

/** A ratio with two decimals, or '–' for a missing one (NaN). */
function ratioText(v: number, unit = ''): string {
  return Number.isFinite(v) ? `${v.toFixed(2)}${unit}` : '–';
}

/** One peer's ratios for the targets table, in the order small, 64k, p50, p99: "Fastify 2.61×, 2.10×, 0.31, 0.12". */
export function formatPeerComparison(c: PeerComparison): string {
  return `${c.peer} ${ratioText(c.small.median, '×')}, ${ratioText(c.large.median, '×')}, ${formatPeerLatency(c)}`;
}

/** The one-connection half alone, p50 and p99: "0.31, 0.12" (with the peer's name: "Fastify 0.31, 0.12"). */
export function formatPeerLatency(c: PeerComparison, named = false): string {
  return `${named ? `${c.peer} ` : ''}${ratioText(c.p50)}, ${ratioText(c.p99)}`;
}

/**
 * `--env NAME:KEY=VALUE` options of compare-builds.ts: per build name, the
 * variables to add to its environment. Throws on a malformed option and on
 * a name that is not one of `names`.
 */
export function parseEnvOptions(options: readonly string[], names: readonly string[]): Map<string, Record<string, string>> {
  const envOf = new Map<string, Record<string, string>>();
  for (const e of options) {
    const m = /^([^:]+):([A-Za-z_][A-Za-z0-9_]*)=(.*)$/.exec(e);
    if (m === null) throw new Error(`expected --env NAME:KEY=VALUE, got '${e}'`);
    const [, name, key, value] = m as unknown as [string, string, string, string];
    if (!names.includes(name)) throw new Error(`--env names '${name}', which is no build here (builds: ${names.join(', ')})`);
    (envOf.get(name) ?? envOf.set(name, {}).get(name)!)[key] = value;
  }
  return envOf;
}

/** Round i runs the contenders rotated by i, so none is always first (cold) or last. */
export function rotate<T>(items: readonly T[], round: number): T[] {
  const k = items.length ? round % items.length : 0;
  return [...items.slice(k), ...items.slice(0, k)];
}

export function formatRps(v: number): string {
  if (!Number.isFinite(v)) return '–';
  return v >= 1000 ? `${(v / 1000).toFixed(1)}k` : v.toFixed(0);
}

export function formatUs(v: number): string {
  if (!Number.isFinite(v)) return '–';
  return v >= 10_000 ? `${(v / 1000).toFixed(1)} ms` : `${Math.round(v)} µs`;
}

/** Plain-text table with right-aligned columns after the first. */
export function table(header: readonly string[], rows: readonly (readonly string[])[]): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: readonly string[]): string =>
    cells.map((c, i) => (i === 0 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join('  ').trimEnd();
  return [line(header), widths.map((w) => '-'.repeat(w)).join('  '), ...rows.map(line)].join('\n');
}

/** `server accepts handled requests` of nginx's stub_status. */
export function parseStubStatus(text: string): { accepts: number; handled: number; requests: number } {
  const m = /server accepts handled requests\s+(\d+)\s+(\d+)\s+(\d+)/.exec(text);
  if (!m) throw new Error(`not a stub_status page: ${text.slice(0, 200)}`);
  return { accepts: Number(m[1]), handled: Number(m[2]), requests: Number(m[3]) };
}

/**
 * utime and stime (clock ticks) from the text of /proc/PID/stat. The command
 * name, in parentheses, may hold spaces and parentheses itself: the fields
 * are counted from the last ')'.
 */
export function parseProcStatTicks(stat: string): { user: number; system: number } {
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  const user = Number(f[11]);
  const system = Number(f[12]);
  if (!Number.isFinite(user) || !Number.isFinite(system)) throw new Error(`not a /proc/PID/stat line: ${stat.slice(0, 80)}`);
  return { user, system };
}

/**
 * What tells these machines apart, from /proc/cpuinfo's first processor: the
 * model name alone ("AMD EPYC") names several kinds. `family`/`model` tell the
 * generations apart, and `avx512ifma` is what makes RSA signing cheap (the TLS
 * target's share of Node.js per-connection cost depends on it, BENCHMARKS.md).
 */
export function parseCpuInfo(text: string): { family: number | null; model: number | null; avx512ifma: boolean } {
  const first = text.split(/\n\s*\n/)[0] ?? '';
  const num = (key: string): number | null => {
    const m = new RegExp(`^${key}\\s*:\\s*(\\d+)\\s*$`, 'm').exec(first);
    return m ? Number(m[1]) : null;
  };
  const flags = /^flags\s*:(.*)$/m.exec(first)?.[1]?.trim().split(/\s+/) ?? [];
  return { family: num('cpu family'), model: num('model'), avx512ifma: flags.includes('avx512ifma') };
}

/** VmRSS of /proc/PID/status, in KiB. */
export function parseVmRssKiB(status: string): number {
  const m = /^VmRSS:\s+(\d+) kB$/m.exec(status);
  return m ? Number(m[1]) : 0;
}

// ---------------------------------------------------------------- configurations

/** The Host every load sends; perimeter routes by it, nginx and HAProxy ignore it. */
export const BENCH_HOST = 'bench.test';
export const SMALL_BODY = 'x'.repeat(99) + '\n';
export const LARGE_BYTES = 64 * 1024;
/** The bulk file the TCP proxy scenario downloads through each proxy. */
export const BULK_BYTES = 1024 * 1024;

export interface BackendPorts {
  readonly port: number;
  readonly statusPort: number;
}

/** The backend: nginx, one worker, a 100-byte `return 200` and a 64 KiB static file. */
export function nginxBackendConf(dir: string, p: BackendPorts): string {
  return `# backend for bench/run.ts
worker_processes 1;
daemon off;
master_process on;
pid ${dir}/backend.pid;
error_log ${dir}/backend.error.log warn;
worker_rlimit_nofile 20000;
events { worker_connections 16384; }
http {
  access_log off;
  client_body_temp_path ${dir}/tmp-body; proxy_temp_path ${dir}/tmp-proxy;
  fastcgi_temp_path ${dir}/tmp-fcgi; uwsgi_temp_path ${dir}/tmp-uwsgi; scgi_temp_path ${dir}/tmp-scgi;
  keepalive_requests 10000000;
  keepalive_timeout 300s;
  server {
    listen 127.0.0.1:${p.port} reuseport backlog=4096;
    location = /small { default_type text/plain; return 200 "${SMALL_BODY.slice(0, -1)}\\n"; }
    location = /64k { root ${dir}/www; default_type application/octet-stream; }
    location = /1m { root ${dir}/www; default_type application/octet-stream; }
  }
  server {
    listen 127.0.0.1:${p.statusPort};
    location = /status { stub_status; }
  }
}
`;
}

/** What both nginx proxy contenders share: one master, pid/log/temp paths under `dir`, long keep-alive towards clients; the `http {` block stays open. */
function nginxProxyPreamble(dir: string, name: string, workers: number): string {
  return `worker_processes ${workers};
daemon off;
master_process on;
pid ${dir}/${name}.pid;
error_log ${dir}/${name}.error.log notice;
worker_rlimit_nofile 20000;
events { worker_connections 19000; }
http {
  access_log off;
  client_body_temp_path ${dir}/tmp-body; proxy_temp_path ${dir}/tmp-proxy;
  fastcgi_temp_path ${dir}/tmp-fcgi; uwsgi_temp_path ${dir}/tmp-uwsgi; scgi_temp_path ${dir}/tmp-scgi;
  keepalive_requests 10000000;
  keepalive_timeout 300s;
`;
}

/** nginx proxy_pass with upstream keep-alive: the reference contender. */
export function nginxProxyConf(dir: string, name: string, o: { port: number; backendPort: number; workers: number }): string {
  return `# ${name} for bench/run.ts: proxy_pass with upstream keep-alive
${nginxProxyPreamble(dir, name, o.workers)}  upstream backend {
    server 127.0.0.1:${o.backendPort};
    keepalive 256;  # idle upstream connections kept: above the 100 client connections of the 2-worker load
    keepalive_requests 10000000;
    keepalive_timeout 300s;
  }
  server {
    listen 127.0.0.1:${o.port} backlog=4096;
    location / {
      proxy_pass http://backend;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header Host $host;
      proxy_set_header X-Forwarded-For $remote_addr;
      proxy_buffering on;
      include ${dir}/${name}.change.conf;
    }
  }
}
`;
}

/** The include that the configuration-change scenario rewrites. */
export function nginxChangeInclude(generation: number): string {
  return `add_header X-Bench-Generation ${generation};\n`;
}

/** HAProxy 2.6 mode http, one thread, reusing backend connections always. */
export function haproxyConf(dir: string, o: { port: number; backendPort: number; generation: number }): string {
  return `# HAProxy for bench/run.ts
global
  nbthread 1
  # 10,000 idle clients + a few backend connections; HAProxy reserves two
  # descriptors per connection, more than a 20,000 fd limit allows, so it may
  # only warn about the limit instead of refusing to start.
  maxconn 10100
  no strict-limits
  pidfile ${dir}/haproxy.pid
defaults
  mode http
  timeout connect 3s
  timeout client 300s
  timeout server 60s
  timeout http-keep-alive 300s
  http-reuse always
  option http-keep-alive
frontend fe
  bind 127.0.0.1:${o.port} backlog 4096
  maxconn 10100
  option forwardfor
  http-response set-header X-Bench-Generation ${o.generation}
  default_backend be
backend be
  server b1 127.0.0.1:${o.backendPort} maxconn 10000
`;
}

/** perimeter.yaml: one cluster on one port, static discovery, no access log (as nginx and HAProxy). */
export function perimeterPlatformYaml(o: { port: number; backendPort: number }): string {
  return `# perimeter for bench/run.ts
clusters:
  web:
    listen: { http: "127.0.0.1:${o.port}" }
    timeouts: { client-idle: 300s }
access-log:
  path: "off"
defaults:
  health: { type: none }
discovery:
  static:
    bench-backend: ["127.0.0.1:${o.backendPort}"]
`;
}

/** The TLS settings both TLS contenders use: one certificate, TLS 1.2/1.3, the same key-exchange groups (perimeter's defaults). */
export const TLS_CURVES = 'X25519:prime256v1:secp384r1';

/** `openssl` arguments for the bench's one TLS certificate (RSA 2048, self-signed, for localhost and BENCH_HOST), for the bench and compare-builds --tls. */
export function benchCertArgs(certFile: string, keyFile: string): string[] {
  return [
    'req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', keyFile, '-out', certFile, '-days', '30',
    '-subj', '/CN=localhost', '-addext', `subjectAltName=DNS:localhost,DNS:${BENCH_HOST}`,
  ];
}

/** nginx as the TLS reference: HTTPS with HTTP/2 on one listener, proxy_pass with upstream keep-alive. */
export function nginxTlsConf(dir: string, name: string, o: { port: number; backendPort: number; cert: string; key: string; resumption?: boolean }): string {
  return `# ${name} for bench/run.ts: TLS termination (HTTP/1.1 and HTTP/2) + proxy_pass with upstream keep-alive
${nginxProxyPreamble(dir, name, 1)}  http2_max_requests 10000000;
  upstream backend {
    server 127.0.0.1:${o.backendPort};
    keepalive 256;
    keepalive_requests 10000000;
    keepalive_timeout 300s;
  }
  server {
    listen 127.0.0.1:${o.port} ssl http2 backlog=4096;
    ssl_certificate ${o.cert};
    ssl_certificate_key ${o.key};
    ssl_protocols TLSv1.2 TLSv1.3;
    ssl_ecdh_curve ${TLS_CURVES};
    ssl_prefer_server_ciphers on;
    ${o.resumption === false ? 'ssl_session_tickets off;\n    ssl_session_cache off;' : 'ssl_session_cache shared:bench:10m;'}
    location / {
      proxy_pass http://backend;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header Host $host;
      proxy_set_header X-Forwarded-For $remote_addr;
      proxy_buffering on;
    }
  }
}
`;
}

/** perimeter with an HTTPS listener (HTTP/1.1 and HTTP/2 by ALPN) for the TLS scenarios; sites bench.test and localhost (h2load's :authority). */
export function perimeterTlsPlatformYaml(o: { httpsPort: number; backendPort: number; cert: string; key: string; resumption?: boolean }): string {
  return `# perimeter (TLS) for bench/run.ts
clusters:
  web:
    listen: { https: "127.0.0.1:${o.httpsPort}" }
    timeouts: { client-idle: 300s }
    tls:
      certificates:
        - { cert: "${o.cert}", key: "${o.key}" }${o.resumption === false ? '\n      session-tickets: false' : ''}
access-log:
  path: "off"
defaults:
  health: { type: none }
discovery:
  static:
    bench-backend: ["127.0.0.1:${o.backendPort}"]
`;
}

/** HAProxy 2.6 mode tcp, one thread: the reference for the TCP proxy. */
export function haproxyTcpConf(dir: string, o: { port: number; backendPort: number }): string {
  return `# HAProxy (mode tcp) for bench/run.ts
global
  nbthread 1
  maxconn 1000
  pidfile ${dir}/haproxy-tcp.pid
defaults
  mode tcp
  timeout connect 3s
  timeout client 300s
  timeout server 300s
frontend fe
  bind 127.0.0.1:${o.port} backlog 4096
  default_backend be
backend be
  server b1 127.0.0.1:${o.backendPort}
`;
}

/** perimeter with a TCP proxy listener in front of the backend; the allowlist must then hold 127.0.0.1. */
export function perimeterTcpPlatformYaml(o: { httpPort: number; tcpPort: number; adminPort: number; backendPort: number }): string {
  return `# perimeter (TCP proxy) for bench/run.ts
clusters:
  web:
    listen: { http: "127.0.0.1:${o.httpPort}" }
access-log:
  path: "off"
admin:
  listen: "127.0.0.1:${o.adminPort}"
defaults:
  health: { type: none }
discovery:
  static:
    bench-backend: ["127.0.0.1:${o.backendPort}"]
tcp:
  bench:
    listen: "127.0.0.1:${o.tcpPort}"
    service: bench-backend
    allowlist: bench
`;
}

/** sites/bench.yaml; each configuration change adds another site so the reload is a real change. */
export function perimeterSitesYaml(generation: number, extraHosts: readonly string[] = []): string {
  let s = `${BENCH_HOST}:\n  service: bench-backend\n`;
  for (const h of extraHosts) s += `${h}:\n  service: bench-backend\n`;
  if (generation > 0) s += `change-${generation}.${BENCH_HOST}:\n  service: bench-backend\n`;
  return s;
}

// ---------------------------------------------------------------- CPU profiles

interface CpuProfileNode {
  readonly id: number;
  readonly callFrame: { readonly functionName: string; readonly url: string; readonly lineNumber: number };
}
export interface CpuProfile {
  readonly nodes: readonly CpuProfileNode[];
  readonly samples: readonly number[];
  readonly timeDeltas: readonly number[];
}

export interface ProfileEntry {
  readonly name: string;
  readonly where: string;
  readonly category: string;
  readonly selfMs: number;
  readonly share: number;
}

export function profileCategory(functionName: string, url: string): string {
  if (functionName === '(idle)') return 'idle (epoll wait)';
  if (functionName === '(garbage collector)') return 'GC';
  if (functionName === '(program)') return 'native (program)';
  if (url.includes('/dist/src/') || url.includes('/src/')) return 'perimeter';
  if (url.startsWith('node:')) return 'node internals';
  if (url === '') return 'native';
  return 'other JS';
}

/** Self time per function (top `limit`) and per category, from a V8 .cpuprofile. */
export function summarizeProfile(p: CpuProfile, limit = 25): { totalMs: number; top: ProfileEntry[]; categories: { category: string; share: number }[] } {
  const byId = new Map<number, CpuProfileNode>();
  for (const n of p.nodes) byId.set(n.id, n);
  const self = new Map<string, { name: string; where: string; category: string; us: number }>();
  let total = 0;
  for (let i = 0; i < p.samples.length; i++) {
    const node = byId.get(p.samples[i]!);
    const dt = p.timeDeltas[i] ?? 0;
    if (!node || dt <= 0) continue;
    total += dt;
    const cf = node.callFrame;
    // Paths relative to the build output (src/web/http1.js), or the bare file name of a dependency.
    const file = cf.url.includes('/dist/') ? cf.url.slice(cf.url.lastIndexOf('/dist/') + 6) : cf.url.replace(/^file:\/\/.*\//, '');
    const where = cf.url ? `${file}:${cf.lineNumber + 1}` : '';
    const key = `${cf.functionName}@${where}`;
    const e = self.get(key) ?? { name: cf.functionName || '(anonymous)', where, category: profileCategory(cf.functionName, cf.url), us: 0 };
    e.us += dt;
    self.set(key, e);
  }
  const entries = [...self.values()].sort((a, b) => b.us - a.us);
  const cats = new Map<string, number>();
  for (const e of entries) cats.set(e.category, (cats.get(e.category) ?? 0) + e.us);
  return {
    totalMs: total / 1000,
    top: entries.slice(0, limit).map((e) => ({ name: e.name, where: e.where, category: e.category, selfMs: e.us / 1000, share: total ? e.us / total : 0 })),
    categories: [...cats.entries()].sort((a, b) => b[1] - a[1]).map(([category, us]) => ({ category, share: total ? us / total : 0 })),
  };
}
