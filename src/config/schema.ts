/**
 * The wire schemas of perimeter.yaml and site files: what may be written,
 * before defaults are merged. The validator and the JSON Schema (`perimeter
 * schema`, for editor completion) are both generated from these, so they
 * cannot drift. Keys are kebab-case as users write them; every object is
 * strict, so a typo is an error rather than a silently ignored setting.
 */
import { z } from 'zod';
import {
  describe,
  durationPattern,
  parseCidr,
  parseDuration,
  parseHostPort,
  parsePercent,
  parseSize,
  parseStatusRanges,
  percentPattern,
  sizePattern,
  statusPattern,
  type Parsed,
} from './values.js';

/**
 * Value formats keyed by schema: when a value has the wrong YAML type (a
 * duration written as a bare number), the loader asks the format's own
 * parser for the message, so "5" gets "add a unit, e.g. 5s" and not
 * "expected string".
 */
export const valueFormats = new WeakMap<z.ZodType, (v: unknown) => Parsed<unknown>>();

function formatted<T extends z.ZodType>(base: T, parse: (v: unknown) => Parsed<unknown>, meta: Record<string, unknown>): T {
  const s = base
    .superRefine((v, ctx) => {
      const r = parse(v);
      if (!r.ok) ctx.addIssue({ code: 'custom', message: r.message, params: { fix: r.fix } });
    })
    .meta(meta) as T;
  valueFormats.set(s, parse);
  return s;
}

export const duration = formatted(z.string(), parseDuration, {
  description: 'A duration: 250ms, 5s, 2m, 1h (a number alone is an error).',
  pattern: durationPattern,
});
// Ranges of the number forms are checked by the parser (one message, not
// two) and stated in the metadata for the JSON Schema.
const size = formatted(z.union([z.number(), z.string()]), parseSize, {
  description: 'A size in bytes: 512, 32k, 1m, 1g (k, m, g are powers of 1024).',
  pattern: sizePattern,
  minimum: 0,
});
const percent = formatted(z.union([z.number(), z.string()]), parsePercent, {
  description: 'A percentage: "20%" or a number from 0 to 100.',
  pattern: percentPattern,
  minimum: 0,
  maximum: 100,
});
const statusList = formatted(z.union([z.number().int(), z.string()]), parseStatusRanges, {
  description: 'Healthy HTTP statuses: "200-399", "200,204" or 200.',
  pattern: statusPattern,
});
const listenAddress = formatted(z.string(), (v) => parseHostPort(v, 'listen address', { hostRequired: false, hostRule: 'any', allowZero: true }), {
  description: 'Where to listen: "host:port", ":port" (every address) or "[::1]:port".',
});
const backendAddress = formatted(z.string(), (v) => parseHostPort(v, 'backend address', { hostRequired: true, hostRule: 'any' }), {
  description: 'A backend: "host:port" (host is an IP address or DNS name; IPv6 in brackets).',
});
const dnsServer = formatted(z.string(), (v) => parseHostPort(v, 'DNS server', { hostRequired: true, hostRule: 'ip', defaultPort: 53 }), {
  description: 'A DNS server: "ip" or "ip:port" (default port 53).',
});
const cidr = formatted(z.string(), parseCidr, { description: 'An address range: "10.0.0.0/8", "fd00::/8" or a single address.' });

function checkHealthPath(v: unknown): Parsed<string> {
  if (typeof v !== 'string') return { ok: false, message: `expected a path like /healthz, got ${describe(v)}`, fix: 'write a path that starts with /, e.g. /healthz' };
  if (!v.startsWith('/')) return { ok: false, message: `health path '${v}' does not start with '/'`, fix: `write '/${v.replace(/^\/*/, '')}'` };
  // eslint-disable-next-line no-control-regex -- control characters are exactly what is refused
  if (/[\s\0-\x1f\x7f]/.test(v)) return { ok: false, message: `health path '${v}' has spaces or control characters`, fix: 'percent-encode them, e.g. %20' };
  return { ok: true, value: v };
}
const healthPath = formatted(z.string(), checkHealthPath, { description: 'The HTTP path health checks request, e.g. /healthz.', pattern: '^/\\S*$' });

