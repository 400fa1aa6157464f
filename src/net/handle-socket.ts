/**
 * A client connection's socket driven straight on its stream handle (an
 * accepted TCP handle, or a lean TLS connection's TLSWrap, ../tls/lean.ts),
 * with no node:net Socket:
 * the subset of net.Socket that ClientConn and its exchanges use (reads into
 * a shared buffer, write/end/destroy, pause/resume, 'end', 'error', 'close'
 * and 'drain'), on the handle's own calls as node:net makes them
 * (lib/internal/stream_base_commons.js, lib/net.js).
 *
 * Why: a net.Socket is a Duplex stream, whose Readable and Writable state,
 * per-write bookkeeping, `nextTick`s and end-of-stream protocol are paid
 * once more on every connection; on an HTTPS connection that carries one
 * request they were a tenth of its CPU (BENCHMARKS.md, TLS handshakes).
 *
 * What node:net's Writable did is done here: a TLSWrap takes one write at a
 * time (a second aborts the process), so writes made while one is in flight
 * are queued and leave together (writev) when it completes; `write` returns
 * false once 16 KiB are in flight or queued, and 'drain' follows when all of
 * it is written; `end` shuts the handle down (TLS close_notify, then FIN)
 * after the last write; a failed write or read destroys the socket with the
 * errno error. Like a net.Socket with allowHalfOpen, the client's end is an
 * 'end' event and writing goes on; once both directions are done the socket
 * is destroyed.
 *
 * The binding is `stream_wrap` from ./bindings.ts; `handleSocketsSupported`
 * says whether this process has it.
 */
import { EventEmitter } from 'node:events';
import { errnoError, streamWrap } from './bindings.js';

interface Req {
  handle: StreamHandle;
  oncomplete: (this: Req, status: number) => void;
  owner: HandleSocket | null;
  chunks: Buffer[] | null;
  callbacks: (() => void)[] | null;
}

interface StreamHandle {
  onread: (this: StreamHandle) => void;
  socket?: HandleSocket;
  reading: boolean;
  readStart(): number;
  readStop(): number;
  useUserBuffer(buf: Uint8Array): void;
  writeBuffer(req: Req, buf: Buffer): number;
  writev(req: Req, chunks: Buffer[], allBuffers: true): number;
  shutdown(req: Req): number;
  close(cb: () => void): void;
  getpeername(out: { address?: string; port?: number }): number;
}

/** Whether this process can drive sockets on their handles. */
export const handleSocketsSupported = streamWrap !== null;

/** libuv's UV_EOF, the same on every platform. */
const UV_EOF = -4095;
const UV_ENOTCONN = -107;
/** node:net's default writableHighWaterMark. */
const HIGH_WATER_MARK = 16 * 1024;

function noop(): void {}

function onHandleRead(this: StreamHandle): void {
  this.socket?.onHandleRead(streamWrap!.streamBaseState[streamWrap!.kReadBytesOrError]!);
}

function onWriteComplete(this: Req, status: number): void {
  const s = this.owner;
  this.owner = null;
  s?.afterWrite(this, status);
}

function onShutdownComplete(this: Req, status: number): void {
  const s = this.owner;
  this.owner = null;
  s?.afterShutdown(status);
}

export class HandleSocket extends EventEmitter {
  destroyed = false;
  /** The `onread` target: `n` bytes at the start of the shared read buffer, valid during the call only. */
  private readonly onBytes: (n: number) => void;
  private paused = false;
  private readEnded = false;
  private ending = false;
  private shutdownDone = false;
  private inFlight: Req | null = null;
  private inFlightBytes = 0;
  private queue: Buffer[] = [];
  private queueCallbacks: (() => void)[] = [];
  private queuedBytes = 0;
  private needDrain = false;
  private peer: { address?: string; port?: number } | null = null;

  /** `buffer`: where every read lands (node:net's `onread.buffer`). Starts reading unless the handle does already. */
  constructor(
    private readonly handle: StreamHandle,
    buffer: Uint8Array,
    onBytes: (n: number) => void,
  ) {
    super();
    if (streamWrap === null) throw new Error('HandleSocket: this Node.js has no stream_wrap binding of the expected shape');
    this.onBytes = onBytes;
    handle.socket = this;
    handle.useUserBuffer(buffer);
    handle.onread = onHandleRead;
    if (!handle.reading) {
      handle.reading = true;
      const err = handle.readStart();
      if (err !== 0) process.nextTick(() => this.destroy(errnoError(err, 'read')));
    }
  }

  get remoteAddress(): string | undefined {
    return this.peerInfo().address;
  }

  get remotePort(): number | undefined {
    return this.peerInfo().port;
  }

  private peerInfo(): { address?: string; port?: number } {
    if (this.peer === null) {
      const out: { address?: string; port?: number } = {};
      if (!this.destroyed) this.handle.getpeername(out);
      this.peer = out;
    }
    return this.peer;
  }

  /** Called by the handle's `onread`. */
  onHandleRead(n: number): void {
    if (n > 0) {
      if (!this.destroyed) this.onBytes(n);
      return;
    }
    if (n === 0 || this.destroyed) return;
    if (n !== UV_EOF) {
      this.destroy(errnoError(n, 'read'));
      return;
    }
    this.readEnded = true;
    this.handle.reading = false;
    this.emit('end');
    if (this.shutdownDone) this.destroy();
  }

