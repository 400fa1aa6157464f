/**
 * Active health checks: one probe loop per backend, HTTP or TCP, with
 * interval, jitter and rise/fall thresholds.
 *
 * State machine (Backend.active), as documented in backend.ts:
 * - 'unchecked' (new backend, checks configured): routable. Its first check
 *   decides at once: a pass makes it 'healthy', a failure 'unhealthy'. This is
 *   HAProxy's start state ("just up": one failure takes it down), so a new
 *   member that is not serving yet leaves rotation after one interval instead
 *   of `fall` intervals, and a cold perimeter serves without waiting `rise`.
 * - 'healthy' → 'unhealthy' after `fall` consecutive failed checks.
 * - 'unhealthy' → 'healthy' after `rise` consecutive passed checks.
 * So a serving backend that breaks leaves within about fall × interval (plus
 * jitter and one check timeout), and comes back within rise × interval.
 *
 * Probes never throw: every outcome, including a bad path or an unknown
 * host, is a failed check with a reason an operator can read.
 */
import * as http from 'node:http';
import * as http2 from 'node:http2';
import * as net from 'node:net';
import type { HealthSpec } from '../config/types.js';
import type { Backend } from './backend.js';

export interface CheckResult {
  readonly ok: boolean;
  /** e.g. "HTTP 503 from /healthz", "connect ECONNREFUSED", "timeout after 2000 ms". */
  readonly reason: string;
}

/** Where to probe: a Backend satisfies this. */
export interface ProbeTarget {
  readonly host: string;
  readonly port: number;
  readonly key: string;
}

export function statusExpected(status: number, ranges: HealthSpec['expectStatus']): boolean {
  for (const [lo, hi] of ranges) if (status >= lo && status <= hi) return true;
  return false;
}

/** Run one check of `spec.kind` against `target`; resolves, never rejects. */
export function probe(target: ProbeTarget, spec: HealthSpec, signal?: AbortSignal): Promise<CheckResult> {
  switch (spec.kind) {
    case 'http':
      return spec.h2c ? h2cProbe(target, spec, signal) : httpProbe(target, spec, signal);
    case 'tcp':
      return tcpProbe(target, spec.timeoutMs, signal);
    default:
      return Promise.resolve({ ok: true, reason: 'no active check' });
  }
}

function errCode(err: unknown): string {
  if (err && typeof err === 'object') {
    const e = err as { code?: unknown; message?: unknown };
    if (typeof e.code === 'string') return e.code;
    if (typeof e.message === 'string') return e.message;
  }
  return String(err);
}

type Finish = (ok: boolean, reason: string) => void;

/**
 * One check's bookkeeping, shared by every probe: exactly one result, the
 * timeout, cancellation by `signal`. `start` begins the probe, reports
 * through `finish`, and returns what to tear down once there is a result.
 */
function timedCheck(timeoutMs: number, signal: AbortSignal | undefined, start: (finish: Finish) => (() => void) | undefined): Promise<CheckResult> {
  return new Promise<CheckResult>((resolve) => {
    let done = false;
    // Set once `start` returns; finish() may run before (synchronously, from start).
    const probe: { teardown?: () => void } = {};
    const finish: Finish = (ok, reason) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      signal?.removeEventListener('abort', onAbort);
      probe.teardown?.();
      resolve({ ok, reason });
    };
    const onAbort = (): void => finish(false, 'check cancelled');
    const timer = setTimeout(() => finish(false, `timeout after ${timeoutMs} ms`), timeoutMs);
    if (signal?.aborted) return onAbort();
    signal?.addEventListener('abort', onAbort, { once: true });
    probe.teardown = start(finish);
    // A probe that finished while starting is torn down now.
    if (done) probe.teardown?.();
  });
}

/**
 * GET spec.path with `Connection: close` on a fresh connection (agent:false,
 * so a check measures what a new proxied connection would see). The timeout
 * covers connect and the response head; the body is never read.
 */
