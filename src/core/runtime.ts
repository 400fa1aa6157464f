/**
 * The runtime: the one place where a configuration snapshot meets state.
 *
 * `apply(snapshot)` builds the new world beside the old one and swaps one
 * reference per listener. State keyed by identity lives here, outside any
 * snapshot, and survives the swap: listening sockets (by address), pools
 * and their backends' health (by service and backend key), upstream
 * connections (by backend key), retry budgets (by service).
 */
import net from 'node:net';
import tls from 'node:tls';
import { CertStore, secureOptions } from '../tls/cert-store.js';
import { peekClientHello } from '../tls/client-hello.js';
import { leanTlsAccept, type Handshaking } from '../tls/lean.js';
import { GeoLookup } from '../geo/lookup.js';
import { AcmeManager } from '../tls/acme.js';
import { AcmeStorage } from '../tls/storage.js';
import { certificateFor, clusterCertificates } from '../tls/posture.js';
import { currentEpoch, TicketKeyring, ticketKeys, ticketSecret, TICKET_EPOCH_MS, useTicketKeyring } from '../tls/tickets.js';
import type { ClusterSpec, ListenAddress, LogOmit, ServiceSpec, Snapshot } from '../config/types.js';
import { CidrSet } from '../net/cidr.js';
import { createBalancer } from '../upstream/balancers.js';
import { Discovery, type DiscoveryOptions } from '../upstream/discovery/index.js';
import { Pool } from '../upstream/pool.js';
import type { Balancer, PoolEvents } from '../upstream/types.js';
import { createH2Front } from '../web/h2.js';
import { adoptSocket, clientSocketOn, handleConnection, RetryBudget, type ListenerRoutes, type ListenerState, type RequestRecord } from '../web/proxy.js';
import { compileListenerRoutes } from '../web/routes.js';
import { ConnPools } from '../web/upstream-conn.js';
import type { Logger } from './log.js';
import { AccessLog } from '../audit/access-log.js';
import { Metrics } from './metrics.js';
import { AdminServer } from '../admin/server.js';
import type { PoolDescription } from '../upstream/pool.js';
import { backendKey, type Backend } from '../upstream/backend.js';
import type { AdminSource, ReloadOutcome, ReloadTrigger } from '../admin/types.js';
import { OcspStapler } from '../tls/ocsp.js';
import { AllowlistTables } from '../allowlist/tables.js';
import { AllowlistHost } from '../allowlist/host.js';
import type { OpenStoreOptions } from '../allowlist/service.js';
import { TcpProxy, type TcpListener } from '../tcp/proxy.js';

/**
 * standalone: one process does everything (workers: 0, and tests).
 * control: discovery, active health checks and admin; no listeners. It
 *   hands member lists and health to the workers (src/core/control.ts).
 * worker: listeners and the request path; pools fed by the control process
 *   (no discovery, no active checks; passive ejection and balancer state
 *   are its own).
 */
export type RuntimeRole = 'standalone' | 'control' | 'worker';

/** A backend as the control process hands it to workers. */
export interface MemberState {
  readonly host: string;
  readonly port: number;
  readonly weight: number;
  readonly active: 'unchecked' | 'healthy' | 'unhealthy';
  readonly reason: string;
}

export interface RuntimeOptions {
  readonly log: Logger;
  readonly role?: RuntimeRole;
  readonly onRecord?: (rec: RequestRecord) => void;
  readonly discovery?: DiscoveryOptions;
  /** control role: a service's members or a backend's active health changed. */
  readonly onMembers?: (service: string, members: MemberState[]) => void;
  readonly onActiveHealth?: (service: string, key: string, active: MemberState['active'], reason: string) => void;
  /** control role: ACME issued or renewed a certificate (hand it to the workers). */
  readonly onAcmeCertificate?: (domain: string, cert: string, key: string) => void;
  /** Where the admin listener gets its data (the control process supplies its own). */
  readonly adminSource?: () => AdminSource;
  /** How the admin API's reload reaches the config loader (run command / control). */
  readonly reload?: (trigger: ReloadTrigger) => Promise<ReloadOutcome>;
  /** Allowlist store options for tests (PostgreSQL schema, poll interval). */
  readonly allowlistStore?: Omit<OpenStoreOptions, 'tables' | 'hooks'>;
}

interface ServiceState {
  spec: ServiceSpec;
  pool: Pool;
  balancer: Balancer;
  budget: RetryBudget;
  unwatch: () => void;
}

type Proto = 'http' | 'https';

interface Listener {
  readonly key: string;
  readonly proto: Proto;
  readonly server: net.Server;
  readonly state: ListenerState;
  cluster: string;
  /**
   * https only: accepted sockets whose TLS handshake has not completed, with
   * the time they were accepted. Node's handshakeTimeout never fires for a
   * client that sent its ClientHello and then FIN (the half-open-tolerant
   * socket sits in CLOSE-WAIT for ever), so a sweep destroys those older
   * than the request-header timeout, and a drain destroys all of them at
   * once (they serve nothing yet).
   */
  readonly handshaking?: Map<Handshaking, number>;
  readonly handshakeSweep?: NodeJS.Timeout;
}

