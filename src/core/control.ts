/**
 * The control process: loads and validates configuration, reloads it (on
 * SIGHUP, on a change in the configuration directory, through the admin
 * API), runs discovery, active health checks and the admin listener, and
 * supervises the data-plane workers (node:cluster, one per core by default).
 *
 * A reload is built beside the running configuration and applied in steps
 * that can each refuse it: the control process's own part (admin listener,
 * discovery), then one worker (the canary: it binds any new listener
 * address), then the other workers. A refusal at any step leaves the
 * previous generation serving everywhere.
 *
 * With `workers: 0` the same control logic drives a single in-process
 * runtime that also serves requests (tests, small installations).
 */
import cluster, { type Worker } from 'node:cluster';
import { watch, type FSWatcher } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { formatIssue, loadConfig, type LoadResult } from '../config/load.js';
import { ConfigLoader } from '../config/load-thread.js';
import type { Snapshot } from '../config/types.js';
import type { AdminSource, ReloadOutcome, ReloadTrigger } from '../admin/types.js';
import type { PoolDescription } from '../upstream/pool.js';
import type { Logger } from './log.js';
import { Runtime, type MemberState } from './runtime.js';
import { lowerHelperThreads, yieldToRequests } from './priority.js';
import { snapshotToWire, type WireSnapshot } from './wire.js';
import { clusterMetricsText } from './metrics.js';
import { isFromWorker, type FromWorker, type ToWorker } from './ipc.js';
import { mergeTcpDescriptions, type TcpListenerDescription } from '../tcp/proxy.js';

export interface ControlOptions {
  readonly dir: string;
  /** Data-plane worker processes; 0 = serve in this process. */
  readonly workers: number;
  readonly log: Logger;
  /** How long in-flight requests may take on shutdown. */
  readonly drainMs: number;
  /** Reload when files in the configuration directory change. */
  readonly watch: boolean;
  readonly watchDebounceMs?: number;
}

interface WorkerSlot {
  readonly worker: Worker;
  ready: boolean;
  generation: number;
  readonly startedAt: number;
}

type Pending = { resolve: (m: FromWorker) => void; timer: NodeJS.Timeout };

export class Control {
  readonly runtime: Runtime;
  private readonly opts: ControlOptions;
  private readonly log: Logger;
  private snapshot: Snapshot | undefined;
  private generation = 0;
  private reloading: Promise<unknown> = Promise.resolve();
  private readonly slots = new Map<number, WorkerSlot>();
  private readonly pending = new Map<number, Pending>();
  private nextId = 1;
  private stopping = false;
  private watcher: FSWatcher | undefined;
  private restarts: number[] = [];
  /** Reloads read and validate the configuration on a lower-priority thread (../config/load-thread.ts). */
  private readonly loader = new ConfigLoader();

  constructor(opts: ControlOptions) {
    this.opts = opts;
    this.log = opts.log;
    const multi = opts.workers > 0;
    this.runtime = new Runtime({
      log: opts.log,
      role: multi ? 'control' : 'standalone',
      adminSource: () => this.adminSource(),
      reload: (trigger) => this.reload(trigger),
      onMembers: multi ? (service, members) => this.broadcast({ t: 'members', service, members }) : undefined,
      onActiveHealth: multi ? (service, key, active, reason) => this.broadcast({ t: 'health', service, key, active, reason }) : undefined,
      onAcmeCertificate: multi ? (domain, cert, key) => this.broadcast({ t: 'acme-cert', domain, cert, key }) : undefined,
    });
    // Every allowlist change reaches the workers' in-memory tables (docs/allowlists.md).
    if (multi) this.runtime.allowlistHost.forward((m) => this.broadcast(m));
  }

