/**
 * A data-plane worker: listeners and the request path only. Configuration,
 * member lists and active health come from the control process; messages are
 * handled one at a time, in order, so a member update never overtakes the
 * configuration that creates its pool.
 */
import cluster from 'node:cluster';
import { createLogger } from './log.js';
import { Runtime } from './runtime.js';
import { snapshotFromWire } from './wire.js';
import { yieldToRequests } from './priority.js';
import { serveWorkerMetrics } from './metrics.js';
import { isToWorker, type FromWorker, type ToWorker } from './ipc.js';

function send(m: FromWorker): void {
  if (process.send && process.connected) process.send(m);
}

export async function runWorker(): Promise<void> {
  if (!cluster.isWorker) throw new Error('runWorker() must run in a cluster worker');
  const log = createLogger({ level: process.env.PERIMETER_LOG_LEVEL }).child({ worker: cluster.worker?.id });
  const runtime = new Runtime({ log, role: 'worker' });
  serveWorkerMetrics(runtime.metrics.registry);
  let draining = false;

  const drain = (deadlineMs: number, why: string): void => {
    if (draining) return;
    draining = true;
    log.info({ event: { action: 'worker-drain' }, reason: why }, `worker draining (${why}), up to ${deadlineMs} ms`);
    void runtime.close(deadlineMs).then(() => {
      log.flush();
      // Give pino's async destination a moment, then leave.
      setTimeout(() => process.exit(0), 50);
    });
  };

  let chain = Promise.resolve();
  const handle = async (m: ToWorker): Promise<void> => {
    switch (m.t) {
      case 'apply':
        try {
          // Requests first, between the steps of a reload (./priority.ts).
          await yieldToRequests();
          const snapshot = snapshotFromWire(m.snapshot);
          await yieldToRequests();
          await runtime.apply(snapshot, m.state, m.generation);
          send({ t: 'applied', id: m.id, ok: true, generation: runtime.generation });
        } catch (err) {
          send({ t: 'applied', id: m.id, ok: false, generation: runtime.generation, error: (err as Error).message });
        }
        return;
      case 'members':
        runtime.setMembers(m.service, m.members);
        return;
      case 'health':
        runtime.setActiveHealth(m.service, m.key, m.active, m.reason);
        return;
      case 'describe':
        send({ t: 'described', id: m.id, pools: runtime.describePools() });
        return;
      case 'tcp-describe':
        send({ t: 'tcp-described', id: m.id, listeners: runtime.tcp.describe() });
        return;
      case 'reopen':
        runtime.reopenLogs();
        return;
      case 'acme-cert':
        runtime.setAcmeCertificate(m.domain, m.cert, m.key);
        return;
      case 'drain':
        drain(m.deadlineMs, 'asked by the control process');
        return;
      case 'allowlist':
        runtime.allowlistHost.receive(m);
        return;
    }
  };
  process.on('message', (m: unknown) => {
    if (!isToWorker(m)) return;
    chain = chain.then(() => handle(m)).catch((err: unknown) => log.error({ err }, 'worker message handling failed'));
  });
  // Signals sent to the whole process group (Ctrl-C) or to this worker alone.
  const deadline = Number(process.env.PERIMETER_DRAIN_MS ?? 10_000);
  process.on('SIGTERM', () => drain(deadline, 'SIGTERM'));
  process.on('SIGINT', () => drain(deadline, 'SIGINT'));
  process.on('SIGUSR1', () => runtime.reopenLogs());
  // The control process reloads; a SIGHUP sent to the group must not kill a worker.
  process.on('SIGHUP', () => {});
  process.on('disconnect', () => drain(deadline, 'control process went away'));
  send({ t: 'ready' });
}