export interface BoundListener {
  readonly cluster: string;
  readonly protocol: Proto;
  readonly address: string;
  readonly port: number;
}

function listenerKey(cluster: ClusterSpec, proto: Proto, addr: ListenAddress): string {
  // Port 0 (tests) cannot be matched across reloads by address; key it by cluster.
  return addr.port === 0 ? `${proto}:${cluster.name}@${addr.host}:0` : `${proto}:${addr.host || '*'}:${addr.port}`;
}

const STRICTEST_LOG: readonly LogOmit[] = Object.freeze(['query', 'cookies', 'authorization']);

function memberStates(backends: readonly Backend[]): MemberState[] {
  return backends.map((b) => ({ host: b.host, port: b.port, weight: b.weight, active: b.active, reason: b.lastCheckReason }));
}

function sameAddress(a: ListenAddress | undefined, b: ListenAddress | undefined): boolean {
  if (!a || !b) return a === b;
  // Port 0 stays "the same" across reloads: the admin listener keeps its port.
  return a.host === b.host && a.port === b.port;
}

export class Runtime {
  snapshot: Snapshot | undefined;
  generation = 0;
  private readonly log: Logger;
  private readonly opts: RuntimeOptions;
  private readonly services = new Map<string, ServiceState>();
  private readonly listeners = new Map<string, Listener>();
  readonly connPools = new ConnPools();
  private discovery: Discovery | undefined;
  private readonly events: PoolEvents;
  private closed = false;
  readonly metrics: Metrics;
  readonly role: RuntimeRole;
  admin: AdminServer | undefined;
  appliedAt = '';
  private accessLog: AccessLog | undefined;
  private certStores = new Map<string, CertStore>();
  /** New listeners' "routes are ready" switches, by listener key (see bind). */
  private readonly heldFlush = new Map<string, (serve: boolean) => void>();
  private geo: GeoLookup | undefined;
  private nextGeo: GeoLookup | undefined;
  private geoKey = 'null';
  private acme: AcmeManager | undefined;
  private acmeKey = 'null';
  /** ACME TLS-ALPN-01 challenge certificates by name (set when that challenge is enabled). */
  private acmeAlpn: ((servername: string) => { cert: string; key: string } | undefined) | undefined;
  /** ACME HTTP-01 answers for the http listeners (set when ACME is configured). */
  private acmeChallenge: ((token: string) => string | undefined) | undefined;
  private readonly ticketSecret = ticketSecret();
  /** Issues and renews session tickets (src/tls/tickets.ts); the same keys in every worker. */
  private readonly ticketRing = new TicketKeyring(this.ticketSecret);
  private ticketTimer: NodeJS.Timeout | undefined;
  private readonly tlsServers = new Set<tls.Server>();
  private ocspStapler: OcspStapler | undefined;
  private readonly onRecord: (rec: RequestRecord) => void;
  /** This process's compiled allowlists (src/allowlist/tables.ts); an unknown list admits nobody. */
  readonly allowlists = new AllowlistTables();
  /** The allowlist store (control/standalone), allowlist metrics and worker updates (src/allowlist/host.ts). */
  readonly allowlistHost: AllowlistHost;
  /** The inbound TCP proxy's listeners and sessions (src/tcp/); none in the control role. */
  readonly tcp: TcpProxy;