function checkAccessLogPath(v: unknown): Parsed<string> {
  const fix = "write a file path such as logs/access.log, or 'stdout', or 'off'";
  if (typeof v !== 'string') return { ok: false, message: `expected an access log path, 'stdout' or 'off', got ${describe(v)}`, fix };
  if (v.trim() === '') return { ok: false, message: 'access log path is empty', fix };
  // eslint-disable-next-line no-control-regex -- control characters are exactly what is refused
  if (/[\0-\x1f\x7f]/.test(v)) return { ok: false, message: 'access log path has control characters', fix };
  if (v.endsWith('/')) return { ok: false, message: `access log path '${v}' names a directory`, fix: `name the file, e.g. '${v}access.log'` };
  return { ok: true, value: v };
}
const accessLogPath = formatted(z.string(), checkAccessLogPath, {
  description: "The access log file (relative paths resolve against perimeter's working directory), 'stdout', or 'off'.",
});

/** Headers that carry framing, routing or identity: never usable as geo header names. */
const reservedHeaderNames: ReadonlySet<string> = new Set([
  'host',
  'connection',
  'content-length',
  'transfer-encoding',
  'te',
  'trailer',
  'upgrade',
  'keep-alive',
  'proxy-connection',
  'forwarded',
  'x-forwarded-for',
  'x-forwarded-proto',
  'x-forwarded-host',
  'via',
  'cookie',
  'authorization',
]);

function checkHeaderName(v: unknown): Parsed<string> {
  const fix = 'use letters, digits and hyphens, e.g. X-Geo-Country';
  if (typeof v !== 'string') return { ok: false, message: `expected a header name, got ${describe(v)}`, fix };
  if (!/^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/.test(v)) return { ok: false, message: `'${v}' is not a valid HTTP header name`, fix };
  if (reservedHeaderNames.has(v.toLowerCase()) || v.startsWith(':')) {
    return { ok: false, message: `'${v}' is a header perimeter sets or forwards itself; it cannot carry geolocation`, fix: 'choose another name, e.g. X-Geo-Country' };
  }
  return { ok: true, value: v };
}
const headerName = formatted(z.string(), checkHeaderName, { description: 'An HTTP header name, e.g. X-Geo-Country.', pattern: "^[!#$%&'*+\\-.^_`|~0-9A-Za-z]+$" });

function checkGeoDb(v: unknown): Parsed<string> {
  const fix = "write 'builtin', 'off', or the path of an .mmdb file (relative to the configuration directory)";
  if (typeof v !== 'string') return { ok: false, message: `expected 'builtin', 'off' or a database path, got ${describe(v)}`, fix };
  if (v.trim() === '') return { ok: false, message: 'geo database path is empty', fix };
  // eslint-disable-next-line no-control-regex -- control characters are exactly what is refused
  if (/[\0-\x1f\x7f]/.test(v)) return { ok: false, message: 'geo database path has control characters', fix };
  return { ok: true, value: v };
}
const geoDb = formatted(z.string(), checkGeoDb, {
  description: "'builtin' (the database shipped with perimeter), 'off', or the path of a MaxMind-format .mmdb file, relative to the configuration directory.",
});

const geo = z
  .strictObject({
    'country-db': geoDb.optional().describe("Country database: 'builtin' (default, DB-IP Lite), 'off', or an .mmdb path (GeoIP2/GeoLite2-Country or ip-location-db shape)."),
    'asn-db': geoDb.optional().describe("AS number database: 'builtin' (default), 'off', or an .mmdb path (GeoLite2-ASN shape)."),
    headers: z
      .strictObject({
        country: headerName.optional().describe('Header carrying the country code (default X-Geo-Country).'),
        asn: headerName.optional().describe('Header carrying the AS number (default X-Geo-ASN).'),
      })
      .optional()
      .describe('Names of the geolocation headers sent to backends; whatever a client sends under them is removed.'),
  })
  .describe("Geolocation headers: the client's country and AS number on every request to a backend.");

