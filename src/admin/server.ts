/**
 * The admin listener: Prometheus metrics and the JSON admin API (config
 * generation and source, site inventory, pools, backends, reload). Not on
 * the request path: node:http is fine here.
 *
 * Access: with a token configured (required off loopback, enforced by the
 * loader) every request must carry `Authorization: Bearer <token>`. Without
 * one the listener is on loopback, where the remaining risk is a browser on
 * the same host: Host must be an address or localhost (DNS rebinding) and a
 * POST from another origin is refused (CSRF).
 *
 * The web UI under /ui/ (./ui/app.ts, docs/admin-ui.md) has its own login
 * (local accounts or the token) and session cookie instead of the bearer
 * token, which a browser cannot send.
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { createHash, timingSafeEqual } from 'node:crypto';
import type { AdminSpec, ListenAddress } from '../config/types.js';
import { siteInventory } from '../config/inventory.js';
import type { Logger } from '../core/log.js';
import type { BackendDescription } from '../upstream/pool.js';
import type { AdminSource } from './types.js';
import { AdminUi } from './ui/app.js';
import { ALLOWLIST_ENDPOINTS, handleAllowlistApi, healthBody, isAllowlistApiPath } from './allowlist-api.js';

export interface AdminServerOptions {
  /** Denied requests and API reloads are logged here (never a token). */
  readonly log?: Logger;
}

/** One row of GET /api/backends. */
export interface BackendRow {
  readonly service: string;
  readonly key: string;
  /** Active health: 'unchecked' | 'healthy' | 'unhealthy'. */
  readonly health: BackendDescription['active'];
  readonly available: boolean;
  readonly ejected: boolean;
  readonly ejectedUntil: string | null;
  /** The balancer's score (lower is preferred); null when not finite. */
  readonly score: number | null;
  /** Why the backend is where it is: ejection or failed check first, else the score's reason. */
  readonly reason: string;
  readonly scoreReason: string;
  readonly inflight: number;
}

const JSON_TYPE = 'application/json; charset=utf-8';
/** Denied requests are logged at most this often (a scanner must not flood the event log). */
const DENIED_LOG_INTERVAL_MS = 10_000;

interface Reply {
  readonly status: number;
  /** A string is sent as is (with contentType); anything else as JSON. */
  readonly body: unknown;
  readonly contentType?: string;
  readonly headers?: Readonly<Record<string, string>>;
}

type Handler = (source: AdminSource, req: http.IncomingMessage) => Promise<Reply>;

const json = (status: number, body: unknown): Reply => ({ status, body });

function backendReason(b: BackendDescription): string {
  if (b.ejected) return `ejected: ${b.lastEjectReason}`;
  if (b.active === 'unhealthy') return `unhealthy: ${b.lastCheckReason}`;
  return b.scoreReason;
}

/** Path → method → handler. HEAD is answered wherever GET is. */
const routes: ReadonlyMap<string, Readonly<Record<string, Handler>>> = new Map<string, Record<string, Handler>>([
  [
    '/metrics',
    {
      GET: async (source) => {
        const m = await source.metricsText();
        return { status: 200, body: m.body, contentType: m.contentType };
      },
    },
  ],
  ['/api/config', { GET: async (source) => json(200, source.configInfo()) }],
  [
    '/api/sites',
    {
      GET: async (source) => {
        const snapshot = source.snapshot();
        if (!snapshot) return json(503, { error: 'no configuration has been applied yet' });
        return json(200, { generation: source.configInfo().generation, sites: siteInventory(snapshot) });
      },
    },
  ],
  ['/api/pools', { GET: async (source) => json(200, { generation: source.configInfo().generation, pools: await source.pools() }) }],
  ['/api/geo', { GET: async (source) => json(200, source.geoInfo?.() ?? { enabled: false }) }],
  ['/api/tcp', { GET: async (source) => json(200, { generation: source.configInfo().generation, listeners: (await source.tcp?.()) ?? [] }) }],
  [
    '/api/backends',
    {
      GET: async (source) => {
        const rows: BackendRow[] = [];
        for (const p of await source.pools()) {
          for (const b of p.backends) {
            rows.push({
              service: p.service,
              key: b.key,
              health: b.active,
              available: b.available,
              ejected: b.ejected,
              ejectedUntil: b.ejectedUntil,
              score: Number.isFinite(b.score) ? b.score : null,
              reason: backendReason(b),
              scoreReason: b.scoreReason,
              inflight: b.inflight,
            });
          }
        }
        return json(200, { generation: source.configInfo().generation, backends: rows });
      },
    },
  ],
  ['/api/health', { GET: async (source) => json(200, healthBody(source)) }],
  [
    '/api/reload',
    {
      POST: async (source) => {
        const outcome = await source.reload('api');
        // 409: the running configuration conflicts with nothing, but the new one was refused and the old one stays.
        return json(outcome.ok ? 200 : 409, outcome);
      },
    },
  ],
]);

