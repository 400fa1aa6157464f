/**
 * HTTP/2 towards backends: h2c (HTTP/2 over cleartext with prior knowledge,
 * RFC 9113 §3.3), for services configured with `protocol: h2c` (gRPC
 * servers and other HTTP/2-only backends).
 *
 * One pool per backend holds node:http2 client sessions; each request is one
 * stream, multiplexed up to the backend's SETTINGS_MAX_CONCURRENT_STREAMS per
 * session (a new session opens when every session is full). A session with
 * no stream for the service's `upstream-idle` is closed (GOAWAY); one that
 * receives GOAWAY takes no new streams and finishes the ones the backend
 * said it processes.
 *
 * To the request path (Exchange in ./proxy.ts) a stream looks like an
 * HTTP/1.1 upstream connection (UpstreamLink): it takes the HTTP/1.1
 * request perimeter built (head, then body bytes as framed for HTTP/1.1)
 * and hands back an HTTP/1.1 response: the head, the body (chunked when the
 * backend gave no content-length) and the backend's trailers in the chunked
 * trailer section. So routing, header rules, timeouts, retries, passive
 * health, balancer feedback, error codes and the request record are the
 * HTTP/1.1 path's, and the HTTP/1.1 hot path is untouched. The price is one
 * serialize + parse of each head (microseconds), paid by h2c services only.
 */
import http2 from 'node:http2';
import { STATUS_CODES } from 'node:http';
import net from 'node:net';
import { coarseNow, sweeper, type Expirable } from '../core/clock.js';
import { Errors } from '../core/errors.js';
import { ChunkedParser } from './http1.js';
import type { UpstreamError, UpstreamLink, UpstreamOwner, UpstreamSocketLike } from './upstream-conn.js';

const { NGHTTP2_CANCEL, NGHTTP2_REFUSED_STREAM, NGHTTP2_FLAG_END_STREAM } = http2.constants;

/** Fixed limits of upstream h2c sessions (docs/http2.md). */
export const H2_UPSTREAM = Object.freeze({
  /** Streams per session until the backend's SETTINGS say otherwise (nghttp2's own assumption). */
  initialMaxStreams: 100,
  /** Per-stream receive window we announce (bytes); the backend can send this much before we read. */
  initialWindowSize: 1 << 20,
  /** Memory nghttp2 may hold per session for frames not yet processed, MiB. */
  maxSessionMemory: 10,
  /** Largest response header list we accept (decoded, RFC 9113 accounting). */
  maxHeaderListSize: 256 * 1024,
});

/** Request fields that are HTTP/1.1-connection-specific: never sent on an HTTP/2 stream (RFC 9113 §8.2.2). */
const DROP_REQUEST = new Set(['host', 'connection', 'keep-alive', 'proxy-connection', 'transfer-encoding', 'upgrade', 'te']);
/** Response and trailer fields that must not appear in an HTTP/1.1 head or trailer section we build. */
const DROP_RESPONSE = new Set(['connection', 'keep-alive', 'proxy-connection', 'transfer-encoding', 'upgrade', 'te']);
/** Fields not allowed in a trailer section (RFC 9110 §6.5.1): framing, routing, and our own. */
const DROP_TRAILER = new Set([...DROP_RESPONSE, 'content-length', 'content-type', 'content-encoding', 'host', 'trailer', 'set-cookie']);
const CRLF = Buffer.from('\r\n');
const HEAD_END = Buffer.from('\r\n\r\n');

function upstreamError(message: string, code: string, unprocessed: boolean): UpstreamError {
  return Object.assign(new Error(message), { code, unprocessed });
}

function rstName(code: number | undefined): string {
  switch (code) {
    case undefined:
      return 'H2_STREAM_CLOSED';
    case 0:
      return 'H2_NO_ERROR';
    case 1:
      return 'H2_PROTOCOL_ERROR';
    case 2:
      return 'H2_INTERNAL_ERROR';
    case 7:
      return 'H2_REFUSED_STREAM';
    case 8:
      return 'H2_CANCEL';
    case 11:
      return 'H2_ENHANCE_YOUR_CALM';
    default:
      return `H2_ERROR_${code}`;
  }
}

