/**
 * A service's pool: its backends (from discovery), their health (active
 * checks and passive ejection), panic mode, and the balancer that picks one
 * per attempt. Backends are keyed by host:port and keep their state across
 * discovery changes and config reloads.
 *
 * Passive ejection (Envoy outlier detection, consecutive-failure flavour):
 * - 'http-5xx', 'connect-error', 'reset' and 'timeout' count as failures,
 *   'success' resets the count, 'cancelled' says nothing about the backend.
 *   Failures that end while the backend is already ejected are not counted.
 * - `consecutiveFailures` in a row eject the backend for
 *   baseEjectionMs × (times ejected in a row), at most maxEjectionMs.
 * - Cap: an ejection is refused when it would make the ejected share of the
 *   pool exceed maxEjectedPercent, except that one backend may always be
 *   ejected (Envoy's rule: a small pool can still shed its one bad backend;
 *   panic mode keeps a pool that has only it serving). A refused ejection is
 *   noted in lastEjectReason and retried on the next failure.
 * - Decay: "times ejected in a row" goes down by one for every
 *   baseEjectionMs the backend has been back in rotation, counted when it
 *   serves a success (no traffic, no evidence, no decay). A backend ejected
 *   three times is back to the base ejection time after 3 × base of good
 *   service. The count stops growing once base × count reaches the cap, so
 *   decay from the cap is bounded too.
 *
 * Panic: when the available (healthy and not ejected) backends are fewer
 * than panic.thresholdPercent of all backends, or none at all, the pool is in
 * panic: 'serve-all' balances over every backend ignoring health, 'fail'
 * refuses with PANIC_FAIL_FAST. An empty pool answers NO_BACKEND.
 *
 * Hot path: acquire() reads a cached array of available backends. It is
 * rebuilt only when health, ejection or membership changes; an ejection's
 * end is noticed by comparing now with a cached "next expiry" (and a timer
 * re-evaluates the pool then, so panic and describe() stay current).
 */
import type { ServiceSpec } from '../config/types.js';
import { Backend, backendKey } from './backend.js';
import type { ActiveHealth } from './backend.js';
import { HealthChecker, sameHealthSpec } from './health.js';
import type { CheckResult } from './health.js';
import type { Balancer, MemberAddress, Outcome, PickResult, PoolEvents } from './types.js';

const NO_BACKEND: PickResult = Object.freeze({ ok: false, error: 'NO_BACKEND' });
const PANIC_FAIL_FAST: PickResult = Object.freeze({ ok: false, error: 'PANIC_FAIL_FAST' });

export interface BackendDescription {
  readonly key: string;
  readonly host: string;
  readonly port: number;
  readonly weight: number;
  /** Takes traffic outside panic: active health not 'unhealthy' and not ejected. */
  readonly available: boolean;
  readonly active: ActiveHealth;
  readonly lastCheckReason: string;
  readonly consecutiveCheckOk: number;
  readonly consecutiveCheckFail: number;
  readonly ejected: boolean;
  /** ISO 8601 end of the current ejection, or null. */
  readonly ejectedUntil: string | null;
  readonly ejectionRemainingMs: number;
  /** Times ejected in a row (grows the ejection time, decays with good service). */
  readonly ejections: number;
  readonly consecutiveFailures: number;
  readonly lastEjectReason: string;
  readonly inflight: number;
  readonly score: number;
  readonly scoreReason: string;
}

export interface PoolDescription {
  readonly service: string;
  readonly balancer: string;
  readonly healthCheck: string;
  readonly total: number;
  readonly available: number;
  readonly panic: boolean;
  readonly panicMode: ServiceSpec['panic']['mode'];
  readonly panicThresholdPercent: number;
  /** One sentence on the pool's state, for logs and the admin UI. */
  readonly summary: string;
  readonly backends: readonly BackendDescription[];
}