function checkName(what: string, example: string): (v: unknown) => Parsed<string> {
  return (v) => {
    if (typeof v !== 'string') return { ok: false, message: `expected a ${what} name, got ${describe(v)}`, fix: `write a name such as '${example}'` };
    if (!/^[a-z0-9]([a-z0-9._-]*[a-z0-9])?$/i.test(v)) {
      return { ok: false, message: `'${v}' is not a valid ${what} name`, fix: `use letters, digits, '.', '_' and '-', e.g. '${example}'` };
    }
    return { ok: true, value: v };
  };
}
const serviceName = formatted(z.string(), checkName('service', 'web-frontend'), {
  description: 'The service-discovery name of the backends (a discovery.static entry, a file registry entry or a DNS SRV name).',
  pattern: '^[A-Za-z0-9]([A-Za-z0-9._-]*[A-Za-z0-9])?$',
});

const int = (min: number, max = Number.MAX_SAFE_INTEGER): z.ZodNumber => z.number().int().min(min).max(max);

export const balancerKinds = ['round-robin', 'least-request', 'latency'] as const;
export const healthKinds = ['http', 'tcp', 'none'] as const;
export const panicModes = ['serve-all', 'fail'] as const;
export const logOmits = ['query', 'cookies', 'authorization'] as const;

const timeouts = z
  .strictObject({
    'request-header': duration.optional().describe('Time a client has to send the request headers (slowloris defence).'),
    'client-idle': duration.optional().describe('How long an idle client keep-alive connection is kept.'),
    connect: duration.optional().describe('Time to connect to a backend.'),
    response: duration.optional().describe('Time from sending the request to the first response byte from the backend.'),
    'upstream-idle': duration.optional().describe('How long an idle pooled backend connection is kept.'),
  })
  .describe('Timeouts (durations).');

const limits = z
  .strictObject({
    'header-bytes': size.optional().describe('Largest total size of request headers (431 above).'),
    'header-count': int(1, 10_000).optional().describe('Most request header fields (431 above).'),
    'uri-length': size.optional().describe('Longest request target (414 above).'),
    'body-bytes': size.optional().describe('Largest request body (413 above); 0 = unlimited, streamed.'),
  })
  .describe('Request limits.');

const health = z
  .strictObject({
    type: z.enum(healthKinds).optional().describe('http: request path and check the status; tcp: connect only; none: no active checks.'),
    path: healthPath.optional(),
    interval: duration.optional().describe('Time between checks of one backend.'),
    timeout: duration.optional().describe('Time a check may take; must be less than interval.'),
    jitter: percent.optional().describe('Random spread added to the interval, as a share of it.'),
    rise: int(1, 100).optional().describe('Consecutive passes that make an unhealthy backend healthy.'),
    fall: int(1, 100).optional().describe('Consecutive failures that make a healthy backend unhealthy.'),
    'expect-status': statusList.optional(),
    host: z.string().optional().describe('Host header of HTTP checks; empty = the backend address.'),
  })
  .describe('Active health checks.');

const passive = z
  .strictObject({
    'consecutive-failures': int(0, 1000).optional().describe('Connect errors or 5xx in a row that eject a backend; 0 disables passive ejection.'),
    'base-ejection': duration.optional().describe('First ejection time; it grows with each ejection.'),
    'max-ejection': duration.optional().describe('Longest ejection time.'),
    'max-ejected': percent.optional().describe('Largest share of a pool that may be ejected at once.'),
  })
  .describe('Passive health: ejection on real traffic failures.');

const panic = z
  .strictObject({
    threshold: percent.optional().describe('Panic when fewer than this share of backends is healthy.'),
    mode: z.enum(panicModes).optional().describe('serve-all: balance over every backend; fail: answer 503 at once.'),
  })
  .describe('What to do when too few backends are healthy.');

const retries = z
  .strictObject({
    attempts: int(0, 10).optional().describe('Extra tries after the first (only where a retry is safe).'),
    budget: percent.optional().describe('Retries allowed as a share of in-flight requests.'),
    'min-concurrency': int(0, 10_000).optional().describe('Retries always allowed, whatever the budget (so low traffic can retry).'),
  })
  .describe('Retries of requests that cannot have reached a backend, or idempotent ones with no response byte yet.');

const balancer = z.enum(balancerKinds).describe('How a backend is chosen: round-robin (weighted), least-request (power of two choices) or latency (expected latency).');

export const upstreamProtocols = ['http1', 'h2c'] as const;
const protocol = z
  .enum(upstreamProtocols)
  .describe('How perimeter speaks to the backends: http1 (HTTP/1.1, pooled keep-alive connections; the default) or h2c (HTTP/2 over cleartext with prior knowledge, e.g. gRPC servers; multiplexed sessions). See docs/http2.md.');

