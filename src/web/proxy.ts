/**
 * The web system's request path: a client connection on a listener, one
 * exchange per request, forwarded over a pooled upstream connection.
 *
 * Hand-written on node:net instead of node:http plus an HTTP client: the
 * baseline (shared/PERF-BASELINE.md) shows two HTTP stacks per request are
 * what holds a Node proxy to ~0.3x nginx. Parsing is strict (./http1.ts);
 * every request that is not unambiguous is answered 400 and the connection
 * closed before any backend is contacted.
 *
 * Per request there is no configuration work: the listener's compiled
 * routes (a Map lookup by host) give the site, pool and limits.
 */
import net from 'node:net';
import { randomUUID } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import { Errors, type ErrorDef } from '../core/errors.js';
import { coarseNow, sweeper, type Expirable } from '../core/clock.js';
import type { ClusterSpec, LimitSpec, RetrySpec, SiteSpec, TimeoutSpec } from '../config/types.js';
import type { Backend } from '../upstream/backend.js';
import type { Outcome, PickResult } from '../upstream/types.js';
import { clientAddress, type CidrSet } from '../net/cidr.js';
import {
  ChunkedParser,
  copyBytes,
  F_CONTENT_LENGTH,
  F_FORWARDED,
  F_STRICT_TRANSPORT_SECURITY,
  F_TRANSFER_ENCODING,
  F_X_FORWARDED_FOR,
  F_X_FORWARDED_HOST,
  F_X_FORWARDED_PORT,
  F_X_FORWARDED_PROTO,
  F_X_REAL_IP,
  F_X_REQUEST_ID,
  FIELD_STRIDE,
  fieldNameIs,
  findHeadEnd,
  HeadRuns,
  HostCache,
  isHopByHopField,
  latin1Write,
  NEED_MORE,
  ParseError,
  parseRequestHead,
  parseResponseHead,
  type LoggedField,
  type RequestHead,
  type ResponseHead,
} from './http1.js';
import { errorResponse, wantsJson } from './respond.js';
import { returnSlab, SLAB_BYTES, SLAB_MIN, takeSlab } from '../net/slabs.js';
import { writeDirect } from '../net/direct-write.js';
import { HandleSocket, handleSocketsSupported } from '../net/handle-socket.js';
import { findRoute } from './routes.js';
import { clientAddressForGeo, type GeoLookup } from '../geo/lookup.js';
import type { ConnPools, UpstreamError, UpstreamLink, UpstreamOwner } from './upstream-conn.js';
import type { UpstreamProtocol } from '../config/types.js';

/** What the proxy needs of a service's pool (src/upstream/pool.ts). */
export interface PoolLike {
  readonly service: string;
  acquire(exclude?: ReadonlySet<Backend>): PickResult;
  release(backend: Backend, outcome: Outcome, latencyMs: number): void;
}

/** Envoy-style retry budget: retries in flight limited to a share of requests in flight. */
export class RetryBudget {
  active = 0;
  retrying = 0;
  allow(spec: RetrySpec): boolean {
    const cap = Math.max(spec.minRetryConcurrency, Math.floor((this.active * spec.budgetPercent) / 100));
    return this.retrying < cap;
  }
}

export interface SiteRoute {
  readonly site: SiteSpec;
  readonly pool: PoolLike;
  readonly budget: RetryBudget;
  readonly retries: RetrySpec;
  readonly timeouts: TimeoutSpec;
  /** How the service's backends are spoken to (absent: HTTP/1.1). */
  readonly protocol?: UpstreamProtocol;
}

export interface ListenerRoutes {
  readonly cluster: ClusterSpec;
  readonly exact: ReadonlyMap<string, SiteRoute>;
  /** Key: the suffix after '*.' (e.g. 'example.com' for '*.example.com'). */
  readonly wildcard: ReadonlyMap<string, SiteRoute>;
  readonly trusted: CidrSet;
  readonly limits: LimitSpec;
  readonly timeouts: TimeoutSpec;
  readonly generation: number;
  readonly proto: 'http' | 'https';
  /** 'Strict-Transport-Security: ...\r\n' on HTTPS listeners, else ''. */
  readonly hsts: string;
  /** Non-zero on an http listener whose sites are served over HTTPS on this port: redirect there. */
  readonly redirectPort: number;
  /** ACME HTTP-01: the key authorization for a token (http listeners, when ACME is configured). */
  readonly acmeChallenge?: (token: string) => string | undefined;
  /** Country and AS number headers for the client address (when geo is on). */
  readonly geo?: GeoLookup;
}

/** The decision/audit record of one request (the access log of the next issue writes it). */
export interface RequestRecord {
  requestId: string;
  startMs: number;
  clientIp: string;
  clientPort: number;
  listener: string;
  cluster: string;
  host: string;
  method: string;
  /** Request target as forwarded (origin-form; includes the query string). */
  target: string;
  /** 'HTTP/1.0' or 'HTTP/1.1' ('' when the request line was unreadable). */
  httpVersion: string;
  /** The request fields records keep (User-Agent, Referer, Cookie, Authorization). Empty when unparseable. */
  headers: readonly LoggedField[];
  /** Response status from the backend, 0 when perimeter answered itself. */
  upstreamStatus: number;
  site: string;
  service: string;
  backend: string;
  status: number;
  errorCode: string;
  /** Why perimeter answered as it did (for errors and notable decisions). */
  reason: string;
  attempts: number;
  retries: number;
  panic: boolean;
  bytesIn: number;
  bytesOut: number;
  durationMs: number;
  upstreamMs: number;
}

export interface ProxyHooks {
  onRecord?(rec: RequestRecord): void;
  /** An exception escaped the request path (a bug); the connection was closed. */
  onInternalError?(err: unknown): void;
}

export interface ListenerState {
  readonly name: string; // host:port
  routes: ListenerRoutes;
  readonly connPools: ConnPools;
  readonly hooks: ProxyHooks;
  /** Client connections (HTTP/1.1) and HTTP/2 sessions: what drain and close act on. */
  readonly clients: Set<{ drain(): void; close(): void }>;
  draining: boolean;
}


/** Methods that may be retried after a reset (RFC 9110 §9.2.2); `perimeter explain` uses the same set. */
export const IDEMPOTENT: ReadonlySet<string> = new Set(['GET', 'HEAD', 'OPTIONS', 'TRACE', 'PUT', 'DELETE']);
const ACME_PREFIX = '/.well-known/acme-challenge/';
/** Client-sent values of these are dropped unless the peer is a trusted proxy (field name ids, see http1.ts). */
const FORWARDING = new Uint8Array(32);
for (const id of [F_FORWARDED, F_X_FORWARDED_FOR, F_X_FORWARDED_PROTO, F_X_FORWARDED_HOST, F_X_FORWARDED_PORT, F_X_REAL_IP, F_X_REQUEST_ID]) FORWARDING[id] = 1;
const REQUEST_ID = /^[A-Za-z0-9._:-]{1,128}$/;
/** The kept header lines of the head being forwarded (synchronous, so one serves every exchange). */
const RUNS = new HeadRuns();
/** Body bytes held per request until an upstream connection proves usable (for retry). */
const MAX_PRE_CONNECT_BODY = 64 * 1024;

let idPrefix = randomUUID().slice(0, 18);
let idCounter = 0;
/** Unique per process and cheap: random prefix, hex counter; re-seeded after 2^32 ids. */
function nextRequestId(): string {
  if (++idCounter > 0xffffffff) {
    idPrefix = randomUUID().slice(0, 18);
    idCounter = 1;
  }
  return idPrefix + idCounter.toString(16).padStart(8, '0');
}

