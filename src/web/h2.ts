/**
 * HTTP/2 on HTTPS listeners (RFC 9113), negotiated by ALPN.
 *
 * node:http2 (nghttp2) does the framing, HPACK, flow control and the
 * protocol checks; each stream is then turned into an HTTP/1.1 request and
 * run through the very same request path as an HTTP/1.1 client (ClientConn
 * and Exchange in ./proxy.ts) over an in-memory socket, and the HTTP/1.1
 * answer is turned back into HTTP/2 frames. So routing, limits, header
 * policy, retries, error codes and the request record are one code path for
 * both versions; the price is one serialize + strict re-parse per stream.
 * Backends are spoken to in HTTP/1.1, or h2c for services configured so
 * (./h2-upstream.ts); either way the answer reaches this file as HTTP/1.1,
 * trailers included (chunked trailer section → HTTP/2 trailing HEADERS).
 */
import http2 from 'node:http2';
import { EventEmitter } from 'node:events';
import type net from 'node:net';
import type tls from 'node:tls';
import { Errors } from '../core/errors.js';
import { ChunkedParser, FIELD_STRIDE, fieldName, fieldValue, findHeadEnd, isHopByHop, NEED_MORE, parseResponseHead, type ResponseHead } from './http1.js';
import { ClientConn, ConnMemo, type ListenerState } from './proxy.js';

const {
  NGHTTP2_CANCEL,
  NGHTTP2_ENHANCE_YOUR_CALM,
  NGHTTP2_INTERNAL_ERROR,
  NGHTTP2_NO_ERROR,
  NGHTTP2_PROTOCOL_ERROR,
} = http2.constants;

/** Fixed HTTP/2 limits (docs/http2.md). */
export const H2_LIMITS = Object.freeze({
  /** SETTINGS_MAX_CONCURRENT_STREAMS we announce; streams above it are refused (RST_STREAM REFUSED_STREAM). */
  maxConcurrentStreams: 128,
  /** Invalid frames tolerated per session before it is closed (node's flood guard; default 1000). */
  maxSessionInvalidFrames: 100,
  /** Streams refused for exceeding the limits before the session is closed (node's default 100). */
  maxSessionRejectedStreams: 100,
  /** Streams the client may cancel (RST_STREAM before the response ended) per window... */
  maxClientResets: 200,
  /** ...of this many milliseconds; above it: GOAWAY ENHANCE_YOUR_CALM (rapid reset, CVE-2023-44487). */
  clientResetWindowMs: 10_000,
  /** Memory per session for buffered frames, MiB. */
  maxSessionMemory: 10,
});

/** Headers that make an HTTP/2 request malformed (RFC 9113 §8.2.2). */
const CONNECTION_SPECIFIC = new Set(['connection', 'keep-alive', 'proxy-connection', 'transfer-encoding', 'upgrade']);
const CRLF = Buffer.from('\r\n');
const LAST_CHUNK = Buffer.from('0\r\n\r\n');

export interface H2Front {
  /** Take a TLS connection whose ALPN result is 'h2'. */
  handle(socket: tls.TLSSocket): void;
}

/** The HTTP/2 side of one HTTPS listener. */
export function createH2Front(listener: ListenerState): H2Front {
  const limits = listener.routes.limits;
  const server = http2.createServer({
    maxSessionInvalidFrames: H2_LIMITS.maxSessionInvalidFrames,
    maxSessionRejectedStreams: H2_LIMITS.maxSessionRejectedStreams,
    maxSessionMemory: H2_LIMITS.maxSessionMemory,
    // Pseudo-headers count; the HTTP/1.1 path then applies `header-count` exactly (431).
    maxHeaderListPairs: limits.headerCount + 8,
    peerMaxConcurrentStreams: H2_LIMITS.maxConcurrentStreams,
    settings: {
      maxConcurrentStreams: H2_LIMITS.maxConcurrentStreams,
      // HPACK-decoded size (32 bytes per field extra): room over `header-bytes`
      // so that moderately oversized heads get the HTTP/1.1 path's 431, and
      // anything larger is cut by nghttp2 before it is ever buffered.
      maxHeaderListSize: limits.headerBytes * 2 + 4096,
      enablePush: false,
    },
  });
  server.on('session', (session) => watchSession(listener, session));
  server.on('stream', (stream: http2.ServerHttp2Stream, headers: http2.IncomingHttpHeaders, _flags: number, rawHeaders: string[]) => {
    onStream(listener, stream, headers, rawHeaders);
  });
  return {
    handle(socket: tls.TLSSocket): void {
      if (listener.draining) {
        socket.destroy();
        return;
      }
      // The HTTPS listener's sockets are half-open for HTTP/1.1; node:http2 never ends a session
      // whose client sent FIN, so such a session (and its socket) stayed until client-idle, and held
      // a drain or a shutdown to its deadline. As node:http2's own servers do: FIN ends it.
      socket.allowHalfOpen = false;
      server.emit('connection', socket);
    },
  };
}

