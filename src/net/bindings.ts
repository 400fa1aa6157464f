/**
 * Node.js's internal stream bindings, loaded once for the modules that drive
 * sockets below node:net: `stream_wrap` (write and shutdown requests, the
 * shared state a native read or write reports through) for
 * ./direct-write.ts and ./handle-socket.ts, and `tls_wrap` (a TLSWrap around
 * an accepted TCP handle) for ../tls/lean.ts.
 *
 * These are not a public API. They are used only on the Node.js majors the
 * tests run on (20, 22, 24), and only when each binding has the shape used
 * here; anywhere else the value is null and the callers take node:net's and
 * node:tls's own paths. Each caller adds its own switch (an environment
 * variable) on top.
 */
import { getSystemErrorName } from 'node:util';

/** The Node.js majors whose internal bindings the tests cover. */
const SUPPORTED_MAJORS = new Set([20, 22, 24]);

export interface StreamWrapBinding {
  /** A write request: `handle.writeBuffer(req, buf)`, `handle.writev(req, chunks, true)`; the caller sets its fields. */
  WriteWrap: new () => unknown;
  /** A shutdown request: `handle.shutdown(req)`. */
  ShutdownWrap: new () => unknown;
  /** Where a native read or write reports: bytes read or an error, whether the last write went async. */
  streamBaseState: Int32Array;
  kReadBytesOrError: number;
  kLastWriteWasAsync: number;
}

export interface TlsWrapBinding {
  /** A TLSWrap over `handle`, with `context` (a SecureContext's native context). */
  wrap(handle: unknown, context: unknown, isServer: boolean, hasActiveWrite: boolean): unknown;
}

const supported = SUPPORTED_MAJORS.has(Number(process.versions.node.split('.')[0]));

function load(name: string): Record<string, unknown> | null {
  if (!supported) return null;
  try {
    // process.binding is documentation-deprecated (DEP0111) and prints nothing; 'stream_wrap' and 'tls_wrap' are on its allowlist.
    return (process as unknown as { binding(name: string): Record<string, unknown> }).binding(name);
  } catch {
    return null;
  }
}

function loadStreamWrap(): StreamWrapBinding | null {
  const b = load('stream_wrap');
  if (b === null) return null;
  const ok =
    typeof b.WriteWrap === 'function' &&
    typeof b.ShutdownWrap === 'function' &&
    b.streamBaseState instanceof Int32Array &&
    typeof b.kReadBytesOrError === 'number' &&
    typeof b.kLastWriteWasAsync === 'number';
  return ok ? (b as unknown as StreamWrapBinding) : null;
}

function loadTlsWrap(): TlsWrapBinding | null {
  const b = load('tls_wrap');
  return b !== null && typeof b.wrap === 'function' ? (b as unknown as TlsWrapBinding) : null;
}

/** `stream_wrap`, or null where this Node.js has no binding of the expected shape. */
export const streamWrap = loadStreamWrap();

/** `tls_wrap`, or null likewise. */
export const tlsWrap = loadTlsWrap();

/** The error node:net makes of a libuv status: `write EPIPE`, with code, errno and syscall. */
export function errnoError(status: number, syscall: string): NodeJS.ErrnoException {
  let code: string;
  try {
    code = getSystemErrorName(status);
  } catch {
    code = `E${-status}`;
  }
  const err: NodeJS.ErrnoException = new Error(`${syscall} ${code}`);
  err.code = code;
  err.errno = status;
  err.syscall = syscall;
  return err;
}