/**
 * Plain-TCP and lean TLS client sockets read into this one buffer (see clientSocketOn): no
 * allocation and no stream machinery per read. A view of it is valid only
 * until the next read; whatever is kept past the read is copied.
 */
const CLIENT_READ_BUFFER = Buffer.allocUnsafe(64 * 1024);

/** Where an adopted socket's reads go: set by the ClientConn that serves it. */
interface ReadTarget {
  conn: ClientConn | null;
}
const readTargets = new WeakMap<net.Socket, ReadTarget>();

/**
 * Re-wrap a socket accepted by a `pauseOnConnect` net.Server in a socket
 * that reads into CLIENT_READ_BUFFER: driven on the TCP handle itself
 * (handleSocketOn, ../net/handle-socket.ts) where this Node.js allows, else
 * a net.Socket with node:net's `onread` option (socketOnHandle). The
 * accepted socket has never read; it gives up its handle and stays in the
 * server's connection count until the new socket closes, so server.close()
 * still waits for every client. Measured in BENCHMARKS.md: the per-read
 * Buffer allocation and Readable machinery were a tenth of the request
 * path; without the net.Socket, an idle connection holds 5.7 KiB instead
 * of 7.9.
 */
export function adoptSocket(accepted: net.Socket, allowHalfOpen: boolean): net.Socket {
  const handle = (accepted as unknown as { _handle: unknown })._handle;
  if (handle === null || handle === undefined || accepted.destroyed) return accepted;
  (accepted as unknown as { _handle: unknown })._handle = null;
  const socket = allowHalfOpen ? clientSocketOn(handle) : socketOnHandle(handle, false);
  socket.once('close', () => accepted.destroy());
  return socket;
}

/**
 * A socket over a stream handle (a TCP handle, or the TLSWrap of a lean TLS
 * connection, ../tls/lean.ts) that reads with `onread` into
 * CLIENT_READ_BUFFER, for a ClientConn.
 */
export function socketOnHandle(handle: unknown, allowHalfOpen: boolean): net.Socket {
  const target: ReadTarget = { conn: null };
  // `handle` is not in the typed options: node:net's own option for wrapping an existing handle.
  const socket = new net.Socket({
    handle,
    allowHalfOpen,
    readable: true,
    writable: true,
    onread: {
      buffer: CLIENT_READ_BUFFER,
      callback: (n: number, buf: Uint8Array): boolean => {
        const c = target.conn;
        if (c !== null) c.onRead(Buffer.from(buf.buffer, buf.byteOffset, n));
        return true;
      },
    },
  } as net.SocketConstructorOpts & { handle: unknown });
  readTargets.set(socket, target);
  return socket;
}

/**
 * A half-open client socket over a stream handle (an accepted TCP handle or
 * a lean TLS connection's TLSWrap): driven on the handle where this Node.js
 * allows (handleSocketOn; a HandleSocket is always half-open, ClientConn
 * closes on the client's end), else a net.Socket (socketOnHandle).
 */
export function clientSocketOn(handle: unknown): net.Socket {
  return handleSocketsSupported ? handleSocketOn(handle) : socketOnHandle(handle, true);
}

/**
 * A socket for a ClientConn driven on a stream handle (an accepted TCP
 * handle, or a lean TLS connection's TLSWrap; ../net/handle-socket.ts),
 * reading into CLIENT_READ_BUFFER, with no net.Socket.
 */
export function handleSocketOn(handle: unknown): net.Socket {
  const target: ReadTarget = { conn: null };
  const socket = new HandleSocket(handle as ConstructorParameters<typeof HandleSocket>[0], CLIENT_READ_BUFFER, (n) => {
    const c = target.conn;
    if (c !== null) c.onRead(Buffer.from(CLIENT_READ_BUFFER.buffer, CLIENT_READ_BUFFER.byteOffset, n));
  }) as unknown as net.Socket;
  readTargets.set(socket, target);
  return socket;
}

/** After perimeter ends a connection, how long its last bytes may take to flush before the socket is destroyed. */
const CLOSE_GRACE_MS = 1000;

const enum ClientState {
  Head, // waiting for (the rest of) a request head
  Exchange, // a request is being proxied
  Tunnel, // after a 101 upgrade: bytes flow both ways untouched
  Closed,
}

const EMPTY = Buffer.alloc(0);

/**
 * What one client connection keeps from a request for the next: a
 * keep-alive client repeats its Host, and the same client address gets the
 * same forwarding fields. The streams of an HTTP/2 session share one (same
 * connection, same address), so a stream does not rebuild them.
 */
export class ConnMemo {
  /**
   * perimeter's fields of the last request without forwarded values to
   * merge (forwarding and geolocation), as bytes, for `fwdRoutes`, Host
   * `fwdHost` and geolocation lines `fwdGeo`.
   */
  fwdRoutes: ListenerRoutes | null = null;
  fwdHost = '';
  fwdGeo = '';
  fwdBytes: Buffer = EMPTY;
  /** The Host strings of the last request (see HostCache). */
  readonly hostCache = new HostCache();
}

/** One client TCP connection on a web listener (or one HTTP/2 stream's, ./h2.ts). */
export class ClientConn implements Expirable {
  readonly socket: net.Socket;
  readonly listener: ListenerState;
  readonly ip: string;
  readonly port: number;
  state = ClientState.Head;
  deadline = 0;
  private deadlineKind: 'idle' | 'header' | 'closing' | 'none' = 'none';
  /** Bytes received and not yet consumed. */
  private pending: Buffer | null = null;
  exchange: Exchange | null = null;
  requests = 0;
  /** Set by draining: finish the current exchange, then close. */
  closeAfterExchange = false;
  /** Whether the peer is a trusted proxy, for `trustedRoutes` (a reload brings new routes). */
  private trusted = false;
  private trustedRoutes: ListenerRoutes | null = null;
  /** What the last request left for the next one (see ConnMemo). */
  readonly memo: ConnMemo;

  /** `memo`: shared by the streams of one HTTP/2 session; a connection of its own otherwise. */
  constructor(socket: net.Socket, listener: ListenerState, memo: ConnMemo = new ConnMemo()) {
    this.socket = socket;
    this.listener = listener;
    this.memo = memo;
    this.ip = clientAddress(socket.remoteAddress);
    this.port = socket.remotePort ?? 0;
    // No setNoDelay: every listener's server sets noDelay, which the socket inherits (one setsockopt less per connection).
    const target = readTargets.get(socket);
    if (target !== undefined) {
      target.conn = this;
    } else {
      // node:tls sockets and HTTP/2 streams: their chunks are theirs to keep.
      socket.on('data', (chunk: Buffer) => {
        try {
          this.onData(chunk, false);
        } catch (err) {
          this.internalError(err);
        }
      });
    }
    socket.on('end', () => {
      try {
        this.onEnd();
      } catch (err) {
        this.internalError(err);
      }
    });
    socket.on('error', () => this.close());
    socket.on('close', () => this.close());
    socket.on('drain', () => this.exchange?.onClientDrain());
    listener.clients.add(this);
    sweeper.add(this);
    this.setIdle();
  }

  /** The current exchange's deadlines (connect, response) are swept with the connection's (see Expirable). */
  get dependent(): Exchange | null {
    return this.exchange;
  }