const serviceOverride = z
  .strictObject({ balancer: balancer.optional(), protocol: protocol.optional(), health: health.optional(), passive: passive.optional(), panic: panic.optional(), retries: retries.optional() })
  .describe('Platform settings for one service, over the defaults.');

const clusterTls = z
  .strictObject({
    certificates: z
      .array(
        z.strictObject({
          cert: z.string().min(1).describe('PEM certificate chain file (leaf first); names come from its subjectAltName. Relative to the config directory.'),
          key: z.string().min(1).describe('PEM private key file. Relative to the config directory.'),
        }),
      )
      .optional()
      .describe('Certificates from files, reloaded when the files change.'),
    hsts: z
      .strictObject({
        'max-age': duration.optional().describe('Strict-Transport-Security max-age (default 365d; at least 180d: it is a security default).'),
        'include-subdomains': z.boolean().optional().describe('Add includeSubDomains (default true).'),
        preload: z.boolean().optional().describe('Add preload (default false; opt in only when the domain is submitted to the preload list).'),
      })
      .optional(),
    'min-version': z.enum(['TLSv1.2', 'TLSv1.3']).optional().describe('Lowest TLS version (default TLSv1.2; older versions are not offered).'),
    'session-tickets': z
      .boolean()
      .optional()
      .describe('Session resumption by tickets whose keys rotate every 12 h, shared by the workers (default true). false: every connection is a full handshake (as nginx ssl_session_tickets off, HAProxy no-tls-tickets).'),
    redirect: z.boolean().optional().describe('Redirect the http listener to HTTPS (default true when the cluster has an https listener).'),
  })
  .describe("TLS settings of the cluster's https listener.");

const cluster = z
  .strictObject({
    default: z.boolean().optional().describe('The cluster of sites that name none; exactly one cluster is the default (a single cluster is implicitly).'),
    listen: z
      .strictObject({
        http: listenAddress.optional().describe('Plain HTTP listener (redirects to HTTPS when the cluster also has an https listener).'),
        https: listenAddress.optional().describe('HTTPS listener: TLS 1.2/1.3, SNI picks the certificate, HSTS on every response.'),
      })
      .describe("The cluster's listeners."),
    tls: clusterTls.optional(),
    log: z.strictObject({ omit: z.array(z.enum(logOmits)).optional().describe('Request parts never written to logs.') }).optional(),
    'trusted-proxies': z.array(cidr).optional().describe('Peers whose Forwarded / X-Forwarded-* headers are kept and extended; all others are replaced.'),
    timeouts: timeouts.optional(),
    limits: limits.optional(),
  })
  .describe('A tenant cluster: its own listeners, log policy, timeouts and limits.');

const staticBackend = z.union([
  backendAddress,
  z.strictObject({ address: backendAddress, weight: int(1, 1000).optional().describe('Relative share of traffic (default 1).') }),
]);

const dnsSrv = z
  .strictObject({
    domain: z.string().min(1).describe('Service s is looked up as _s._tcp.<domain>.'),
    servers: z.array(dnsServer).optional().describe('DNS servers to ask; empty = the system resolvers.'),
    'min-ttl': duration.optional().describe('Re-resolve no more often than this, whatever the TTL.'),
    'max-ttl': duration.optional().describe('Re-resolve at least this often, whatever the TTL.'),
    timeout: duration.optional().describe('Time one DNS query may take.'),
  })
  .describe('Backends from DNS SRV records.');

const discovery = z
  .strictObject({
    static: z.record(z.string(), z.array(staticBackend)).optional().describe('Services whose backends are listed here.'),
    'dns-srv': dnsSrv.optional(),
    file: z.strictObject({ path: z.string().min(1).describe('Registry file, relative to the configuration directory.') }).optional().describe('Backends from a watched registry file.'),
  })
  .describe('Where backends come from: static services first, then the file registry, then DNS SRV.');

const defaults = z
  .strictObject({
    balancer: balancer.optional(),
    protocol: protocol.optional(),
    health: health.optional(),
    passive: passive.optional(),
    panic: panic.optional(),
    retries: retries.optional(),
    timeouts: timeouts.optional(),
    limits: limits.optional(),
  })
  .describe('Defaults for every cluster and service unless overridden.');