/** One h2c client session to a backend. */
class H2Session implements Expirable {
  readonly session: http2.ClientHttp2Session;
  readonly pool: H2BackendPool;
  connected = false;
  /** Takes no new streams: GOAWAY received, idle-closed, or broken. */
  draining = false;
  /** Highest stream id the backend will process after its GOAWAY (Infinity: no GOAWAY). */
  goawayLastId = Infinity;
  /** Streams reserved or open on this session. */
  active = 0;
  /** Streams started over the session's life. */
  started = 0;
  maxStreams: number = H2_UPSTREAM.initialMaxStreams;
  deadline = 0;
  /** Streams waiting for the connection to be established. */
  readonly waiting = new Set<H2UpstreamStream>();
  private error: (Error & { code?: string }) | undefined;

  constructor(pool: H2BackendPool) {
    this.pool = pool;
    const host = pool.host.includes(':') ? `[${pool.host}]` : pool.host;
    const session = http2.connect(`http://${host}:${pool.port}`, {
      createConnection: () => net.connect({ host: pool.host, port: pool.port, noDelay: true }),
      maxSessionMemory: H2_UPSTREAM.maxSessionMemory,
      maxHeaderListPairs: 2000,
      settings: { enablePush: false, initialWindowSize: H2_UPSTREAM.initialWindowSize, maxHeaderListSize: H2_UPSTREAM.maxHeaderListSize },
    });
    this.session = session;
    session.on('connect', () => {
      this.connected = true;
      for (const s of [...this.waiting]) {
        this.waiting.delete(s);
        s.onSessionConnect();
      }
    });
    session.on('remoteSettings', (settings: http2.Settings) => {
      if (typeof settings.maxConcurrentStreams === 'number') this.maxStreams = Math.max(1, settings.maxConcurrentStreams);
    });
    session.on('goaway', (_code: number, lastStreamID: number) => {
      this.goawayLastId = Math.min(this.goawayLastId, lastStreamID);
      this.retire();
    });
    session.on('error', (err: Error & { code?: string }) => {
      this.error ??= err;
      this.retire();
    });
    session.on('close', () => {
      this.retire();
      this.deadline = 0;
      sweeper.delete(this);
      this.pool.sessionClosed(this);
      const err = this.error;
      for (const s of [...this.waiting]) {
        this.waiting.delete(s);
        s.onSessionFailed(err ? `connect ${err.code ?? err.message}` : 'connection closed while connecting', err?.code ?? 'ECONNRESET');
      }
    });
    // No session.setTimeout: idleness is tracked by stream count (expire below).
  }

  /** Stop giving this session new streams. */
  retire(): void {
    if (this.draining) return;
    this.draining = true;
    this.pool.retire(this);
    if (this.active === 0) this.close();
  }

  get full(): boolean {
    return this.active >= this.maxStreams;
  }

  reserve(): void {
    this.active++;
    this.started++;
    if (this.deadline !== 0) {
      this.deadline = 0;
      sweeper.delete(this);
    }
  }

  /** A stream of this session finished (or was given up before it started). */
  unreserve(): void {
    if (--this.active > 0) return;
    this.active = 0;
    if (this.draining) {
      this.close();
    } else {
      this.deadline = coarseNow() + this.pool.idleTimeoutMs;
      sweeper.add(this);
    }
  }

  /** Idle for the upstream idle timeout. */
  expire(): void {
    if (this.active === 0) {
      this.retire();
      this.close();
    }
  }

  close(): void {
    this.deadline = 0;
    sweeper.delete(this);
    if (!this.session.closed && !this.session.destroyed) this.session.close();
    // A session still connecting with nobody waiting: give up on it.
    if (!this.connected && this.waiting.size === 0 && !this.session.destroyed) this.session.destroy();
  }

  destroy(): void {
    this.retire();
    if (!this.session.destroyed) this.session.destroy();
  }
}

/** The h2c sessions of one backend (host:port); survives reloads like BackendConnPool. */
export class H2BackendPool {
  readonly host: string;
  readonly port: number;
  idleTimeoutMs: number;
  /** Sessions that take new streams. */
  private readonly usable: H2Session[] = [];
  /** Sessions in existence (usable + draining). */
  open = 0;
  /** Sessions opened over the pool's life (for tests and metrics). */
  opened = 0;

