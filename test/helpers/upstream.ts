/**
 * A real HTTP backend for tests, on 127.0.0.1 and an ephemeral port, whose
 * behaviour the test steers while it runs: status, delay, failures (reset or
 * hang, for a share of requests), a separate health endpoint, stop and
 * restart on the same port. It counts what it received so tests can assert
 * on deliveries (e.g. "a POST reached a backend exactly once").
 */
import * as http from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import type { BalancerKind, HealthSpec, PanicSpec, PassiveHealthSpec, RetrySpec, ServiceSpec } from '../../src/config/types.js';
import type { Balancer } from '../../src/upstream/types.js';

/** How the backend misbehaves: 'reset' destroys the connection once the request head arrived, 'hang' never answers. */
export type UpstreamFailMode = 'none' | 'reset' | 'hang';

export interface ReceivedRequest {
  readonly method: string;
  readonly url: string;
  readonly headers: http.IncomingHttpHeaders;
  /** Raw header lines as received, for tests on header order and duplicates. */
  readonly rawHeaders: readonly string[];
  readonly body: Buffer;
  readonly remotePort: number;
}

/** Replaces the default behaviour; `body` is the full request body. */
export type UpstreamHandler = (req: http.IncomingMessage, res: http.ServerResponse, body: Buffer) => void;

export interface UpstreamOptions {
  /** Appears in the default body and in the `x-upstream` response header. */
  name?: string;
  handler?: UpstreamHandler;
  /** Path answered with the health status (default /healthz); not counted in `requests`. */
  healthPath?: string;
  host?: string;
  /** Fixed port (default 0 = ephemeral). */
  port?: number;
}

export interface Upstream {
  readonly name: string;
  readonly host: string;
  readonly port: number;
  /** http://host:port */
  readonly url: string;
  /** Requests received on any path except the health path (including failed ones). */
  readonly requests: number;
  /** Requests received on the health path. */
  readonly healthChecks: number;
  /** TCP connections accepted. */
  readonly connections: number;
  /** Currently open TCP connections. */
  readonly openConnections: number;
  /** Every non-health request, in arrival order. */
  readonly received: readonly ReceivedRequest[];
  readonly listening: boolean;
  setStatus(status: number): void;
  setHealth(status: number): void;
  setDelay(ms: number): void;
  /** Misbehave on a share (0..1, default 1) of non-health requests. */
  setFail(mode: UpstreamFailMode, rate?: number): void;
  setBody(body: string | Buffer): void;
  setHandler(handler: UpstreamHandler | undefined): void;
  /** Zero the counters and the received log. */
  resetCounts(): void;
  /** Close the listener and drop every connection; the port is kept for restart(). */
  stop(): Promise<void>;
  /** Listen again on the same host and port. */
  restart(): Promise<void>;
  /** stop() for good; safe to call twice. */
  close(): Promise<void>;
}