const admin = z
  .strictObject({
    listen: listenAddress.describe('Where the admin listener serves /metrics and the /api endpoints; a non-loopback address needs token-file.'),
    'token-file': z
      .string()
      .min(1)
      .optional()
      .describe('File holding the bearer token every admin request must carry (at least 16 visible ASCII characters), relative to the configuration directory.'),
    'users-file': z
      .string()
      .min(1)
      .optional()
      .describe("Local accounts of the admin web UI, one 'name:scrypt-hash' per line (made by 'perimeter admin-user add NAME'), relative to the configuration directory."),
  })
  .describe('The admin listener: Prometheus metrics and the JSON admin API (config, sites, pools, backends, reload).');

const acme = z
  .strictObject({
    directory: z.string().min(1).describe("The CA's ACME directory URL (https), e.g. https://acme-v02.api.letsencrypt.org/directory."),
    email: z.string().min(3).optional().describe('Contact address for the CA account (expiry and incident notices).'),
    storage: z.string().min(1).describe('Directory for the account key, certificates and order leases (0700; may be shared by every perimeter host), relative to the configuration directory.'),
    challenges: z
      .array(z.enum(['http-01', 'tls-alpn-01']))
      .min(1)
      .optional()
      .describe('Challenge types to answer, in order of preference (default [http-01, tls-alpn-01]).'),
    'renew-before': duration.optional().describe('Renew when less than this remains (default: a third of the lifetime); a CA offering ACME Renewal Information decides first.'),
    'ca-file': z.string().min(1).optional().describe("Extra CA bundle (PEM) trusted for the directory's HTTPS, e.g. a test CA; relative to the configuration directory."),
  })
  .describe('Automatic certificates by ACME (docs/acme.md).');

const tcpListener = z
  .strictObject({
    listen: listenAddress.describe('Where the TCP proxy listens: "host:port" or ":port".'),
    service: serviceName.describe('The backend service (found by discovery, health-checked, balanced by least connections).'),
    allowlist: z
      .string()
      .regex(/^[a-z0-9]([a-z0-9-]*[a-z0-9])?$/, 'lower-case letters, digits and inner hyphens')
      .describe('The allowlist (in the allowlist store) a client address must be on; others are closed before a byte is read.'),
    'proxy-protocol': z.enum(['off', 'v2']).optional().describe('Send a PROXY protocol v2 header to backends so they see the client address (default off).'),
    'trusted-load-balancers': z
      .array(cidr)
      .optional()
      .describe('Load balancers in front of perimeter whose PROXY protocol (v1 or v2) header is required and believed; the allowlist then applies to the address it names.'),
    timeouts: z
      .strictObject({
        connect: duration.optional().describe('Backend connect timeout (default 5s).'),
        idle: duration.optional().describe('Close a session with no byte in either direction for this long (default 1h).'),
        'proxy-header': duration.optional().describe('Time a trusted load balancer has to send its PROXY header (default 5s).'),
      })
      .optional(),
    limits: z
      .strictObject({
        connections: int(1, 1_000_000).optional().describe('Concurrent sessions on this listener (default 10000).'),
        'per-source': int(1, 1_000_000).optional().describe('Concurrent sessions from one client address (default 100).'),
      })
      .optional(),
  })
  .describe('An inbound TCP proxy listener with an allowlist.');

const allowlists = z
  .strictObject({
    store: z.enum(['sqlite', 'postgres']).optional().describe('Where allowlists live: sqlite (default; a file in the data directory) or postgres (shared by many perimeter hosts).'),
    postgres: z
      .strictObject({
        url: z.string().min(1).optional().describe('Connection URL, e.g. postgres://perimeter@db.internal/perimeter (no password here: use url-file when it has one).'),
        'url-file': z.string().min(1).optional().describe('File holding the connection URL (a secret), relative to the configuration directory.'),
      })
      .optional()
      .describe('The PostgreSQL database (store: postgres).'),
  })
  .describe('The allowlist store (docs/tcp.md).');