  constructor(opts: RuntimeOptions) {
    this.opts = opts;
    this.log = opts.log;
    this.role = opts.role ?? 'standalone';
    const log = this.log;
    // The control process's pools carry no traffic: request-side backend
    // gauges come from the workers only.
    const metrics = (this.metrics = new Metrics({
      generation: () => this.generation,
      pools: () => (this.role === 'control' ? [] : this.describePools()),
      // Reported once, by the process that reads configuration and runs ACME.
      certificates: () => (this.role === 'worker' ? [] : this.certificatePosture()),
      clientConnections: () => [...this.listeners.values()].map((l) => ({ cluster: l.cluster, protocol: l.proto, count: l.state.clients.size })),
    }));
    this.allowlistHost = new AllowlistHost({ tables: this.allowlists, role: this.role, registry: metrics.registry, log, storeOptions: opts.allowlistStore });
    this.tcp = new TcpProxy({
      log,
      registry: metrics.registry,
      allowlist: (name) => this.allowlists.get(name),
      service: (name) => {
        const st = this.services.get(name);
        return st ? { pool: st.pool, spec: st.spec } : undefined;
      },
      onSessionLine: (line) => this.accessLog?.writeLine(line),
    });
    const sink = opts.onRecord;
    this.onRecord = (rec) => {
      metrics.onRecord(rec);
      const log = this.accessLog;
      // A cluster removed by a reload mid-request gets the strictest policy.
      if (log) log.write(rec, this.snapshot?.clusters.get(rec.cluster)?.logOmit ?? STRICTEST_LOG);
      if (sink) sink(rec);
    };
    this.events = {
      onHealthChange: (service, b, healthy, reason) => {
        metrics.healthTransitions.inc({ service, to: healthy ? 'healthy' : 'unhealthy' });
        opts.onActiveHealth?.(service, b.key, b.active, reason);
        (healthy ? log.info.bind(log) : log.warn.bind(log))({ event: { action: 'backend-health' }, service, backend: b.key, healthy, reason }, `backend ${b.key} of ${service} is now ${healthy ? 'healthy' : 'unhealthy'}: ${reason}`);
      },
      onEject: (service, b, untilMs, reason) => {
        metrics.ejections.inc({ service });
        log.warn({ event: { action: 'backend-ejected' }, service, backend: b.key, until: new Date(untilMs).toISOString(), reason }, `backend ${b.key} of ${service} ejected: ${reason}`);
      },
      onPanic: (service, panic, healthy, total) => {
        metrics.panicTransitions.inc({ service, to: panic ? 'panic' : 'normal' });
        (panic ? log.error.bind(log) : log.info.bind(log))(
          { event: { action: panic ? 'panic-enter' : 'panic-exit' }, service, healthy, total },
          panic ? `service ${service} entered panic mode: ${healthy}/${total} backends healthy` : `service ${service} left panic mode: ${healthy}/${total} backends healthy`,
        );
      },
      onMembersChange: (service, added, removed) =>
        log.info({ event: { action: 'members-changed' }, service, added, removed }, `service ${service}: +${added.length} -${removed.length} backends`),
    };
  }

