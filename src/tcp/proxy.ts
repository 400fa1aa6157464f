/**
 * The inbound TCP proxy (docs/tcp.md): listeners from `tcp:` in
 * perimeter.yaml, each forwarding to a service's pool, admitting only
 * clients on its allowlist.
 *
 * The path of one connection:
 *  1. accepted paused (`pauseOnConnect`): nothing is read yet;
 *  2. listener limit; from a trusted load balancer, the PROXY v1/v2 header
 *     (required, within the proxy-header timeout; only its bytes are read);
 *  3. allowlist lookup of the client address (in memory, no I/O); not listed
 *     → reset at once, no byte read or written, no backend dialled;
 *  4. per-source limit; least-connections pick among available backends;
 *     connect timeout or refusal → the next backend (at most 3 tries);
 *  5. optional PROXY v2 header to the backend, then bytes both ways with
 *     backpressure (pipe), half-close passed on, resets passed on, idle timeout.
 *
 * State kept across reloads (by listen address): the listening socket and
 * its open sessions; a reload changes what new connections get. A listener
 * a reload removes stops accepting; its sessions run until they end.
 */
import net from 'node:net';
import { returnSlab, takeSlab } from '../net/slabs.js';
import type { Logger } from '../core/log.js';
import type { ServiceSpec, TcpListenerSpec } from '../config/types.js';
import type { AllowEntry, AllowlistMatcher } from '../allowlist/types.js';
import { CidrSet, clientAddress } from '../net/cidr.js';
import type { Backend } from '../upstream/backend.js';
import type { Pool } from '../upstream/pool.js';
import { encodeProxyV2, parseProxyHeader, type Endpoint } from './proxy-protocol.js';
import { TcpMetrics, type ConnectionResult, type LiveSession } from './metrics.js';
import type { Registry } from 'prom-client';

/** Backends tried for one connection (HAProxy's `retries 3` with redispatch). */
export const MAX_CONNECT_ATTEMPTS = 3;
/** Denials logged per listener per window; the rest are counted and reported with the next line. */
const DENIAL_LOG_BURST = 10;
const DENIAL_LOG_WINDOW_MS = 10_000;
const ECS_VERSION = '8.11.0';

/** Where the proxy gets its allowlists, pools and sinks (the runtime). */
export interface TcpProxyHooks {
  readonly log: Logger;
  readonly registry: Registry;
  /** The compiled list of that name; undefined (unknown list, no tables yet) admits nobody. */
  allowlist(name: string): AllowlistMatcher | undefined;
  /** The service's pool and spec, if the service exists. */
  service(name: string): { readonly pool: Pool; readonly spec: ServiceSpec } | undefined;
  /** One JSON line (no newline) per ended session, for the access log. */
  onSessionLine?(line: string): void;
}

export type CloseReason =
  | 'client-closed' // the client sent FIN first and both directions finished
  | 'backend-closed'
  | 'client-reset'
  | 'backend-reset'
  | 'client-error'
  | 'backend-error'
  | 'idle-timeout'
  | 'shutdown'
  | 'no-backend'
  | 'connect-failed';

/** One admitted connection, as logged when it ends. */
export interface TcpSessionRecord {
  readonly listener: string;
  readonly service: string;
  readonly startMs: number;
  readonly durationMs: number;
  readonly source: Endpoint;
  /** The trusted load balancer the connection came through (PROXY protocol), if any. */
  readonly loadBalancer?: string;
  readonly backend: string;
  readonly attempts: number;
  readonly bytesIn: number;
  readonly bytesOut: number;
  readonly reason: CloseReason;
  readonly allowlist: string;
  readonly entry: AllowEntry;
}

