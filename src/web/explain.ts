/**
 * `perimeter explain`: what the web proxy would do with a request, and which
 * rule says so, without sending it.
 *
 * The answer must be the proxy's own, so every decision is made by the code
 * the proxy runs: the request head is parsed by `parseRequestHead` (host
 * validation and `normalizeHost`), routes are built by
 * `compileListenerRoutes` and looked up by `findRoute`, and the client is
 * checked against the same `CidrSet` of trusted proxies. Explain never picks
 * a backend: the pools it compiles routes with are stand-ins whose
 * `acquire` is never called.
 */
import type { ClusterSpec, LimitSpec, LogOmit, PanicMode, ServiceSpec, Snapshot, TimeoutSpec } from '../config/types.js';
import type { ErrorDef } from '../core/errors.js';
import { Errors } from '../core/errors.js';
import { clientAddress } from '../net/cidr.js';
import type { PoolDescription } from '../upstream/pool.js';
import { backendKey } from '../upstream/backend.js';
import type { Backend } from '../upstream/backend.js';
import { formatDuration } from '../config/values.js';
import type { PickResult } from '../upstream/types.js';
import { ParseError, parseRequestHead } from './http1.js';
import type { HeadLimits, RequestHead } from './http1.js';
import { IDEMPOTENT, RetryBudget } from './proxy.js';
import type { ListenerRoutes, PoolLike, SiteRoute } from './proxy.js';
import { compileListenerRoutes, findRoute } from './routes.js';

export interface ExplainInput {
  /** The Host header as a client would send it (any case, optional port). */
  readonly host: string;
  /** Request target (default "/"); a query string is allowed. */
  readonly path?: string;
  /** Default GET. Case-sensitive, as in HTTP. */
  readonly method?: string;
  /** Client (peer) address; decides whether forwarding headers are trusted. */
  readonly from?: string;
  /** The cluster whose listener receives the request (default: the one that declares the host). */
  readonly cluster?: string;
}

export type BackendHealth = 'healthy' | 'unhealthy' | 'unchecked' | 'unknown';

export interface ExplainedBackend {
  readonly key: string;
  readonly weight: number;
  readonly health: BackendHealth;
  /** Only with live state (--admin). */
  readonly ejected?: boolean;
  readonly ejectedUntil?: string | null;
  /** Takes traffic outside panic (healthy or unchecked, and not ejected). */
  readonly available?: boolean;
  readonly score?: number;
  readonly reason?: string;
}

export interface Explanation {
  readonly request: { readonly host: string; readonly normalizedHost: string; readonly path: string; readonly method: string; readonly from: string | null };
  readonly cluster: string;
  /** e.g. "http://127.0.0.1:8080" */
  readonly listener: string | null;
  readonly outcome: 'route' | 'reject';
  /** The status perimeter answers itself with (reject only; null when a backend answers). */
  readonly status: number | null;
  readonly errorCode: string | null;
  readonly site: string | null;
  /** 'exact' or 'wildcard "*.example.com"' */
  readonly matchedBy: string | null;
  /** "sites/team.yaml:3:1" */
  readonly declaredAt: string | null;
  readonly owner: string | null;
  readonly service: string | null;
  readonly serviceSource: ServiceSpec['source'] | null;
  /** Where the backend list comes from. */
  readonly backendsFrom: 'config' | 'admin' | 'run time' | null;
  readonly backends: readonly ExplainedBackend[];
  readonly balancer: string | null;
  readonly panic: { readonly inPanic?: boolean; readonly mode: PanicMode; readonly thresholdPercent: number } | null;
  readonly retries: { readonly idempotent: boolean; readonly attempts: number; readonly budgetPercent: number; readonly minConcurrency: number; readonly whenAllowed: string } | null;
  readonly forwarding: { readonly trustedPeer: boolean; readonly xForwardedFor: 'replaced' | 'appended' };
  /** The site's timeouts when routed, the cluster's otherwise. */
  readonly timeouts: TimeoutSpec;
  readonly limits: LimitSpec;
  readonly logPolicy: { readonly omit: readonly LogOmit[] };
  /** Each decision with the rule that made it. */
  readonly reasons: readonly string[];
}