  constructor(host: string, port: number, idleTimeoutMs: number) {
    this.host = host;
    this.port = port;
    this.idleTimeoutMs = idleTimeoutMs;
  }

  /** A stream on the first session with a free slot, or on a new session. */
  take(owner: UpstreamOwner): H2UpstreamStream {
    let session: H2Session | undefined;
    for (const s of this.usable) {
      if (!s.full && !s.draining) {
        session = s;
        break;
      }
    }
    if (!session) {
      session = new H2Session(this);
      this.usable.push(session);
      this.open++;
      this.opened++;
    }
    return new H2UpstreamStream(session, owner);
  }

  retire(s: H2Session): void {
    const i = this.usable.indexOf(s);
    if (i !== -1) this.usable.splice(i, 1);
  }

  sessionClosed(s: H2Session): void {
    this.retire(s);
    this.open--;
  }

  /** Close sessions with no open stream (the backend left every service). */
  closeIdle(): void {
    for (const s of [...this.usable]) if (s.active === 0) s.destroy();
  }

  closeAll(): void {
    for (const s of [...this.usable]) s.destroy();
  }

  get sessionCount(): number {
    return this.usable.length;
  }
}

const enum Phase {
  /** Waiting for the request head from the exchange. */
  Head,
  /** Stream open; request body (if any) still coming. */
  Open,
  Closed,
}

/**
 * One request on an h2c session, as an UpstreamLink: HTTP/1.1 in, HTTP/1.1
 * out (see the file comment).
 */
export class H2UpstreamStream implements UpstreamLink, UpstreamSocketLike {
  readonly socket: UpstreamSocketLike = this;
  owner: UpstreamOwner | null;
  connected: boolean;
  readonly reuses: number;
  closed = false;
  private readonly session: H2Session;
  private stream: http2.ClientHttp2Stream | null = null;
  private phase = Phase.Head;
  private headBuf: Buffer | null = null;
  private method = '';
  // Request body framing (as the exchange writes it).
  private reqRemaining = 0;
  private reqChunked: ChunkedParser | null = null;
  private reqEnded = false;
  private writeOk = true;
  // Response.
  private respChunked = false;
  private respStarted = false;
  private trailers: http2.IncomingHttpHeaders | null = null;
  private settled = false;

  constructor(session: H2Session, owner: UpstreamOwner) {
    this.session = session;
    this.owner = owner;
    this.reuses = session.started;
    session.reserve();
    this.connected = session.connected;
    if (!session.connected) session.waiting.add(this);
  }

  // ---- session events ----

  onSessionConnect(): void {
    if (this.closed) return;
    this.connected = true;
    this.call((o) => o.onUpstreamConnect(this));
  }

  onSessionFailed(message: string, code: string): void {
    if (this.closed) return;
    this.fail(upstreamError(message, code, false));
  }

  // ---- what the exchange writes ----

  write(chunk: Buffer): boolean {
    if (this.closed) return true;
    if (this.phase === Phase.Head) {
      const buf = this.headBuf === null ? chunk : Buffer.concat([this.headBuf, chunk]);
      const end = buf.indexOf(HEAD_END);
      if (end === -1) {
        this.headBuf = buf;
        return true;
      }
      this.headBuf = null;
      if (!this.open(buf.toString('latin1', 0, end))) return true;
      if (end + 4 < buf.length) this.body(buf.subarray(end + 4));
      return this.writeOk;
    }
    if (this.phase === Phase.Open) this.body(chunk);
    return this.writeOk;
  }

  cork(): void {}
  uncork(): void {}

  pause(): this {
    this.stream?.pause();
    return this;
  }

  resume(): this {
    this.stream?.resume();
    return this;
  }

  isPaused(): boolean {
    return this.stream?.isPaused() ?? false;
  }

  /** Half-close (only tunnels do this over HTTP/1.1; never reached for h2c). */
  end(): this {
    if (this.stream && !this.reqEnded) {
      this.reqEnded = true;
      this.stream.end();
    }
    return this;
  }

  release(): void {
    // The exchange is complete; the stream has ended or ends on its own.
    this.owner = null;
    this.closed = true;
    if (this.stream === null) this.settle();
  }

  destroy(): void {
    if (this.closed) return;
    this.closed = true;
    this.owner = null;
    this.session.waiting.delete(this);
    const s = this.stream;
    if (s && !s.closed && !s.destroyed) s.close(NGHTTP2_CANCEL);
    else if (!s) this.settle();
  }