  /**
   * Load, apply, start workers. Returns an exit status when startup fails
   * (1 invalid configuration, 3 cannot serve it), else undefined.
   */
  async start(): Promise<number | undefined> {
    // Nothing serves yet: blocking reads are the faster way (LoadOptions).
    const loaded = await loadConfig(this.opts.dir, { blockingReads: true });
    if (!loaded.ok) {
      for (const i of loaded.issues) process.stderr.write(formatIssue(i) + '\n');
      process.stderr.write(`perimeter: ${loaded.issues.length} configuration error(s) in ${this.opts.dir}; nothing started\n`);
      return 1;
    }
    for (const w of loaded.warnings) this.log.warn({ file: w.file, line: w.line, column: w.column, event: { action: 'config-warning' } }, `${w.file}:${w.line}:${w.column}: ${w.message}`);
    try {
      await this.runtime.apply(loaded.snapshot, undefined, 1);
    } catch (e) {
      process.stderr.write(`perimeter: ${(e as Error).message}\n`);
      await this.runtime.close(0);
      return 3;
    }
    this.snapshot = loaded.snapshot;
    this.generation = 1;
    if (this.opts.workers > 0) {
      // Workers accept on the shared listening sockets themselves (the
      // kernel wakes an idle one). Node's default on Linux, round-robin, has
      // this process accept every connection and pass it over IPC: measured
      // here, half the new-connection rate and the control process on the
      // request path. NODE_CLUSTER_SCHED_POLICY=rr restores Node's default
      // (docs/processes.md).
      if (process.env.NODE_CLUSTER_SCHED_POLICY === undefined) cluster.schedulingPolicy = cluster.SCHED_NONE;
      cluster.setupPrimary({ exec: fileURLToPath(new URL('./worker-main.js', import.meta.url)), silent: false });
      cluster.on('message', (worker, m: unknown) => this.onWorkerMessage(worker, m));
      cluster.on('exit', (worker, code, signal) => this.onWorkerExit(worker, code, signal));
      const results = await Promise.all(Array.from({ length: this.opts.workers }, () => this.spawn()));
      const failed = results.find((r) => !r.ok);
      if (failed) {
        process.stderr.write(`perimeter: a worker could not serve the configuration: ${failed.error}\n`);
        await this.stop('startup failure');
        return 3;
      }
      // The control process's background threads yield the core to the workers (./priority.ts).
      const lowered = lowerHelperThreads();
      this.log.info({ event: { action: 'workers-started' }, workers: this.opts.workers, backgroundThreadsLowered: lowered }, `${this.opts.workers} data-plane workers serving generation 1`);
    }
    this.runtime.lastReload = { ok: true, generation: 1, errors: [], trigger: 'start', at: new Date().toISOString() };
    if (this.opts.watch) this.startWatching();
    return undefined;
  }

  // ---- reload ----

  reload(trigger: ReloadTrigger): Promise<ReloadOutcome> {
    const next = this.reloading.then(() => this.reloadNow(trigger));
    this.reloading = next.catch(() => undefined);
    return next;
  }