const index = { endpoints: [...[...routes.entries()].map(([path, methods]) => `${Object.keys(methods).join(', ')} ${path}`), ...ALLOWLIST_ENDPOINTS] };

function digest(s: string): Buffer {
  return createHash('sha256').update(s, 'utf8').digest();
}

/** The token of an `Authorization: Bearer <token>` header, if that is what was sent. */
function bearerToken(header: string | undefined): string | undefined {
  if (!header) return undefined;
  const m = /^Bearer[ \t]+(\S+)[ \t]*$/i.exec(header);
  return m?.[1];
}

/** Host header naming an address or localhost (not a name a DNS-rebinding page could use). */
const SAFE_HOST = /^(?:localhost|\d{1,3}(?:\.\d{1,3}){3}|\[[0-9a-fA-F:.]+\])(?::\d{1,5})?$/i;

export class AdminServer {
  private readonly server: http.Server;
  readonly address: ListenAddress;
  private readonly log: Logger | undefined;
  /** SHA-256 of the token: the token itself is not kept. */
  private tokenDigest: Buffer | undefined;
  private deniedLoggedAt = 0;
  private deniedSuppressed = 0;
  /** The web UI under /ui/ (its own login and sessions; docs/admin-ui.md). */
  readonly ui: AdminUi;

  private constructor(spec: AdminSpec, source: AdminSource, opts: AdminServerOptions) {
    this.address = spec.listen;
    this.log = opts.log;
    this.tokenDigest = spec.token !== undefined ? digest(spec.token) : undefined;
    this.ui = new AdminUi(spec, opts.log ? { log: opts.log } : {});
    this.server = http.createServer((req, res) => {
      void this.handle(source, req, res).catch((err: unknown) => {
        this.log?.error({ err, event: { action: 'admin-error' }, url: { path: req.url } }, `admin request failed: ${String(err)}`);
        if (res.headersSent) {
          res.destroy();
          return;
        }
        send(res, json(500, { error: `internal error: ${err instanceof Error ? err.message : String(err)}` }));
      });
    });
    this.server.headersTimeout = 10_000;
    this.server.requestTimeout = 30_000;
  }

  static start(spec: AdminSpec, source: AdminSource, opts: AdminServerOptions = {}): Promise<AdminServer> {
    const admin = new AdminServer(spec, source, opts);
    const addr = spec.listen;
    return new Promise((resolve, reject) => {
      admin.server.once('error', (err) => reject(new Error(`admin listener cannot listen on ${addr.host}:${addr.port}: ${err.message}`)));
      admin.server.listen({ host: addr.host, port: addr.port }, () => resolve(admin));
    });
  }

  /**
   * Take a reloaded spec for the same address: a new or removed token
   * applies to the next request. (A new address needs a new listener.)
   */
  update(spec: AdminSpec): void {
    this.tokenDigest = spec.token !== undefined ? digest(spec.token) : undefined;
    this.ui.update(spec);
  }

  port(): number {
    return (this.server.address() as AddressInfo).port;
  }

  close(): Promise<void> {
    return new Promise((resolve) => {
      this.server.close(() => resolve());
      this.server.closeAllConnections();
    });
  }

