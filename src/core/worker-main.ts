/** Entry point of a data-plane worker process (forked by src/core/control.ts). */
import { runWorker } from './worker.js';

runWorker().catch((err: unknown) => {
  process.stderr.write(`perimeter worker: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
  process.exit(3);
});