export interface TcpListenerDescription {
  readonly name: string;
  /** As configured. */
  readonly listen: string;
  /** Where it is bound ('' when not bound in this process). */
  readonly address: string;
  readonly port: number;
  readonly service: string;
  readonly allowlist: string;
  /** Entries in the allowlist as this process has it; null when the list is unknown here (nobody is admitted). */
  readonly allowlistEntries: number | null;
  readonly proxyProtocol: TcpListenerSpec['proxyProtocol'];
  readonly trustedLoadBalancers: readonly string[];
  readonly limits: { readonly connections: number; readonly perSource: number };
  readonly timeouts: { readonly connectMs: number; readonly idleMs: number; readonly proxyHeaderMs: number };
  /** Sessions open now (client and backend connected). */
  readonly activeSessions: number;
  readonly bytesIn: number;
  readonly bytesOut: number;
  /** Connections by result since start. */
  readonly connections: Readonly<Record<string, number>>;
  /** Removed by a reload; its sessions still run. */
  readonly draining: boolean;
}

function listenText(spec: TcpListenerSpec): string {
  const h = spec.listen.host;
  return `${h.includes(':') ? `[${h}]` : h}:${spec.listen.port}`;
}

function addressText(address: string, port: number): string {
  return `${address.includes(':') ? `[${address}]` : address}:${port}`;
}

/** Listener identity across reloads: its address (port 0, in tests, by name). */
export function tcpListenerKey(spec: TcpListenerSpec): string {
  return spec.listen.port === 0 ? `${spec.name}@${spec.listen.host}:0` : `${spec.listen.host || '*'}:${spec.listen.port}`;
}

/** Where a backend socket's reads go: its session once started; before that (never seen: reads start after 'connect' runs) a queue. */
interface BackendSink {
  session: Session | undefined;
  early: Buffer[];
}

function backendRead(sink: BackendSink, n: number, slab: Buffer): boolean {
  const chunk = slab.subarray(0, n);
  if (sink.session !== undefined) sink.session.fromBackend(chunk, slab);
  else sink.early.push(Buffer.from(chunk));
  return true;
}

class Session {
  readonly startMs = Date.now();
  private readonly started = performance.now();
  reason: CloseReason | undefined;
  private firstEnd: 'client' | 'backend' | undefined;
  private finished = false;
  backendSocket: net.Socket | undefined;
  backend: Backend | undefined;
  attempts = 0;

  constructor(
    readonly proxy: TcpProxy,
    readonly listener: TcpListener,
    readonly spec: TcpListenerSpec,
    readonly client: net.Socket,
    readonly source: Endpoint,
    readonly destination: Endpoint,
    readonly loadBalancer: string | undefined,
    readonly headerBytes: number,
    readonly entry: AllowEntry,
  ) {}

  get bytesIn(): number {
    return Math.max(0, this.client.bytesRead - this.headerBytes);
  }

  get bytesOut(): number {
    return this.client.bytesWritten;
  }

  /**
   * Both sockets connected: relay with backpressure, half-close and resets
   * passed on. Client to backend is a pipe; backend to client is relayed
   * from the backend's read slabs (backendRead), as pipe would: a full
   * client pauses the backend until it drains, the backend's FIN ends the
   * client's write side.
   */
  start(backendSocket: net.Socket, sink: BackendSink): void {
    const client = this.client;
    const backend = (this.backendSocket = backendSocket);
    if (this.spec.proxyProtocol === 'v2') backend.write(encodeProxyV2(this.source, this.destination));
    client.on('end', () => (this.firstEnd ??= 'client'));
    backend.on('end', () => {
      this.firstEnd ??= 'backend';
      if (!client.destroyed) client.end();
    });
    // The FIN of one side ends the other's write side (pipe's default); data
    // keeps flowing the other way until that side ends too (allowHalfOpen).
    client.pipe(backend);
    client.on('drain', () => {
      if (backend.isPaused()) backend.resume();
    });
    sink.session = this;
    for (const b of sink.early.splice(0)) this.fromBackend(b, null);
    const onError = (side: 'client' | 'backend', other: net.Socket) => (err: NodeJS.ErrnoException) => {
      const reset = err.code === 'ECONNRESET' || err.code === 'EPIPE';
      this.reason ??= reset ? `${side}-reset` : `${side}-error`;
      // A reset on one side is passed on as a reset, so the peer sees what happened.
      if (reset && typeof other.resetAndDestroy === 'function' && !other.destroyed) other.resetAndDestroy();
      else other.destroy();
    };
    client.on('error', onError('client', backend));
    backend.on('error', onError('backend', client));
    const idle = (): void => {
      this.reason ??= 'idle-timeout';
      client.destroy();
      backend.destroy();
    };
    // Any byte either way is a read on one socket and a write on the other: both timers move.
    client.setTimeout(this.spec.idleTimeoutMs, idle);
    backend.setTimeout(this.spec.idleTimeoutMs, idle);
    const onClose = (side: net.Socket, other: net.Socket) => () => {
      // A side that closed without finishing both directions was cut: cut the other.
      if (!other.destroyed && !(side.readableEnded && side.writableFinished)) other.destroy();
      if (client.destroyed && backend.destroyed) this.finish();
    };
    client.on('close', onClose(client, backend));
    backend.on('close', onClose(backend, client));
  }