  private async reloadNow(trigger: ReloadTrigger): Promise<ReloadOutcome> {
    const refuse = (errors: string[]): ReloadOutcome => {
      const outcome: ReloadOutcome = { ok: false, generation: this.generation, errors, trigger, at: new Date().toISOString() };
      this.runtime.lastReload = outcome;
      this.runtime.metrics.reloads.inc({ result: 'refused' });
      this.log.error(
        { event: { action: 'config-refused' }, trigger, errors },
        `reload (${trigger}) refused: ${errors.length} error(s); generation ${this.generation} keeps serving`,
      );
      return outcome;
    };
    if (this.stopping) return refuse(['perimeter is shutting down']);
    let loaded: LoadResult;
    try {
      loaded = await this.loader.load(this.opts.dir);
    } catch (e) {
      return refuse([`the configuration could not be read: ${(e as Error).message}`]);
    }
    if (!loaded.ok) return refuse(loaded.issues.map(formatIssue));
    const previous = this.snapshot!;
    const generation = this.generation + 1;
    // With workers, this process shares a core with one at the same priority:
    // it sleeps a moment between the steps of a reload (./priority.ts).
    const pause = this.opts.workers > 0 ? yieldToRequests : async (): Promise<void> => {};
    await pause();
    try {
      await this.runtime.apply(loaded.snapshot, undefined, generation);
    } catch (e) {
      return refuse([(e as Error).message]);
    }
    await pause();
    if (this.opts.workers > 0) {
      const live = [...this.slots.values()].filter((s) => s.ready);
      const [canary, ...rest] = live;
      if (canary) {
        const r = await this.applyTo(canary, loaded.snapshot, generation);
        if (!r.ok) {
          // Put the control process back on the previous configuration.
          await this.runtime.apply(previous, undefined, generation + 1).catch(() => undefined);
          this.generation = generation + 1;
          return refuse([r.error ?? 'a worker refused the configuration']);
        }
      }
      const results = await Promise.all(rest.map((s) => this.applyTo(s, loaded.snapshot, generation)));
      results.forEach((r, i) => {
        if (!r.ok) {
          // The canary took it, so this is a fault of that worker: replace it.
          this.log.error({ event: { action: 'worker-apply-failed' }, worker: rest[i]!.worker.id, err: r.error }, `worker ${rest[i]!.worker.id} failed to apply generation ${generation}; replacing it`);
          rest[i]!.worker.kill();
        }
      });
    }
    this.snapshot = loaded.snapshot;
    this.generation = generation;
    await pause();
    const outcome: ReloadOutcome = { ok: true, generation, errors: [], trigger, at: new Date().toISOString() };
    this.runtime.lastReload = outcome;
    this.log.info({ event: { action: 'config-reloaded' }, trigger, generation }, `reload (${trigger}): generation ${generation} serving`);
    return outcome;
  }

  private startWatching(): void {
    let timer: NodeJS.Timeout | undefined;
    const debounce = this.opts.watchDebounceMs ?? 500;
    try {
      this.watcher = watch(this.opts.dir, { recursive: true }, (_event, file) => {
        const name = String(file ?? '');
        if (name !== '' && !/(^|\/)(perimeter\.ya?ml|sites\/[^/]+\.ya?ml)$/.test(name) && name !== 'sites') return;
        clearTimeout(timer);
        timer = setTimeout(() => void this.reload('watch'), debounce);
      });
      this.watcher.on('error', (err) => this.log.warn({ err }, 'configuration directory watch failed; reload with SIGHUP or the admin API'));
    } catch (err) {
      this.log.warn({ err }, 'cannot watch the configuration directory; reload with SIGHUP or the admin API');
    }
  }

  // ---- workers ----

  private spawn(): Promise<{ ok: boolean; error?: string }> {
    const worker = cluster.fork({ PERIMETER_DRAIN_MS: String(this.opts.drainMs) });
    const slot: WorkerSlot = { worker, ready: false, generation: 0, startedAt: Date.now() };
    this.slots.set(worker.id, slot);
    return new Promise((resolve) => {
      const onReady = (m: unknown): void => {
        if (!isFromWorker(m) || m.t !== 'ready') return;
        worker.off('message', onReady);
        // Allowlists first: its TCP listeners must not accept before the lists are there.
        for (const a of this.runtime.allowlistHost.messages()) worker.send(a satisfies ToWorker);
        void this.applyTo(slot, this.snapshot!, this.generation).then((r) => {
          if (r.ok) {
            slot.ready = true;
            // Certificates ACME obtained before this worker existed.
            for (const c of this.runtime.acmeCertificates()) slot.worker.send({ t: 'acme-cert', ...c } satisfies ToWorker);
          }
          resolve(r);
        });
      };
      worker.on('message', onReady);
      worker.once('exit', () => resolve({ ok: false, error: `worker ${worker.id} exited during startup` }));
    });
  }

  /** The wire form of the snapshot last sent: made once, sent to every worker. */
  private wire: { snapshot: Snapshot; form: WireSnapshot } | undefined;

