/**
 * Route tables: compiled once per configuration apply, read per request.
 * `perimeter explain` uses the same compile and lookup functions as the
 * proxy, so its answer cannot drift from what the proxy does.
 */
import type { ClusterSpec, RetrySpec, Snapshot, TlsSpec, UpstreamProtocol } from '../config/types.js';
import { CidrSet } from '../net/cidr.js';
import type { GeoLookup } from '../geo/lookup.js';
import type { ListenerRoutes, PoolLike, RetryBudget, SiteRoute } from './proxy.js';

export interface ServiceRuntime {
  readonly pool: PoolLike;
  readonly budget: RetryBudget;
  readonly retries: RetrySpec;
  /** Protocol towards the service's backends (absent: HTTP/1.1). */
  readonly protocol?: UpstreamProtocol;
}

export function compileListenerRoutes(
  snapshot: Snapshot,
  cluster: ClusterSpec,
  generation: number,
  service: (name: string) => ServiceRuntime | undefined,
  proto: 'http' | 'https' = 'http',
  /** The port the cluster's https listener actually bound (differs when configured as 0). */
  boundHttpsPort?: number,
  extras: { geo?: GeoLookup; acmeChallenge?: (token: string) => string | undefined } = {},
): ListenerRoutes {
  const exact = new Map<string, SiteRoute>();
  const wildcard = new Map<string, SiteRoute>();
  for (const site of snapshot.sites.values()) {
    if (site.cluster !== cluster.name) continue;
    const st = service(site.service);
    if (!st) throw new Error(`internal: service ${site.service} of site ${site.host} has no pool`);
    const route: SiteRoute = { site, pool: st.pool, budget: st.budget, retries: st.retries, timeouts: site.timeouts, protocol: st.protocol ?? 'http1' };
    if (site.host.startsWith('*.')) wildcard.set(site.host.slice(2), route);
    else exact.set(site.host, route);
  }
  return {
    cluster,
    exact,
    wildcard,
    trusted: new CidrSet(cluster.trustedProxies),
    limits: cluster.limits,
    timeouts: cluster.timeouts,
    generation,
    proto,
    hsts: proto === 'https' && cluster.tls ? hstsHeader(cluster.tls) : '',
    // The http listener of a cluster that serves HTTPS sends sites there.
    redirectPort: proto === 'http' && cluster.listen.https && cluster.tls?.redirect ? (boundHttpsPort ?? cluster.listen.https.port) : 0,
    ...(extras.geo ? { geo: extras.geo } : {}),
    ...(proto === 'http' && extras.acmeChallenge ? { acmeChallenge: extras.acmeChallenge } : {}),
  };
}

/** The Strict-Transport-Security header line (with CRLF) for a cluster. */
export function hstsHeader(t: TlsSpec): string {
  return `Strict-Transport-Security: max-age=${t.hstsMaxAgeS}${t.hstsIncludeSubdomains ? '; includeSubDomains' : ''}${t.hstsPreload ? '; preload' : ''}\r\n`;
}

/** Exact host first, then wildcards from the most specific suffix. */
export function findRoute(routes: ListenerRoutes, host: string): SiteRoute | undefined {
  const r = routes.exact.get(host);
  if (r || routes.wildcard.size === 0) return r;
  let dot = host.indexOf('.');
  while (dot !== -1) {
    const w = routes.wildcard.get(host.slice(dot + 1));
    if (w) return w;
    dot = host.indexOf('.', dot + 1);
  }
  return undefined;
}