/** Per session: idle timeout, drain/close with the listener, rapid-reset guard. */
function watchSession(listener: ListenerState, session: http2.ServerHttp2Session): void {
  session.on('error', () => {});
  let resets = 0;
  let windowStart = Date.now();
  const closeNow = (): void => {
    if (!session.destroyed) session.destroy();
  };
  // Listener drain and shutdown treat the session like an HTTP/1.1 client
  // connection: drain = GOAWAY and finish open streams, close = cut.
  const handle = {
    drain(): void {
      if (session.closed || session.destroyed) return;
      session.close();
    },
    close: closeNow,
  };
  listener.clients.add(handle);
  session.once('close', () => listener.clients.delete(handle));
  const guard: SessionGuard = {
    open: 0,
    memo: new ConnMemo(),
    clientCancelled(): void {
      const now = Date.now();
      if (now - windowStart > H2_LIMITS.clientResetWindowMs) {
        windowStart = now;
        resets = 0;
      }
      if (++resets > H2_LIMITS.maxClientResets && !session.destroyed && !session.closed) {
        session.goaway(NGHTTP2_ENHANCE_YOUR_CALM);
        session.close();
        // Let the GOAWAY leave, then drop the connection and what it started.
        setTimeout(closeNow, 50).unref();
      }
    },
  };
  guards.set(session, guard);
  // Idle: no open stream for client-idle; waiting streams have their own deadlines.
  // node:http2 arms the timer again on the next frame after it fired, but a callback
  // given to setTimeout() is a once() listener: a session whose first timeout came
  // while a stream was open was never closed for idleness afterwards.
  session.setTimeout(listener.routes.timeouts.clientIdleMs);
  session.on('timeout', () => {
    if (guard.open === 0) session.close();
  });
}

/** Per session: its open streams (counted by onStream), what its streams' requests share, and the rapid-reset accounting. */
interface SessionGuard {
  open: number;
  readonly memo: ConnMemo;
  clientCancelled(): void;
}
const guards = new WeakMap<http2.Http2Session, SessionGuard>();

