/** The configuration loader thread (./load-thread.ts): lowers its own priority, then loads what it is asked to. */
import os from 'node:os';
import { parentPort, workerData } from 'node:worker_threads';
import { loadConfig } from './load.js';

try {
  // On Linux this is the thread's own nice value: the process's other threads keep theirs.
  os.setPriority(Math.min(19, os.getPriority() + Number((workerData as { niceSteps?: number } | null)?.niceSteps ?? 10)));
} catch {
  // Not allowed here (some sandboxes): load at the process's priority.
}

parentPort!.on('message', (m: { id: number; dir: string }) => {
  loadConfig(m.dir).then(
    (result) => parentPort!.postMessage({ id: m.id, result }),
    (err: unknown) => parentPort!.postMessage({ id: m.id, error: err instanceof Error ? err.message : String(err) }),
  );
});
