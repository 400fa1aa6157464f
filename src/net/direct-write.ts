/**
 * Writes that go straight to a TCP socket's handle when node:net's Writable
 * has nothing queued, instead of through the Writable.
 *
 * Why: a small proxied request costs two writes, and each `socket.write()`
 * runs the Writable's bookkeeping (length and state checks, a WriteWrap, an
 * `afterWriteTick` object and a `process.nextTick` per write) before the
 * same `writeBuffer` call on the handle that this module makes. Measured in
 * interleaved lab rounds (BENCHMARKS.md): about 2 µs of the worker's ~16 µs
 * of user time per small request, 5–8 % more requests per second.
 *
 * How: `writeBuffer(req, buffer)` on the socket's handle with a WriteWrap
 * from node's `stream_wrap` binding, as node:net does (lib/internal/
 * stream_base_commons.js `writeGeneric`). libuv keeps one ordered write queue
 * per handle, so direct and Writable writes never reorder, and a shutdown
 * (`socket.end()`) is queued behind pending writes. What the Writable would
 * have done is done here: a write the kernel did not take at once is pending
 * in libuv; the caller gets `false` and the socket emits 'drain' when every
 * pending direct write is done; a failed write destroys the socket with the
 * errno error, as node:net does.
 *
 * Guarded: only plain `net.Socket`s over TCP (not TLS, not HTTP/2 stream sockets),
 * only where ./bindings.ts has `stream_wrap` (the Node.js majors the tests
 * run on, the binding's expected shape); everywhere else `socket.write()`.
 */
import net from 'node:net';
import { errnoError, streamWrap } from './bindings.js';

interface WriteReq {
  handle: unknown;
  oncomplete: (this: WriteReq, status: number) => void;
  async: boolean;
  bytes: number;
  buffer: Buffer | null;
  socket: net.Socket | null;
  done: (() => void) | undefined;
}

interface StreamHandle {
  writeBuffer(req: WriteReq, data: Buffer): number;
}

/** Direct writes pending in libuv, per socket (absent: none). */
const pending = new WeakMap<net.Socket, number>();

const binding = process.env.PERIMETER_DIRECT_WRITE === '0' ? null : streamWrap;

/** Whether writes go direct in this process (tests, the bench's notes). */
export const directWritesEnabled = binding !== null;

function onDirectWriteComplete(this: WriteReq, status: number): void {
  const socket = this.socket!;
  const done = this.done;
  this.buffer = null;
  this.socket = null;
  this.done = undefined;
  done?.();
  const n = (pending.get(socket) ?? 1) - 1;
  if (n > 0) pending.set(socket, n);
  else pending.delete(socket);
  if (socket.destroyed) return;
  if (status < 0) {
    socket.destroy(errnoError(status, 'write'));
    return;
  }
  if (n === 0) socket.emit('drain');
}

/**
 * Write `buf` to `socket`. Returns what `socket.write()` returns: true when
 * the caller may write more at once, false when it should wait for 'drain'.
 * `done` runs once `buf` is no longer needed (written, or the socket gone).
 */
export function writeDirect(socket: net.Socket, buf: Buffer, done?: () => void): boolean {
  const s = socket as net.Socket & { _handle: StreamHandle | null; _writableState: { length: number; corked: number; ending: boolean } };
  const handle = s._handle;
  // `encrypted`: a lean TLS socket (../tls/lean.ts) is a net.Socket over a TLSWrap, whose writes always complete later.
  if (binding === null || handle == null || socket.constructor !== net.Socket || (socket as { encrypted?: boolean }).encrypted === true || socket.destroyed || socket.connecting) {
    return done === undefined ? socket.write(buf) : socket.write(buf, () => done());
  }
  const ws = s._writableState;
  if (ws.length !== 0 || ws.corked !== 0 || ws.ending) return done === undefined ? socket.write(buf) : socket.write(buf, () => done());
  const req = new binding.WriteWrap() as WriteReq;
  req.handle = handle;
  req.oncomplete = onDirectWriteComplete;
  req.async = false;
  req.bytes = 0;
  req.buffer = null;
  req.socket = null;
  req.done = undefined;
  const err = handle.writeBuffer(req, buf);
  if (err !== 0) {
    done?.();
    socket.destroy(errnoError(err, 'write'));
    return false;
  }
  if (binding.streamBaseState[binding.kLastWriteWasAsync] === 0 && (pending.get(socket) ?? 0) === 0) {
    done?.();
    return true;
  }
  // Pending in libuv (the kernel's buffer is full): keep the buffer and the socket until it completes.
  req.buffer = buf;
  req.socket = socket;
  req.done = done;
  req.async = true;
  pending.set(socket, (pending.get(socket) ?? 0) + 1);
  return false;
}