  private async handle(source: AdminSource, req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const uiPath = (req.url ?? '/').split('?')[0] ?? '/';
    // The web UI authenticates with its own login and session cookie (a browser cannot send the bearer token).
    if (AdminUi.owns(uiPath)) {
      await this.ui.handle(source, req, res);
      return;
    }
    if (uiPath === '/' && (req.method === 'GET' || req.method === 'HEAD') && /\btext\/html\b/.test(req.headers.accept ?? '')) {
      req.resume();
      send(res, { status: 303, body: 'see /ui/\n', headers: { location: '/ui/' } });
      return;
    }
    // Bodies are read by the allowlist API only; elsewhere drain them so keep-alive works.
    const readsBody = isAllowlistApiPath(uiPath);
    if (!readsBody) req.resume();
    const denied = this.deny(req);
    if (denied) {
      req.resume();
      send(res, denied);
      return;
    }
    if (readsBody) {
      send(res, await handleAllowlistApi(source, req, this.log));
      return;
    }
    const path = (req.url ?? '/').split('?')[0] ?? '/';
    const method = req.method ?? 'GET';
    if (path === '/' && (method === 'GET' || method === 'HEAD')) {
      send(res, json(200, index));
      return;
    }
    const methods = routes.get(path);
    if (!methods) {
      send(res, json(404, { error: `no such endpoint: ${path}`, ...index }));
      return;
    }
    // hasOwn: a method named like an Object.prototype member must not find one.
    const handler = Object.hasOwn(methods, method) ? methods[method] : method === 'HEAD' ? methods.GET : undefined;
    if (!handler) {
      const allow = Object.keys(methods).flatMap((m) => (m === 'GET' ? ['GET', 'HEAD'] : [m]));
      send(res, { status: 405, body: { error: `${path} does not take ${method}; use ${allow.join(' or ')}` }, headers: { allow: allow.join(', ') } });
      return;
    }
    if (path === '/api/reload') this.log?.info({ event: { action: 'admin-reload' }, client: { address: req.socket.remoteAddress } }, 'reload requested through the admin API');
    send(res, await handler(source, req));
  }

  /** The answer to a request that may not proceed, or undefined. */
  private deny(req: http.IncomingMessage): Reply | undefined {
    if (this.tokenDigest) {
      const given = bearerToken(req.headers.authorization);
      // Digests have equal length, so timingSafeEqual compares without leaking where they differ.
      if (given !== undefined && timingSafeEqual(digest(given), this.tokenDigest)) return undefined;
      const why = given === undefined ? 'no bearer token' : 'wrong bearer token';
      this.logDenied(req, why);
      return {
        status: 401,
        body: { error: `${why}: send 'Authorization: Bearer <token>' with the token from admin.token-file` },
        headers: { 'www-authenticate': given === undefined ? 'Bearer realm="perimeter-admin"' : 'Bearer realm="perimeter-admin", error="invalid_token"' },
      };
    }
    const host = req.headers.host;
    if (host !== undefined && !SAFE_HOST.test(host)) {
      this.logDenied(req, 'host name in Host header');
      return json(403, { error: 'without an admin token, the admin listener answers requests to an IP address or localhost only' });
    }
    const origin = req.headers.origin;
    if (req.method !== 'GET' && req.method !== 'HEAD' && origin !== undefined && origin !== `http://${host ?? ''}`) {
      this.logDenied(req, 'cross-origin request');
      return json(403, { error: 'cross-origin requests may not change anything' });
    }
    return undefined;
  }

  private logDenied(req: http.IncomingMessage, reason: string): void {
    if (!this.log) return;
    const now = Date.now();
    if (now - this.deniedLoggedAt < DENIED_LOG_INTERVAL_MS) {
      this.deniedSuppressed++;
      return;
    }
    const suppressed = this.deniedSuppressed;
    this.deniedLoggedAt = now;
    this.deniedSuppressed = 0;
    this.log.warn(
      { event: { action: 'admin-denied', reason }, client: { address: req.socket.remoteAddress }, http: { request: { method: req.method } }, url: { path: req.url }, suppressed },
      `admin request denied (${reason}) from ${req.socket.remoteAddress ?? '?'}${suppressed > 0 ? `; ${suppressed} more denied since the last report` : ''}`,
    );
  }
}

function send(res: http.ServerResponse, reply: Reply): void {
  const text = typeof reply.body === 'string' ? reply.body : JSON.stringify(reply.body, null, 2) + '\n';
  res.writeHead(reply.status, {
    'content-type': typeof reply.body === 'string' ? (reply.contentType ?? 'text/plain; charset=utf-8') : JSON_TYPE,
    'content-length': Buffer.byteLength(text),
    'cache-control': 'no-store',
    ...reply.headers,
  });
  res.end(text);
}
