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

export interface UpstreamOwner {
  onUpstreamConnect(conn: UpstreamConn): void;
  onUpstreamData(conn: UpstreamConn, chunk: Buffer): void;
  onUpstreamEnd(conn: UpstreamConn): void;
  onUpstreamError(conn: UpstreamConn, err: Error & { code?: string }): void;
  onUpstreamDrain(conn: UpstreamConn): void;
  /** An exception escaped one of the handlers above (a bug). */
  onUpstreamFault(conn: UpstreamConn, err: unknown): void;
}

export class UpstreamConn implements Expirable {
  readonly socket: net.Socket;
  readonly pool: BackendConnPool;
  owner: UpstreamOwner | null = null;
  connected = false;
  /** Requests served on this connection (0 while the first is in flight). */
  reuses = 0;
  deadline = 0;
  closed = false;

  constructor(pool: BackendConnPool, socket: net.Socket) {
    this.pool = pool;
    this.socket = socket;
    socket.setNoDelay(true);
    socket.on('connect', () => {
      this.connected = true;
      socket.setKeepAlive(true, 30_000);
      this.guard(() => this.owner?.onUpstreamConnect(this));
    });
    socket.on('data', (chunk: Buffer) => {
      if (this.owner) this.guard(() => this.owner!.onUpstreamData(this, chunk));
      else this.destroy(); // unsolicited bytes on an idle connection
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
  }

  /** Contain a bug in an owner's handler to this connection and its exchange. */
  private guard(fn: () => void): void {
    try {
      fn();
    } catch (err) {
      const o = this.owner;
      this.destroy();
      if (o) {
        try {
          o.onUpstreamFault(this, err);
        } catch {
          // nothing more to contain
        }
      }
    }
  }

  /** Idle expiry (from the sweeper). */
  expire(): void {
    this.destroy();
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
      sweeper.delete(conn);
      conn.owner = owner;
      conn.reuses++;
      return conn;
    }
    const socket = net.connect({ host: this.host, port: this.port });
    conn = new UpstreamConn(this, socket);
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
    sweeper.add(conn);
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
  }

  closeAll(): void {
    for (const p of this.pools.values()) p.closeIdle();
    this.pools.clear();
  }
}