  /**
   * Apply a snapshot. Either all of it takes effect or none: listeners that
   * cannot bind make apply throw and the running configuration stays.
   */
  async apply(snapshot: Snapshot, state?: Readonly<Record<string, readonly MemberState[]>>, atGeneration?: number): Promise<void> {
    if (this.closed) throw new Error('runtime is closed');
    // Workers take the control process's generation number.
    const generation = atGeneration ?? this.generation + 1;

    // 1. Bind listeners the new snapshot adds (the only step that can fail).
    const wanted = new Map<string, { cluster: ClusterSpec; proto: Proto; addr: ListenAddress }>();
    if (this.role !== 'control') {
      for (const c of snapshot.clusters.values()) {
        if (c.listen.http) wanted.set(listenerKey(c, 'http', c.listen.http), { cluster: c, proto: 'http', addr: c.listen.http });
        if (c.listen.https) wanted.set(listenerKey(c, 'https', c.listen.https), { cluster: c, proto: 'https', addr: c.listen.https });
      }
    }
    const added: Listener[] = [];
    let newAdmin: AdminServer | undefined;
    let newAccessLog: AccessLog | undefined;
    let accessLogChanged = false;
    const newStores = new Map<string, CertStore>();
    let newGeo: GeoLookup | undefined;
    let geoChanged = false;
    // TCP proxy listeners: data-plane processes only (the control process's workers accept).
    const tcpSpecs: Snapshot['tcp'] = this.role !== 'control' ? snapshot.tcp : new Map();
    let tcpAdded: TcpListener[] = [];
    let allowlistsPrepared: Awaited<ReturnType<AllowlistHost['prepare']>> | undefined;
    const adminChanged = this.role !== 'worker' && !sameAddress(this.admin?.address, snapshot.admin?.listen);
    try {
      // Certificates first: a certificate that cannot be used refuses the config.
      for (const { cluster, proto } of wanted.values()) {
        if (proto !== 'https') continue;
        const tlsSpec = cluster.tls!;
        const store = this.certStores.get(cluster.name) ?? new CertStore(tlsSpec, this.log);
        store.setFiles(tlsSpec.certificates, tlsSpec);
        newStores.set(cluster.name, store);
      }
      for (const [key, w] of wanted) {
        if (this.listeners.has(key)) continue;
        added.push(await this.bind(key, w.cluster, w.proto, w.addr, generation, newStores.get(w.cluster.name)));
      }
      tcpAdded = await this.tcp.prepare(tcpSpecs);
      // The allowlist store (opened when tcp or admin listeners need it; a SQLite file that cannot be opened refuses the config).
      if (this.role !== 'worker') allowlistsPrepared = await this.allowlistHost.prepare(snapshot);
      if (adminChanged && snapshot.admin) {
        if (this.admin) await this.admin.close(); // same port may be reused by the new address
        this.admin = undefined;
        newAdmin = await AdminServer.start(snapshot.admin, this.opts.adminSource ? this.opts.adminSource() : this.adminSource(), { log: this.log });
      }
      // Geolocation databases: open (and in the control process, build) before anything swaps.
      const geoKey = JSON.stringify(snapshot.geo ?? null);
      if (geoKey !== this.geoKey) {
        newGeo = snapshot.geo ? await GeoLookup.open(snapshot.geo, this.log) : undefined;
        geoChanged = true;
      }
      this.nextGeo = geoChanged ? newGeo : this.geo;
      // The access log (data-plane processes): a path that cannot be opened refuses the config.
      if (this.role !== 'control') {
        const want = snapshot.accessLog?.path;
        if (want !== this.accessLog?.path) {
          newAccessLog = want ? AccessLog.open(want, { onError: (err) => this.log.error({ err, event: { action: 'access-log-error' } }, `access log ${want}: ${err.message}`) }) : undefined;
          accessLogChanged = true;
        }
      }
    } catch (err) {
      for (const l of added) {
        l.server.close();
        this.heldFlush.get(l.key)?.(false);
        this.heldFlush.delete(l.key);
      }
      this.tcp.abort(tcpAdded);
      await allowlistsPrepared?.abort();
      if (newAdmin) await newAdmin.close();
      newGeo?.close();
      this.metrics.reloads.inc({ result: 'refused' });
      throw err;
    }
    if (accessLogChanged) {
      const old = this.accessLog;
      this.accessLog = newAccessLog;
      if (old) void old.close();
    }
    if (!adminChanged && this.role !== 'worker' && this.admin && snapshot.admin) this.admin.update(snapshot.admin);
    if (adminChanged) {
      if (this.admin) await this.admin.close();
      this.admin = newAdmin;
      if (newAdmin) this.log.info({ event: { action: 'listen' }, address: `${newAdmin.address.host}:${newAdmin.port()}` }, `admin listening on http://${newAdmin.address.host}:${newAdmin.port()}/metrics`);
    }

    // 2. ACME HTTP-01 answers. The process running the ACME client answers
    // from memory; workers read what it published in the shared storage.
    if (snapshot.acme) {
      if (this.role === 'worker') {
        const storage = new AcmeStorage(snapshot.acme.storage, snapshot.acme.directory);
        this.acmeChallenge = (token) => storage.getHttpChallenge(token);
        this.acmeAlpn = snapshot.acme.challenges.includes('tls-alpn-01') ? (name) => storage.getAlpnCertificate(name) : undefined;
      } else {
        this.acmeChallenge = (token) => this.acme?.httpChallenge(token);
        this.acmeAlpn = snapshot.acme.challenges.includes('tls-alpn-01') ? (name) => this.acme?.tlsAlpnCertificate(name) : undefined;
      }
    } else {
      this.acmeChallenge = undefined;
      this.acmeAlpn = undefined;
    }

    // Discovery and pools (keep state by service name).
    const worker = this.role === 'worker';
    if (!worker) {
      if (!this.discovery) this.discovery = new Discovery(snapshot.discovery, this.log, this.opts.discovery);
      else this.discovery.update(snapshot.discovery);
    }
    for (const spec of snapshot.services.values()) {
      const cur = this.services.get(spec.name);
      if (!cur) {
        const balancer = createBalancer(spec.balancer);
        const pool = new Pool(spec, balancer, this.events, { externalHealth: worker });
        const st: ServiceState = { spec, pool, balancer, budget: new RetryBudget(), unwatch: () => {} };
        if (worker) {
          const given = state?.[spec.name];
          if (given) this.feedMembers(pool, given);
        } else {
          st.unwatch = this.watch(spec, pool);
        }
        this.services.set(spec.name, st);
      } else {
        if (JSON.stringify(cur.spec) !== JSON.stringify(spec)) {
          if (cur.spec.balancer !== spec.balancer) cur.balancer = createBalancer(spec.balancer);
          cur.pool.update(spec, cur.balancer);
        }
        if (!worker && cur.spec.source !== spec.source) {
          cur.unwatch();
          cur.unwatch = this.watch(spec, cur.pool);
        }
        cur.spec = spec;
      }
    }

    // 3. Compile routes per listener.
    const routesByKey = new Map<string, ListenerRoutes>();
    const boundPort = (key: string): number | undefined => {
      const l = this.listeners.get(key) ?? added.find((x) => x.key === key);
      return (l?.server.address() as net.AddressInfo | null)?.port;
    };
    for (const [key, w] of wanted) {
      const httpsPort = w.cluster.listen.https ? boundPort(listenerKey(w.cluster, 'https', w.cluster.listen.https)) : undefined;
      routesByKey.set(key, this.compileRoutes(snapshot, w.cluster, w.proto, generation, httpsPort));
    }

    // 4. Swap.
    for (const l of added) this.listeners.set(l.key, l);
    for (const [key, routes] of routesByKey) {
      const l = this.listeners.get(key)!;
      l.state.routes = routes;
      l.cluster = routes.cluster.name;
      const flush = this.heldFlush.get(key);
      if (flush) {
        this.heldFlush.delete(key);
        flush(true);
      }
    }
    allowlistsPrepared?.commit();
    this.tcp.commit(tcpSpecs, tcpAdded);
    if (geoChanged) {
      const old = this.geo;
      this.geo = newGeo;
      this.geoKey = JSON.stringify(snapshot.geo ?? null);
      old?.close();
    }
    for (const [name, store] of this.certStores) if (!newStores.has(name)) store.close();
    this.certStores = newStores;
    this.snapshot = snapshot;
    this.generation = generation;
    this.appliedAt = new Date().toISOString();
    this.metrics.reloads.inc({ result: 'applied' });

    if (this.role !== 'worker') this.applyAcme(snapshot);

    // 5. Retire what the new snapshot dropped.
    for (const [key, l] of this.listeners) {
      if (!wanted.has(key)) {
        this.listeners.delete(key);
        this.closeListener(l, 0);
      }
    }
    for (const [name, st] of this.services) {
      if (!snapshot.services.has(name)) {
        st.unwatch();
        st.pool.close();
        this.services.delete(name);
      }
    }
    const applied = { event: { action: 'config-applied' }, generation, sites: snapshot.sites.size, clusters: snapshot.clusters.size, source: snapshot.source };
    const message = `configuration generation ${generation} applied: ${snapshot.sites.size} sites in ${snapshot.clusters.size} clusters`;
    // Workers say it at debug level: the control process says it for them all, and its
    // 'config-reloaded' line comes once every worker has applied. A log line is a tenth of a
    // worker's part of a reload (BENCHMARKS.md, Reloads under load).
    if (this.role === 'worker') this.log.debug(applied, message);
    else this.log.info(applied, message);
  }