export const platformSchema = z
  .strictObject({
    'data-dir': z.string().min(1).optional().describe('Directory for state perimeter keeps (the SQLite allowlist store), relative to the configuration directory (default data).'),
    tcp: z.record(z.string(), tcpListener).optional().describe('Inbound TCP proxy listeners by name.'),
    allowlists: allowlists.optional(),
    clusters: z.record(z.string(), cluster).describe('Tenant clusters by name.'),
    admin: admin.optional(),
    acme: acme.optional(),
    geo: geo.optional(),
    'access-log': z
      .strictObject({ path: accessLogPath.optional().describe("Default logs/access.log; 'off' disables the access log.") })
      .optional()
      .describe('The access log: one JSON line per request (Elastic Common Schema), the cluster log policy applied.'),
    defaults: defaults.optional(),
    discovery: discovery.optional(),
    services: z.record(z.string(), serviceOverride).optional().describe('Platform overrides per service name.'),
  })
  .describe('perimeter.yaml: owned by the platform team.');

/** The bounds within which a site may choose its own timeouts (milliseconds). */
export const siteTimeoutBounds = {
  connect: [100, 10_000],
  response: [1_000, 300_000],
  'client-idle': [1_000, 600_000],
} as const satisfies Record<string, readonly [number, number]>;

export const siteSchema = z
  .strictObject({
    service: serviceName,
    cluster: z.string().optional().describe('Cluster that serves the site; the default cluster when left out.'),
    owner: z.string().optional().describe('The team that owns the site (free text).'),
    health: z.strictObject({ path: healthPath.optional() }).optional().describe("The service's health check; only the path is the team's."),
    timeouts: z
      .strictObject({
        connect: duration.optional().describe('Backend connect timeout, 100ms..10s.'),
        response: duration.optional().describe('Backend response timeout, 1s..300s.'),
        'client-idle': duration.optional().describe('Client keep-alive idle timeout, 1s..600s.'),
      })
      .optional()
      .describe('Timeouts the team may choose, within bounds.'),
  })
  .describe('A site: a host name served by a service.');

export const siteFileSchema = z.record(z.string(), siteSchema).describe('A site file (sites/*.yaml): host name → site; owned by a service team.');

export type PlatformWire = z.infer<typeof platformSchema>;
export type SiteWire = z.infer<typeof siteSchema>;

/**
 * Keys a site must not set: security defaults belong to the platform team.
 * Named explicitly so a site author is told why, not just "unknown key".
 */
export const securityKeys: ReadonlySet<string> = new Set([
  'hsts',
  'tls',
  'https',
  'http-redirect',
  'redirect-https',
  'certificate',
  'certificates',
  'ciphers',
  'min-tls-version',
  'trusted-proxies',
  'limits',
  'forwarded',
  'x-forwarded-for',
  'log',
  'logging',
  'headers',
  'security-headers',
  'insecure',
  'allow-http',
  'sso',
  'auth',
]);

/** Keys a site may not set because the platform sets them per cluster or service. */
export const platformKeys: ReadonlySet<string> = new Set([
  'listen',
  'default',
  'balancer',
  'passive',
  'panic',
  'retries',
  'discovery',
  'backends',
  'servers',
  'static',
]);

function jsonSchemaOf(schema: z.ZodType, title: string): Record<string, unknown> {
  const out = z.toJSONSchema(schema, { target: 'draft-2020-12' }) as Record<string, unknown>;
  delete out.$schema;
  return { title, ...out };
}

/** JSON Schema of perimeter.yaml ('platform'), of site files ('site'), or both as $defs. */
export function jsonSchema(which: 'platform' | 'site' | 'all' = 'all'): Record<string, unknown> {
  const $schema = 'https://json-schema.org/draft/2020-12/schema';
  if (which === 'platform') return { $schema, ...jsonSchemaOf(platformSchema, 'perimeter.yaml') };
  if (which === 'site') return { $schema, ...jsonSchemaOf(siteFileSchema, 'perimeter site file') };
  return {
    $schema,
    title: 'perimeter configuration',
    description: "perimeter.yaml matches $defs/platform; sites/*.yaml match $defs/site. Point your editor's YAML schema setting at the one for each file.",
    $defs: { platform: jsonSchemaOf(platformSchema, 'perimeter.yaml'), site: jsonSchemaOf(siteFileSchema, 'perimeter site file') },
    anyOf: [{ $ref: '#/$defs/platform' }, { $ref: '#/$defs/site' }],
  };
}