export async function startUpstream(opts: UpstreamOptions = {}): Promise<Upstream> {
  const name = opts.name ?? 'upstream';
  const host = opts.host ?? '127.0.0.1';
  const healthPath = opts.healthPath ?? '/healthz';
  let status = 200;
  let health = 200;
  let delayMs = 0;
  let failMode: UpstreamFailMode = 'none';
  let failRate = 1;
  let body: string | Buffer = `${name}\n`;
  let handler = opts.handler;
  let requests = 0;
  let healthChecks = 0;
  let connections = 0;
  let received: ReceivedRequest[] = [];
  let listening = false;
  const sockets = new Set<Socket>();
  const timers = new Set<NodeJS.Timeout>();

  const later = (ms: number, fn: () => void): void => {
    if (ms <= 0) return fn();
    const t = setTimeout(() => {
      timers.delete(t);
      fn();
    }, ms);
    timers.add(t);
  };

  const server = http.createServer((req, res) => {
    const isHealth = (req.url ?? '').split('?')[0] === healthPath;
    if (isHealth) {
      healthChecks++;
      req.resume();
      res.writeHead(health, { 'content-type': 'text/plain', 'x-upstream': name });
      res.end(`${health}\n`);
      return;
    }
    requests++;
    const failing = failMode !== 'none' && Math.random() < failRate;
    if (failing && failMode === 'reset') {
      req.socket.destroy();
      return;
    }
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('error', () => {});
    req.on('end', () => {
      const full = Buffer.concat(chunks);
      received.push({
        method: req.method ?? '',
        url: req.url ?? '',
        headers: req.headers,
        rawHeaders: req.rawHeaders,
        body: full,
        remotePort: req.socket.remotePort ?? 0,
      });
      if (failing) return; // 'hang': never answer; stop() cleans up
      later(delayMs, () => {
        if (res.destroyed) return;
        if (handler) return handler(req, res, full);
        res.writeHead(status, { 'content-type': 'text/plain', 'x-upstream': name });
        res.end(body);
      });
    });
  });
  server.on('connection', (s: Socket) => {
    connections++;
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  });
  server.on('clientError', (_err, s) => s.destroy());

  const listen = (port: number): Promise<number> =>
    new Promise((resolve, reject) => {
      server.once('error', reject);
      server.listen({ host, port }, () => {
        server.off('error', reject);
        listening = true;
        resolve((server.address() as AddressInfo).port);
      });
    });

  const port = await listen(opts.port ?? 0);

  const stop = async (): Promise<void> => {
    for (const t of timers) clearTimeout(t);
    timers.clear();
    if (!listening) return;
    listening = false;
    const closed = new Promise<void>((resolve) => server.close(() => resolve()));
    for (const s of sockets) s.destroy();
    await closed;
  };

  const urlHost = host.includes(':') ? `[${host}]` : host;
  return {
    name,
    host,
    port,
    url: `http://${urlHost}:${port}`,
    get requests() {
      return requests;
    },
    get healthChecks() {
      return healthChecks;
    },
    get connections() {
      return connections;
    },
    get openConnections() {
      return sockets.size;
    },
    get received() {
      return received;
    },
    get listening() {
      return listening;
    },
    setStatus: (n) => void (status = n),
    setHealth: (n) => void (health = n),
    setDelay: (ms) => void (delayMs = ms),
    setFail: (mode, rate = 1) => {
      failMode = mode;
      failRate = rate;
    },
    setBody: (b) => void (body = b),
    setHandler: (h) => void (handler = h),
    resetCounts: () => {
      requests = 0;
      healthChecks = 0;
      connections = 0;
      received = [];
    },
    stop,
    restart: async () => {
      if (listening) return;
      await listen(port);
    },
    close: stop,
  };
}

/** Start several upstreams named `${prefix}0..n-1`. */
export async function startUpstreams(n: number, opts: UpstreamOptions = {}): Promise<Upstream[]> {
  const prefix = opts.name ?? 'upstream';
  return Promise.all(Array.from({ length: n }, (_, i) => startUpstream({ ...opts, name: `${prefix}${i}` })));
}

/**
 * A ServiceSpec for tests: short intervals, checks off unless asked, with
 * any part overridden. Values mirror what the config loader produces.
 */
export function testServiceSpec(
  name: string,
  over: {
    health?: Partial<HealthSpec>;
    passive?: Partial<PassiveHealthSpec>;
    panic?: Partial<PanicSpec>;
    retries?: Partial<RetrySpec>;
    balancer?: BalancerKind;
  } = {},
): ServiceSpec {
  return {
    name,
    source: 'static',
    balancer: over.balancer ?? 'round-robin',
    health: {
      kind: 'none',
      path: '/healthz',
      intervalMs: 50,
      // Longer than the interval on purpose: a loaded CI machine must not fail checks by timeout.
      timeoutMs: 1000,
      jitter: 0,
      rise: 2,
      fall: 3,
      expectStatus: [[200, 399]],
      host: '',
      ...over.health,
    },
    passive: { consecutiveFailures: 0, baseEjectionMs: 100, maxEjectionMs: 1000, maxEjectedPercent: 50, ...over.passive },
    panic: { thresholdPercent: 50, mode: 'serve-all', ...over.panic },
    retries: { attempts: 1, budgetPercent: 20, minRetryConcurrency: 3, ...over.retries },
  };
}

/** Plain round robin over the candidates, skipping `exclude` where possible; for pool tests that must not depend on a real balancer. */
export function testRoundRobin(): Balancer {
  let next = 0;
  return {
    kind: 'test-round-robin',
    pick(candidates, exclude) {
      for (let i = 0; i < candidates.length; i++) {
        const b = candidates[(next + i) % candidates.length];
        if (b && !exclude?.has(b)) {
          next = (next + i + 1) % candidates.length;
          return b;
        }
      }
      const b = candidates[next++ % candidates.length];
      if (!b) throw new Error('pick from an empty candidate list');
      return b;
    },
    explain: () => ({ score: 0, reason: 'round robin' }),
  };
}

/** Resolve when `cond()` holds, polling every `stepMs`; reject after `timeoutMs`. */
export async function waitFor(cond: () => boolean, timeoutMs = 5000, stepMs = 5): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`condition not met within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, stepMs));
  }
}