  private compileRoutes(snapshot: Snapshot, cluster: ClusterSpec, proto: Proto, generation: number, httpsPort?: number): ListenerRoutes {
    return compileListenerRoutes(snapshot, cluster, generation, (name) => {
      const st = this.services.get(name);
      return st ? { pool: st.pool, budget: st.budget, retries: st.spec.retries, protocol: st.spec.protocol } : undefined;
    }, proto, httpsPort, { geo: this.nextGeo, acmeChallenge: this.acmeChallenge });
  }

  private bind(key: string, cluster: ClusterSpec, proto: Proto, addr: ListenAddress, generation: number, store?: CertStore): Promise<Listener> {
    const state: ListenerState = {
      name: `${addr.host || '*'}:${addr.port}`,
      routes: { cluster, exact: new Map(), wildcard: new Map(), trusted: new CidrSet([]), limits: cluster.limits, timeouts: cluster.timeouts, generation, proto, hsts: '', redirectPort: 0 },
      connPools: this.connPools,
      hooks: {
        onRecord: this.onRecord,
        onInternalError: (err) => this.log.error({ err, event: { action: 'internal-error' }, listener: key }, `internal error in the request path: ${String(err)}`),
      },
      clients: new Set(),
      draining: false,
    };
    // A new listener accepts before its routes are in place (binding is the
    // step that may refuse a config). Hold its first connections until the
    // swap: answering them with the empty route table would say 421.
    const held: net.Socket[] = [];
    let ready = false;
    let handle: ((socket: net.Socket) => void) | undefined;
    const gate = (handler: (socket: net.Socket) => void) => {
      handle = handler;
      return (socket: net.Socket): void => {
        if (ready) return handler(socket);
        socket.pause();
        held.push(socket);
        socket.once('close', () => {
          const i = held.indexOf(socket);
          if (i !== -1) held.splice(i, 1);
        });
      };
    };
    this.heldFlush.set(key, (serve: boolean) => {
      ready = true;
      for (const s of held.splice(0)) {
        if (s.destroyed) continue;
        if (!serve || !handle) {
          s.destroy();
          continue;
        }
        // Handler first: a TLS server must take the socket (and what it has read) before it flows.
        handle(s);
        s.resume();
      }
    });
    let server: net.Server;
    const handshaking = new Map<Handshaking, number>();
    let takeLean: (() => boolean) | undefined;
    let handshakeSweep: NodeJS.Timeout | undefined;
    if (proto === 'https') {
      const limitMs = cluster.timeouts.requestHeaderMs;
      handshakeSweep = setInterval(() => {
        const now = Date.now();
        for (const [raw, at] of handshaking) {
          if (raw.destroyed) handshaking.delete(raw);
          else if (now - at > limitMs) raw.destroy();
        }
      }, Math.min(1000, limitMs));
      handshakeSweep.unref();
      const h2 = createH2Front(state);
      const tlsServer = tls.createServer(
        {
          ...secureOptions(cluster.tls!),
          SNICallback: store!.sni,
          // HTTP/2 preferred when the client offers it (docs/http2.md).
          ALPNProtocols: ['h2', 'http/1.1'],
          allowHalfOpen: true,
          noDelay: true,
          handshakeTimeout: cluster.timeouts.requestHeaderMs,
          sessionTimeout: 300,
        },
        (socket) => {
          // _parent: the raw socket tls.Server wrapped (Node internals, stable since v0.x); without it nothing is pruned early.
          const raw = (socket as unknown as { _parent?: unknown })._parent;
          if (raw instanceof net.Socket) handshaking.delete(raw);
          if (socket.alpnProtocol === 'h2') h2.handle(socket);
          else handleConnection(state, socket);
        },
      );
      const tlsClientError = (code: string): void =>
        this.log.debug({ event: { action: 'tls-handshake-failed' }, cluster: cluster.name, err: code }, 'TLS handshake failed');
      // Once listening, connections take the lean TLS path (src/tls/lean.ts), the same handshake
      // without node:tls's two streams per connection; held ones (before the first swap) and those
      // that may be ACME TLS-ALPN-01 validations take node:tls below.
      takeLean = () =>
        leanTlsAccept({
          server,
          tlsServer,
          sni: store!.sni,
          ocsp: (cert, issuer, cb) => this.ocsp.respond(cert, issuer, cb),
          take: () => ready && this.acmeAlpn === undefined,
          handshaking,
          // HTTP/2: node:http2 takes a net.Socket. HTTP/1.1: a socket driven on the TLSWrap itself.
          socket: (handle, alpn) =>
            alpn === 'h2' ? new net.Socket({ handle, allowHalfOpen: false, readable: true, writable: true } as net.SocketConstructorOpts & { handle: unknown }) : clientSocketOn(handle),
          onSecure: (socket, alpn) => (alpn === 'h2' ? h2.handle(socket as tls.TLSSocket) : handleConnection(state, socket)),
          onClientError: tlsClientError,
        });
      this.rotateTickets(tlsServer);
      // OCSP stapling from a background-refreshed cache; never waits (docs/tls.md).
      tlsServer.on('OCSPRequest', (cert: Buffer, issuer: Buffer | null, cb: (err: Error | null, resp?: Buffer | null) => void) => this.ocsp.respond(cert, issuer, cb));
      tlsServer.on('tlsClientError', (err: Error & { code?: string }) => tlsClientError(err.code ?? err.message));
      // With ACME TLS-ALPN-01 configured, the TCP listener reads the
      // ClientHello first: a validation (ALPN exactly "acme-tls/1") gets the
      // challenge certificate; everything else goes to the TLS server untouched.
      server = net.createServer({ allowHalfOpen: true, noDelay: true }, gate((raw) => {
        raw.on('error', () => raw.destroy());
        handshaking.set(raw, Date.now()); // removed on secureConnection, or by the sweep once destroyed
        if (this.acmeAlpn === undefined) {
          // No TLS-ALPN-01 challenge can be pending: nothing to look for in
          // the ClientHello, so the TLS server reads it itself (one read and
          // one timer less per handshake).
          tlsServer.emit('connection', raw);
          return;
        }
        peekClientHello(raw, cluster.timeouts.requestHeaderMs, (hello, head) => {
          if (raw.destroyed) return;
          if (head.length > 0) raw.unshift(head);
          if (hello && hello.alpn.length === 1 && hello.alpn[0] === 'acme-tls/1' && this.serveAlpnChallenge(raw, hello.servername, cluster)) return;
          tlsServer.emit('connection', raw);
        });
      }));
      server.once('close', () => this.tlsServers.delete(tlsServer));
    } else {
      // pauseOnConnect: the accepted socket never reads; adoptSocket re-wraps its handle to read into a shared buffer.
      const serve = gate((socket) => handleConnection(state, socket));
      server = net.createServer({ allowHalfOpen: true, noDelay: true, pauseOnConnect: true }, (accepted) => serve(adoptSocket(accepted, true)));
    }
    return new Promise((resolve, reject) => {
      const onError = (err: Error): void => {
        this.heldFlush.delete(key);
        clearInterval(handshakeSweep);
        reject(new Error(`cluster '${cluster.name}' cannot listen on ${addr.host || '*'}:${addr.port}: ${err.message}`));
      };
      server.once('error', onError);
      server.listen({ host: addr.host || undefined, port: addr.port }, () => {
        server.off('error', onError);
        server.on('error', (err) => this.log.error({ err, listener: key }, 'listener error'));
        // 'lean' or 'node:tls' (this Node.js lacks what the lean path uses): which TLS path serves it.
        const tlsPath = takeLean === undefined ? undefined : takeLean() ? 'lean' : 'node:tls';
        const a = server.address() as net.AddressInfo;
        (state as { name: string }).name = `${a.address.includes(':') ? `[${a.address}]` : a.address}:${a.port}`;
        this.log.info({ event: { action: 'listen' }, cluster: cluster.name, address: state.name, protocol: proto, ...(tlsPath ? { tlsPath } : {}) }, `cluster ${cluster.name} listening on ${proto}://${state.name}`);
        resolve({ key, proto, server, state, cluster: cluster.name, ...(handshakeSweep ? { handshaking, handshakeSweep } : {}) });
      });
    });
  }