  /** Backend bytes for the client; `slab` goes back to the free list once written. */
  fromBackend(chunk: Buffer, slab: Buffer | null): void {
    const client = this.client;
    if (client.destroyed) {
      if (slab !== null) returnSlab(slab);
      return;
    }
    const ok = slab === null ? client.write(chunk) : client.write(chunk, () => returnSlab(slab));
    if (!ok) this.backendSocket?.pause();
  }

  /** Close both sides now (shutdown deadline). */
  cut(): void {
    this.reason ??= 'shutdown';
    this.client.destroy();
    this.backendSocket?.destroy();
  }

  finish(reason?: CloseReason): void {
    if (this.finished) return;
    this.finished = true;
    if (reason) this.reason ??= reason;
    this.proxy.sessionEnded(this, this.reason ?? (this.firstEnd === 'backend' ? 'backend-closed' : 'client-closed'), (performance.now() - this.started) / 1000);
  }
}

/** One listening socket and what it serves; the spec is swapped on reload. */
export class TcpListener {
  readonly key: string;
  readonly server: net.Server;
  spec: TcpListenerSpec;
  private trusted: CidrSet;
  /** Connections this listener holds now (reading a PROXY header, dialling, or in session). */
  open = 0;
  /** Admitted connections per client address. */
  private readonly bySource = new Map<string, number>();
  draining = false;
  private ready = false;
  private readonly held: net.Socket[] = [];

  constructor(
    private readonly proxy: TcpProxy,
    spec: TcpListenerSpec,
  ) {
    this.key = tcpListenerKey(spec);
    this.spec = spec;
    this.trusted = new CidrSet(spec.trustedLoadBalancers);
    this.server = net.createServer({ allowHalfOpen: true, pauseOnConnect: true, noDelay: true }, (socket) => {
      // Accepted before the apply that binds it has committed: hold it (paused).
      if (!this.ready) {
        this.held.push(socket);
        socket.on('error', () => socket.destroy());
        return;
      }
      this.accept(socket);
    });
  }

  setSpec(spec: TcpListenerSpec): void {
    this.spec = spec;
    this.trusted = new CidrSet(spec.trustedLoadBalancers);
  }

  /** The apply committed (serve) or was refused (drop what was held). */
  release(serve: boolean): void {
    this.ready = true;
    for (const s of this.held.splice(0)) {
      if (s.destroyed) continue;
      if (serve) this.accept(s);
      else s.destroy();
    }
  }

  listen(): Promise<void> {
    const { host, port } = this.spec.listen;
    return new Promise((resolve, reject) => {
      const onError = (err: Error): void => reject(new Error(`tcp listener '${this.spec.name}' cannot listen on ${listenText(this.spec)}: ${err.message}`));
      this.server.once('error', onError);
      this.server.listen({ host: host || undefined, port }, () => {
        this.server.off('error', onError);
        this.server.on('error', (err) => this.proxy.log.error({ err, event: { action: 'tcp-listener-error' }, perimeter: { listener: this.spec.name } }, 'tcp listener error'));
        resolve();
      });
    });
  }

  address(): net.AddressInfo | undefined {
    const a = this.server.address();
    return a && typeof a === 'object' ? a : undefined;
  }