  trustedBy(routes: ListenerRoutes): boolean {
    if (this.trustedRoutes !== routes) {
      this.trustedRoutes = routes;
      this.trusted = routes.trusted.has(this.ip);
    }
    return this.trusted;
  }

  private setIdle(): void {
    this.deadlineKind = 'idle';
    this.deadline = coarseNow() + this.listener.routes.timeouts.clientIdleMs;
  }

  setDeadline(kind: 'idle' | 'header' | 'closing' | 'none', ms: number): void {
    this.deadlineKind = kind;
    this.deadline = kind === 'none' ? 0 : coarseNow() + ms;
  }

  expire(): void {
    if (this.state === ClientState.Closed) {
      // Ended (socket.end) and given CLOSE_GRACE_MS to flush: make sure the socket is gone.
      this.close();
      return;
    }
    if (this.deadlineKind === 'header') {
      this.reject(Errors.HEADER_TIMEOUT, 'request head not complete within the header timeout');
    } else if (this.exchange) {
      this.exchange.abort('client idle timeout');
    } else {
      this.close();
    }
  }

  /** A read into CLIENT_READ_BUFFER (adopted sockets): `view` is valid during this call only. */
  onRead(view: Buffer): void {
    try {
      this.onData(view, true);
    } catch (err) {
      this.internalError(err);
    }
  }

  /** `shared`: the chunk is a view of the shared read buffer; copy whatever is kept. */
  private onData(chunk: Buffer, shared: boolean): void {
    switch (this.state) {
      case ClientState.Head:
        if (this.pending === null && this.deadlineKind === 'idle') {
          // First byte of a request: the slowloris clock starts now.
          this.setDeadline('header', this.listener.routes.timeouts.requestHeaderMs);
        }
        if (this.pending === null) {
          // Parsed in place; parseNext copies what it keeps.
          this.pending = chunk;
          this.parseNext(shared);
        } else {
          this.pending = Buffer.concat([this.pending, chunk]);
          this.parseNext(false);
        }
        return;
      case ClientState.Exchange: {
        const ex = this.exchange!;
        if (shared) chunk = Buffer.from(chunk); // body bytes are written on or held
        if (!ex.requestBodyDone) {
          const used = ex.onClientBody(chunk, 0, chunk.length);
          if (used < chunk.length) this.holdPipelined(chunk.subarray(used));
        } else {
          this.holdPipelined(chunk);
        }
        return;
      }
      case ClientState.Tunnel:
        this.exchange?.onClientTunnelData(shared ? Buffer.from(chunk) : chunk);
        return;
      default:
        return;
    }
  }

  /**
   * A bug must cost one connection, never the process: answer 500 if
   * nothing was sent yet, report it, and close.
   */
  internalError(err: unknown): void {
    this.listener.hooks.onInternalError?.(err);
    const ex = this.exchange;
    if (ex) ex.crash(err);
    else if (this.state !== ClientState.Closed) this.reject(Errors.INTERNAL, `internal error: ${String(err)}`);
    this.close();
  }

  /** Bytes of a following (pipelined) request; processed after the current exchange. */
  holdPipelined(bytes: Buffer): void {
    if (this.state === ClientState.Closed || bytes.length === 0) return;
    this.pending = this.pending === null ? bytes : Buffer.concat([this.pending, bytes]);
    if (this.pending.length > this.listener.routes.limits.headerBytes) this.socket.pause();
  }

  /** `shared`: `pending` is a view of the shared read buffer (copied if kept). */
  private parseNext(shared = false): void {
    const buf = this.pending;
    if (buf === null) return;
    const routes = this.listener.routes;
    let len: number;
    let head: RequestHead;
    try {
      len = findHeadEnd(buf, 0, routes.limits.headerBytes, Errors.HEADERS_TOO_LARGE);
      if (len === NEED_MORE) {
        if (shared) this.pending = Buffer.from(buf);
        return;
      }
      head = parseRequestHead(buf, 0, len, routes.limits, this.memo.hostCache);
    } catch (e) {
      if (e instanceof ParseError) this.reject(e.def, e.detail);
      else this.reject(Errors.INTERNAL, String(e));
      return;
    }
    const rest = len < buf.length ? (shared ? Buffer.from(buf.subarray(len)) : buf.subarray(len)) : null;
    this.pending = null;
    this.requests++;
    this.state = ClientState.Exchange;
    this.setDeadline('none', 0);
    const ex = new Exchange(this, head, routes);
    this.exchange = ex;
    ex.start(rest, buf);
  }

  /** Answer an error on our own behalf for an unparseable request and close. */
  reject(def: ErrorDef, reason: string): void {
    if (this.state === ClientState.Closed) return;
    const id = nextRequestId();
    const rec = emptyRecord(this, id);
    rec.status = def.status;
    rec.errorCode = def.code;
    rec.reason = reason;
    const out = errorResponse(def, id, false, true, this.listener.routes.hsts);
    rec.bytesOut = out.length;
    this.listener.hooks.onRecord?.(rec);
    this.state = ClientState.Closed;
    this.pending = null;
    this.socket.end(out);
    // Give the answer a moment to flush, then make sure the socket is gone.
    this.setDeadline('closing', CLOSE_GRACE_MS);
  }

  /** The current exchange finished; go on to the next request or close. */
  exchangeDone(keepAlive: boolean): void {
    this.exchange = null;
    if (this.state === ClientState.Closed) return;
    if (!keepAlive || this.closeAfterExchange || this.listener.draining) {
      this.state = ClientState.Closed;
      this.socket.end();
      this.setDeadline('closing', CLOSE_GRACE_MS);
      return;
    }
    this.state = ClientState.Head;
    this.setIdle();
    if (this.socket.isPaused()) this.socket.resume();
    if (this.pending !== null) {
      this.setDeadline('header', this.listener.routes.timeouts.requestHeaderMs);
      this.parseNext();
    }
  }

  /** Switch to a raw tunnel; returns client bytes already received past the upgrade request. */
  enterTunnel(): Buffer | null {
    this.state = ClientState.Tunnel;
    this.setDeadline('none', 0);
    const p = this.pending;
    this.pending = null;
    if (this.socket.isPaused()) this.socket.resume();
    return p;
  }

  private onEnd(): void {
    // Client half-closed. An exchange in progress may still answer (HTTP/1.0
    // style clients); otherwise we are done.
    if (this.state === ClientState.Exchange && this.exchange) {
      this.exchange.onClientEnd();
      return;
    }
    if (this.state === ClientState.Tunnel && this.exchange) {
      this.exchange.onClientEnd();
      return;
    }
    this.close();
  }

  /**
   * Idempotent: every call leaves the connection closed, untracked (sweeper, listener) and its
   * socket destroyed. A connection already Closed by reject() or exchangeDone() (its answer
   * still flushing) is untracked here too, whichever comes first: its socket's 'close', its
   * closing deadline, or an HTTP/2 stream's release. (Returning early for "Closed with the
   * socket destroyed" kept every such connection in both sets for ever: one per HTTP/2 stream.)
   */
  close(): void {
    this.state = ClientState.Closed;
    this.deadline = 0;
    sweeper.delete(this);
    this.listener.clients.delete(this);
    const ex = this.exchange;
    this.exchange = null;
    if (ex) ex.abort('client closed the connection');
    if (!this.socket.destroyed) this.socket.destroy();
  }

  /** Used by drain: close now if idle, else after the current exchange. */
  drain(): void {
    if (this.state === ClientState.Head && this.pending === null) this.close();
    else this.closeAfterExchange = true;
  }
}