  private closeListener(l: Listener, graceMs: number): Promise<void> {
    l.state.draining = true;
    const closed = new Promise<void>((resolve) => l.server.close(() => resolve()));
    clearInterval(l.handshakeSweep);
    for (const raw of l.handshaking?.keys() ?? []) raw.destroy();
    for (const c of l.state.clients) c.drain();
    if (graceMs > 0) {
      setTimeout(() => {
        for (const c of l.state.clients) c.close();
      }, graceMs).unref();
    }
    return closed;
  }

  /** Where each cluster listens (resolves port 0). */
  bound(): BoundListener[] {
    const out: BoundListener[] = [];
    for (const l of this.listeners.values()) {
      const a = l.server.address() as net.AddressInfo | null;
      if (a) out.push({ cluster: l.cluster, protocol: l.proto, address: a.address, port: a.port });
    }
    return out;
  }

  private watch(spec: ServiceSpec, pool: Pool): () => void {
    return this.discovery!.watch(spec.name, spec.source, (members) => {
      pool.setMembers(members);
      this.opts.onMembers?.(spec.name, memberStates(pool.backends));
    });
  }

  private feedMembers(pool: Pool, members: readonly MemberState[]): void {
    pool.setMembers(members);
    for (const m of members) pool.setActiveHealth(backendKey(m.host, m.port), m.active, m.reason);
  }

