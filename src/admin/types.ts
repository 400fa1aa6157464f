/**
 * What the admin listener needs from the process that runs it. In
 * single-process mode the runtime provides it directly; with workers, the
 * control process provides it and gathers worker state over IPC.
 */
import type { Snapshot } from '../config/types.js';
import type { PoolDescription } from '../upstream/pool.js';
import type { TcpListenerDescription } from '../tcp/proxy.js';
import type { AllowlistService } from '../allowlist/types.js';

export type ReloadTrigger = 'start' | 'signal' | 'watch' | 'api';

export interface ReloadOutcome {
  readonly ok: boolean;
  /** The generation serving after this attempt (unchanged when refused). */
  readonly generation: number;
  /** file:line:column messages (formatIssue) or the apply error, when refused. */
  readonly errors: readonly string[];
  readonly trigger: ReloadTrigger;
  /** ISO 8601 */
  readonly at: string;
}

export interface ConfigInfo {
  readonly generation: number;
  /** Configuration directory. */
  readonly source: string;
  /** ISO 8601 time the serving generation was applied. */
  readonly appliedAt: string;
  readonly lastReload: ReloadOutcome | null;
  /** Data-plane worker processes (0 = single process). */
  readonly workers: number;
}

export interface AdminSource {
  /** Prometheus exposition of every process's metrics. */
  metricsText(): Promise<{ readonly contentType: string; readonly body: string }>;
  configInfo(): ConfigInfo;
  snapshot(): Snapshot | undefined;
  /** Pool state (backends, health, ejection, scores with reasons, panic). */
  pools(): Promise<PoolDescription[]>;
  /** TCP proxy listeners with their sessions and bytes (summed over workers). */
  tcp?(): Promise<TcpListenerDescription[]>;
  /** The allowlist store's service (control or single process), when the configuration uses one (src/allowlist/). */
  allowlists?(): AllowlistService | undefined;
  /** The geolocation databases in use (path, build date), when geo is on. */
  geoInfo?(): unknown;
  /** Re-read the configuration directory and apply it (or refuse it). */
  reload(trigger: ReloadTrigger): Promise<ReloadOutcome>;
}
