/**
 * Messages between the control process and its data-plane workers
 * (node:cluster IPC, JSON). Control → worker carries configuration and
 * backend state; worker → control carries results and state for the admin
 * API. Every message has a `t` (type).
 */
import type { PoolDescription } from '../upstream/pool.js';
import type { MemberState } from './runtime.js';
import type { AllowlistMessage } from '../allowlist/host.js';
import type { TcpListenerDescription } from '../tcp/proxy.js';
import type { WireSnapshot } from './wire.js';

export type ToWorker =
  | { t: 'apply'; id: number; generation: number; snapshot: WireSnapshot; state: Record<string, MemberState[]> }
  | { t: 'members'; service: string; members: MemberState[] }
  | { t: 'health'; service: string; key: string; active: MemberState['active']; reason: string }
  | { t: 'describe'; id: number }
  | { t: 'tcp-describe'; id: number }
  | { t: 'reopen' }
  | { t: 'acme-cert'; domain: string; cert: string; key: string }
  | { t: 'drain'; deadlineMs: number }
  /** One allowlist, whole (entries null: gone); sent before 'apply' to a new worker and on every change. */
  | AllowlistMessage;

export type FromWorker =
  | { t: 'ready' }
  | { t: 'applied'; id: number; ok: boolean; generation: number; error?: string }
  | { t: 'described'; id: number; pools: PoolDescription[] }
  | { t: 'tcp-described'; id: number; listeners: TcpListenerDescription[] };

export function isFromWorker(m: unknown): m is FromWorker {
  return m !== null && typeof m === 'object' && typeof (m as { t?: unknown }).t === 'string';
}

export function isToWorker(m: unknown): m is ToWorker {
  return m !== null && typeof m === 'object' && typeof (m as { t?: unknown }).t === 'string';
}