  /** worker role: the control process's member list for a service. */
  setMembers(service: string, members: readonly MemberState[]): void {
    const st = this.services.get(service);
    if (st) this.feedMembers(st.pool, members);
  }

  /** worker role: a backend's active health as the control process checked it. */
  setActiveHealth(service: string, key: string, active: MemberState['active'], reason: string): void {
    this.services.get(service)?.pool.setActiveHealth(key, active, reason);
  }

  /** control role: every service's members with their health, for a new or re-applied worker. */
  memberStates(): Record<string, MemberState[]> {
    const out: Record<string, MemberState[]> = {};
    for (const [name, st] of this.services) out[name] = memberStates(st.pool.backends);
    return out;
  }

  /** The admin data of a standalone process. */
  adminSource(): AdminSource {
    return {
      metricsText: async () => ({ contentType: this.metrics.registry.contentType, body: await this.metrics.registry.metrics() }),
      configInfo: () => ({
        generation: this.generation,
        source: this.snapshot?.source ?? '',
        appliedAt: this.appliedAt,
        lastReload: this.lastReload,
        workers: 0,
      }),
      snapshot: () => this.snapshot,
      pools: async () => this.describePools(),
      tcp: async () => this.tcp.describe(),
      allowlists: () => this.allowlistHost.service,
      geoInfo: () => (this.geo ? { enabled: true, ...this.geo.info() } : { enabled: false }),
      reload: async (trigger) => {
        if (!this.opts.reload) {
          const outcome: ReloadOutcome = { ok: false, generation: this.generation, errors: ['this runtime was started without a configuration directory to reload from'], trigger, at: new Date().toISOString() };
          return outcome;
        }
        return this.opts.reload(trigger);
      },
    };
  }

  /**
   * Session tickets: from the keyring (renewed on resumption, the current
   * and previous epoch's accepted), the same in every worker. Where Node.js
   * offers no ticket key hook, fixed keys for the epoch, rotated every epoch.
   */
  private rotateTickets(server: tls.Server): void {
    this.tlsServers.add(server);
    server.once('close', () => this.tlsServers.delete(server));
    if (useTicketKeyring(server, this.ticketRing)) return;
    server.setTicketKeys(ticketKeys(this.ticketSecret, currentEpoch()));
    if (!this.ticketTimer) {
      const next = (): void => {
        const wait = TICKET_EPOCH_MS - (Date.now() % TICKET_EPOCH_MS) + 1000;
        this.ticketTimer = setTimeout(() => {
          const keys = ticketKeys(this.ticketSecret, currentEpoch());
          for (const s of this.tlsServers) s.setTicketKeys(keys);
          next();
        }, wait);
        this.ticketTimer.unref();
      };
      next();
    }
  }

  /**
   * ACME: keep certificates for every HTTPS site that no certificate file
   * covers (wildcards need DNS-01, which is not offered).
   */
  private applyAcme(snapshot: Snapshot): void {
    const key = JSON.stringify(snapshot.acme ?? null);
    if (key !== this.acmeKey) {
      const old = this.acme;
      this.acme = snapshot.acme
        ? new AcmeManager(snapshot.acme, this.log, { onCertificate: (domain, pem) => this.installAcmeCertificate(domain, pem.cert, pem.key) })
        : undefined;
      this.acmeKey = key;
      if (old) void old.close();
    }
    if (!this.acme) return;
    const domains: string[] = [];
    for (const site of snapshot.sites.values()) {
      const cluster = snapshot.clusters.get(site.cluster);
      if (!cluster?.listen.https || site.host.startsWith('*.')) continue;
      // Sites no certificate file covers (a stored ACME certificate still needs its manager).
      if (certificateFor(snapshot, site.cluster, site.host)?.source !== 'file') domains.push(site.host);
    }
    this.acme.setDomains(domains);
  }

