/**
 * Contracts between the parts of the upstream room. The proxy (web/, and
 * later tcp/) only sees Pool: acquire a backend, release it with an outcome.
 * Discovery feeds Pool.setMembers; the active checker and passive ejection
 * change Backend health; balancers read Backend fields and never mutate
 * anything but their own cursor.
 */
import type { Backend } from './backend.js';

/** How one attempt against a backend ended, as seen by the proxy. */
export type Outcome =
  | 'success' // a response head arrived with status < 500
  | 'http-5xx' // a response head arrived with status >= 500
  | 'connect-error' // refused, unreachable, connect timeout: the request never reached it
  | 'reset' // connection closed or reset before a response head
  | 'timeout' // no response head within the response timeout
  | 'cancelled'; // the client went away; says nothing about the backend

export interface MemberAddress {
  readonly host: string;
  readonly port: number;
  readonly weight: number;
}

export type PickResult =
  | { readonly ok: true; readonly backend: Backend; readonly panic: boolean }
  | { readonly ok: false; readonly error: 'NO_BACKEND' | 'PANIC_FAIL_FAST' };

export interface Balancer {
  readonly kind: string;
  /** Choose one of `candidates` (never empty), avoiding `exclude` where possible. */
  pick(candidates: readonly Backend[], exclude: ReadonlySet<Backend> | undefined, now: number): Backend;
  /** The backend's current score under this balancer and why (lower score = preferred). */
  explain(backend: Backend, now: number): { readonly score: number; readonly reason: string };
}

/** Called on events the control plane logs and counts (metrics come in a later issue). */
export interface PoolEvents {
  onHealthChange?(service: string, backend: Backend, healthy: boolean, reason: string): void;
  onEject?(service: string, backend: Backend, untilMs: number, reason: string): void;
  onPanic?(service: string, panic: boolean, healthy: number, total: number): void;
  onMembersChange?(service: string, added: readonly string[], removed: readonly string[]): void;
}