export class Pool {
  readonly service: string;
  private spec: ServiceSpec;
  private balancer: Balancer;
  private readonly events: PoolEvents;
  private readonly checker: HealthChecker;
  private members: Backend[] = [];
  private byKey = new Map<string, Backend>();
  /** Cached: members that are healthy and not ejected. Replaced, never mutated. */
  private available: Backend[] = [];
  private panic = false;
  /** Earliest ejectedUntil still in the future (Infinity when none). */
  private nextExpiry = Infinity;
  private expiryTimer: NodeJS.Timeout | undefined;
  private expiryTimerAt = Infinity;
  /** Per backend: from when its ejection count may decay next. */
  private readonly decayFrom = new Map<Backend, number>();
  private closed = false;
  /** Active health comes from elsewhere (a worker fed by the control process): run no checks. */
  private readonly externalHealth: boolean;

  constructor(spec: ServiceSpec, balancer: Balancer, events: PoolEvents = {}, options: { externalHealth?: boolean } = {}) {
    this.service = spec.name;
    this.spec = spec;
    this.balancer = balancer;
    this.events = events;
    this.externalHealth = options.externalHealth ?? false;
    this.checker = new HealthChecker(spec.health, (b, r, changed) => this.onCheck(b, r, changed));
  }

  get backends(): readonly Backend[] {
    return this.members;
  }

  get inPanic(): boolean {
    this.refresh(Date.now());
    return this.panic;
  }

  /** Backends that take traffic outside panic (a cached array; do not keep it). */
  get availableBackends(): readonly Backend[] {
    this.refresh(Date.now());
    return this.available;
  }

  setMembers(members: readonly MemberAddress[]): void {
    const checking = this.spec.health.kind !== 'none';
    const next: Backend[] = [];
    const nextByKey = new Map<string, Backend>();
    const added: string[] = [];
    const removed: string[] = [];
    for (const m of members) {
      const key = backendKey(m.host, m.port);
      if (nextByKey.has(key)) continue; // a duplicate answer from discovery
      let b = this.byKey.get(key);
      if (b) {
        b.weight = m.weight;
      } else {
        b = new Backend(m.host, m.port, m.weight, checking);
        added.push(key);
      }
      next.push(b);
      nextByKey.set(key, b);
    }
    for (const [key, b] of this.byKey) {
      if (nextByKey.has(key)) continue;
      removed.push(key);
      this.checker.remove(b);
      this.decayFrom.delete(b);
    }
    this.members = next;
    this.byKey = nextByKey;
    if (!this.externalHealth) {
      for (const key of added) {
        const b = nextByKey.get(key);
        if (b) this.checker.add(b);
      }
    }
    this.recompute(Date.now());
    if (added.length > 0 || removed.length > 0) this.emit(() => this.events.onMembersChange?.(this.service, added, removed));
  }

  update(spec: ServiceSpec, balancer: Balancer): void {
    const old = this.spec;
    this.spec = spec;
    this.balancer = balancer;
    if (!sameHealthSpec(old.health, spec.health)) {
      const checking = spec.health.kind !== 'none';
      const wasChecking = old.health.kind !== 'none';
      for (const b of this.members) {
        b.consecutiveCheckOk = 0;
        b.consecutiveCheckFail = 0;
        if (!checking) {
          const wasDown = b.active === 'unhealthy';
          b.active = 'healthy';
          b.lastCheckReason = 'no active check';
          if (wasDown) this.emit(() => this.events.onHealthChange?.(this.service, b, true, 'active checks turned off'));
        } else if (!wasChecking) {
          // As for a new backend: routable until its first check decides.
          b.active = 'unchecked';
          b.lastCheckReason = 'not checked yet';
        }
      }
      this.checker.setSpec(spec.health, this.externalHealth ? [] : this.members);
    }
    if (spec.passive.consecutiveFailures <= 0) {
      // Passive ejection turned off: lift current ejections at once.
      for (const b of this.members) b.ejectedUntil = 0;
    }
    this.recompute(Date.now());
  }

