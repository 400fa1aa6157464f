/**
 * The lean TLS accept path of HTTPS listeners: each accepted TCP handle goes
 * straight into Node's TLSWrap (the C++ object under every tls.TLSSocket,
 * from the `tls_wrap` binding). When the handshake is done, an HTTP/1.1
 * connection is driven on the TLSWrap itself (../net/handle-socket.ts, for
 * ../web/proxy.ts) and an HTTP/2 one gets a net.Socket over it (../web/h2.ts).
 *
 * Why: tls.Server makes two Duplex streams per connection (the accepted
 * net.Socket, then the TLSSocket around its handle), each with its state
 * objects, listeners and events, before a byte of HTTP is read. On a
 * connection that carries one request that machinery costs a Node.js
 * process more CPU than the RSA signature: in interleaved lab rounds a bare
 * node:tls server answering one request per connection spent 0.69–1.17 ms
 * of CPU per connection, the same server on TLSWrap alone 0.54–0.61 ms and
 * on TLSWrap plus one net.Socket 0.60–0.68 ms, where nginx spent 0.54–0.73
 * ms (BENCHMARKS.md, TLS handshakes).
 *
 * What tls.Server does per connection (lib/_tls_wrap.js) is done here, the
 * same way: the server's default context (`_sharedCreds`, which holds the
 * session ticket keys) and its ALPN list; the certificate callback for SNI
 * (the listener's CertStore) and OCSP stapling; TLS errors before the
 * handshake ends reported as the 'tlsClientError' event would be; the
 * handshake counter that refuses renegotiation storms; `destroySSL` once
 * the TCP handle is closed. The listener's connection count includes these
 * connections, so server.close() waits for them as for any other.
 *
 * Guarded: only where ../net/bindings.ts has `tls_wrap` and `stream_wrap`
 * (the Node.js majors the tests run on), only when the server has the shape
 * used here; PERIMETER_LEAN_TLS=0 turns it off. Everywhere else, and for
 * connections the listener is not ready for (see Runtime.bind), node:tls.
 */
import type net from 'node:net';
import tls from 'node:tls';
import { streamWrap, tlsWrap } from '../net/bindings.js';

interface TcpHandle {
  setNoDelay(on: boolean): number;
  close(cb?: () => void): void;
  onread: unknown;
  lean?: LeanConn;
}

interface CertCbInfo {
  servername?: string;
  OCSPRequest?: boolean;
}

interface NativeContext {
  getCertificate(): Buffer | null;
  getIssuer(): Buffer | null;
}

interface TlsWrap {
  _parent: TcpHandle;
  _secureContext: unknown;
  sni_context?: NativeContext;
  conn: LeanConn;
  reading: boolean;
  onhandshakestart: (this: TlsWrap, now: number) => void;
  onhandshakedone: (this: TlsWrap) => void;
  onerror: (this: TlsWrap, err: Error & { code?: string }) => void;
  oncertcb: (this: TlsWrap, info: CertCbInfo) => void;
  onread: (this: TlsWrap) => void;
  onkeylog: () => void;
  close: (this: TlsWrap, cb?: () => void) => void;
  setALPNProtocols(protocols: Buffer): void;
  enableCertCb(): void;
  readStart(): number;
  certCbDone(): void;
  setOCSPResponse(response: Buffer): void;
  getALPNNegotiatedProtocol(): string | false;
  getServername(): string | false;
  destroySSL(): void;
}


interface ServerInternals {
  _handle: { onconnection: (this: unknown, err: number, handle: TcpHandle | undefined) => void } | null;
  _connections: number;
  _emitCloseIfDrained(): void;
}

interface TlsServerInternals {
  _sharedCreds?: { context?: NativeContext };
  ALPNProtocols?: Buffer;
}

/** Whether HTTPS listeners in this process take the lean path: it has the bindings, and PERIMETER_LEAN_TLS is not 0 (tests, the bench's notes). */
export const leanTlsEnabled = process.env.PERIMETER_LEAN_TLS !== '0' && tlsWrap !== null && streamWrap !== null;

/** Connections of this process on the lean path: accepted, handshake done, failed before it (for tests). */
export const leanTlsCounts = { accepted: 0, secured: 0, failed: 0 };

/** A connection the listener's handshake sweep may cut (see Runtime.bind). */
export interface Handshaking {
  readonly destroyed: boolean;
  destroy(): void;
}