  // ---- request ----

  /** Turn perimeter's HTTP/1.1 request head into a stream. */
  private open(head: string): boolean {
    const lines = head.split('\r\n');
    const first = lines[0]!;
    const sp1 = first.indexOf(' ');
    const sp2 = first.lastIndexOf(' ');
    this.method = first.slice(0, sp1);
    const headers: http2.OutgoingHttpHeaders = {
      ':method': this.method,
      ':scheme': 'http',
      ':path': first.slice(sp1 + 1, sp2),
    };
    let hasBody = false;
    for (let i = 1; i < lines.length; i++) {
      const line = lines[i]!;
      const colon = line.indexOf(':');
      const name = line.slice(0, colon).toLowerCase();
      const value = line.slice(colon + 1).trim();
      if (name === 'host') {
        headers[':authority'] = value;
        continue;
      }
      if (name === 'transfer-encoding') {
        // perimeter only forwards `chunked` (http1.ts refuses anything else).
        this.reqChunked = new ChunkedParser(Errors.BAD_CHUNK);
        this.reqChunked.onData = (b, s, e) => this.send(b.subarray(s, e));
        hasBody = true;
        continue;
      }
      if (DROP_REQUEST.has(name)) continue;
      if (name === 'content-length') {
        this.reqRemaining = Number(value);
        if (this.reqRemaining > 0) hasBody = true;
      }
      const prev = headers[name];
      if (prev === undefined) headers[name] = value;
      else if (Array.isArray(prev)) prev.push(value);
      else headers[name] = [String(prev), value];
    }
    // perimeter forwards trailers (to HTTP/2 clients, and in chunked HTTP/1.1
    // responses), so it may say it accepts them; gRPC servers require it.
    headers.te = 'trailers';
    let stream: http2.ClientHttp2Stream;
    try {
      stream = this.session.session.request(headers, { endStream: !hasBody });
    } catch (err) {
      const e = err as Error & { code?: string };
      // A session closing under us never saw the stream; anything else is a
      // header node:http2 refuses (a reset, as for a backend that cannot parse it).
      const unprocessed = e.code === 'ERR_HTTP2_GOAWAY_SESSION' || e.code === 'ERR_HTTP2_INVALID_SESSION' || e.code === 'ERR_HTTP2_OUT_OF_STREAMS';
      if (unprocessed) this.session.retire();
      this.phase = Phase.Closed;
      this.fail(upstreamError(`h2c stream not opened: ${e.message}`, e.code ?? 'H2_REQUEST', unprocessed));
      return false;
    }
    this.stream = stream;
    this.phase = Phase.Open;
    if (!hasBody) this.reqEnded = true;
    this.watch(stream);
    return true;
  }

  private body(chunk: Buffer): void {
    if (this.reqEnded || !this.stream) return;
    if (this.reqChunked) {
      try {
        this.reqChunked.feed(chunk, 0, chunk.length);
      } catch {
        // The exchange validated these bytes; never leave a stream half-sent.
        this.stream.close(NGHTTP2_CANCEL);
        return;
      }
      if (this.reqChunked.done) this.endRequest();
      return;
    }
    const data = chunk.length > this.reqRemaining ? chunk.subarray(0, this.reqRemaining) : chunk;
    this.reqRemaining -= data.length;
    this.send(data);
    if (this.reqRemaining === 0) this.endRequest();
  }

  private send(data: Buffer): void {
    if (data.length > 0 && this.stream && !this.stream.write(data)) this.writeOk = false;
  }

  private endRequest(): void {
    if (this.reqEnded) return;
    this.reqEnded = true;
    this.stream?.end();
  }

  // ---- response ----