  private accept(socket: net.Socket): void {
    const spec = this.spec;
    // Until the session owns it, an error just ends the connection.
    socket.on('error', () => socket.destroy());
    const peer = clientAddress(socket.remoteAddress);
    const peerPort = socket.remotePort ?? 0;
    if (!peer) {
      socket.destroy();
      return;
    }
    if (this.open >= spec.maxConnections) {
      this.proxy.deny(socket, spec, 'limit_listener', { address: peer, port: peerPort }, undefined, `listener limit of ${spec.maxConnections} connections reached`);
      return;
    }
    this.open++;
    socket.once('close', () => this.open--);
    const local: Endpoint = { address: clientAddress(socket.localAddress), port: socket.localPort ?? 0 };
    if (this.trusted.has(peer)) {
      this.readProxyHeader(socket, spec, peer, peerPort, local);
      return;
    }
    this.admit(socket, spec, { address: peer, port: peerPort }, local, undefined, 0);
  }

  /** A trusted load balancer must send a PROXY header first; only its bytes are read. */
  private readProxyHeader(socket: net.Socket, spec: TcpListenerSpec, peer: string, peerPort: number, local: Endpoint): void {
    let buf: Buffer = Buffer.alloc(0);
    let done = false;
    const lb: Endpoint = { address: peer, port: peerPort };
    const stop = (): void => {
      done = true;
      clearTimeout(timer);
      socket.off('data', onData);
      socket.off('end', onEnd);
      socket.pause();
    };
    const bad = (why: string): void => {
      stop();
      this.proxy.deny(socket, spec, 'proxy_header_bad', lb, peer, why);
    };
    const timer = setTimeout(() => bad(`no complete PROXY header within ${spec.proxyHeaderTimeoutMs} ms`), spec.proxyHeaderTimeoutMs);
    const onEnd = (): void => bad('closed before sending a PROXY header');
    const onData = (chunk: Buffer): void => {
      if (done) return;
      buf = buf.length === 0 ? chunk : Buffer.concat([buf, chunk]);
      const r = parseProxyHeader(buf);
      if (r.state === 'incomplete') return;
      stop();
      if (r.state === 'invalid') {
        this.proxy.deny(socket, spec, 'proxy_header_bad', lb, peer, r.reason);
        return;
      }
      const rest = buf.subarray(r.length);
      if (rest.length > 0) socket.unshift(rest);
      const h = r.header;
      // LOCAL (the balancer's own connection, e.g. a health check): the real addresses apply.
      const source = h.command === 'proxy' && h.source ? h.source : lb;
      const destination = h.command === 'proxy' && h.destination ? h.destination : local;
      this.admit(socket, spec, source, destination, peer, r.length);
    };
    socket.on('data', onData);
    socket.once('end', onEnd);
    // Accepted paused (readableFlowing false): a 'data' listener alone does not start reading.
    socket.resume();
  }

  private admit(socket: net.Socket, spec: TcpListenerSpec, source: Endpoint, destination: Endpoint, loadBalancer: string | undefined, headerBytes: number): void {
    if (socket.destroyed) return;
    const entry = this.proxy.hooks.allowlist(spec.allowlist)?.lookup(source.address);
    if (!entry) {
      this.proxy.deny(socket, spec, 'denied_allowlist', source, loadBalancer, `not on allowlist '${spec.allowlist}'`);
      return;
    }
    const n = this.bySource.get(source.address) ?? 0;
    if (n >= spec.maxPerSource) {
      this.proxy.deny(socket, spec, 'limit_source', source, loadBalancer, `per-source limit of ${spec.maxPerSource} connections reached`);
      return;
    }
    this.bySource.set(source.address, n + 1);
    socket.once('close', () => {
      const m = (this.bySource.get(source.address) ?? 1) - 1;
      if (m <= 0) this.bySource.delete(source.address);
      else this.bySource.set(source.address, m);
    });
    const session = new Session(this.proxy, this, spec, socket, source, destination, loadBalancer, headerBytes, entry);
    this.proxy.connect(session);
  }
}

