/**
 * The compiled, immutable configuration snapshot: what the loader produces
 * and what every perimeter system reads. All durations are milliseconds, all
 * sizes bytes, all names normalized (hosts lower-case, no trailing dot).
 * Nothing here changes after load; state that changes (health, pools,
 * sockets) lives in the runtime, keyed by identity, and survives a swap.
 */

export type BalancerKind = 'round-robin' | 'least-request' | 'latency';
/** How perimeter speaks to a service's backends: HTTP/1.1, or HTTP/2 with prior knowledge over cleartext (docs/http2.md). */
export type UpstreamProtocol = 'http1' | 'h2c';
export type PanicMode = 'serve-all' | 'fail';
export type HealthCheckKind = 'http' | 'tcp' | 'none';
export type LogOmit = 'query' | 'cookies' | 'authorization';

/** Where a value came from in the YAML, for messages and `perimeter sites`. */
export interface SourcePos {
  readonly file: string;
  readonly line: number;
  readonly column: number;
}

export interface ListenAddress {
  readonly host: string; // '' or '0.0.0.0' or '::' or an address
  readonly port: number;
}

export interface HealthSpec {
  readonly kind: HealthCheckKind;
  readonly path: string; // http only
  readonly intervalMs: number;
  readonly timeoutMs: number;
  readonly jitter: number; // 0..1, share of interval
  readonly rise: number;
  readonly fall: number;
  /** Inclusive status ranges that count as healthy, e.g. [[200, 399]]. */
  readonly expectStatus: readonly (readonly [number, number])[];
  /** Host header sent with HTTP checks ('' = the backend address). */
  readonly host: string;
  /** HTTP checks speak h2c (set for services with `protocol: h2c`); absent = HTTP/1.1. */
  readonly h2c?: boolean;
}

export interface PassiveHealthSpec {
  readonly consecutiveFailures: number; // 0 disables passive ejection
  readonly baseEjectionMs: number;
  readonly maxEjectionMs: number;
  readonly maxEjectedPercent: number; // 0..100
}

export interface PanicSpec {
  /** Panic when the healthy share of backends falls below this percentage. */
  readonly thresholdPercent: number;
  readonly mode: PanicMode;
}

export interface TimeoutSpec {
  readonly requestHeaderMs: number;
  readonly clientIdleMs: number;
  readonly connectMs: number;
  readonly responseMs: number; // time to first response byte
  readonly upstreamIdleMs: number; // pooled idle connection lifetime
}

export interface LimitSpec {
  readonly headerBytes: number;
  readonly headerCount: number;
  readonly uriLength: number;
  readonly bodyBytes: number; // 0 = unlimited (streamed)
}

export interface RetrySpec {
  readonly attempts: number; // extra tries after the first
  /** Retries allowed as a share of in-flight requests (Envoy's retry budget). */
  readonly budgetPercent: number;
  /** Retries always allowed regardless of the budget (so low traffic can retry). */
  readonly minRetryConcurrency: number;
}

export interface StaticBackend {
  readonly host: string;
  readonly port: number;
  readonly weight: number;
}

export interface DnsSrvSpec {
  readonly domain: string;
  /** host:port of DNS servers; empty = the system resolvers from /etc/resolv.conf. */
  readonly servers: readonly ListenAddress[];
  readonly minTtlMs: number;
  readonly maxTtlMs: number;
  readonly timeoutMs: number;
}

export interface FileRegistrySpec {
  readonly path: string; // absolute
}

export interface DiscoverySpec {
  readonly static: ReadonlyMap<string, readonly StaticBackend[]>;
  readonly dnsSrv?: DnsSrvSpec;
  readonly file?: FileRegistrySpec;
}

/** Per-service upstream behaviour after defaults, cluster and site values are merged. */
export interface ServiceSpec {
  readonly name: string;
  /** Which discovery source provides the backends. */
  readonly source: 'static' | 'file' | 'dns-srv';
  readonly balancer: BalancerKind;
  /** Protocol towards the backends; absent = 'http1'. */
  readonly protocol?: UpstreamProtocol;
  readonly health: HealthSpec;
  readonly passive: PassiveHealthSpec;
  readonly panic: PanicSpec;
  readonly retries: RetrySpec;
}

export interface CertificateFile {
  /** Absolute paths. */
  readonly certFile: string;
  readonly keyFile: string;
}

export interface TlsSpec {
  readonly certificates: readonly CertificateFile[];
  readonly hstsMaxAgeS: number;
  readonly hstsIncludeSubdomains: boolean;
  readonly hstsPreload: boolean;
  readonly minVersion: 'TLSv1.2' | 'TLSv1.3';
  /** Session resumption by tickets (false: no resumption at all). */
  readonly sessionTickets: boolean;
  /** The http listener answers known sites with a redirect to HTTPS. */
  readonly redirect: boolean;
}