  private wireOf(snapshot: Snapshot): WireSnapshot {
    if (this.wire?.snapshot !== snapshot) this.wire = { snapshot, form: snapshotToWire(snapshot) };
    return this.wire.form;
  }

  private async applyTo(slot: WorkerSlot, snapshot: Snapshot, generation: number): Promise<{ ok: boolean; error?: string }> {
    const id = this.nextId++;
    const state: Record<string, MemberState[]> = this.runtime.memberStates();
    const reply = await this.request(slot.worker, { t: 'apply', id, generation, snapshot: this.wireOf(snapshot), state }, id, 30_000);
    if (!reply || reply.t !== 'applied') return { ok: false, error: `worker ${slot.worker.id} did not answer` };
    if (reply.ok) slot.generation = reply.generation;
    return { ok: reply.ok, error: reply.error };
  }

  private request(worker: Worker, m: ToWorker, id: number, timeoutMs: number): Promise<FromWorker | undefined> {
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        this.pending.delete(id);
        resolve(undefined);
      }, timeoutMs);
      this.pending.set(id, { resolve, timer });
      try {
        worker.send(m);
      } catch {
        clearTimeout(timer);
        this.pending.delete(id);
        resolve(undefined);
      }
    });
  }

  private onWorkerMessage(_worker: Worker, m: unknown): void {
    if (!isFromWorker(m) || m.t === 'ready') return;
    const p = this.pending.get(m.id);
    if (!p) return;
    this.pending.delete(m.id);
    clearTimeout(p.timer);
    p.resolve(m);
  }

  private broadcast(m: ToWorker): void {
    for (const s of this.slots.values()) {
      if (!s.worker.isConnected()) continue;
      try {
        s.worker.send(m);
      } catch {
        // an exiting worker; its replacement gets the full state
      }
    }
  }

  private onWorkerExit(worker: Worker, code: number | null, signal: string | null): void {
    const slot = this.slots.get(worker.id);
    this.slots.delete(worker.id);
    if (this.stopping || !slot) return;
    this.log.error(
      { event: { action: 'worker-exit' }, worker: worker.id, pid: worker.process.pid, code, signal },
      `worker ${worker.id} (pid ${worker.process.pid}) exited (${signal ?? `code ${code}`}); starting a replacement`,
    );
    // Back off when workers die in a loop (a bad deploy should not fork-bomb).
    const now = Date.now();
    this.restarts = this.restarts.filter((t) => now - t < 10_000);
    this.restarts.push(now);
    const delay = this.restarts.length > 5 ? 1000 * (this.restarts.length - 5) : 0;
    setTimeout(() => {
      if (this.stopping) return;
      void this.spawn().then((r) => {
        if (r.ok) this.log.info({ event: { action: 'worker-replaced' } }, `replacement worker serving generation ${this.generation}`);
        else this.log.error({ event: { action: 'worker-start-failed' }, err: r.error }, `replacement worker failed: ${r.error}`);
      });
    }, delay).unref();
  }

  // ---- admin ----

  private adminSource(): AdminSource {
    const base = this.runtime.adminSource();
    if (this.opts.workers === 0) {
      return base;
    }
    return {
      ...base,
      configInfo: () => ({ ...base.configInfo(), generation: this.generation, workers: this.slots.size }),
      pools: () => this.workerPools(),
      tcp: () => this.workerTcp(),
      metricsText: () => this.metricsText(),
    };
  }

  private async metricsText(): Promise<{ contentType: string; body: string }> {
    const { contentType, body } = await clusterMetricsText(this.runtime.metrics.registry);
    return { contentType, body };
  }

  /**
   * Pool state as the workers see it, merged: active health from the control
   * process, and per backend the sum of in-flight requests, ejection in any
   * worker, the mean score and each worker's reason.
   */
  private async workerPools(): Promise<PoolDescription[]> {
    const own = this.runtime.describePools();
    const replies = await Promise.all(
      [...this.slots.values()].filter((s) => s.ready).map(async (s) => {
        const id = this.nextId++;
        const r = await this.request(s.worker, { t: 'describe', id }, id, 2000);
        return r && r.t === 'described' ? { worker: s.worker.id, pools: r.pools } : undefined;
      }),
    );
    const got = replies.filter((r): r is { worker: number; pools: PoolDescription[] } => r !== undefined);
    return own.map((pool) => {
      const views = got.map((g) => ({ worker: g.worker, pool: g.pools.find((p) => p.service === pool.service) })).filter((v) => v.pool);
      const panic = views.some((v) => v.pool!.panic);
      return {
        ...pool,
        panic: panic || pool.panic,
        summary: views.length ? views.map((v) => `worker ${v.worker}: ${v.pool!.summary}`).join('; ') : pool.summary,
        backends: pool.backends.map((b) => {
          const seen = views.map((v) => ({ worker: v.worker, b: v.pool!.backends.find((x) => x.key === b.key) })).filter((x) => x.b);
          if (seen.length === 0) return b;
          const scores = seen.map((x) => x.b!.score).filter((n) => Number.isFinite(n));
          const ejected = seen.filter((x) => x.b!.ejected);
          return {
            ...b,
            inflight: seen.reduce((n, x) => n + x.b!.inflight, 0),
            ejected: ejected.length > 0,
            ejectedUntil: ejected[0]?.b!.ejectedUntil ?? null,
            ejectionRemainingMs: Math.max(0, ...ejected.map((x) => x.b!.ejectionRemainingMs)),
            lastEjectReason: ejected.map((x) => `worker ${x.worker}: ${x.b!.lastEjectReason}`).join('; ') || b.lastEjectReason,
            available: b.active !== 'unhealthy' && ejected.length < seen.length,
            score: scores.length ? scores.reduce((a, c) => a + c, 0) / scores.length : b.score,
            scoreReason: seen.map((x) => `worker ${x.worker}: ${x.b!.scoreReason}`).join('; '),
          };
        }),
      };
    });
  }

  /** TCP listeners as the workers serve them: sessions, bytes and counts summed. */
  private async workerTcp(): Promise<TcpListenerDescription[]> {
    const replies = await Promise.all(
      [...this.slots.values()].filter((s) => s.ready).map(async (s) => {
        const id = this.nextId++;
        const r = await this.request(s.worker, { t: 'tcp-describe', id }, id, 2000);
        return r && r.t === 'tcp-described' ? r.listeners : undefined;
      }),
    );
    return mergeTcpDescriptions(replies.filter((r): r is TcpListenerDescription[] => r !== undefined));
  }

  reopenLogs(): void {
    this.runtime.reopenLogs();
    this.broadcast({ t: 'reopen' });
  }

  // ---- shutdown ----

  /** Stop accepting, let in-flight requests finish within the drain deadline, then stop. */
  async stop(why: string): Promise<void> {
    if (this.stopping) return;
    this.stopping = true;
    this.watcher?.close();
    this.log.info({ event: { action: 'shutdown' }, reason: why }, `${why}: draining (up to ${this.opts.drainMs} ms)`);
    if (this.opts.workers > 0) {
      const exits = [...this.slots.values()].map((s) => new Promise<void>((resolve) => {
        if (s.worker.isDead()) return resolve();
        s.worker.once('exit', () => resolve());
      }));
      this.broadcast({ t: 'drain', deadlineMs: this.opts.drainMs });
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([Promise.all(exits), new Promise((r) => (timer = setTimeout(r, this.opts.drainMs + 2000)))]);
      clearTimeout(timer);
      for (const s of this.slots.values()) if (!s.worker.isDead()) s.worker.kill('SIGKILL');
    }
    await this.runtime.close(this.opts.drainMs);
    await this.loader.close();
    this.log.info({ event: { action: 'stopped' } }, 'stopped');
  }
}