function onStream(listener: ListenerState, stream: http2.ServerHttp2Stream, headers: http2.IncomingHttpHeaders, raw: readonly string[]): void {
  stream.on('error', () => {});
  const method = String(headers[':method'] ?? '');
  const path = headers[':path'];
  const authority = headers[':authority'];
  let host: string | undefined;
  const cookies: string[] = [];
  let fields = '';
  let hasLength = false;
  for (let i = 0; i + 1 < raw.length; i += 2) {
    const name = raw[i]!;
    const value = raw[i + 1]!;
    if (name.charCodeAt(0) === 0x3a /* : */) continue;
    if (CONNECTION_SPECIFIC.has(name) || (name === 'te' && value.toLowerCase() !== 'trailers')) {
      // nghttp2 already refuses these; kept so the rule does not depend on it.
      stream.close(NGHTTP2_PROTOCOL_ERROR);
      return;
    }
    if (name === 'te') continue;
    if (name === 'host') {
      if (host !== undefined) host += ', ' + value; // two Host fields: the HTTP/1.1 parse refuses it
      else host = value;
      continue;
    }
    // RFC 9113 §8.2.3: split cookie fields are joined for HTTP/1.1.
    if (name === 'cookie') {
      cookies.push(value);
      continue;
    }
    if (name === 'content-length') hasLength = true;
    fields += `${name}: ${value}\r\n`;
  }
  if (cookies.length > 0) fields += `cookie: ${cookies.join('; ')}\r\n`;
  let target: string;
  if (method === 'CONNECT') {
    target = authority ?? ''; // answered 501 by the HTTP/1.1 path, like HTTP/1.1 CONNECT
  } else if (authority !== undefined && host !== undefined && authority.toLowerCase() !== host.toLowerCase()) {
    // :authority and Host disagree (RFC 9113 §8.3.1): as an absolute-form
    // target they get the HTTP/1.1 path's PRM_HOST_MISMATCH.
    target = `https://${authority}${path ?? '/'}`;
  } else {
    target = path ?? '';
  }
  const hostField = host ?? authority;
  const chunked = !stream.endAfterHeaders && !hasLength;
  const head =
    `${method} ${target} HTTP/1.1\r\n` +
    (hostField !== undefined ? `host: ${hostField}\r\n` : '') +
    fields +
    (chunked ? 'transfer-encoding: chunked\r\n' : '') +
    '\r\n';

  const guard = stream.session ? guards.get(stream.session) : undefined; // stream.session is gone once closed
  const sock = new StreamSocket(stream, method === 'HEAD');
  const conn = new ClientConn(sock as unknown as net.Socket, listener, guard?.memo);
  sock.conn = conn;
  stream.on('data', (chunk: Buffer) => {
    if (chunked) {
      if (chunk.length === 0) return;
      sock.emitData(Buffer.concat([Buffer.from(chunk.length.toString(16) + '\r\n', 'latin1'), chunk, CRLF]));
    } else {
      sock.emitData(chunk);
    }
  });
  stream.on('end', () => {
    if (chunked) sock.emitData(LAST_CHUNK);
    sock.emitEnd();
  });
  if (guard) guard.open++;
  // 'end' and 'close' come once per stream: plain listeners, no once() wrappers.
  stream.on('close', () => {
    if (guard) guard.open--;
    if (!sock.responseDone && !sock.resetByUs) guard?.clientCancelled();
    sock.streamClosed();
  });
  stream.on('drain', () => sock.emit('drain'));
  sock.emitData(Buffer.from(head, 'latin1'));
}

/** Streams' connections to close in the next check phase: one Immediate for all of them. */
const releasing: ClientConn[] = [];

function releaseAll(): void {
  for (const c of releasing.splice(0)) {
    try {
      c.close();
    } catch (err) {
      // A bug: reported, and it must not leave the other streams' connections tracked.
      c.listener.hooks.onInternalError?.(err);
    }
  }
}

function emitClose(socket: EventEmitter): void {
  socket.emit('close');
}

const enum Resp {
  Head,
  Body,
  Done,
}

/**
 * The in-memory "TCP socket" a ClientConn reads one stream's request from
 * and writes its HTTP/1.1 response to; the response is parsed back into
 * HTTP/2 (status, headers without hop-by-hop fields, body with backpressure).
 */
class StreamSocket extends EventEmitter {
  readonly remoteAddress: string | undefined;
  readonly remotePort: number | undefined;
  /** Read by the request record (proxy.ts). */
  readonly httpVersion = 'HTTP/2';
  destroyed = false;
  conn: ClientConn | null = null;
  responseDone = false;
  resetByUs = false;
  private ended = false;
  private state = Resp.Head;
  private buf: Buffer | null = null;
  private remaining = 0;
  private chunks: ChunkedParser | null = null;
  private requestEnded = false;

  constructor(
    private readonly stream: http2.ServerHttp2Stream,
    private readonly headRequest: boolean,
  ) {
    super();
    const s = stream.session?.socket;
    this.remoteAddress = s?.remoteAddress;
    this.remotePort = s?.remotePort;
  }

  // ---- what ClientConn reads ----

  emitData(b: Buffer): void {
    if (!this.destroyed) this.emit('data', b);
  }

  emitEnd(): void {
    this.requestEnded = true;
    if (!this.destroyed) this.emit('end');
    this.maybeRelease();
  }

  streamClosed(): void {
    // The client reset the stream or the session died: the exchange is cancelled.
    if (!this.destroyed) this.destroy();
  }

  setNoDelay(): this {
    return this;
  }
  cork(): void {}
  uncork(): void {}
  pause(): this {
    this.stream.pause();
    return this;
  }
  resume(): this {
    this.stream.resume();
    return this;
  }
  isPaused(): boolean {
    return this.stream.isPaused();
  }

  write(chunk: Buffer): boolean {
    if (this.destroyed || this.ended) return true;
    return this.onResponseBytes(chunk);
  }