  private watch(stream: http2.ClientHttp2Stream): void {
    stream.on('error', () => {}); // the outcome is read on 'close'
    stream.on('headers', (headers: http2.IncomingHttpHeaders) => {
      const status = Number(headers[':status']);
      if (status >= 100 && status < 200) this.emit(Buffer.from(headLine(status) + fieldLines(headers, DROP_RESPONSE) + '\r\n', 'latin1'));
    });
    stream.on('response', (headers: http2.IncomingHttpHeaders, flags: number) => this.onResponse(headers, flags));
    stream.on('data', (chunk: Buffer) => {
      if (!this.respStarted || chunk.length === 0) return;
      if (this.respChunked) this.emit(Buffer.concat([Buffer.from(chunk.length.toString(16) + '\r\n', 'latin1'), chunk, CRLF]));
      else this.emit(chunk);
    });
    stream.on('trailers', (headers: http2.IncomingHttpHeaders) => {
      this.trailers = headers;
    });
    stream.on('end', () => {
      if (this.respStarted && this.respChunked) {
        const t = this.trailers ? fieldLines(this.trailers, DROP_TRAILER) : '';
        this.emit(Buffer.from(`0\r\n${t}\r\n`, 'latin1'));
      }
    });
    stream.on('drain', () => {
      this.writeOk = true;
      this.call((o) => o.onUpstreamDrain(this));
    });
    stream.on('close', () => {
      this.settle();
      if (this.owner === null) return;
      // Closed before the exchange had the whole response.
      const code = stream.rstCode;
      const id = stream.id;
      const unprocessed = !this.respStarted && (code === NGHTTP2_REFUSED_STREAM || id === undefined || id > this.session.goawayLastId);
      const name = unprocessed && code !== NGHTTP2_REFUSED_STREAM ? 'H2_GOAWAY' : rstName(code);
      this.fail(upstreamError(`h2c stream closed (${name})`, name, unprocessed));
    });
  }

  private onResponse(headers: http2.IncomingHttpHeaders, flags: number): void {
    const status = Number(headers[':status']);
    const endStream = (flags & NGHTTP2_FLAG_END_STREAM) !== 0;
    const noBody = this.method === 'HEAD' || status === 204 || status === 304;
    let framing = '';
    if (noBody) {
      // content-length of a HEAD answer describes the GET: kept as sent.
    } else if (headers['content-length'] !== undefined) {
      // Framed by content-length: trailers, if any, cannot follow (dropped).
    } else if (endStream) {
      framing = 'content-length: 0\r\n';
    } else {
      this.respChunked = true;
      framing = 'transfer-encoding: chunked\r\n';
    }
    this.respStarted = true;
    this.emit(Buffer.from(headLine(status) + fieldLines(headers, DROP_RESPONSE) + framing + '\r\n', 'latin1'));
  }

  /** Hand response bytes to the exchange. */
  private emit(b: Buffer): void {
    this.call((o) => o.onUpstreamData(this, b));
  }

  /** Call the owner; a throw is a bug in the request path: contain it to this exchange. */
  private call(fn: (o: UpstreamOwner) => void): void {
    const o = this.owner;
    if (!o) return;
    try {
      fn(o);
    } catch (err) {
      this.destroy();
      try {
        o.onUpstreamFault(this, err);
      } catch {
        // nothing more to contain
      }
    }
  }

  /** Report a failure to the exchange (never synchronously inside its own write). */
  private fail(err: UpstreamError): void {
    const o = this.owner;
    if (!o) return;
    this.owner = null;
    this.closed = true;
    this.session.waiting.delete(this);
    if (!this.stream) this.settle();
    process.nextTick(() => {
      try {
        o.onUpstreamError(this, err);
      } catch (e) {
        try {
          o.onUpstreamFault(this, e);
        } catch {
          // nothing more to contain
        }
      }
    });
  }

  /** Give the session slot back, once. */
  private settle(): void {
    if (this.settled) return;
    this.settled = true;
    this.session.unreserve();
  }
}

function headLine(status: number): string {
  return `HTTP/1.1 ${status} ${STATUS_CODES[status] ?? 'Unknown'}\r\n`;
}

/** Header fields as HTTP/1.1 lines: no pseudo-headers, none of `drop`. */
function fieldLines(headers: http2.IncomingHttpHeaders, drop: ReadonlySet<string>): string {
  let s = '';
  for (const name of Object.keys(headers)) {
    if (name.charCodeAt(0) === 0x3a /* : */ || drop.has(name)) continue;
    const v = headers[name];
    if (v === undefined) continue;
    if (Array.isArray(v)) for (const x of v) s += `${name}: ${x}\r\n`;
    else s += `${name}: ${v}\r\n`;
  }
  return s;
}