const NO_HEADERS: readonly LoggedField[] = Object.freeze([]);

/** An HTTP/2 stream's in-memory socket (./h2.ts) says which version the client spoke, for the record. */
function viaVersion(socket: net.Socket): string | undefined {
  return (socket as { httpVersion?: string }).httpVersion;
}

function emptyRecord(client: ClientConn, id: string): RequestRecord {
  return {
    requestId: id,
    startMs: Date.now(),
    clientIp: client.ip,
    clientPort: client.port,
    listener: client.listener.name,
    cluster: client.listener.routes.cluster.name,
    host: '',
    method: '',
    target: '',
    httpVersion: viaVersion(client.socket) ?? '',
    headers: NO_HEADERS,
    upstreamStatus: 0,
    site: '',
    service: '',
    backend: '',
    status: 0,
    errorCode: '',
    reason: '',
    attempts: 0,
    retries: 0,
    panic: false,
    bytesIn: 0,
    bytesOut: 0,
    durationMs: 0,
    upstreamMs: 0,
  };
}

const enum RespState {
  Head, // waiting for the response head
  Body,
  Done,
}

/** One request: from its parsed head to the last byte of its response. */
export class Exchange implements UpstreamOwner, Expirable {
  private readonly client: ClientConn;
  private readonly head: RequestHead;
  private readonly routes: ListenerRoutes;
  private readonly rec: RequestRecord;
  private readonly t0 = performance.now();
  private route: SiteRoute | undefined;
  private requestHead: Buffer | null = null;

  // Request body framing.
  requestBodyDone: boolean;
  private bodyRemaining = 0;
  private chunked: ChunkedParser | null = null;
  /** Body bytes buffered before an upstream connection is known to work. */
  private bodyHeld: Buffer[] = [];
  private bodyHeldBytes = 0;
  /** Some request body byte was written to a backend: no retry from now on. */
  private bodySent = false;
  private bodyBytes = 0;

  // Upstream attempt.
  private conn: UpstreamLink | null = null;
  private backend: Backend | null = null;
  private tried: Set<Backend> | null = null;
  private attemptStart = 0;
  private isRetry = false;
  deadline = 0;
  private deadlineKind: 'connect' | 'response' = 'connect';

  // Response.
  private respState = RespState.Head;
  private respBuf: Buffer | null = null;
  private resp: ResponseHead | null = null;
  private respRemaining = 0;
  private respChunked: ChunkedParser | null = null;
  private respCloseDelimited = false;
  private respHeadSent = false;
  private upstreamBytes = 0;
  private keepClient = true;
  private finished = false;
  private tunnel = false;

  constructor(client: ClientConn, head: RequestHead, routes: ListenerRoutes) {
    this.client = client;
    this.head = head;
    this.routes = routes;
    const rec = emptyRecord(client, '');
    rec.host = head.host;
    rec.method = head.method;
    rec.target = head.target;
    rec.httpVersion = viaVersion(client.socket) ?? (head.version === 1 ? 'HTTP/1.1' : 'HTTP/1.0');
    rec.headers = head.logged;
    this.rec = rec;
    this.requestBodyDone = head.bodyLength === -1;
    if (head.bodyLength > 0) this.bodyRemaining = head.bodyLength;
    else if (head.bodyLength === -2) this.chunked = new ChunkedParser(Errors.BAD_CHUNK);
    // Keep-alive with the client (RFC 9112 §9.3).
    const ct = head.connectionTokens;
    this.keepClient = head.version === 1 ? !ct.includes('close') : ct.includes('keep-alive');
  }

  /** `src`: the buffer the head was parsed from (its header lines are copied from there, now). */
  start(rest: Buffer | null, src: Buffer): void {
    const head = this.head;
    if (rest !== null && this.requestBodyDone) {
      // No body: whatever followed the head is the next (pipelined) request.
      this.client.holdPipelined(rest);
      rest = null;
    }
    const trusted = this.client.trustedBy(this.routes);
    const fromTrusted = trusted ? head.requestId : '';
    const id = fromTrusted !== '' && REQUEST_ID.test(fromTrusted) ? fromTrusted : nextRequestId();
    this.rec.requestId = id;

    const limits = this.routes.limits;
    if (limits.bodyBytes > 0 && head.bodyLength > limits.bodyBytes) {
      this.fail(Errors.BODY_TOO_LARGE, `Content-Length ${head.bodyLength} exceeds ${limits.bodyBytes}`, true);
      return;
    }
    if (this.routes.acmeChallenge && head.target.startsWith(ACME_PREFIX)) {
      this.answerAcme(head.target.slice(ACME_PREFIX.length));
      return;
    }
    const route = findRoute(this.routes, head.host);
    if (route && this.routes.redirectPort !== 0) {
      this.redirectToHttps();
      return;
    }
    if (!route) {
      this.fail(Errors.UNKNOWN_SITE, `no site for host '${head.host}' on listener ${this.client.listener.name}`, !this.requestBodyDone);
      return;
    }
    this.rec.site = route.site.host;
    this.rec.service = route.site.service;
    if (head.upgrade && route.protocol === 'h2c') {
      this.fail(Errors.UPGRADE_NOT_SUPPORTED, `upgrade to '${head.upgrade}' requested; service ${route.site.service} is spoken to over h2c`, !this.requestBodyDone);
      return;
    }
    this.route = route;
    route.budget.active++;

    // Body bytes that came with the head: validate them before any backend
    // is contacted, so a malformed chunk never reaches one.
    if (rest !== null) {
      let used: number;
      try {
        used = this.consumeBody(rest, 0, rest.length, false);
      } catch (e) {
        if (e instanceof ParseError) this.fail(e.def, e.detail, true);
        else this.fail(Errors.INTERNAL, String(e), true);
        return;
      }
      if (used < rest.length) this.client.holdPipelined(rest.subarray(used));
    }
    if (this.finished) return;
    this.requestHead = this.buildRequestHead(id, trusted, src);
    if (!this.requestBodyDone) this.client.setDeadline('idle', route.timeouts.clientIdleMs);
    this.attempt();
  }

