/**
 * A small bounded load generator for acceptance tests: N concurrent
 * keep-alive clients (one node:http Agent socket each) sending requests to
 * 127.0.0.1 until a request count or a duration is reached, whichever comes
 * first. It records status counts, transport errors and per-request results
 * so tests can assert "zero errors" or "every POST answered 200 or 502".
 *
 * Bounded on purpose: `maxRequests` and `durationMs` both default to finite
 * values, and every request has its own timeout, so a stuck proxy fails a
 * test instead of hanging it.
 */
import http from 'node:http';

export interface LoadRequest {
  readonly method?: string;
  readonly path?: string;
  readonly headers?: Readonly<Record<string, string>>;
  readonly body?: string | Buffer;
}

export interface LoadResult {
  /** Which client (0..concurrency-1) and which of its requests. */
  readonly client: number;
  readonly seq: number;
  /** Global sequence number, in send order. */
  readonly n: number;
  readonly status: number; // 0 when the request failed at transport level
  readonly error: string; // '' on an HTTP answer
  readonly headers: http.IncomingHttpHeaders;
  readonly body: string;
  readonly startMs: number;
  readonly ms: number;
}

export interface LoadOptions {
  /** 127.0.0.1 port to send to. */
  readonly port: number;
  /** Host header (the site). */
  readonly host: string;
  /** Concurrent keep-alive clients (default 8, at most 64). */
  readonly concurrency?: number;
  /** Stop starting new requests after this long (default 3000 ms, at most 20 s). */
  readonly durationMs?: number;
  /** Stop after this many requests in total (default 100 000). */
  readonly maxRequests?: number;
  /** Per-request timeout (default 5000 ms). */
  readonly requestTimeoutMs?: number;
  /** The request to send; called per request with the global sequence number. */
  readonly request?: (n: number, client: number) => LoadRequest;
  /** Called once `atMs` after the start (e.g. to kill a backend under load). */
  readonly events?: readonly { readonly atMs: number; readonly run: () => void | Promise<void> }[];
  /** Keep response bodies (default false: only status and headers). */
  readonly keepBodies?: boolean;
  /** Pace the load to about this many requests per second in total (default: as fast as possible). */
  readonly ratePerSecond?: number;
}

export interface LoadReport {
  readonly results: readonly LoadResult[];
  readonly statuses: ReadonlyMap<number, number>;
  /** Transport-level errors (connection reset, timeout...), by message. */
  readonly errors: ReadonlyMap<string, number>;
  readonly total: number;
  readonly elapsedMs: number;
  /** Results whose status is not 2xx or that failed at transport level. */
  readonly failed: readonly LoadResult[];
  /** TCP connections the clients opened (= concurrency when no keep-alive connection was lost). */
  readonly connections: number;
}

export async function runLoad(o: LoadOptions): Promise<LoadReport> {
  const concurrency = Math.min(64, Math.max(1, o.concurrency ?? 8));
  const durationMs = Math.min(20_000, Math.max(1, o.durationMs ?? 3000));
  const maxRequests = Math.max(1, o.maxRequests ?? 100_000);
  const timeoutMs = o.requestTimeoutMs ?? 5000;
  const make: (n: number, client: number) => LoadRequest = o.request ?? (() => ({}));
  const start = Date.now();
  const results: LoadResult[] = [];
  let sent = 0;
  const seen = new WeakSet<object>();
  let connections = 0;
  // Per client: one request every `gapMs` (0 = back to back).
  const gapMs = o.ratePerSecond ? (concurrency * 1000) / o.ratePerSecond : 0;

  const timers: NodeJS.Timeout[] = [];
  const eventRuns: Promise<void>[] = [];
  for (const ev of o.events ?? []) {
    timers.push(
      setTimeout(() => {
        eventRuns.push(Promise.resolve().then(ev.run));
      }, ev.atMs),
    );
  }

  const one = (agent: http.Agent, client: number, seq: number, n: number): Promise<LoadResult> => {
    const r = make(n, client);
    const body = r.body === undefined ? undefined : Buffer.isBuffer(r.body) ? r.body : Buffer.from(r.body);
    const headers: Record<string, string> = { host: o.host, ...r.headers };
    if (body) headers['content-length'] = String(body.length);
    const t0 = Date.now();
    return new Promise((resolve) => {
      let settled = false;
      const done = (status: number, error: string, h: http.IncomingHttpHeaders, text: string): void => {
        if (settled) return;
        settled = true;
        resolve({ client, seq, n, status, error, headers: h, body: text, startMs: t0 - start, ms: Date.now() - t0 });
      };
      const req = http.request(
        { host: '127.0.0.1', port: o.port, method: r.method ?? 'GET', path: r.path ?? `/load/${n}`, headers, agent, timeout: timeoutMs },
        (res) => {
          const chunks: Buffer[] = [];
          res.on('data', (c: Buffer) => {
            if (o.keepBodies) chunks.push(c);
          });
          res.on('end', () => done(res.statusCode ?? 0, '', res.headers, Buffer.concat(chunks).toString()));
          res.on('error', (e: Error & { code?: string }) => done(0, e.code ?? e.message, res.headers, ''));
        },
      );
      req.on('socket', (sock) => {
        if (!seen.has(sock)) {
          seen.add(sock);
          connections++;
        }
      });
      req.on('timeout', () => req.destroy(Object.assign(new Error('request timeout'), { code: 'LOAD_TIMEOUT' })));
      req.on('error', (e: Error & { code?: string }) => done(0, e.code ?? e.message, {}, ''));
      req.end(body);
    });
  };

  const client = async (id: number): Promise<void> => {
    // One socket per client: N clients = N keep-alive connections.
    const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
    try {
      // Stagger clients so a paced load is spread evenly.
      if (gapMs > 0) await new Promise((r) => setTimeout(r, (gapMs * id) / concurrency));
      const clientStart = Date.now();
      for (let seq = 0; sent < maxRequests && Date.now() - start < durationMs; seq++) {
        const n = sent++;
        results.push(await one(agent, id, seq, n));
        if (gapMs > 0) {
          const wait = clientStart + (seq + 1) * gapMs - Date.now();
          if (wait > 0) await new Promise((r) => setTimeout(r, wait));
        }
      }
    } finally {
      agent.destroy();
    }
  };

  await Promise.all(Array.from({ length: concurrency }, (_, i) => client(i)));
  for (const t of timers) clearTimeout(t);
  await Promise.all(eventRuns);

  const statuses = new Map<number, number>();
  const errors = new Map<string, number>();
  const failed: LoadResult[] = [];
  for (const r of results) {
    if (r.error) errors.set(r.error, (errors.get(r.error) ?? 0) + 1);
    else statuses.set(r.status, (statuses.get(r.status) ?? 0) + 1);
    if (r.error || r.status < 200 || r.status > 299) failed.push(r);
  }
  return { results, statuses, errors, total: results.length, elapsedMs: Date.now() - start, failed, connections };
}

/** "200×1234 502×3 ECONNRESET×1" for assertion messages and diagnostics. */
export function summarize(report: LoadReport): string {
  const parts = [...report.statuses].sort((a, b) => a[0] - b[0]).map(([s, n]) => `${s}×${n}`);
  for (const [e, n] of report.errors) parts.push(`${e}×${n}`);
  return `${report.total} requests in ${report.elapsedMs} ms: ${parts.join(' ') || '(none)'}`;
}