/** Thrown for a request explain cannot place (e.g. an unknown cluster); the CLI reports it as a usage error. */
export class ExplainInputError extends Error {}

const NEVER_PICKED: PickResult = Object.freeze({ ok: false, error: 'NO_BACKEND' });

/** A pool for route compilation only: explain never picks a backend. */
function standInPool(service: string): PoolLike {
  return {
    service,
    acquire: (_exclude?: ReadonlySet<Backend>) => NEVER_PICKED,
    release: () => {},
  };
}

/** Routes for one cluster's listener, built exactly as the runtime builds them. */
export function explainRoutes(snapshot: Snapshot, cluster: ClusterSpec): ListenerRoutes {
  return compileListenerRoutes(snapshot, cluster, 0, (name) => {
    const spec = snapshot.services.get(name);
    return spec ? { pool: standInPool(name), budget: new RetryBudget(), retries: spec.retries } : undefined;
  });
}

function listenerUrl(c: ClusterSpec): string | null {
  const a = c.listen.http;
  if (!a) return null;
  const h = a.host === '' ? '*' : a.host.includes(':') ? `[${a.host}]` : a.host;
  return `http://${h}:${a.port}`;
}

function where(pos: { file: string; line: number; column: number }): string {
  return `${pos.file}:${pos.line}:${pos.column}`;
}

function defaultCluster(snapshot: Snapshot): ClusterSpec | undefined {
  for (const c of snapshot.clusters.values()) if (c.isDefault) return c;
  return snapshot.clusters.values().next().value;
}

/** Clusters whose listener port is `port` (for `--port`). */
export function clustersOnPort(snapshot: Snapshot, port: number): string[] {
  return [...snapshot.clusters.values()].filter((c) => c.listen.http?.port === port).map((c) => c.name);
}

function matchedBy(route: SiteRoute): string {
  return route.site.host.startsWith('*.') ? `wildcard "${route.site.host}"` : 'exact';
}

/** Parse the request the way the proxy parses one from the wire. */
function parseAsProxy(method: string, path: string, host: string, limits: HeadLimits): RequestHead | ParseError {
  // A control character cannot arrive inside one header or request line
  // (CR/LF end it, the rest are refused), so refuse it here as the parser would.
  // eslint-disable-next-line no-control-regex -- rejecting control characters is the point
  const ctl = /[\x00-\x08\x0a-\x1f\x7f]/;
  if (ctl.test(host)) return new ParseError(Errors.BAD_HEADER, 'control character in header Host');
  // eslint-disable-next-line no-control-regex -- as above; a tab is not allowed in a request line either
  if (/[\x00-\x1f\x7f]/.test(method) || /[\x00-\x1f\x7f]/.test(path)) return new ParseError(Errors.BAD_REQUEST, 'control character in the request line');
  const text = `${method} ${path} HTTP/1.1\r\nHost: ${host}\r\n\r\n`;
  const buf = Buffer.from(text, 'latin1');
  try {
    return parseRequestHead(buf, 0, buf.length, limits);
  } catch (e) {
    if (e instanceof ParseError) return e;
    throw e;
  }
}