  /**
   * The head sent to the backend: the request line, the client's header
   * lines that go on (copied from `src`, see HeadRuns), then perimeter's
   * forwarding fields.
   */
  private buildRequestHead(id: string, trusted: boolean, src: Buffer): Buffer {
    const h = this.head;
    const ct = h.connectionTokens;
    const runs = RUNS.reset();
    // The request line goes on as received when it is `METHOD target HTTP/1.1` (else it is written below).
    if (h.lineForwardable) runs.keepRange(h.lineStart, h.lineEnd);
    const geo = this.routes.geo;
    const fields = h.fields;
    for (let f = 0, i = 0; f < fields.length; f += FIELD_STRIDE, i++) {
      if (isHopByHopField(fields, i, src, ct)) continue;
      // Geo headers are perimeter's: whatever a client sent under their names goes.
      if (geo !== undefined && (fieldNameIs(fields, i, src, geo.countryHeader) || fieldNameIs(fields, i, src, geo.asnHeader))) continue;
      const nameId = fields[f + 3]!;
      if (FORWARDING[nameId] === 1) {
        // From a trusted proxy: X-Forwarded-For/-Proto/-Host and Forwarded are merged below, these two go on.
        if (trusted && (nameId === F_X_FORWARDED_PORT || nameId === F_X_REAL_IP)) runs.keep(fields, i);
        continue;
      }
      runs.keep(fields, i);
    }
    const xff = trusted ? h.xForwardedFor : '';
    const fwd = trusted ? h.forwarded : '';
    const proto = trusted ? h.xForwardedProto : '';
    const fhost = trusted ? h.xForwardedHost : '';
    const client = this.client;
    const ip = client.ip;
    let fixed: Buffer;
    if (xff === '' && fwd === '' && proto === '' && fhost === '') {
      // Nothing to merge from a trusted proxy: the same fields for every
      // request of this connection with this Host, kept on the connection.
      const geoLines = geo !== undefined ? geo.headers(ip) : '';
      const memo = client.memo;
      if (memo.fwdRoutes !== this.routes || memo.fwdHost !== h.hostHeader || memo.fwdGeo !== geoLines) {
        memo.fwdRoutes = this.routes;
        memo.fwdHost = h.hostHeader;
        memo.fwdGeo = geoLines;
        memo.fwdBytes = Buffer.from(this.forwardingFields('', '', '', '') + geoLines, 'latin1');
      }
      fixed = memo.fwdBytes;
    } else {
      // The real client for geolocation: behind trusted proxies, the right-most untrusted X-Forwarded-For entry.
      const geoClient = trusted && xff ? clientAddressForGeo(ip, xff, (a) => this.routes.trusted.has(a)) : ip;
      fixed = Buffer.from(this.forwardingFields(xff, fwd, proto, fhost) + (geo !== undefined ? geo.headers(geoClient) : ''), 'latin1');
    }
    let tail = `X-Request-Id: ${id}\r\n`;
    if (h.bodyLength === -2) tail += 'Transfer-Encoding: chunked\r\n';
    if (h.upgrade) tail += `Connection: upgrade\r\nUpgrade: ${h.upgrade}\r\n`;
    tail += '\r\n';
    const first = h.lineForwardable ? '' : `${h.method} ${h.target} HTTP/1.1\r\n`;
    const out = Buffer.allocUnsafe(first.length + runs.bytes + fixed.length + tail.length);
    const o = copyBytes(fixed, 0, fixed.length, out, runs.write(out, 0, first, src, ''));
    latin1Write(out, tail, o);
    return out;
  }

  /** Forwarded, X-Forwarded-For/-Proto/-Host: perimeter's hop appended to what a trusted proxy sent. */
  private forwardingFields(xff: string, fwd: string, proto: string, fhost: string): string {
    const h = this.head;
    const ip = this.client.ip;
    const forNode = ip.includes(':') ? `"[${ip}]"` : ip;
    const hostQ = /^[A-Za-z0-9.:[\]-]*$/.test(h.hostHeader) ? h.hostHeader : JSON.stringify(h.hostHeader);
    const ours = `for=${forNode};host=${hostQ};proto=${this.routes.proto}`;
    return (
      `Forwarded: ${fwd ? `${fwd}, ${ours}` : ours}\r\n` +
      `X-Forwarded-For: ${xff ? `${xff}, ${ip}` : ip}\r\n` +
      `X-Forwarded-Proto: ${proto || this.routes.proto}\r\n` +
      `X-Forwarded-Host: ${fhost || h.hostHeader}\r\n`
    );
  }

  /**
   * Frame request body bytes; returns how many belong to this request.
   * Forwards them (or holds them before the upstream connection is up).
   */
  private consumeBody(buf: Buffer, start: number, end: number, forward: boolean): number {
    if (this.requestBodyDone) return 0;
    let used: number;
    if (this.chunked) {
      used = this.chunked.feed(buf, start, end);
      if (this.chunked.done) this.requestBodyDone = true;
    } else {
      used = Math.min(this.bodyRemaining, end - start);
      this.bodyRemaining -= used;
      if (this.bodyRemaining === 0) this.requestBodyDone = true;
    }
    this.bodyBytes += used;
    const limit = this.routes.limits.bodyBytes;
    if (limit > 0 && this.bodyBytes > limit) throw new ParseError(Errors.BODY_TOO_LARGE, `body exceeds ${limit} bytes`);
    if (used > 0) {
      const slice = start === 0 && used === buf.length ? buf : buf.subarray(start, start + used);
      if (forward && this.conn && this.conn.connected && this.bodyHeld.length === 0) {
        this.bodySent = true;
        if (!this.conn.socket.write(slice)) this.client.socket.pause();
      } else {
        this.bodyHeld.push(slice);
        this.bodyHeldBytes += used;
        if (this.bodyHeldBytes > MAX_PRE_CONNECT_BODY) this.client.socket.pause();
      }
    }
    return used;
  }

  /** More request body from the client. Returns bytes consumed. */
  onClientBody(buf: Buffer, start: number, end: number): number {
    if (this.finished) return 0;
    try {
      const used = this.consumeBody(buf, start, end, true);
      if (this.requestBodyDone) this.onRequestBodyDone();
      else if (this.route) this.client.setDeadline('idle', this.route.timeouts.clientIdleMs);
      return used;
    } catch (e) {
      const def = e instanceof ParseError ? e.def : Errors.INTERNAL;
      // The backend may have part of this body: drop that connection so it
      // sees an incomplete request, never one we would frame differently.
      this.dropUpstream('cancelled');
      this.fail(def, e instanceof ParseError ? e.detail : String(e), true);
      return end - start;
    }
  }

  private onRequestBodyDone(): void {
    this.client.setDeadline('none', 0);
    if (this.respState === RespState.Done) this.complete();
  }

  onClientEnd(): void {
    if (this.tunnel) {
      this.conn?.socket.end();
      return;
    }
    if (!this.requestBodyDone) {
      this.abort('client closed before sending the whole body');
      return;
    }
    // Half-close after a complete request: answer, then close.
    this.keepClient = false;
  }

  onClientDrain(): void {
    if (this.conn && this.conn.socket.isPaused()) this.conn.socket.resume();
    if (this.route && this.respState === RespState.Body && !this.tunnel) {
      this.client.setDeadline('none', 0);
      if (this.conn) this.deadline = coarseNow() + this.route.timeouts.responseMs;
    }
  }

  // ---- upstream attempts ----

  private attempt(): void {
    const route = this.route!;
    const pick = route.pool.acquire(this.tried ?? undefined);
    if (!pick.ok) {
      const def = pick.error === 'PANIC_FAIL_FAST' ? Errors.PANIC_FAIL_FAST : Errors.NO_BACKEND;
      this.fail(def, pick.error === 'PANIC_FAIL_FAST' ? 'pool in panic, mode fail' : 'no backend available', !this.requestBodyDone);
      return;
    }
    const backend = pick.backend;
    this.backend = backend;
    if (pick.panic) this.rec.panic = true;
    this.rec.attempts++;
    this.rec.backend = backend.key;
    const pools = this.client.listener.connPools;
    const conn =
      route.protocol === 'h2c'
        ? pools.h2(backend.key, backend.host, backend.port, route.timeouts.upstreamIdleMs).take(this)
        : pools.get(backend.key, backend.host, backend.port, route.timeouts.upstreamIdleMs).take(this);
    this.conn = conn;
    this.attemptStart = performance.now();
    this.respState = RespState.Head;
    this.respBuf = null;
    this.upstreamBytes = 0;
    if (conn.connected) {
      this.deadlineKind = 'response';
      this.deadline = coarseNow() + route.timeouts.responseMs;
      this.sendHead();
    } else {
      this.deadlineKind = 'connect';
      this.deadline = coarseNow() + route.timeouts.connectMs;
    }
  }