  /** A certificate from ACME: into the certificate stores here, and (control) to the workers. */
  private installAcmeCertificate(domain: string, cert: string, key: string): void {
    this.setAcmeCertificate(domain, cert, key);
    this.opts.onAcmeCertificate?.(domain, cert, key);
  }

  /** Serve an ACME certificate on the HTTPS listeners of the clusters that have this site. */
  setAcmeCertificate(domain: string, cert: string, key: string): void {
    const snapshot = this.snapshot;
    if (!snapshot) return;
    for (const site of snapshot.sites.values()) {
      if (site.host !== domain) continue;
      try {
        this.certStores.get(site.cluster)?.setAcme(domain, cert, key);
      } catch (err) {
        this.log.error({ event: { action: 'acme-certificate-unusable' }, domain, err: (err as Error).message }, `ACME certificate for ${domain} cannot be used: ${(err as Error).message}`);
      }
    }
  }

  /** ACME certificates held now (the control process hands them to new workers). */
  acmeCertificates(): { domain: string; cert: string; key: string }[] {
    if (!this.acme) return [];
    return [...this.acme.certificates()].map(([domain, c]) => ({ domain, cert: c.cert, key: c.key }));
  }

  /**
   * RFC 8737: complete the handshake with the challenge certificate for
   * `servername`, then close. False when there is no challenge for it.
   */
  private serveAlpnChallenge(raw: net.Socket, servername: string, cluster: ClusterSpec): boolean {
    const challenge = this.acmeAlpn?.(servername);
    if (!challenge) return false;
    const socket = new tls.TLSSocket(raw, {
      isServer: true,
      ALPNProtocols: ['acme-tls/1'],
      secureContext: tls.createSecureContext({ ...secureOptions(cluster.tls!), cert: challenge.cert, key: challenge.key }),
    });
    socket.on('secure', () => socket.end());
    socket.on('error', () => socket.destroy());
    socket.setTimeout(10_000, () => socket.destroy());
    this.log.info({ event: { action: 'acme-tls-alpn-challenge' }, domain: servername }, `answered a TLS-ALPN-01 validation for ${servername}`);
    return true;
  }

  /** Every certificate perimeter serves, with days to expiry (files and ACME). */
  certificatePosture(): { cluster: string; name: string; source: string; daysLeft: number }[] {
    const snapshot = this.snapshot;
    if (!snapshot) return [];
    const out: { cluster: string; name: string; source: string; daysLeft: number }[] = [];
    for (const [cluster, certs] of clusterCertificates(snapshot)) {
      for (const c of certs) out.push({ cluster, name: c.names[0] ?? c.subject, source: 'file', daysLeft: c.daysLeft });
    }
    for (const [domain, c] of this.acme?.certificates() ?? []) {
      const site = snapshot.sites.get(domain);
      out.push({ cluster: site?.cluster ?? '', name: domain, source: 'acme', daysLeft: Math.floor((c.notAfter.getTime() - Date.now()) / 86_400_000) });
    }
    return out;
  }



  /** Reopen log files (SIGUSR1, after logrotate moved them). */
  reopenLogs(): void {
    this.accessLog?.reopen();
  }

  /** Set by whoever drives reloads, for the admin API's config info. */
  lastReload: ReloadOutcome | null = null;

  describePools(): PoolDescription[] {
    const now = Date.now();
    return [...this.services.values()].map((s) => s.pool.describe(now));
  }

  pool(service: string): Pool | undefined {
    return this.services.get(service)?.pool;
  }

  /**
   * Stop accepting, let in-flight exchanges finish within `deadlineMs`,
   * then cut what remains and release everything.
   */
  async close(deadlineMs = 5000): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    const ls = [...this.listeners.values()];
    this.listeners.clear();
    const all = Promise.all(ls.map((l) => this.closeListener(l, deadlineMs)));
    const tcpClosed = this.tcp.close(deadlineMs);
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([all, new Promise((r) => (timer = setTimeout(r, deadlineMs + 100)))]);
    clearTimeout(timer);
    for (const l of ls) for (const c of l.state.clients) c.close();
    await tcpClosed;
    for (const st of this.services.values()) {
      st.unwatch();
      st.pool.close();
    }
    this.services.clear();
    this.discovery?.close();
    this.connPools.closeAll();
    if (this.admin) await this.admin.close();
    if (this.accessLog) await this.accessLog.close();
    clearTimeout(this.ticketTimer);
    this.geo?.close();
    await this.allowlistHost.close();
    if (this.acme) await this.acme.close();
    for (const st of this.certStores.values()) st.close();
    this.ocspStapler?.close();
  }

  private get ocsp(): OcspStapler {
    return (this.ocspStapler ??= new OcspStapler(this.log));
  }
}