export class TcpProxy {
  readonly hooks: TcpProxyHooks;
  readonly log: Logger;
  readonly metrics: TcpMetrics;
  /** Bound listeners by key (address). */
  private readonly listeners = new Map<string, TcpListener>();
  /** Removed by a reload, still holding sessions. */
  private readonly retired = new Set<TcpListener>();
  /** Sessions with both sides connected. */
  private readonly sessions = new Set<Session>();
  /** Every admitted connection not yet ended (dialling or in session), for shutdown. */
  private readonly admitted = new Set<Session>();
  /** Sessions (and dials in progress) per backend, for least connections. */
  private readonly perBackend = new Map<Backend, number>();
  private cursor = 0;
  private readonly denialLog = new Map<string, { windowStart: number; logged: number; suppressed: number }>();
  private closed = false;

  constructor(hooks: TcpProxyHooks) {
    this.hooks = hooks;
    this.log = hooks.log;
    this.metrics = new TcpMetrics(hooks.registry, () => this.live());
  }

  /**
   * Step 1 of an apply: bind the listeners `specs` adds. Throws (having
   * closed what it bound) when one cannot listen. Nothing serves until commit().
   */
  async prepare(specs: ReadonlyMap<string, TcpListenerSpec>): Promise<TcpListener[]> {
    if (this.closed) throw new Error('the TCP proxy is closed');
    const added: TcpListener[] = [];
    try {
      for (const spec of specs.values()) {
        const key = tcpListenerKey(spec);
        if (this.listeners.has(key) || added.some((l) => l.key === key)) continue;
        const l = new TcpListener(this, spec);
        await l.listen();
        added.push(l);
      }
    } catch (err) {
      this.abort(added);
      throw err;
    }
    return added;
  }

  /** The apply was refused after prepare(): close what it bound. */
  abort(added: readonly TcpListener[]): void {
    for (const l of added) {
      l.release(false);
      l.server.close();
    }
  }

  /** Swap: new listeners serve, kept ones take their new spec, removed ones stop accepting. */
  commit(specs: ReadonlyMap<string, TcpListenerSpec>, added: readonly TcpListener[]): void {
    for (const l of added) this.listeners.set(l.key, l);
    const wanted = new Set<string>();
    for (const spec of specs.values()) {
      const key = tcpListenerKey(spec);
      wanted.add(key);
      const l = this.listeners.get(key);
      if (!l) continue;
      const was = l.spec;
      l.setSpec(spec);
      if (added.includes(l)) {
        const a = l.address();
        this.log.info(
          { event: { action: 'listen' }, perimeter: { listener: spec.name }, address: a ? addressText(a.address, a.port) : '', protocol: 'tcp' },
          `tcp listener ${spec.name} listening on ${a ? addressText(a.address, a.port) : listenText(spec)} for service ${spec.service} (allowlist ${spec.allowlist})`,
        );
      } else if (JSON.stringify({ ...was, pos: undefined }) !== JSON.stringify({ ...spec, pos: undefined })) {
        this.log.info({ event: { action: 'tcp-listener-updated' }, perimeter: { listener: spec.name } }, `tcp listener ${spec.name} updated; open sessions keep their settings`);
      }
    }
    for (const l of added) l.release(true);
    for (const [key, l] of this.listeners) {
      if (wanted.has(key)) continue;
      this.listeners.delete(key);
      this.retire(l);
    }
  }

  private retire(l: TcpListener): void {
    l.draining = true;
    this.retired.add(l);
    l.server.close(() => this.retired.delete(l));
    this.log.info(
      { event: { action: 'tcp-listener-removed' }, perimeter: { listener: l.spec.name }, sessions: l.open },
      `tcp listener ${l.spec.name} stopped accepting; ${l.open} open connection(s) run until they end`,
    );
  }

  /** Refuse a connection now: reset (no byte read beyond a PROXY header, none written), count, log (rate-limited). */
  deny(socket: net.Socket, spec: TcpListenerSpec, result: ConnectionResult, source: Endpoint, loadBalancer: string | undefined, why: string): void {
    if (typeof socket.resetAndDestroy === 'function' && !socket.destroyed) socket.resetAndDestroy();
    else socket.destroy();
    this.metrics.count(spec.name, result);
    this.logDenial(spec.name, result, source, loadBalancer, why);
  }