  acquire(exclude?: ReadonlySet<Backend>): PickResult {
    const now = Date.now();
    if (now >= this.nextExpiry) this.recompute(now);
    if (this.members.length === 0) return NO_BACKEND;
    let candidates = this.available;
    if (this.panic) {
      if (this.spec.panic.mode === 'fail') return PANIC_FAIL_FAST;
      candidates = this.members;
    }
    const backend = this.balancer.pick(candidates, exclude, now);
    backend.inflight++;
    return { ok: true, backend, panic: this.panic };
  }

  release(backend: Backend, outcome: Outcome, latencyMs: number): void {
    if (backend.inflight > 0) backend.inflight--;
    if (outcome === 'cancelled') return;
    const now = Date.now();
    if (outcome === 'success') {
      backend.stats.onSuccess(latencyMs, now);
      backend.consecutiveFailures = 0;
      if (backend.ejections > 0) this.decay(backend, now);
      return;
    }
    backend.stats.onFailure(latencyMs, now);
    if (backend.isEjected(now)) return;
    backend.consecutiveFailures++;
    const threshold = this.spec.passive.consecutiveFailures;
    // A backend removed by discovery finishes its requests but is no longer ours to eject.
    if (threshold > 0 && backend.consecutiveFailures >= threshold && this.byKey.get(backend.key) === backend) {
      this.eject(backend, outcome, now);
    }
  }

  describe(now: number = Date.now()): PoolDescription {
    this.refresh(now);
    const backends = this.members.map((b): BackendDescription => {
      const ejected = b.isEjected(now);
      const { score, reason } = this.balancer.explain(b, now);
      return {
        key: b.key,
        host: b.host,
        port: b.port,
        weight: b.weight,
        available: b.isAvailable(now),
        active: b.active,
        lastCheckReason: b.lastCheckReason,
        consecutiveCheckOk: b.consecutiveCheckOk,
        consecutiveCheckFail: b.consecutiveCheckFail,
        ejected,
        ejectedUntil: ejected ? new Date(b.ejectedUntil).toISOString() : null,
        ejectionRemainingMs: ejected ? b.ejectedUntil - now : 0,
        ejections: b.ejections,
        consecutiveFailures: b.consecutiveFailures,
        lastEjectReason: b.lastEjectReason,
        inflight: b.inflight,
        score: Number.isFinite(score) ? score : Number.MAX_VALUE,
        scoreReason: reason,
      };
    });
    const total = this.members.length;
    const available = this.available.length;
    let summary: string;
    if (total === 0) summary = 'no backends: every request gets NO_BACKEND';
    else if (!this.panic) summary = `${available} of ${total} backends available`;
    else if (this.spec.panic.mode === 'fail')
      summary = `panic: ${available} of ${total} backends available (threshold ${this.spec.panic.thresholdPercent}%), failing fast`;
    else summary = `panic: ${available} of ${total} backends available (threshold ${this.spec.panic.thresholdPercent}%), serving all backends`;
    return {
      service: this.service,
      balancer: this.balancer.kind,
      healthCheck: this.spec.health.kind,
      total,
      available,
      panic: this.panic,
      panicMode: this.spec.panic.mode,
      panicThresholdPercent: this.spec.panic.thresholdPercent,
      summary,
      backends,
    };
  }

  close(): void {
    this.closed = true;
    this.checker.close();
    clearTimeout(this.expiryTimer);
    this.expiryTimer = undefined;
    this.expiryTimerAt = Infinity;
  }

  /**
   * Set a backend's active health as decided elsewhere (the control
   * process's checks, handed to a worker). Unknown keys are ignored: the
   * member list that names them arrives first.
   */
  setActiveHealth(key: string, state: Backend['active'], reason: string): void {
    const b = this.byKey.get(key);
    if (!b || b.active === state) {
      if (b) b.lastCheckReason = reason;
      return;
    }
    const wasRoutable = b.active !== 'unhealthy';
    b.active = state;
    b.lastCheckReason = reason;
    if (wasRoutable !== (state !== 'unhealthy')) this.emit(() => this.events.onHealthChange?.(this.service, b, state !== 'unhealthy', reason));
    this.recompute(Date.now());
  }