export interface ClusterSpec {
  readonly name: string;
  readonly isDefault: boolean;
  readonly listen: { readonly http?: ListenAddress; readonly https?: ListenAddress };
  /** Present when the cluster has an https listener. */
  readonly tls?: TlsSpec;
  readonly logOmit: readonly LogOmit[];
  /** CIDRs whose Forwarded/X-Forwarded-* headers are trusted and extended. */
  readonly trustedProxies: readonly string[];
  readonly timeouts: TimeoutSpec;
  readonly limits: LimitSpec;
  readonly pos: SourcePos;
}

export interface SiteSpec {
  /** Lower-case host name; a leading '*.' matches one or more labels. */
  readonly host: string;
  readonly cluster: string;
  readonly service: string;
  readonly owner: string;
  readonly timeouts: TimeoutSpec; // cluster timeouts with the site's own within bounds
  readonly pos: SourcePos; // the site key in its file
}

/** The admin listener (metrics, JSON admin API). Non-loopback addresses require a token. */
export interface AdminSpec {
  readonly listen: ListenAddress;
  /**
   * The bearer token every admin request must carry (read from token-file at
   * load). A secret: never logged; snapshotToJSON redacts it.
   */
  readonly token?: string;
  /** Absolute path of admin.users-file (local web UI accounts), read when the UI needs it. */
  readonly usersFile?: string;
}

/** An inbound TCP proxy listener (src/tcp/); see docs/tcp.md. */
export interface TcpListenerSpec {
  readonly name: string;
  readonly listen: ListenAddress;
  readonly service: string;
  /** Name of the allowlist in the allowlist store. */
  readonly allowlist: string;
  /** PROXY protocol towards backends. */
  readonly proxyProtocol: 'off' | 'v2';
  /** CIDRs of load balancers whose PROXY header (v1/v2) is required and believed; empty = none accepted. */
  readonly trustedLoadBalancers: readonly string[];
  readonly connectTimeoutMs: number;
  readonly idleTimeoutMs: number;
  readonly proxyHeaderTimeoutMs: number;
  readonly maxConnections: number;
  readonly maxPerSource: number;
  readonly pos: SourcePos;
}

/** Where allowlists live (src/allowlist/). The PostgreSQL URL is a secret: never logged, redacted in JSON, not sent to workers. */
export type AllowlistStoreSpec = { readonly kind: 'sqlite'; readonly file: string } | { readonly kind: 'postgres'; readonly url: string };

/** The access log (src/audit/access-log.ts). */
export interface AccessLogSpec {
  /** An absolute file path, or 'stdout'. */
  readonly path: string | 'stdout';
}

export type AcmeChallenge = 'http-01' | 'tls-alpn-01';

/** Automatic certificates (src/tls/acme.ts); see docs/acme.md. */
export interface AcmeSpec {
  /** The CA's ACME directory URL. */
  readonly directory: string;
  readonly email?: string;
  /** Absolute directory holding the account key, certificates and lease files. */
  readonly storage: string;
  /** Challenge types offered, in order of preference. */
  readonly challenges: readonly AcmeChallenge[];
  /** Renew when less than this remains; undefined: one third of the lifetime. ARI, when offered, comes first. */
  readonly renewBeforeMs?: number;
  /** Absolute path of an extra CA bundle trusted for the directory (a test CA such as pebble's). */
  readonly caFile?: string;
}

/** Geolocation headers (src/geo/lookup.ts); see docs/geolocation.md. */
export interface GeoSpec {
  /** Absolute path of the country mmdb; undefined when `country-db: off`. */
  readonly countryDb?: string;
  /** Absolute path of the ASN mmdb; undefined when `asn-db: off`. */
  readonly asnDb?: string;
  /** Header names as configured (HTTP tokens), e.g. X-Geo-Country. */
  readonly countryHeader: string;
  readonly asnHeader: string;
}

export interface Snapshot {
  /** Directory the configuration was read from. */
  readonly source: string;
  /** Undefined when `access-log.path` is 'off'. */
  readonly accessLog?: AccessLogSpec;
  readonly admin?: AdminSpec;
  /** Undefined when both geo databases are off. */
  readonly geo?: GeoSpec;
  readonly acme?: AcmeSpec;
  readonly clusters: ReadonlyMap<string, ClusterSpec>;
  readonly sites: ReadonlyMap<string, SiteSpec>;
  readonly services: ReadonlyMap<string, ServiceSpec>;
  readonly discovery: DiscoverySpec;
  /** Absolute directory for state perimeter keeps (data-dir, default <config dir>/data). */
  readonly dataDir: string;
  /** TCP proxy listeners by name (empty when none). */
  readonly tcp: ReadonlyMap<string, TcpListenerSpec>;
  readonly allowlists: AllowlistStoreSpec;
}

/** One configuration error: where it is, what is wrong, how to fix it. */
export interface ConfigIssue {
  readonly file: string;
  readonly line: number;
  readonly column: number;
  readonly message: string;
  readonly fix: string;
}