  private sendHead(): void {
    const conn = this.conn!;
    const sock = conn.socket;
    if (this.bodyHeld.length === 0) {
      if (sock instanceof net.Socket) writeDirect(sock, this.requestHead!);
      else sock.write(this.requestHead!);
    } else {
      sock.cork();
      sock.write(this.requestHead!);
      for (const b of this.bodyHeld) sock.write(b);
      sock.uncork();
      this.bodySent = true;
      this.bodyHeld = [];
      this.bodyHeldBytes = 0;
      if (this.client.socket.isPaused() && this.client.exchange === this) this.client.socket.resume();
    }
  }

  onUpstreamConnect(conn: UpstreamLink): void {
    if (conn !== this.conn) return;
    this.deadlineKind = 'response';
    this.deadline = coarseNow() + this.route!.timeouts.responseMs;
    this.sendHead();
  }

  onUpstreamDrain(conn: UpstreamLink): void {
    if (conn !== this.conn) return;
    const cs = this.client.socket;
    if (cs.isPaused() && !this.requestBodyDone) cs.resume();
    if (this.tunnel && cs.isPaused()) cs.resume();
  }

  expire(): void {
    if (this.finished || !this.conn) return;
    if (this.deadlineKind === 'connect') {
      this.upstreamFailed('connect-error', Errors.UPSTREAM_CONNECT_TIMEOUT, 'connect timeout');
    } else if (this.respState === RespState.Head) {
      this.upstreamFailed('timeout', Errors.UPSTREAM_TIMEOUT, 'no response within the response timeout');
    } else {
      // Stalled mid-body: nothing to answer any more; cut both sides.
      this.releaseBackend('timeout');
      this.rec.reason = 'backend stalled mid-response';
      this.dropUpstream(null);
      this.finish(false);
    }
  }

  onUpstreamError(conn: UpstreamLink, err: UpstreamError): void {
    if (conn !== this.conn || this.finished) return;
    if (err.unprocessed && this.upstreamBytes === 0 && !this.bodySent) {
      // h2c: the backend refused the stream or announced it will not process
      // it (GOAWAY): it never saw the request, whatever the method.
      this.upstreamFailed('cancelled', Errors.UPSTREAM_RESET, `upstream ${err.code ?? err.message}`, true, true);
    } else if (!conn.connected) {
      this.upstreamFailed('connect-error', Errors.UPSTREAM_CONNECT, `connect ${err.code ?? err.message}`, err.code === 'ECONNREFUSED');
    } else {
      this.onUpstreamLost(`upstream ${err.code ?? err.message}`);
    }
  }

  onUpstreamEnd(conn: UpstreamLink): void {
    if (conn !== this.conn || this.finished) return;
    if (!conn.connected) {
      this.upstreamFailed('connect-error', Errors.UPSTREAM_CONNECT, 'connection closed while connecting');
      return;
    }
    if (this.tunnel) {
      this.client.socket.end();
      this.releaseBackend('success');
      this.conn = null;
      this.finish(false);
      return;
    }
    if (this.respState === RespState.Body && this.respCloseDelimited) {
      this.conn = null;
      this.respState = RespState.Done;
      this.releaseBackend('success');
      this.keepClient = false;
      this.complete();
      return;
    }
    this.onUpstreamLost('backend closed the connection');
  }

  /** The upstream connection died after it was established. */
  private onUpstreamLost(reason: string): void {
    if (this.respState === RespState.Head && this.upstreamBytes === 0) {
      this.upstreamFailed('reset', Errors.UPSTREAM_RESET, reason);
    } else if (this.respState === RespState.Head) {
      this.upstreamFailed('reset', Errors.UPSTREAM_PROTOCOL, `${reason} mid-head`);
    } else {
      // Mid-body: the client already has a head; it must see a cut connection.
      this.rec.reason = `${reason} mid-response`;
      this.releaseBackend('reset');
      this.dropUpstream(null);
      this.finish(false);
    }
  }

  /**
   * An attempt failed before a response head reached the client. Retry if
   * it is safe: the request cannot have reached the backend (connect
   * failure), or it is idempotent, no body byte was sent and no response
   * byte arrived; and the retry budget allows it.
   */
  private upstreamFailed(outcome: Outcome, def: ErrorDef, reason: string, refused = false, unprocessed = false): void {
    const route = this.route!;
    const neverReached = outcome === 'connect-error' || unprocessed;
    const reusedConn = this.conn !== null && this.conn.reuses > 0;
    const failed = this.backend;
    this.releaseBackend(outcome);
    this.dropUpstream(null);
    const safe =
      neverReached ||
      (outcome === 'reset' && this.upstreamBytes === 0 && !this.bodySent && IDEMPOTENT.has(this.head.method));
    const tries = this.rec.attempts;
    // A refused connection cost the backend nothing, so retrying it adds no
    // load anywhere: such retries do not draw on the retry budget. Timeouts
    // and resets may mean overload and do.
    if (safe && tries <= route.retries.attempts && !this.respHeadSent && (refused || this.isRetry || route.budget.allow(route.retries))) {
      if (!this.isRetry && !refused) {
        this.isRetry = true;
        route.budget.retrying++;
      }
      this.rec.retries++;
      if (failed) (this.tried ??= new Set()).add(failed);
      this.attempt();
      return;
    }
    const why = safe ? (tries > route.retries.attempts ? 'retries exhausted' : 'retry budget exhausted') : 'not safe to retry';
    this.fail(def, `${reason}${reusedConn ? ' (reused connection)' : ''}; ${why}`, !this.requestBodyDone);
  }

  private releaseBackend(outcome: Outcome): void {
    const b = this.backend;
    if (!b) return;
    this.backend = null;
    const ms = performance.now() - this.attemptStart;
    this.rec.upstreamMs += ms;
    this.route!.pool.release(b, outcome, ms);
  }

  /** Close the current upstream connection (it cannot be reused). */
  private dropUpstream(outcome: Outcome | null): void {
    if (outcome) this.releaseBackend(outcome);
    const c = this.conn;
    this.conn = null;
    this.deadline = 0;
    if (c) c.destroy();
  }

  // ---- response ----

  onUpstreamData(conn: UpstreamLink, chunk: Buffer): void {
    if (conn !== this.conn || this.finished) {
      conn.destroy();
      return;
    }
    this.upstreamBytes += chunk.length;
    if (this.tunnel) {
      this.rec.bytesOut += chunk.length;
      if (!this.client.socket.write(Buffer.from(chunk))) conn.socket.pause();
      return;
    }
    if (this.respState === RespState.Head) {
      this.deadline = coarseNow() + this.route!.timeouts.responseMs;
      // `chunk` is the upstream read buffer (valid during this call only); what is kept is copied.
      this.readResponseHeads(this.respBuf === null ? chunk : Buffer.concat([this.respBuf, chunk]));
    } else if (this.respState === RespState.Body) {
      this.deadline = coarseNow() + this.route!.timeouts.responseMs;
      this.forwardResponseBody(chunk, 0);
    } else {
      // Bytes after a complete response: the backend is out of sync.
      conn.destroy();
    }
  }