export function explainRequest(snapshot: Snapshot, req: ExplainInput, live?: readonly PoolDescription[]): Explanation {
  const method = req.method ?? 'GET';
  const path = req.path ?? '/';
  const from = req.from === undefined ? null : clientAddress(req.from);
  const reasons: string[] = [];

  // 1. The listener: the one named, or the one of the cluster that declares the host.
  let cluster: ClusterSpec | undefined;
  const declaring: ClusterSpec[] = [];
  if (req.cluster !== undefined) {
    cluster = snapshot.clusters.get(req.cluster);
    if (!cluster) throw new ExplainInputError(`no cluster '${req.cluster}' in this configuration (clusters: ${[...snapshot.clusters.keys()].join(', ')})`);
  }
  // Which clusters would route this host (for choosing a listener and for "it is in another cluster").
  const preliminary = parseAsProxy(method, path, req.host, { headerBytes: Infinity, headerCount: Infinity, uriLength: Infinity });
  const hostForLookup = preliminary instanceof ParseError ? undefined : preliminary.host;
  if (hostForLookup !== undefined && hostForLookup !== req.host) reasons.push(`Host '${req.host}' is matched as '${hostForLookup}' (lower-case, without port and trailing dot)`);
  if (method !== method.toUpperCase()) reasons.push(`method '${method}' is case-sensitive (RFC 9110 §9.1): it is not ${method.toUpperCase()}`);
  const routed = new Map<string, SiteRoute>();
  if (hostForLookup !== undefined) {
    for (const c of snapshot.clusters.values()) {
      const r = findRoute(explainRoutes(snapshot, c), hostForLookup);
      if (r) {
        routed.set(c.name, r);
        declaring.push(c);
      }
    }
  }
  if (!cluster) {
    // An exact site beats a wildcard when two clusters could take the host.
    const best = declaring.find((c) => routed.get(c.name)?.site.host === hostForLookup) ?? declaring[0];
    if (best) {
      cluster = best;
      reasons.push(`no --cluster or --port given: explaining on the listener of cluster ${best.name}, which declares the matching site`);
    } else {
      cluster = defaultCluster(snapshot);
      if (!cluster) throw new ExplainInputError('the configuration has no cluster');
      reasons.push(`no --cluster or --port given and no cluster declares the host: explaining on the listener of the default cluster ${cluster.name}`);
    }
  }
  const c = cluster;
  const routes = explainRoutes(snapshot, c);
  const trustedPeer = from !== null && routes.trusted.has(from);
  const forwarding = { trustedPeer, xForwardedFor: trustedPeer ? ('appended' as const) : ('replaced' as const) };
  let forwardingReason: string;
  if (from === null) {
    forwardingReason = `client address not given (--from): assumed not a trusted proxy of cluster ${c.name}, so client Forwarded/X-Forwarded-*/X-Request-Id headers are dropped and perimeter sets its own`;
  } else if (trustedPeer) {
    forwardingReason = `client ${from} is in trusted-proxies of cluster ${c.name} (${c.trustedProxies.join(', ')}): its X-Forwarded-For is kept and ${from} appended, its Forwarded is extended, X-Forwarded-Proto/-Host kept, a valid X-Request-Id kept`;
  } else {
    const list = c.trustedProxies.length === 0 ? 'none configured' : c.trustedProxies.join(', ');
    forwardingReason = `client ${from} is not in trusted-proxies of cluster ${c.name} (${list}): client Forwarded/X-Forwarded-*/X-Request-Id headers are dropped; X-Forwarded-For is set to ${from}`;
  }

  const base = {
    request: { host: req.host, normalizedHost: hostForLookup ?? '', path, method, from },
    cluster: c.name,
    listener: listenerUrl(c),
    forwarding,
    limits: routes.limits,
    logPolicy: { omit: c.logOmit },
  };
  const logReason = c.logOmit.length > 0 ? `cluster ${c.name} log policy: ${c.logOmit.join(', ')} never written to logs` : `cluster ${c.name} log policy: nothing omitted from logs`;
  const reject = (def: ErrorDef, why: string, extra: Partial<Explanation> = {}): Explanation => {
    reasons.push(`perimeter answers ${def.status} ${def.code} itself: ${why}`);
    reasons.push(logReason);
    return {
      ...base,
      outcome: 'reject',
      status: def.status,
      errorCode: def.code,
      site: null,
      matchedBy: null,
      declaredAt: null,
      owner: null,
      service: null,
      serviceSource: null,
      backendsFrom: null,
      backends: [],
      balancer: null,
      panic: null,
      retries: null,
      timeouts: routes.timeouts,
      ...extra,
      reasons,
    };
  };

  // 2. The request head, parsed as the proxy parses it (with the cluster's limits).
  const head = parseAsProxy(method, path, req.host, routes.limits);
  if (head instanceof ParseError) return reject(head.def, `${head.detail} (the request never reaches a backend)`);

  // 3. Route by Host on this listener.
  const route = findRoute(routes, head.host);
  if (!route) {
    const elsewhere = declaring.filter((d) => d.name !== c.name);
    if (elsewhere.length > 0) {
      const d = elsewhere[0]!;
      const r = routed.get(d.name)!;
      return reject(
        Errors.UNKNOWN_SITE,
        `host '${head.host}' is site ${r.site.host} of cluster ${d.name} (declared in ${where(r.site.pos)}), served on ${listenerUrl(d) ?? 'its listener'}, not on the listener of cluster ${c.name}`,
      );
    }
    const wild = [...routes.wildcard.keys()].map((k) => `*.${k}`);
    return reject(Errors.UNKNOWN_SITE, `no site of cluster ${c.name} matches host '${head.host}' (no exact site${wild.length > 0 ? `, no wildcard among ${wild.join(', ')}` : ', no wildcard sites'})`);
  }
  const site = route.site;
  const how = matchedBy(route);
  reasons.push(`site ${site.host} declared in ${where(site.pos)}${site.owner ? ` (owner ${site.owner})` : ''}, cluster ${site.cluster}`);
  reasons.push(how === 'exact' ? `host '${head.host}' matches site ${site.host} exactly` : `host '${head.host}' matches ${how} (no exact site for it; the most specific wildcard wins)`);
  const spec = snapshot.services.get(site.service);
  if (!spec) throw new Error(`internal: service ${site.service} of site ${site.host} is not in the snapshot`);
  reasons.push(forwardingReason);
  reasons.push(sourceReason(snapshot, spec));

  const siteFields = {
    site: site.host,
    matchedBy: how,
    declaredAt: where(site.pos),
    owner: site.owner || null,
    service: spec.name,
    serviceSource: spec.source,
    balancer: spec.balancer,
    timeouts: route.timeouts,
  };

  // 4. Retries: the rule the proxy applies when an attempt fails.
  const idempotent = IDEMPOTENT.has(head.method);
  const rs = route.retries;
  const times = rs.attempts === 1 ? '1 more time' : `${rs.attempts} more times`;
  const budget = `within the retry budget (${rs.budgetPercent}% of requests in flight to ${spec.name}, always at least ${rs.minRetryConcurrency})`;
  const whenAllowed =
    rs.attempts === 0
      ? 'never: retries.attempts is 0'
      : idempotent
        ? `up to ${times} on other backends when the connection failed (refused, unreachable, connect timeout) or was reset before any response byte with no body byte sent; never after a response byte or on a response timeout; ${budget} (refused connections do not draw on it)`
        : `up to ${times} on other backends only when the request cannot have reached a backend (connection refused, unreachable, connect timeout); never once it may have reached one`;
  const retries = { idempotent, attempts: rs.attempts, budgetPercent: rs.budgetPercent, minConcurrency: rs.minRetryConcurrency, whenAllowed };
  reasons.push(rs.attempts === 0 ? `service ${spec.name} has retries.attempts 0: a failed attempt is never retried` : `${head.method} is ${idempotent ? '' : 'not '}idempotent: it may be retried ${whenAllowed}`);

  // 5. Backends and panic: from the running perimeter when given, else from the configuration.
  const panicBase = { mode: spec.panic.mode, thresholdPercent: spec.panic.thresholdPercent };
  const pool = live?.find((p) => p.service === spec.name);
  let backends: ExplainedBackend[];
  let backendsFrom: Explanation['backendsFrom'];
  let panic: Explanation['panic'] = panicBase;
  if (pool) {
    backendsFrom = 'admin';
    backends = pool.backends.map((b) => ({
      key: b.key,
      weight: b.weight,
      health: b.active,
      ejected: b.ejected,
      ejectedUntil: b.ejectedUntil,
      available: b.available,
      score: b.score,
      reason: b.ejected ? `ejected: ${b.lastEjectReason}; ${b.scoreReason}` : `${b.lastCheckReason}; ${b.scoreReason}`,
    }));
    panic = { inPanic: pool.panic, ...panicBase };
    reasons.push(`live pool state from the admin API: ${pool.summary}`);
    const result = { ...siteFields, backendsFrom, backends, panic, retries };
    if (pool.total === 0) return reject(Errors.NO_BACKEND, `service ${spec.name} has no backends right now`, result);
    if (pool.panic) {
      const share = `${pool.available} of ${pool.total} backends available, below panic.threshold ${spec.panic.thresholdPercent}%`;
      if (spec.panic.mode === 'fail') return reject(Errors.PANIC_FAIL_FAST, `pool ${spec.name} is in panic (${share}) and panic.mode is fail`, result);
      reasons.push(`pool ${spec.name} is in panic (${share}); panic.mode serve-all balances over every backend, healthy or not`);
    } else {
      reasons.push(`${spec.balancer} balancer picks among the ${pool.available} available backends (panic below ${spec.panic.thresholdPercent}% available, mode ${spec.panic.mode})`);
    }
  } else {
    if (live) reasons.push(`the admin API reports no pool for service ${spec.name}: the running configuration may be older than this directory (perimeter reload applies it)`);
    const statics = spec.source === 'static' ? (snapshot.discovery.static.get(spec.name) ?? []) : undefined;
    if (statics) {
      backendsFrom = 'config';
      backends = statics.map((b) => ({ key: backendKey(b.host, b.port), weight: b.weight, health: 'unknown' }));
      if (!live) reasons.push('backend health is known only to the running perimeter: pass --admin URL to see it');
      const result = { ...siteFields, backendsFrom, backends, panic, retries };
      if (statics.length === 0) return reject(Errors.NO_BACKEND, `discovery.static.${spec.name} is an empty list`, result);
    } else {
      backendsFrom = 'run time';
      backends = [];
      reasons.push(`backends of ${spec.name} are resolved at run time (${spec.source}): pass --admin URL to see them`);
    }
    reasons.push(`${spec.balancer} balancer picks among available backends; panic when fewer than ${spec.panic.thresholdPercent}% are available (mode ${spec.panic.mode}: ${spec.panic.mode === 'fail' ? `answer 503 ${Errors.PANIC_FAIL_FAST.code}` : 'serve over every backend'})`);
  }

  const t = route.timeouts;
  reasons.push(`timeouts of site ${site.host}: connect ${formatDuration(t.connectMs)}, response ${formatDuration(t.responseMs)}, client-idle ${formatDuration(t.clientIdleMs)} (cluster ${c.name} and defaults, with the site's own within bounds)`);
  reasons.push(logReason);
  return {
    ...base,
    ...siteFields,
    outcome: 'route',
    status: null,
    errorCode: null,
    backendsFrom,
    backends,
    panic,
    retries,
    reasons,
  };
}

function sourceReason(snapshot: Snapshot, spec: ServiceSpec): string {
  switch (spec.source) {
    case 'static':
      return `service ${spec.name} is listed in discovery.static`;
    case 'file':
      return `service ${spec.name} is not in discovery.static: its backends come from the registry file ${snapshot.discovery.file?.path ?? ''}`;
    case 'dns-srv':
      return `service ${spec.name} is not in discovery.static: its backends come from DNS SRV _${spec.name}._tcp.${snapshot.discovery.dnsSrv?.domain ?? ''}`;
  }
}