  write(data: Buffer, cb?: () => void): boolean {
    if (this.destroyed || this.ending) {
      if (cb) process.nextTick(cb);
      return false;
    }
    if (this.inFlight !== null) {
      this.queue.push(data);
      if (cb) this.queueCallbacks.push(cb);
      this.queuedBytes += data.length;
    } else {
      this.dispatch([data], cb ? [cb] : null);
    }
    if (this.inFlightBytes + this.queuedBytes >= HIGH_WATER_MARK) {
      this.needDrain = true;
      return false;
    }
    return true;
  }

  private dispatch(chunks: Buffer[], callbacks: (() => void)[] | null): void {
    const b = streamWrap!;
    const req = new b.WriteWrap() as Req;
    req.handle = this.handle;
    req.oncomplete = onWriteComplete;
    req.owner = this;
    req.chunks = chunks; // kept until written
    req.callbacks = callbacks;
    const err = chunks.length === 1 ? this.handle.writeBuffer(req, chunks[0]!) : this.handle.writev(req, chunks, true);
    if (err !== 0) {
      req.owner = null;
      this.runCallbacks(callbacks);
      this.destroy(errnoError(err, 'write'));
      return;
    }
    if (b.streamBaseState[b.kLastWriteWasAsync] === 0) {
      // Written at once (a TCP handle; a TLSWrap always completes later): no completion will come.
      req.owner = null;
      this.runCallbacks(callbacks);
      return;
    }
    this.inFlight = req;
    let bytes = 0;
    for (const c of chunks) bytes += c.length;
    this.inFlightBytes = bytes;
  }

  /** A write's completion (or its cancellation when the handle closes). */
  afterWrite(req: Req, status: number): void {
    if (this.inFlight === req) {
      this.inFlight = null;
      this.inFlightBytes = 0;
    }
    const callbacks = req.callbacks;
    req.chunks = null;
    req.callbacks = null;
    this.runCallbacks(callbacks);
    if (this.destroyed) return;
    if (status < 0) {
      this.destroy(errnoError(status, 'write'));
      return;
    }
    if (this.queue.length > 0) {
      const chunks = this.queue;
      const cbs = this.queueCallbacks;
      this.queue = [];
      this.queueCallbacks = [];
      this.queuedBytes = 0;
      this.dispatch(chunks, cbs.length > 0 ? cbs : null);
      if (this.inFlight !== null || this.destroyed) return;
    }
    if (this.needDrain) {
      this.needDrain = false;
      this.emit('drain');
    }
    if (this.ending && !this.destroyed && this.inFlight === null) this.shutdown();
  }

  private runCallbacks(callbacks: (() => void)[] | null): void {
    if (callbacks !== null) for (const cb of callbacks) cb();
  }

  end(data?: Buffer): this {
    if (this.ending || this.destroyed) return this;
    if (data !== undefined && data.length > 0) this.write(data);
    this.ending = true;
    if (this.inFlight === null && !this.destroyed) this.shutdown();
    return this;
  }

  private shutdown(): void {
    const req = new streamWrap!.ShutdownWrap() as Req;
    req.handle = this.handle;
    req.oncomplete = onShutdownComplete;
    req.owner = this;
    const err = this.handle.shutdown(req);
    if (err === 1 || err === UV_ENOTCONN) {
      // Done at once, or the peer is gone (node:net's _final treats both as done).
      req.owner = null;
      this.afterShutdown(0);
    } else if (err !== 0) {
      req.owner = null;
      this.destroy(errnoError(err, 'shutdown'));
    }
  }

  afterShutdown(status: number): void {
    if (this.destroyed) return;
    this.shutdownDone = true;
    if (status < 0 && status !== UV_ENOTCONN) {
      this.destroy(errnoError(status, 'shutdown'));
      return;
    }
    if (this.readEnded) this.destroy();
  }

  destroy(err?: Error): this {
    if (this.destroyed) return this;
    this.destroyed = true;
    this.ending = true;
    this.queue = [];
    const callbacks = this.queueCallbacks;
    this.queueCallbacks = [];
    this.queuedBytes = 0;
    const h = this.handle;
    h.onread = noop;
    h.close(() => {
      // Pending writes are cancelled with the handle (their completions run first, with an error).
      this.runCallbacks(callbacks);
      if (err !== undefined) this.emit('error', err);
      this.emit('close', err !== undefined);
    });
    return this;
  }

  pause(): this {
    if (!this.paused) {
      this.paused = true;
      if (!this.destroyed && this.handle.reading) {
        this.handle.reading = false;
        this.handle.readStop();
      }
    }
    return this;
  }

  resume(): this {
    if (this.paused) {
      this.paused = false;
      if (!this.destroyed && !this.readEnded && !this.handle.reading) {
        this.handle.reading = true;
        const err = this.handle.readStart();
        if (err !== 0) this.destroy(errnoError(err, 'read'));
      }
    }
    return this;
  }

  isPaused(): boolean {
    return this.paused;
  }

  setNoDelay(): this {
    return this;
  }

  setKeepAlive(): this {
    return this;
  }

  cork(): void {}

  uncork(): void {}
}