  private readResponseHeads(buf: Buffer): void {
    let off = 0;
    for (;;) {
      let len: number;
      let resp: ResponseHead;
      try {
        len = findHeadEnd(buf, off, this.routes.limits.headerBytes * 2, Errors.UPSTREAM_PROTOCOL);
        if (len === NEED_MORE) {
          this.respBuf = Buffer.from(buf.subarray(off));
          return;
        }
        resp = parseResponseHead(buf, off, len, this.routes.limits.headerCount * 2);
      } catch (e) {
        const reason = e instanceof ParseError ? e.detail : String(e);
        this.releaseBackend('http-5xx');
        this.dropUpstream(null);
        this.fail(Errors.UPSTREAM_PROTOCOL, reason, !this.requestBodyDone);
        return;
      }
      off += len;
      if (resp.status >= 100 && resp.status < 200 && resp.status !== 101) {
        // Interim response: pass 100 on only to a client that asked, others
        // (103 Early Hints...) only to HTTP/1.1 clients.
        if ((resp.status !== 100 || this.head.expectContinue) && this.head.version === 1) {
          this.writeOut(resp, this.responseHead(resp, buf, false), buf, off, off);
        }
        continue;
      }
      this.respBuf = null;
      this.onResponseHead(resp, buf, off);
      return;
    }
  }

  private onResponseHead(resp: ResponseHead, buf: Buffer, off: number): void {
    this.resp = resp;
    this.rec.status = resp.status;
    this.rec.upstreamStatus = resp.status;
    const head = this.head;
    this.releaseBackend(resp.status >= 500 ? 'http-5xx' : 'success');
    if (resp.status === 101) {
      if (!head.upgrade) {
        this.dropUpstream(null);
        this.fail(Errors.UPSTREAM_PROTOCOL, '101 without an upgrade request', true);
        return;
      }
      this.tunnel = true;
      this.deadline = 0;
      const early = this.client.enterTunnel();
      this.respState = RespState.Body;
      this.respHeadSent = true;
      this.writeOut(resp, this.responseHead(resp, buf, false), buf, off, buf.length);
      // Client bytes that arrived after the upgrade request belong to the tunnel.
      if (early) this.onClientTunnelData(early);
      return;
    }
    const noBody = head.method === 'HEAD' || resp.status === 204 || resp.status === 304;
    let upstreamKeep = resp.version === 1 ? !resp.connectionTokens.includes('close') : resp.connectionTokens.includes('keep-alive');
    let dechunk = false;
    if (noBody) {
      this.respState = RespState.Done;
    } else if (resp.bodyLength === -2) {
      this.respChunked = new ChunkedParser(Errors.UPSTREAM_PROTOCOL);
      if (head.version === 0) {
        // An HTTP/1.0 client cannot read chunked: decode and close after.
        dechunk = true;
        this.keepClient = false;
        this.respChunked.onData = (b, s, e) => {
          if (!this.writeOut(null, '', b, s, e)) this.conn?.socket.pause();
        };
      }
      this.respState = RespState.Body;
    } else if (resp.bodyLength >= 0) {
      this.respRemaining = resp.bodyLength;
      this.respState = resp.bodyLength === 0 ? RespState.Done : RespState.Body;
    } else {
      this.respCloseDelimited = true;
      this.keepClient = false;
      upstreamKeep = false;
      this.respState = RespState.Body;
    }
    if (!upstreamKeep) this.upstreamReusable = false;
    if (!this.requestBodyDone) this.keepClient = false; // answered before the body ended
    const tail = this.responseHead(resp, buf, dechunk);
    this.respHeadSent = true;
    if (this.respState === RespState.Done) {
      if (off < buf.length) this.upstreamReusable = false;
      this.writeOut(resp, tail, buf, off, off);
      this.complete();
    } else if (dechunk) {
      this.writeOut(resp, tail, buf, off, off);
      if (off < buf.length) this.forwardResponseBody(buf, off, null, '');
    } else {
      // The head and the body bytes that came with it leave in one write.
      this.forwardResponseBody(buf, off, resp, tail);
    }
  }

  private upstreamReusable = true;

  /**
   * The response head for the client: keeps the status line when it can go
   * on as is and the backend's header lines that go on in RUNS (they lie in
   * `buf`), and returns the fields perimeter adds, with the final CRLF (latin1
   * text: every character is one byte). writeOut puts them together.
   */
  private responseHead(resp: ResponseHead, buf: Buffer, dechunk: boolean): string {
    const ct = resp.connectionTokens;
    const runs = RUNS.reset();
    if (resp.lineForwardable) runs.keepRange(resp.lineStart, resp.lineEnd);
    let s = '';
    const fields = resp.fields;
    for (let f = 0, i = 0; f < fields.length; f += FIELD_STRIDE, i++) {
      const nameId = fields[f + 3]!;
      if (nameId === F_TRANSFER_ENCODING) {
        if (!dechunk && resp.bodyLength === -2) s += 'Transfer-Encoding: chunked\r\n';
        continue;
      }
      if (nameId === F_CONTENT_LENGTH && resp.bodyLength === -2) continue;
      if (isHopByHopField(fields, i, buf, ct)) continue;
      // HSTS is perimeter's (a security default), whatever the backend says.
      if (nameId === F_STRICT_TRANSPORT_SECURITY && this.routes.hsts) continue;
      runs.keep(fields, i);
    }
    s += this.routes.hsts;
    if (resp.status === 101) {
      s += `Connection: upgrade\r\nUpgrade: ${resp.upgrade || this.head.upgrade}\r\n`;
    } else if (resp.status >= 200) {
      if (!this.keepClient || this.client.closeAfterExchange || this.client.listener.draining) s += 'Connection: close\r\n';
      else if (this.head.version === 0) s += 'Connection: keep-alive\r\n';
    }
    s += '\r\n';
    return s;
  }

  /**
   * Write a response head (when `head` is given: its status line, unless
   * RUNS holds it, the lines responseHead kept in RUNS, which lie in `buf`,
   * and `tail`) and `buf[start, end)` to the client as one new Buffer: one
   * write, one syscall; and a copy, because `buf` may be the upstream read
   * buffer, reused by the next read. With a head, `start` is where it ended.
   */
  private writeOut(head: ResponseHead | null, tail: string, buf: Buffer, start: number, end: number): boolean {
    let first = '';
    if (head !== null) {
      if (!head.lineForwardable) first = `HTTP/1.1 ${head.status} ${head.reason}\r\n`;
      if (tail === '\r\n') {
        // Nothing added: the head's own final CRLF and the body follow the kept lines as one run.
        RUNS.keepRange(start - 2, end);
        tail = '';
        start = end;
      }
    }
    const hl = head === null ? 0 : first.length + RUNS.bytes + tail.length;
    const size = hl + end - start;
    // Large copies go to a reusable slab (../net/slabs.ts), returned when the
    // socket has written it; HTTP/2 streams' sockets take no callback.
    const slab = size >= SLAB_MIN && size <= SLAB_BYTES && (this.client.socket instanceof net.Socket || (this.client.socket as unknown) instanceof HandleSocket) ? takeSlab() : null;
    const out = slab === null ? Buffer.allocUnsafe(size) : slab.subarray(0, size);
    if (head !== null) RUNS.write(out, 0, first, buf, tail);
    if (end > start) copyBytes(buf, start, end, out, hl);
    this.rec.bytesOut += size;
    // HTTP/2 streams' sockets go through their own write (writeDirect falls back to it).
    const socket = this.client.socket;
    return slab === null ? writeDirect(socket, out) : writeDirect(socket, out, () => returnSlab(slab));
  }