export interface LeanTlsOptions {
  /** The listening server: its accepted handles come here, and its connection count includes them. */
  readonly server: net.Server;
  /** The tls.Server whose default context (certificate, ticket keys) and ALPN list every connection starts with. */
  readonly tlsServer: tls.Server;
  /** SNI: the context for a name (the listener's CertStore). */
  readonly sni: (servername: string, cb: (err: Error | null, ctx?: tls.SecureContext) => void) => void;
  /** OCSP stapling: the staple for a certificate, at once ('OCSPRequest' of tls.Server). */
  readonly ocsp: (cert: Buffer, issuer: Buffer | null, cb: (err: Error | null, resp?: Buffer | null) => void) => void;
  /** Whether this connection takes the lean path; false leaves it to node:net and node:tls. */
  readonly take: () => boolean;
  /** Connections in their handshake, for the listener's sweep and drain. */
  readonly handshaking: Map<Handshaking, number>;
  /**
   * The handshake is done: a socket over `handle` (the TLSWrap), made for
   * the path that serves the ALPN result (../web/proxy.ts handleSocketOn for
   * HTTP/1.1, a net.Socket for HTTP/2), which `onSecure` then hands it to.
   */
  readonly socket: (handle: unknown, alpn: string | false) => net.Socket;
  readonly onSecure: (socket: net.Socket, alpn: string | false) => void;
  /** A connection that failed or went away before its handshake was done ('tlsClientError'). */
  readonly onClientError: (code: string) => void;
}

/** After the first handshake, this many more within the window cut the connection (tls.CLIENT_RENEG_LIMIT). */
const RENEG_LIMIT = tls.CLIENT_RENEG_LIMIT;
const RENEG_WINDOW_MS = tls.CLIENT_RENEG_WINDOW * 1000;

/** One accepted connection on the lean path. */
class LeanConn implements Handshaking {
  destroyed = false;
  /** The socket over the TLSWrap, once the handshake is done. */
  socket: net.Socket | null = null;
  private handshakes = 0;
  private lastHandshake = 0;
  private counted = true;

  constructor(
    readonly o: LeanTlsOptions,
    readonly tcp: TcpHandle,
    readonly ssl: TlsWrap,
  ) {}

  handshakeStart(now: number): void {
    const last = this.lastHandshake;
    this.lastHandshake = now;
    if (last === 0) return;
    this.handshakes = now - last >= RENEG_WINDOW_MS ? 1 : this.handshakes + 1;
    if (this.handshakes > RENEG_LIMIT) this.fail('ERR_TLS_SESSION_ATTACK');
  }

  /** Before the handshake is done: report (as 'tlsClientError') and close. */
  fail(code: string): void {
    if (this.destroyed) return;
    if (this.socket !== null) {
      this.socket.destroy();
      return;
    }
    leanTlsCounts.failed++;
    this.o.onClientError(code);
    this.destroy();
  }

  /** Close a connection whose handshake is not done (a done one closes through its socket). */
  destroy(): void {
    if (this.destroyed) return;
    if (this.socket !== null) {
      this.socket.destroy();
      return;
    }
    this.destroyed = true;
    this.o.handshaking.delete(this);
    this.ssl.close();
  }

  certificate(info: CertCbInfo): void {
    const servername = info.servername;
    if (!servername) {
      this.stapleOcsp(info);
      return;
    }
    let once = false;
    try {
      this.o.sni(servername, (err, ctx) => {
        if (once || this.destroyed) return;
        once = true;
        if (err) {
          this.fail('ERR_TLS_SNI');
          return;
        }
        if (ctx) this.ssl.sni_context = (ctx as unknown as { context: NativeContext }).context;
        this.stapleOcsp(info);
      });
    } catch {
      this.fail('ERR_TLS_SNI');
    }
  }

  private stapleOcsp(info: CertCbInfo): void {
    const ctx = info.OCSPRequest ? (this.ssl.sni_context ?? (this.o.tlsServer as unknown as TlsServerInternals)._sharedCreds?.context) : undefined;
    const cert = ctx?.getCertificate() ?? null;
    if (ctx === undefined || cert === null) {
      this.certDone();
      return;
    }
    let once = false;
    try {
      this.o.ocsp(cert, ctx.getIssuer(), (err, response) => {
        if (once || this.destroyed) return;
        once = true;
        if (err) {
          this.fail('ERR_TLS_OCSP');
          return;
        }
        if (response) this.ssl.setOCSPResponse(response);
        this.certDone();
      });
    } catch {
      this.fail('ERR_TLS_OCSP');
    }
  }

  private certDone(): void {
    try {
      this.ssl.certCbDone();
    } catch {
      this.fail('ERR_TLS_CERT_CALLBACK');
    }
  }