  private onCheck(backend: Backend, result: CheckResult, changed: boolean): void {
    if (!changed || this.byKey.get(backend.key) !== backend) return;
    this.emit(() => this.events.onHealthChange?.(this.service, backend, backend.active !== 'unhealthy', result.reason));
    this.recompute(Date.now());
  }

  private eject(backend: Backend, outcome: Outcome, now: number): void {
    const { baseEjectionMs, maxEjectionMs, maxEjectedPercent } = this.spec.passive;
    const total = this.members.length;
    let ejected = 0;
    for (const b of this.members) if (b.isEjected(now)) ejected++;
    const failures = backend.consecutiveFailures;
    if (ejected > 0 && (ejected + 1) * 100 > maxEjectedPercent * total) {
      backend.lastEjectReason =
        `not ejected after ${failures} consecutive failures (last: ${outcome}): ` +
        `${ejected} of ${total} backends already ejected, cap ${maxEjectedPercent}%`;
      return;
    }
    const base = Math.max(1, baseEjectionMs);
    const maxCount = Math.max(1, Math.ceil(maxEjectionMs / base));
    backend.ejections = Math.min(backend.ejections + 1, maxCount);
    const duration = Math.min(base * backend.ejections, Math.max(maxEjectionMs, 1));
    backend.ejectedUntil = now + duration;
    backend.consecutiveFailures = 0;
    backend.lastEjectReason = `${failures} consecutive failures (last: ${outcome}): ejected for ${duration} ms (ejection ${backend.ejections} in a row)`;
    this.decayFrom.set(backend, backend.ejectedUntil);
    this.emit(() => this.events.onEject?.(this.service, backend, backend.ejectedUntil, backend.lastEjectReason));
    this.recompute(now);
  }

  private decay(backend: Backend, now: number): void {
    if (backend.isEjected(now)) return;
    const base = Math.max(1, this.spec.passive.baseEjectionMs);
    const from = this.decayFrom.get(backend) ?? now;
    const steps = Math.floor((now - from) / base);
    if (steps <= 0) {
      if (!this.decayFrom.has(backend)) this.decayFrom.set(backend, now);
      return;
    }
    backend.ejections = Math.max(0, backend.ejections - steps);
    if (backend.ejections === 0) this.decayFrom.delete(backend);
    else this.decayFrom.set(backend, from + steps * base);
  }

  private refresh(now: number): void {
    if (now >= this.nextExpiry) this.recompute(now);
  }

  /** Rebuild the available set, the next expiry and the panic state. */
  private recompute(now: number): void {
    const available: Backend[] = [];
    let nextExpiry = Infinity;
    for (const b of this.members) {
      if (b.ejectedUntil > now) {
        if (b.ejectedUntil < nextExpiry) nextExpiry = b.ejectedUntil;
      } else if (b.active !== 'unhealthy') {
        available.push(b);
      }
    }
    this.available = available;
    this.nextExpiry = nextExpiry;
    this.armExpiryTimer(now);
    const total = this.members.length;
    const panic =
      total > 0 && (available.length === 0 || available.length * 100 < this.spec.panic.thresholdPercent * total);
    if (panic !== this.panic) {
      this.panic = panic;
      this.emit(() => this.events.onPanic?.(this.service, panic, available.length, total));
    }
  }

  private armExpiryTimer(now: number): void {
    if (this.closed || this.nextExpiry === this.expiryTimerAt) return;
    clearTimeout(this.expiryTimer);
    this.expiryTimer = undefined;
    this.expiryTimerAt = this.nextExpiry;
    if (!Number.isFinite(this.nextExpiry)) return;
    this.expiryTimer = setTimeout(
      () => {
        this.expiryTimer = undefined;
        this.expiryTimerAt = Infinity;
        this.recompute(Date.now());
      },
      Math.max(0, this.nextExpiry - now),
    );
    this.expiryTimer.unref();
  }

  private emit(fn: () => void): void {
    try {
      fn();
    } catch {
      // An event listener's bug must not break the pool.
    }
  }
}