  private logDenial(listener: string, result: ConnectionResult, source: Endpoint, loadBalancer: string | undefined, why: string): void {
    const now = Date.now();
    let st = this.denialLog.get(listener);
    if (!st || now - st.windowStart >= DENIAL_LOG_WINDOW_MS) {
      const suppressed = st?.suppressed ?? 0;
      st = { windowStart: now, logged: 0, suppressed };
      this.denialLog.set(listener, st);
    }
    if (st.logged >= DENIAL_LOG_BURST) {
      st.suppressed++;
      return;
    }
    st.logged++;
    const suppressed = st.suppressed;
    st.suppressed = 0;
    this.log.warn(
      {
        event: { action: 'tcp-denied', reason: result },
        source: { ip: source.address, port: source.port },
        perimeter: { listener, ...(loadBalancer ? { load_balancer: loadBalancer } : {}) },
        reason: why,
        suppressed,
      },
      `tcp ${listener}: connection from ${addressText(source.address, source.port)} refused (${result}: ${why})${suppressed > 0 ? `; ${suppressed} more refused since the last report` : ''}`,
    );
  }

  /** Pick a backend (least connections) and dial; on failure the next, at most MAX_CONNECT_ATTEMPTS. */
  connect(session: Session): void {
    const spec = session.spec;
    this.admitted.add(session);
    const client = session.client;
    const svc = this.hooks.service(spec.service);
    const tried = new Set<Backend>();
    let cancelled = false;
    let abortDial: (() => void) | undefined;
    const onClientClose = (): void => {
      cancelled = true;
      abortDial?.();
    };
    client.once('close', onClientClose);
    const fail = (result: 'no_backend' | 'connect_failed'): void => {
      client.off('close', onClientClose);
      this.metrics.count(spec.name, result);
      if (!client.destroyed) client.destroy();
      session.finish(result === 'no_backend' ? 'no-backend' : 'connect-failed');
    };
    const attempt = (): void => {
      if (cancelled) {
        fail('connect_failed');
        return;
      }
      const backend = svc && session.attempts < MAX_CONNECT_ATTEMPTS ? this.pick(svc.pool, svc.spec, tried) : undefined;
      if (!backend || !svc) {
        fail(session.attempts === 0 ? 'no_backend' : 'connect_failed');
        return;
      }
      tried.add(backend);
      session.attempts++;
      session.backend = backend;
      this.perBackend.set(backend, (this.perBackend.get(backend) ?? 0) + 1);
      // The pool's passive health hears every attempt (release decrements this).
      backend.inflight++;
      const t0 = performance.now();
      // Backend reads land straight in reusable slabs (../net/slabs.ts) that
      // go back to the free list when the client write is done: a bulk
      // download allocates nothing per read (see Session.start).
      const sink: BackendSink = { session: undefined, early: [] };
      const sock = net.connect({
        host: backend.host,
        port: backend.port,
        allowHalfOpen: true,
        noDelay: true,
        onread: { buffer: takeSlab, callback: (n: number, buf: Uint8Array) => backendRead(sink, n, buf as Buffer) },
      });
      let settled = false;
      const settle = (ok: boolean, outcome: 'success' | 'connect-error' | 'timeout' | 'cancelled'): void => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        sock.off('error', onError);
        svc.pool.release(backend, outcome, performance.now() - t0);
        if (ok) return;
        this.unrefBackend(backend);
        sock.destroy();
        session.backend = undefined;
        attempt();
      };
      const timer = setTimeout(() => settle(false, cancelled ? 'cancelled' : 'timeout'), spec.connectTimeoutMs);
      const onError = (): void => settle(false, cancelled ? 'cancelled' : 'connect-error');
      abortDial = () => settle(false, 'cancelled');
      sock.once('error', onError);
      sock.once('connect', () => {
        if (cancelled || client.destroyed) {
          settle(false, 'cancelled');
          return;
        }
        settle(true, 'success');
        abortDial = undefined;
        client.off('close', onClientClose);
        this.metrics.count(spec.name, 'accepted');
        this.sessions.add(session);
        session.start(sock, sink);
      });
    };
    attempt();
  }

  /** Least connections (per weight) among the pool's available backends; ties rotate. */
  private pick(pool: Pool, spec: ServiceSpec, exclude: ReadonlySet<Backend>): Backend | undefined {
    if (pool.backends.length === 0) return undefined;
    let candidates = pool.availableBackends;
    if (pool.inPanic) {
      if (spec.panic.mode === 'fail') return undefined;
      candidates = pool.backends;
    }
    const n = candidates.length;
    if (n === 0) return undefined;
    const start = this.cursor++ % n;
    let best: Backend | undefined;
    let bestLoad = Infinity;
    for (let i = 0; i < n; i++) {
      const b = candidates[(start + i) % n]!;
      if (exclude.has(b)) continue;
      const load = ((this.perBackend.get(b) ?? 0) + 1) / Math.max(1, b.weight);
      if (load < bestLoad) {
        best = b;
        bestLoad = load;
      }
    }
    return best;
  }

  private unrefBackend(b: Backend): void {
    const n = (this.perBackend.get(b) ?? 1) - 1;
    if (n <= 0) this.perBackend.delete(b);
    else this.perBackend.set(b, n);
  }

  /** Called once per admitted connection when it is over. */
  sessionEnded(s: Session, reason: CloseReason, seconds: number): void {
    this.admitted.delete(s);
    const wasSession = this.sessions.delete(s);
    if (wasSession && s.backend) this.unrefBackend(s.backend);
    const bytesIn = s.bytesIn;
    const bytesOut = s.bytesOut;
    if (wasSession) this.metrics.sessionEnded(s.spec.name, bytesIn, bytesOut, seconds);
    const rec: TcpSessionRecord = {
      listener: s.spec.name,
      service: s.spec.service,
      startMs: s.startMs,
      durationMs: seconds * 1000,
      source: s.source,
      ...(s.loadBalancer ? { loadBalancer: s.loadBalancer } : {}),
      backend: s.backend?.key ?? '',
      attempts: s.attempts,
      bytesIn,
      bytesOut,
      reason,
      allowlist: s.spec.allowlist,
      entry: s.entry,
    };
    this.hooks.onSessionLine?.(tcpSessionLine(rec));
  }

  /** Per listener (including ones a reload removed that still hold sessions). */
  describe(): TcpListenerDescription[] {
    const active = new Map<TcpListener, { n: number; in: number; out: number }>();
    for (const s of this.sessions) {
      let a = active.get(s.listener);
      if (!a) active.set(s.listener, (a = { n: 0, in: 0, out: 0 }));
      a.n++;
      a.in += s.bytesIn;
      a.out += s.bytesOut;
    }
    return [...this.listeners.values(), ...this.retired].map((l) => {
      const spec = l.spec;
      const addr = l.address();
      const a = active.get(l) ?? { n: 0, in: 0, out: 0 };
      const ended = this.metrics.endedBytes(spec.name);
      const matcher = this.hooks.allowlist(spec.allowlist);
      return {
        name: spec.name,
        listen: listenText(spec),
        address: addr ? addressText(addr.address, addr.port) : '',
        port: addr?.port ?? 0,
        service: spec.service,
        allowlist: spec.allowlist,
        allowlistEntries: matcher ? matcher.size : null,
        proxyProtocol: spec.proxyProtocol,
        trustedLoadBalancers: spec.trustedLoadBalancers,
        limits: { connections: spec.maxConnections, perSource: spec.maxPerSource },
        timeouts: { connectMs: spec.connectTimeoutMs, idleMs: spec.idleTimeoutMs, proxyHeaderMs: spec.proxyHeaderTimeoutMs },
        activeSessions: a.n,
        bytesIn: ended.in + a.in,
        bytesOut: ended.out + a.out,
        connections: Object.fromEntries(this.metrics.counts.get(spec.name) ?? []),
        draining: l.draining,
      };
    });
  }

  /** Where each listener is bound (resolves port 0). */
  bound(): { name: string; address: string; port: number }[] {
    const out: { name: string; address: string; port: number }[] = [];
    for (const l of this.listeners.values()) {
      const a = l.address();
      if (a) out.push({ name: l.spec.name, address: a.address, port: a.port });
    }
    return out;
  }

  private *live(): Generator<LiveSession> {
    for (const s of this.sessions) yield { listener: s.spec.name, bytesIn: s.bytesIn, bytesOut: s.bytesOut };
  }

  /** Sessions open now. */
  get activeSessions(): number {
    return this.sessions.size;
  }

  /** Stop accepting; let sessions end within `deadlineMs`, then cut what remains. */
  async close(deadlineMs: number): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    const all = [...this.listeners.values(), ...this.retired];
    this.listeners.clear();
    for (const l of all) {
      l.draining = true;
      l.release(false);
      l.server.close();
    }
    const deadline = Date.now() + Math.max(0, deadlineMs);
    while (this.admitted.size > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, Math.min(50, Math.max(1, deadline - Date.now()))));
    for (const s of [...this.admitted]) s.cut();
  }
}

