/** The configuration loader thread (./load-thread.ts): lowers its own priority, then loads what it is asked to. */
import { parentPort } from 'node:worker_threads';
import { lowerThisThread } from '../core/priority.js';
import { loadConfig } from './load.js';

// On Linux this is the thread's own nice value (BACKGROUND_NICE_STEPS lower): the process's
// other threads keep theirs. Where it is not allowed (some sandboxes) the thread loads at the
// process's priority.
lowerThisThread();

parentPort!.on('message', (m: { id: number; dir: string }) => {
  loadConfig(m.dir, { blockingReads: true, reuseParsed: true }).then(
    (result) => parentPort!.postMessage({ id: m.id, result }),
    (err: unknown) => parentPort!.postMessage({ id: m.id, error: err instanceof Error ? err.message : String(err) }),
  );
});
