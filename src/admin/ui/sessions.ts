/**
 * Admin UI sessions, in the memory of the process that runs the admin
 * listener (the control process, or the single process): a restart logs
 * everyone out, which is acceptable for a handful of administrators and
 * keeps session secrets out of any store. Ids are 256 random bits; the map is
 * keyed by their SHA-256 so a timing side channel on lookup reveals nothing
 * usable. Each session has its own CSRF token (synchronizer token pattern).
 */
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';

export const IDLE_TIMEOUT_MS = 30 * 60_000;
export const ABSOLUTE_TIMEOUT_MS = 12 * 3600_000;
/** A bound on live sessions: beyond it, the least recently used one goes. */
const MAX_SESSIONS = 1000;

export type LoginMethod = 'password' | 'token';

export interface Session {
  /** The actor recorded on changes: the user name, or 'token'. */
  readonly actor: string;
  readonly method: LoginMethod;
  readonly csrf: string;
  readonly createdAt: number;
  lastSeen: number;
}

function key(id: string): string {
  return createHash('sha256').update(id).digest('base64url');
}

export class SessionStore {
  private readonly sessions = new Map<string, Session>();

  constructor(
    private readonly now: () => number = Date.now,
    readonly idleMs = IDLE_TIMEOUT_MS,
    readonly absoluteMs = ABSOLUTE_TIMEOUT_MS,
  ) {}

  /** A new session; returns its id (the cookie value). */
  create(actor: string, method: LoginMethod): { id: string; session: Session } {
    this.sweep();
    while (this.sessions.size >= MAX_SESSIONS) {
      const oldest = this.sessions.keys().next().value;
      if (oldest === undefined) break;
      this.sessions.delete(oldest);
    }
    const id = randomBytes(32).toString('base64url');
    const t = this.now();
    const session: Session = { actor, method, csrf: randomBytes(32).toString('base64url'), createdAt: t, lastSeen: t };
    this.sessions.set(key(id), session);
    return { id, session };
  }

  /** The live session for a cookie value (touching it), or undefined. */
  get(id: string | undefined): Session | undefined {
    if (id === undefined || !/^[A-Za-z0-9_-]{43}$/.test(id)) return undefined;
    const k = key(id);
    const s = this.sessions.get(k);
    if (!s) return undefined;
    const t = this.now();
    if (t - s.lastSeen > this.idleMs || t - s.createdAt > this.absoluteMs) {
      this.sessions.delete(k);
      return undefined;
    }
    s.lastSeen = t;
    // Re-insert: Map order is then least recently used first.
    this.sessions.delete(k);
    this.sessions.set(k, s);
    return s;
  }

  destroy(id: string | undefined): void {
    if (id !== undefined) this.sessions.delete(key(id));
  }

  /** End every session matching pred (e.g. token sessions after the token changed). */
  destroyWhere(pred: (s: Session) => boolean): number {
    let n = 0;
    for (const [k, s] of this.sessions) {
      if (pred(s)) {
        this.sessions.delete(k);
        n++;
      }
    }
    return n;
  }

  get size(): number {
    return this.sessions.size;
  }

  private sweep(): void {
    const t = this.now();
    for (const [k, s] of this.sessions) if (t - s.lastSeen > this.idleMs || t - s.createdAt > this.absoluteMs) this.sessions.delete(k);
  }
}

/** Constant-time comparison of a submitted CSRF token with the session's. */
export function csrfMatches(session: Session, submitted: string | undefined): boolean {
  if (submitted === undefined) return false;
  const a = createHash('sha256').update(submitted).digest();
  const b = createHash('sha256').update(session.csrf).digest();
  return timingSafeEqual(a, b);
}

/**
 * Failed logins per source address in a sliding window: after `limit`
 * failures within `windowMs` the address is refused until the oldest one
 * ages out. Successful logins do not reset it (a guesser who gets one right
 * already has what they wanted; an administrator who mistypes five times
 * waits a minute).
 */
export class LoginThrottle {
  private readonly failures = new Map<string, number[]>();

  constructor(
    readonly limit = 5,
    readonly windowMs = 60_000,
    private readonly now: () => number = Date.now,
  ) {}

  /** Milliseconds until this address may try again; 0 = it may now. */
  retryAfterMs(address: string): number {
    const list = this.recent(address);
    if (list.length < this.limit) return 0;
    return Math.max(1, list[0]! + this.windowMs - this.now());
  }

  fail(address: string): void {
    const list = this.recent(address);
    list.push(this.now());
    this.failures.set(address, list);
    if (this.failures.size > 10_000) {
      // A flood of distinct addresses: drop the ones with nothing recent.
      for (const [a] of this.failures) if (this.recent(a).length === 0) this.failures.delete(a);
    }
  }

  private recent(address: string): number[] {
    const cutoff = this.now() - this.windowMs;
    const list = (this.failures.get(address) ?? []).filter((t) => t > cutoff);
    if (list.length === 0) this.failures.delete(address);
    else this.failures.set(address, list);
    return list;
  }
}