const str = JSON.stringify;

/**
 * The access log line of one TCP session (ECS names; docs/tcp.md): source is
 * the client (after PROXY protocol), destination the backend; bytes as the
 * client sent and received them.
 */
export function tcpSessionLine(r: TcpSessionRecord): string {
  const [bHost, bPort] = splitHostPort(r.backend);
  let s = '{"@timestamp":' + str(new Date(r.startMs).toISOString()) + ',"ecs":{"version":"' + ECS_VERSION + '"}';
  s += ',"event":{"kind":"event","category":["network"],"action":"tcp-session","duration":' + Math.round(r.durationMs * 1e6) + ',"reason":' + str(r.reason) + '}';
  s += ',"network":{"transport":"tcp","bytes":' + (r.bytesIn + r.bytesOut) + '}';
  s += ',"source":{"ip":' + str(r.source.address) + ',"port":' + r.source.port + ',"bytes":' + r.bytesIn + '}';
  if (bHost) s += ',"destination":{"address":' + str(r.backend) + ',"ip":' + str(bHost) + ',"port":' + bPort + ',"bytes":' + r.bytesOut + '}';
  s += ',"perimeter":{"listener":' + str(r.listener) + ',"service":' + str(r.service);
  if (r.backend) s += ',"backend":' + str(r.backend);
  s += ',"attempts":' + r.attempts;
  if (r.loadBalancer) s += ',"load_balancer":' + str(r.loadBalancer);
  s += ',"allowlist":{"name":' + str(r.allowlist) + ',"entry_id":' + str(r.entry.id) + ',"partner":' + str(r.entry.partner) + ',"cidr":' + str(r.entry.cidr) + '}';
  s += ',"bytes":{"in":' + r.bytesIn + ',"out":' + r.bytesOut + '}}}';
  return s;
}