  /** Runs inside the TLSWrap's read, as tls.Server's 'secureConnection' does. */
  secure(): void {
    if (this.destroyed || this.socket !== null) return;
    this.o.handshaking.delete(this);
    leanTlsCounts.secured++;
    const alpn = this.ssl.getALPNNegotiatedProtocol();
    // A socket over the TLSWrap (as tls.TLSSocket is a net.Socket over one): it takes over `onread`.
    // What a TLSSocket says of itself, for node:http2, direct-write.ts and the record.
    const socket = this.o.socket(this.ssl, alpn);
    this.socket = socket;
    const s = socket as net.Socket & { encrypted: boolean; alpnProtocol: string | false; servername: string | false };
    s.encrypted = true;
    s.alpnProtocol = alpn;
    s.servername = this.ssl.getServername();
    this.o.onSecure(socket, alpn);
  }

  /** The TCP handle is closed: release the TLS state and the server's count. */
  closed(): void {
    this.destroyed = true;
    if (!this.counted) return;
    this.counted = false;
    const server = this.o.server as unknown as ServerInternals;
    server._connections--;
    server._emitCloseIfDrained();
  }
}

function noop(): void {}

function onHandshakeStart(this: TlsWrap, now: number): void {
  this.conn.handshakeStart(now);
}

function onHandshakeDone(this: TlsWrap): void {
  try {
    this.conn.secure();
  } catch {
    // A bug must cost one connection, never the process (this runs inside the TLSWrap's read).
    this.conn.fail('ERR_INTERNAL');
  }
}

function onCertCb(this: TlsWrap, info: CertCbInfo): void {
  this.conn.certificate(info);
}

function onTlsError(this: TlsWrap, err: Error & { code?: string }): void {
  const c = this.conn;
  if (c.socket !== null) c.socket.destroy(err);
  else c.fail(err.code ?? 'ERR_SSL');
}

/** Reads before the handshake is done: only the end of the connection (data comes after it). */
function onEarlyRead(this: TlsWrap): void {
  if (streamWrap!.streamBaseState[streamWrap!.kReadBytesOrError]! < 0) this.conn.fail('ECONNRESET');
}

/** Closes the TCP handle, then releases the TLS state (as TLSWrap.prototype.close of lib/_tls_wrap.js). */
function closeTlsWrap(this: TlsWrap, cb?: () => void): void {
  const tcp = this._parent;
  const conn = this.conn;
  tcp.close(() => {
    this.destroySSL();
    conn.closed();
    cb?.();
  });
}

/**
 * Take `server`'s accepted connections onto the lean path (those `o.take()`
 * accepts). Call once the server listens. False when this process cannot
 * (the bindings or the server lack the shape used here): node:tls serves
 * every connection then.
 */
export function leanTlsAccept(o: LeanTlsOptions): boolean {
  const server = o.server as unknown as ServerInternals;
  const tlsServer = o.tlsServer as unknown as TlsServerInternals;
  const alpn = tlsServer.ALPNProtocols;
  const listen = server._handle;
  if (!leanTlsEnabled || listen === null || typeof listen.onconnection !== 'function' || typeof server._connections !== 'number' || typeof server._emitCloseIfDrained !== 'function' || tlsServer._sharedCreds?.context === undefined || !Buffer.isBuffer(alpn)) {
    return false;
  }
  const original = listen.onconnection;
  listen.onconnection = function onLeanConnection(this: unknown, err: number, tcp: TcpHandle | undefined): void {
    if (err !== 0 || tcp === undefined || !o.take()) {
      original.call(this, err, tcp);
      return;
    }
    // The server's default context, as tls.Server takes it per connection (setSecureContext replaces it).
    const creds = tlsServer._sharedCreds!;
    server._connections++;
    leanTlsCounts.accepted++;
    tcp.setNoDelay(true);
    let ssl: TlsWrap;
    try {
      ssl = tlsWrap!.wrap(tcp, creds.context!, true, false) as TlsWrap;
    } catch {
      tcp.close(() => {
        server._connections--;
        server._emitCloseIfDrained();
      });
      return;
    }
    const conn = new LeanConn(o, tcp, ssl);
    // The TCP handle lives while it is open; it keeps the TLSWrap (which its reads go through) alive.
    tcp.lean = conn;
    tcp.onread = noop;
    ssl._parent = tcp;
    ssl._secureContext = creds;
    ssl.conn = conn;
    ssl.close = closeTlsWrap;
    ssl.onhandshakestart = onHandshakeStart;
    ssl.onhandshakedone = onHandshakeDone;
    ssl.oncertcb = onCertCb;
    ssl.onerror = onTlsError;
    ssl.onkeylog = noop;
    ssl.onread = onEarlyRead;
    ssl.setALPNProtocols(alpn);
    ssl.enableCertCb();
    o.handshaking.set(conn, Date.now());
    if (ssl.readStart() !== 0) conn.fail('ECONNRESET');
    // node:net's flag (tls.TLSSocket keeps it too): the socket made after the handshake sees the
    // handle reading and does not start it again (EALREADY).
    else ssl.reading = true;
  };
  return true;
}
