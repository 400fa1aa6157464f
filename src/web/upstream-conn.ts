/**
 * Upstream connections: one keep-alive pool per backend (host:port), kept
 * by the runtime across config reloads. An idle connection that receives
 * data or closes is dropped; idle connections expire after upstreamIdleMs.
 * Each socket has one set of listeners for its whole life; events go to the
 * current owner (the exchange using it), so taking a connection from the
 * pool costs no listener churn.
 */
import net from 'node:net';
import { coarseNow, sweeper, type Expirable } from '../core/clock.js';
import { H2BackendPool } from './h2-upstream.js';

/** The byte side of an upstream link: a TCP socket, or an HTTP/2 stream dressed as one (./h2-upstream.ts). */
export interface UpstreamSocketLike {
  write(chunk: Buffer): boolean;
  cork(): void;
  uncork(): void;
  pause(): unknown;
  resume(): unknown;
  isPaused(): boolean;
  end(): unknown;
}

/**
 * What an exchange uses to reach a backend: an HTTP/1.1 connection
 * (UpstreamConn) or one stream of a pooled h2c session (H2UpstreamStream),
 * which takes the same HTTP/1.1 bytes and gives an HTTP/1.1 response back.
 */
export interface UpstreamLink {
  readonly socket: UpstreamSocketLike;
  readonly connected: boolean;
  /** Earlier requests on this connection (h2c: on this session). */
  readonly reuses: number;
  readonly closed: boolean;
  /** The exchange completed cleanly: keep the connection for reuse. */
  release(): void;
  /** Cannot be reused: close it (h2c: cancel the stream). */
  destroy(): void;
}

/** An upstream error; `unprocessed`: the backend said it did not process the request (h2c REFUSED_STREAM, GOAWAY). */
export type UpstreamError = Error & { code?: string; unprocessed?: boolean };

export interface UpstreamOwner {
  onUpstreamConnect(conn: UpstreamLink): void;
  /** `chunk` is valid only during the call (HTTP/1.1 links read into one shared buffer): copy what you keep. */
  onUpstreamData(conn: UpstreamLink, chunk: Buffer): void;
  onUpstreamEnd(conn: UpstreamLink): void;
  onUpstreamError(conn: UpstreamLink, err: UpstreamError): void;
  onUpstreamDrain(conn: UpstreamLink): void;
  /** An exception escaped one of the handlers above (a bug). */
  onUpstreamFault(conn: UpstreamLink, err: unknown): void;
}

/**
 * Every upstream read lands in this one buffer (net.connect `onread`): no
 * allocation and no stream machinery per read. An owner gets a view that is
 * valid only during its onUpstreamData call and copies what it keeps.
 */
const READ_BUFFER = Buffer.allocUnsafe(64 * 1024);

export class UpstreamConn implements Expirable, UpstreamLink {
  readonly socket: net.Socket;
  readonly pool: BackendConnPool;
  owner: UpstreamOwner | null = null;
  connected = false;
  /** Requests served on this connection (0 while the first is in flight). */
  reuses = 0;
  deadline = 0;
  closed = false;

  constructor(pool: BackendConnPool) {
    this.pool = pool;
    const socket = (this.socket = net.connect({
      host: pool.host,
      port: pool.port,
      noDelay: true,
      onread: { buffer: READ_BUFFER, callback: (n: number, buf: Uint8Array) => this.onRead(n, buf) },
    }));
    socket.on('connect', () => {
      this.connected = true;
      socket.setKeepAlive(true, 30_000);
      this.guard(() => this.owner?.onUpstreamConnect(this));
    });
    socket.on('end', () => {
      const o = this.owner;
      if (o) this.guard(() => o.onUpstreamEnd(this));
      this.destroy();
    });
    socket.on('error', (err: Error) => {
      const o = this.owner;
      this.destroy();
      if (o) this.guard(() => o.onUpstreamError(this, err));
    });
    socket.on('close', () => {
      if (!this.closed) {
        this.closed = true;
        this.pool.forget(this);
        const o = this.owner;
        if (o) this.guard(() => o.onUpstreamEnd(this));
      }
    });
    socket.on('drain', () => this.guard(() => this.owner?.onUpstreamDrain(this)));
    // Tracked for its whole life; the deadline is set only while it is idle.
    sweeper.add(this);
  }