export function httpProbe(target: ProbeTarget, spec: HealthSpec, signal?: AbortSignal): Promise<CheckResult> {
  return timedCheck(spec.timeoutMs, signal, (finish) => {
    let connected = false;
    let req: http.ClientRequest;
    try {
      req = http.request({
        host: target.host,
        port: target.port,
        method: 'GET',
        path: spec.path,
        agent: false,
        headers: {
          host: spec.host || target.key,
          'user-agent': 'perimeter-health',
          connection: 'close',
          accept: '*/*',
        },
      });
    } catch (err) {
      finish(false, `check not sent: ${errCode(err)}`);
      return undefined;
    }
    req.on('socket', (s) => s.once('connect', () => (connected = true)));
    req.on('response', (res) => {
      const status = res.statusCode ?? 0;
      res.destroy();
      finish(statusExpected(status, spec.expectStatus), `HTTP ${status} from ${spec.path}`);
    });
    req.on('error', (err) => {
      const code = errCode(err);
      if (!connected) return finish(false, `connect ${code}`);
      finish(false, code === 'ECONNRESET' ? 'connection closed before response' : `error ${code}`);
    });
    req.end();
    return () => req.destroy();
  });
}

/**
 * The HTTP check of an h2c service: GET spec.path as HTTP/2 with prior
 * knowledge on a fresh session, closed after the response head.
 */
export function h2cProbe(target: ProbeTarget, spec: HealthSpec, signal?: AbortSignal): Promise<CheckResult> {
  return timedCheck(spec.timeoutMs, signal, (finish) => {
    let connected = false;
    let session: http2.ClientHttp2Session | undefined;
    try {
      const host = target.host.includes(':') ? `[${target.host}]` : target.host;
      session = http2.connect(`http://${host}:${target.port}`, { settings: { enablePush: false } });
      session.on('connect', () => (connected = true));
      session.on('error', (err) => finish(false, connected ? `h2c error ${errCode(err)}` : `connect ${errCode(err)}`));
      session.on('close', () => finish(false, connected ? 'h2c session closed before response' : 'connect closed'));
      const req = session.request({ ':method': 'GET', ':path': spec.path, ':authority': spec.host || target.key, 'user-agent': 'perimeter-health', accept: '*/*' });
      req.on('error', (err) => finish(false, `h2c stream ${errCode(err)}`));
      req.on('response', (headers) => {
        const status = Number(headers[':status'] ?? 0);
        finish(statusExpected(status, spec.expectStatus), `HTTP/2 ${status} from ${spec.path}`);
      });
      req.on('close', () => finish(false, `h2c stream closed before response (code ${req.rstCode ?? '?'})`));
      req.end();
    } catch (err) {
      finish(false, `check not sent: ${errCode(err)}`);
    }
    return () => session?.destroy();
  });
}

/** Healthy when a TCP connection is established within `timeoutMs`. */
export function tcpProbe(target: ProbeTarget, timeoutMs: number, signal?: AbortSignal): Promise<CheckResult> {
  return timedCheck(timeoutMs, signal, (finish) => {
    let socket: net.Socket;
    try {
      socket = net.connect({ host: target.host, port: target.port });
    } catch (err) {
      finish(false, `connect ${errCode(err)}`);
      return undefined;
    }
    socket.once('connect', () => finish(true, 'TCP connect ok'));
    socket.on('error', (err) => finish(false, `connect ${errCode(err)}`));
    return () => socket.destroy();
  });
}

/**
 * Apply one check result to the backend's active state (see the state
 * machine above). Returns true when `backend.active` changed.
 */
export function recordCheck(backend: Backend, result: CheckResult, rise: number, fall: number): boolean {
  backend.lastCheckReason = result.reason;
  if (result.ok) {
    backend.consecutiveCheckOk++;
    backend.consecutiveCheckFail = 0;
    if (backend.active === 'unchecked' || (backend.active === 'unhealthy' && backend.consecutiveCheckOk >= rise)) {
      backend.active = 'healthy';
      return true;
    }
  } else {
    backend.consecutiveCheckFail++;
    backend.consecutiveCheckOk = 0;
    if (backend.active === 'unchecked' || (backend.active === 'healthy' && backend.consecutiveCheckFail >= fall)) {
      backend.active = 'unhealthy';
      return true;
    }
  }
  return false;
}