  end(chunk?: Buffer): this {
    if (this.ended) return this;
    if (chunk !== undefined && !this.destroyed) this.onResponseBytes(chunk);
    this.ended = true;
    if (this.state === Resp.Body && this.chunks === null && this.remaining < 0) {
      // Close-delimited response: its end is the end of the body.
      this.finishResponse();
    }
    if (!this.responseDone) this.reset(NGHTTP2_INTERNAL_ERROR);
    this.maybeRelease();
    return this;
  }

  destroy(): this {
    if (this.destroyed) return this;
    this.destroyed = true;
    this.ended = true;
    if (!this.responseDone) this.reset(this.stream.rstCode !== undefined ? NGHTTP2_CANCEL : NGHTTP2_INTERNAL_ERROR);
    process.nextTick(emitClose, this);
    return this;
  }

  // ---- the HTTP/1.1 response, back to HTTP/2 ----

  private onResponseBytes(chunk: Buffer): boolean {
    if (this.state === Resp.Head) {
      const buf = this.buf === null ? chunk : Buffer.concat([this.buf, chunk]);
      let off = 0;
      for (;;) {
        let len: number;
        let resp: ResponseHead;
        try {
          len = findHeadEnd(buf, off, 1 << 20, Errors.UPSTREAM_PROTOCOL);
          if (len === NEED_MORE) {
            this.buf = buf.subarray(off);
            return true;
          }
          resp = parseResponseHead(buf, off, len, 10_000);
        } catch {
          // perimeter wrote it: a bug, not input. Never leave the stream hanging.
          this.reset(NGHTTP2_INTERNAL_ERROR);
          return true;
        }
        off += len;
        if (resp.status < 200) {
          if (resp.status !== 101) {
            const interim = h2Headers(resp, buf);
            this.safely(() => this.stream.additionalHeaders(interim));
          }
          continue;
        }
        this.buf = null;
        this.startResponse(resp, h2Headers(resp, buf));
        return off < buf.length ? this.body(buf.subarray(off)) : true;
      }
    }
    if (this.state === Resp.Body) return this.body(chunk);
    return true;
  }

  /** `headers`: the response's fields for HTTP/2 (made while the buffer holding the head was still valid). */
  private startResponse(resp: ResponseHead, headers: http2.OutgoingHttpHeaders): void {
    const noBody = this.headRequest || resp.status === 204 || resp.status === 304 || resp.bodyLength === 0;
    if (noBody) {
      this.state = Resp.Done;
      this.responseDone = true;
      this.safely(() => this.stream.respond(headers, { endStream: true }));
      this.stopRequestBody();
      this.maybeRelease();
      return;
    }
    this.state = Resp.Body;
    if (resp.bodyLength === -2) {
      this.chunks = new ChunkedParser(Errors.UPSTREAM_PROTOCOL);
      this.chunks.onData = (b, s, e) => {
        if (!this.stream.write(b.subarray(s, e))) this.blocked = true;
      };
      // A chunked response may end with trailers (gRPC's grpc-status): they
      // leave as a trailing HEADERS frame (or an empty END_STREAM DATA frame
      // when there are none).
      const trailers: http2.OutgoingHttpHeaders = {};
      this.chunks.onTrailer = (line) => addTrailer(trailers, line);
      this.stream.once('wantTrailers', () => this.safely(() => this.stream.sendTrailers(trailers)));
      this.safely(() => this.stream.respond(headers, { waitForTrailers: true }));
      return;
    } else {
      this.remaining = resp.bodyLength; // -1: until end()
    }
    this.safely(() => this.stream.respond(headers));
  }

  private blocked = false;

  private body(chunk: Buffer): boolean {
    if (this.stream.destroyed) return true;
    if (this.chunks) {
      this.blocked = false;
      try {
        this.chunks.feed(chunk, 0, chunk.length);
      } catch {
        this.reset(NGHTTP2_INTERNAL_ERROR);
        return true;
      }
      if (this.chunks.done) this.finishResponse();
      return !this.blocked;
    }
    let data = chunk;
    if (this.remaining >= 0) {
      if (data.length > this.remaining) data = data.subarray(0, this.remaining);
      this.remaining -= data.length;
    }
    if (this.remaining === 0 && data.length > 0 && this.requestComplete) {
      // The last chunk of an answer to a complete request: END_STREAM once it
      // is written. Ended with it, the stream closes before the write
      // completes, and node's Writable then builds an ERR_STREAM_DESTROYED
      // (with its stack) that nobody sees: 3.6 % of the CPU at h2load -m10.
      // (An early answer keeps ending at once: stopRequestBody follows it.)
      const ok = this.stream.write(data, this.endStream);
      this.finishResponse(false);
      return ok;
    }
    const ok = data.length === 0 || this.stream.write(data);
    if (this.remaining === 0) this.finishResponse();
    return ok;
  }