  /** Returns true: reading goes on (pause()/resume() are the flow control). */
  private onRead(n: number, buf: Uint8Array): boolean {
    const o = this.owner;
    if (o === null) {
      this.destroy(); // unsolicited bytes on an idle connection
      return true;
    }
    const chunk = Buffer.from(buf.buffer, buf.byteOffset, n);
    try {
      o.onUpstreamData(this, chunk);
    } catch (err) {
      this.fault(o, err);
    }
    return true;
  }

  /** Contain a bug in an owner's handler to this connection and its exchange. */
  private guard(fn: () => void): void {
    try {
      fn();
    } catch (err) {
      const o = this.owner;
      if (o) this.fault(o, err);
      else this.destroy();
    }
  }

  private fault(o: UpstreamOwner, err: unknown): void {
    this.destroy();
    try {
      o.onUpstreamFault(this, err);
    } catch {
      // nothing more to contain
    }
  }

  /** Idle expiry (from the sweeper). */
  expire(): void {
    this.destroy();
  }

  release(): void {
    this.pool.release(this);
  }

  destroy(): void {
    if (this.closed) return;
    this.closed = true;
    this.deadline = 0;
    sweeper.delete(this);
    this.pool.forget(this);
    this.socket.destroy();
  }
}

export class BackendConnPool {
  readonly host: string;
  readonly port: number;
  private readonly idle: UpstreamConn[] = [];
  /** Connections in existence (idle + busy). */
  open = 0;
  idleTimeoutMs: number;

  constructor(host: string, port: number, idleTimeoutMs: number) {
    this.host = host;
    this.port = port;
    this.idleTimeoutMs = idleTimeoutMs;
  }

  /** A pooled connection (most recently used first) or a new one. */
  take(owner: UpstreamOwner): UpstreamConn {
    let conn = this.idle.pop();
    while (conn && (conn.closed || conn.socket.destroyed)) conn = this.idle.pop();
    if (conn) {
      conn.deadline = 0;
      conn.owner = owner;
      conn.reuses++;
      return conn;
    }
    conn = new UpstreamConn(this);
    conn.owner = owner;
    this.open++;
    return conn;
  }

  /** Return a connection whose exchange completed cleanly. */
  release(conn: UpstreamConn): void {
    if (conn.closed || conn.socket.destroyed) return;
    conn.owner = null;
    if (conn.socket.isPaused()) conn.socket.resume();
    conn.deadline = coarseNow() + this.idleTimeoutMs;
    this.idle.push(conn);
  }

  forget(conn: UpstreamConn): void {
    const i = this.idle.indexOf(conn);
    if (i !== -1) this.idle.splice(i, 1);
    this.open--;
  }

  get idleCount(): number {
    return this.idle.length;
  }

  closeIdle(): void {
    for (const c of this.idle.splice(0)) c.destroy();
  }
}

/** All backend connection pools, by backend key; survives reloads. */
export class ConnPools {
  private readonly pools = new Map<string, BackendConnPool>();
  /** h2c session pools (services with `protocol: h2c`), by backend key. */
  private readonly h2pools = new Map<string, H2BackendPool>();

  h2(key: string, host: string, port: number, idleTimeoutMs: number): H2BackendPool {
    let p = this.h2pools.get(key);
    if (!p) {
      p = new H2BackendPool(host, port, idleTimeoutMs);
      this.h2pools.set(key, p);
    } else if (p.idleTimeoutMs !== idleTimeoutMs) {
      p.idleTimeoutMs = idleTimeoutMs;
    }
    return p;
  }

  get(key: string, host: string, port: number, idleTimeoutMs: number): BackendConnPool {
    let p = this.pools.get(key);
    if (!p) {
      p = new BackendConnPool(host, port, idleTimeoutMs);
      this.pools.set(key, p);
    } else if (p.idleTimeoutMs !== idleTimeoutMs) {
      p.idleTimeoutMs = idleTimeoutMs;
    }
    return p;
  }

  /** Drop pools of backends no longer in any service (their idle connections close). */
  retain(keys: ReadonlySet<string>): void {
    for (const [k, p] of this.pools) {
      if (!keys.has(k)) {
        p.closeIdle();
        if (p.open <= 0) this.pools.delete(k);
      }
    }
    for (const [k, p] of this.h2pools) {
      if (!keys.has(k)) {
        p.closeIdle();
        if (p.open <= 0) this.h2pools.delete(k);
      }
    }
  }

  closeAll(): void {
    for (const p of this.pools.values()) p.closeIdle();
    this.pools.clear();
    for (const p of this.h2pools.values()) p.closeAll();
    this.h2pools.clear();
  }
}