  /** Forward body bytes from `buf[off]`, after the response head `head` (+ `tail`, see writeOut) when it is given. */
  private forwardResponseBody(buf: Buffer, off: number, head: ResponseHead | null = null, tail = ''): void {
    let end = buf.length;
    let done = false;
    if (this.respChunked) {
      let used: number;
      try {
        used = this.respChunked.feed(buf, off, end);
      } catch (e) {
        const reason = `invalid chunked response: ${e instanceof ParseError ? e.detail : String(e)}`;
        this.dropUpstream(null);
        if (head !== null) {
          // Nothing has reached the client yet: it gets a 502, not a cut response.
          this.respHeadSent = false;
          this.fail(Errors.UPSTREAM_PROTOCOL, reason, true);
          return;
        }
        this.rec.reason = reason;
        this.finish(false);
        return;
      }
      end = off + used;
      done = this.respChunked.done;
      if (this.respChunked.onData) {
        if (done) this.finishResponse(end < buf.length);
        return;
      }
      // (a head is only ever passed with a chunked body that is forwarded as is, not decoded)
    } else if (!this.respCloseDelimited) {
      const take = Math.min(this.respRemaining, end - off);
      this.respRemaining -= take;
      end = off + take;
      done = this.respRemaining === 0;
    }
    if (end > off || head !== null) {
      const ok = this.writeOut(head, tail, buf, off, end);
      if (!ok) {
        // Waiting on the client now, not the backend: the client idle
        // timeout applies until it drains.
        this.conn?.socket.pause();
        this.deadline = 0;
        this.client.setDeadline('idle', this.route!.timeouts.clientIdleMs);
      }
    }
    if (done) this.finishResponse(end < buf.length);
  }

  private finishResponse(extraBytes: boolean): void {
    if (extraBytes) this.upstreamReusable = false;
    this.respState = RespState.Done;
    this.complete();
  }

  /** Response fully sent; if the request body is also done, wrap up. */
  private complete(): void {
    if (this.finished) return;
    if (!this.requestBodyDone) {
      // The backend answered before the body ended (e.g. 413): the upstream
      // connection has unread body in flight and the client will not get a
      // clean next request boundary. Close both after this response.
      this.upstreamReusable = false;
      this.keepClient = false;
      this.requestBodyDone = true;
    }
    const conn = this.conn;
    this.conn = null;
    this.deadline = 0;
    if (conn) {
      if (this.upstreamReusable && !conn.closed) conn.release();
      else conn.destroy();
    }
    this.finish(this.keepClient);
  }

  /** Answer with our own error (if nothing was sent yet) and end the exchange. */
  private fail(def: ErrorDef, reason: string, closeClient: boolean): void {
    if (this.finished) return;
    this.rec.status = def.status;
    this.rec.errorCode = def.code;
    this.rec.reason = reason;
    if (this.respHeadSent) {
      this.dropUpstream(null);
      this.finish(false);
      return;
    }
    const close = closeClient || !this.keepClient || def.source === 'downstream';
    const out = errorResponse(def, this.rec.requestId || nextRequestId(), wantsJson(this.head.accept), close, this.routes.hsts);
    this.rec.bytesOut += out.length;
    this.respHeadSent = true;
    this.client.socket.write(out);
    if (!close && !this.requestBodyDone) this.requestBodyDone = true;
    this.dropUpstream(null);
    this.finish(!close);
  }

  /** An exception escaped a handler of this exchange (a bug): contain it. */
  crash(err: unknown): void {
    if (this.finished) return;
    try {
      this.fail(Errors.INTERNAL, `internal error: ${err instanceof Error ? err.message : String(err)}`, true);
    } catch {
      this.finished = true;
    }
  }

  onUpstreamFault(conn: UpstreamLink, err: unknown): void {
    if (conn !== this.conn) return;
    this.client.listener.hooks.onInternalError?.(err);
    this.crash(err);
    this.client.close();
  }

  /** 301 (GET/HEAD) or 308 to the same URL over HTTPS, on the cluster's https port. */
  private redirectToHttps(): void {
    const head = this.head;
    const port = this.routes.redirectPort;
    const host = head.host.includes(':') ? `[${head.host}]` : head.host;
    const location = `https://${host}${port === 443 ? '' : `:${port}`}${head.target === '*' ? '/' : head.target}`;
    const status = head.method === 'GET' || head.method === 'HEAD' ? 301 : 308;
    this.answerSelf(status, status === 301 ? 'Moved Permanently' : 'Permanent Redirect', `Location: ${location}\r\nX-Request-Id: ${this.rec.requestId}\r\n`, `Redirecting to ${location}\n`, 'redirect to https');
  }

  /** An ACME HTTP-01 challenge (RFC 8555 §8.3): the key authorization, or 404. */
  private answerAcme(token: string): void {
    const keyAuth = /^[A-Za-z0-9_-]+$/.test(token) ? this.routes.acmeChallenge?.(token) : undefined;
    this.answerSelf(keyAuth ? 200 : 404, keyAuth ? 'OK' : 'Not Found', '', keyAuth ?? 'no such challenge\n', 'acme http-01 challenge');
  }

  /** A small plain-text answer of perimeter's own that is not an error (redirects, ACME). */
  private answerSelf(status: number, phrase: string, headers: string, body: string, reason: string): void {
    this.rec.status = status;
    this.rec.reason = reason;
    const close = !this.keepClient || !this.requestBodyDone;
    const out = Buffer.from(
      `HTTP/1.1 ${status} ${phrase}\r\n${headers}Content-Type: text/plain\r\nContent-Length: ${Buffer.byteLength(body)}\r\n${close ? 'Connection: close\r\n' : ''}\r\n${this.head.method === 'HEAD' ? '' : body}`,
      'latin1',
    );
    this.rec.bytesOut += out.length;
    this.respHeadSent = true;
    this.client.socket.write(out);
    this.requestBodyDone = true;
    this.finish(!close);
  }

  /** The client went away or timed out: stop everything. */
  abort(reason: string): void {
    if (this.finished) return;
    if (!this.rec.reason) this.rec.reason = reason;
    if (!this.rec.status) this.rec.status = 499; // nginx's "client closed request"
    if (this.backend) this.releaseBackend('cancelled');
    this.dropUpstream(null);
    this.finish(false);
  }

  onClientTunnelData(chunk: Buffer): void {
    const c = this.conn;
    if (!c) return;
    this.rec.bytesIn += chunk.length;
    if (!c.socket.write(chunk)) this.client.socket.pause();
  }

  private finish(keepAlive: boolean): void {
    if (this.finished) return;
    this.finished = true;
    const route = this.route;
    if (route) {
      route.budget.active--;
      if (this.isRetry) route.budget.retrying--;
    }
    if (this.backend) this.releaseBackend('cancelled');
    if (this.conn) {
      this.conn.destroy();
      this.conn = null;
    }
    this.deadline = 0;
    const rec = this.rec;
    rec.durationMs = performance.now() - this.t0;
    rec.bytesIn += this.head.headLength + this.bodyBytes;
    this.client.listener.hooks.onRecord?.(rec);
    if (!keepAlive) {
      this.client.exchangeDone(false);
      // A tunnel or cut response: make sure the client sees the end.
      if (!this.client.socket.destroyed) this.client.socket.end();
      return;
    }
    this.client.exchangeDone(true);
  }
}

/** Attach the proxy to a listening server. */
export function handleConnection(listener: ListenerState, socket: net.Socket): void {
  if (listener.draining) {
    socket.destroy();
    return;
  }
  new ClientConn(socket, listener);
}