  /** The client has sent all of the request (END_STREAM on its last frame). */
  private get requestComplete(): boolean {
    return this.requestEnded || this.stream.endAfterHeaders;
  }

  private readonly endStream = (): void => {
    if (!this.stream.destroyed && !this.stream.writableEnded) this.stream.end();
  };

  private finishResponse(end = true): void {
    if (this.state === Resp.Done) return;
    this.state = Resp.Done;
    this.responseDone = true;
    if (end && !this.stream.destroyed) this.stream.end();
    this.stopRequestBody();
    this.maybeRelease();
  }

  /**
   * Answered before the request body ended (an error, an early 413): ask the
   * client to stop sending (RST_STREAM NO_ERROR after the response, RFC 9113
   * §8.1) instead of holding a half-open stream that may be paused.
   */
  private stopRequestBody(): void {
    if (!this.requestComplete && !this.stream.closed) this.stream.close(NGHTTP2_NO_ERROR);
  }

  private reset(code: number): void {
    if (this.responseDone) return;
    this.resetByUs = true;
    this.responseDone = true;
    this.state = Resp.Done;
    if (!this.stream.destroyed && !this.stream.closed) this.stream.close(code);
  }

  private safely(f: () => void): void {
    try {
      if (!this.stream.destroyed && !this.stream.closed) f();
    } catch {
      // e.g. a header value node:http2 refuses: cut this stream only.
      this.reset(NGHTTP2_INTERNAL_ERROR);
    }
  }

  /** One ClientConn per stream: gone once both directions are finished. */
  private maybeRelease(): void {
    if (this.responseDone && this.requestEnded && this.conn && !this.destroyed) {
      const c = this.conn;
      this.conn = null;
      // After the exchange has written its record (it ends the socket after that).
      if (releasing.push(c) === 1) setImmediate(releaseAll);
    }
  }
}

/** Fields never sent as HTTP/2 trailers: framing, routing, connection-specific (RFC 9110 §6.5.1). */
const NOT_TRAILERS = new Set([...CONNECTION_SPECIFIC, 'te', 'trailer', 'content-length', 'content-type', 'content-encoding', 'host', 'set-cookie']);
const TOKEN = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/;

/** One trailer line of a chunked HTTP/1.1 body into an HTTP/2 trailer block; malformed or forbidden fields are dropped. */
function addTrailer(out: http2.OutgoingHttpHeaders, line: string): void {
  const colon = line.indexOf(':');
  if (colon <= 0) return;
  const name = line.slice(0, colon).toLowerCase();
  if (!TOKEN.test(name) || NOT_TRAILERS.has(name)) return;
  const value = line.slice(colon + 1).trim();
  const prev = out[name];
  if (prev === undefined) out[name] = value;
  else if (Array.isArray(prev)) prev.push(value);
  else out[name] = [String(prev), value];
}

/** HTTP/1.1 response head (parsed from `buf`) → HTTP/2 header block: lower-case, no connection-specific fields. */
function h2Headers(resp: ResponseHead, buf: Buffer): http2.OutgoingHttpHeaders {
  const out: http2.OutgoingHttpHeaders = { ':status': resp.status };
  const fields = resp.fields;
  for (let f = 0; f < fields.length; f += FIELD_STRIDE) {
    const n = fieldName(fields, f, buf);
    if (CONNECTION_SPECIFIC.has(n) || isHopByHop(n, resp.connectionTokens)) continue;
    if (n === 'content-length' && resp.bodyLength === -2) continue;
    const value = fieldValue(fields, f, buf);
    const prev = out[n];
    if (prev === undefined) out[n] = value;
    else if (Array.isArray(prev)) prev.push(value);
    else out[n] = [String(prev), value];
  }
  return out;
}