function splitHostPort(key: string): [string, number] {
  if (!key) return ['', 0];
  const i = key.lastIndexOf(':');
  const host = key.slice(0, i).replace(/^\[|\]$/g, '');
  return [host, Number(key.slice(i + 1))];
}

/**
 * Several workers' views of the TCP listeners as one (the control process's
 * /api/tcp): sessions, bytes and connection counts add up; a listener is
 * draining when every worker that has it is.
 */
export function mergeTcpDescriptions(views: readonly (readonly TcpListenerDescription[])[]): TcpListenerDescription[] {
  const byKey = new Map<string, TcpListenerDescription>();
  for (const view of views) {
    for (const d of view) {
      const key = `${d.name}\0${d.draining ? 'draining' : 'serving'}`;
      const cur = byKey.get(key);
      if (!cur) {
        byKey.set(key, { ...d, connections: { ...d.connections } });
        continue;
      }
      const connections: Record<string, number> = { ...cur.connections };
      for (const [k, v] of Object.entries(d.connections)) connections[k] = (connections[k] ?? 0) + v;
      byKey.set(key, {
        ...cur,
        activeSessions: cur.activeSessions + d.activeSessions,
        bytesIn: cur.bytesIn + d.bytesIn,
        bytesOut: cur.bytesOut + d.bytesOut,
        connections,
        // A worker that does not have the list yet admits nobody: show the least.
        allowlistEntries: cur.allowlistEntries === null || d.allowlistEntries === null ? null : Math.min(cur.allowlistEntries, d.allowlistEntries),
      });
    }
  }
  return [...byKey.values()];
}