/** interval ± jitter × interval, uniformly; never below 1 ms. */
export function jitteredInterval(intervalMs: number, jitter: number, random: () => number = Math.random): number {
  return Math.max(1, intervalMs * (1 + jitter * (2 * random() - 1)));
}

/** Delay before a backend's first check: spread over up to one interval (at most 1 s) so many backends don't fire together. */
export function firstCheckDelay(intervalMs: number, random: () => number = Math.random): number {
  return random() * Math.min(intervalMs, 1000);
}

export function sameHealthSpec(a: HealthSpec, b: HealthSpec): boolean {
  if (
    a.kind !== b.kind ||
    a.path !== b.path ||
    a.intervalMs !== b.intervalMs ||
    a.timeoutMs !== b.timeoutMs ||
    a.jitter !== b.jitter ||
    a.rise !== b.rise ||
    a.fall !== b.fall ||
    a.host !== b.host ||
    a.h2c !== b.h2c ||
    a.expectStatus.length !== b.expectStatus.length
  ) {
    return false;
  }
  return a.expectStatus.every((r, i) => r[0] === b.expectStatus[i]?.[0] && r[1] === b.expectStatus[i]?.[1]);
}

/** Called after each completed check; `changed` says whether backend.active moved. */
export type CheckListener = (backend: Backend, result: CheckResult, changed: boolean) => void;

interface Loop {
  readonly backend: Backend;
  timer: NodeJS.Timeout | undefined;
  abort: AbortController | undefined;
  stopped: boolean;
}

/**
 * Runs the probe loops of one pool. A loop checks, applies the result, then
 * waits interval ± jitter counted from the start of that check (so a slow
 * check does not stretch the period; checks never overlap). Timers are
 * unref'd: checks alone never keep the process alive.
 */
export class HealthChecker {
  private specValue: HealthSpec;
  private readonly listener: CheckListener;
  private readonly loops = new Map<Backend, Loop>();
  private closed = false;

  constructor(spec: HealthSpec, listener: CheckListener) {
    this.specValue = spec;
    this.listener = listener;
  }

  get spec(): HealthSpec {
    return this.specValue;
  }

  /** Start checking `backend` (no-op when checks are off or it is already checked). */
  add(backend: Backend): void {
    if (this.closed || this.specValue.kind === 'none' || this.loops.has(backend)) return;
    const loop: Loop = { backend, timer: undefined, abort: undefined, stopped: false };
    this.loops.set(backend, loop);
    this.schedule(loop, firstCheckDelay(this.specValue.intervalMs));
  }

  /** Stop checking `backend`; a check in flight is cancelled and its result dropped. */
  remove(backend: Backend): void {
    const loop = this.loops.get(backend);
    if (!loop) return;
    this.loops.delete(backend);
    this.stop(loop);
  }

  /** New settings: every loop restarts (first check soon) with them. */
  setSpec(spec: HealthSpec, backends: Iterable<Backend>): void {
    for (const loop of this.loops.values()) this.stop(loop);
    this.loops.clear();
    this.specValue = spec;
    for (const b of backends) this.add(b);
  }

  close(): void {
    this.closed = true;
    for (const loop of this.loops.values()) this.stop(loop);
    this.loops.clear();
  }

  private stop(loop: Loop): void {
    loop.stopped = true;
    clearTimeout(loop.timer);
    loop.abort?.abort();
  }

  private schedule(loop: Loop, delayMs: number): void {
    loop.timer = setTimeout(() => void this.run(loop), delayMs);
    loop.timer.unref();
  }

  private async run(loop: Loop): Promise<void> {
    loop.timer = undefined;
    const spec = this.specValue;
    const started = Date.now();
    const abort = new AbortController();
    loop.abort = abort;
    const result = await probe(loop.backend, spec, abort.signal);
    loop.abort = undefined;
    if (loop.stopped) return;
    const changed = recordCheck(loop.backend, result, spec.rise, spec.fall);
    try {
      this.listener(loop.backend, result, changed);
    } catch {
      // A listener's bug must not stop the checks.
    }
    if (loop.stopped) return;
    const next = jitteredInterval(spec.intervalMs, spec.jitter) - (Date.now() - started);
    this.schedule(loop, Math.max(0, next));
  }
}
