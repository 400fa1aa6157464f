/**
 * Configuration loading on a thread of the control process's own, at a
 * lower scheduling priority than the rest of the process.
 *
 * Why: the control process shares a core with a data-plane worker (one
 * worker per core). Reading, parsing and validating the configuration is
 * the heaviest thing a reload does there (about 3 ms for the bench's two
 * small files, 37 ms for a thousand sites: docs/processes.md), and while
 * it runs at the worker's priority it takes the core from requests: in the
 * bench's reload scenario the p99 under 20 reloads in 10 s was 1.46× the
 * steady p99.
 * Linux keeps a nice value per thread, so this thread lowers its own
 * (`os.setPriority` acts on the calling thread) without touching the
 * control's main thread, from which workers are forked and which they
 * would inherit. On a shared core the kernel then gives the worker the CPU
 * first; on an idle machine the thread runs at full speed.
 *
 * The snapshot is plain data (Maps included), so it crosses as a structured
 * clone. If the thread cannot start or dies, loading happens in-process as
 * before.
 */
import { Worker } from 'node:worker_threads';
import { loadConfig, type LoadResult } from './load.js';

type Reply = { id: number; result?: LoadResult; error?: string };

export class ConfigLoader {
  private worker: Worker | undefined;
  private broken = false;
  private nextId = 1;
  private readonly waiting = new Map<number, { dir: string; resolve: (r: LoadResult) => void; reject: (e: Error) => void }>();

  /** Load and validate the configuration in `dir` (see loadConfig), off the main thread when possible. */
  load(dir: string): Promise<LoadResult> {
    const w = this.thread();
    if (w === undefined) return loadConfig(dir);
    return new Promise((resolve, reject) => {
      const id = this.nextId++;
      this.waiting.set(id, { dir, resolve, reject });
      w.postMessage({ id, dir });
    });
  }

  /** Whether loads run on the thread (tests). */
  get offThread(): boolean {
    return this.worker !== undefined && !this.broken;
  }

  async close(): Promise<void> {
    const w = this.worker;
    this.worker = undefined;
    this.broken = true;
    if (w !== undefined) await w.terminate();
  }

  private thread(): Worker | undefined {
    if (this.broken) return undefined;
    if (this.worker !== undefined) return this.worker;
    let w: Worker;
    try {
      w = new Worker(new URL('./load-thread-main.js', import.meta.url));
    } catch {
      this.broken = true;
      return undefined;
    }
    w.unref();
    w.on('message', (m: Reply) => {
      const p = this.waiting.get(m.id);
      if (p === undefined) return;
      this.waiting.delete(m.id);
      if (m.result !== undefined) p.resolve(m.result);
      else p.reject(new Error(m.error ?? 'configuration loader failed'));
    });
    const fail = (): void => {
      if (this.worker !== w) return;
      this.worker = undefined;
      this.broken = true;
      // Whatever was asked of the thread is loaded here instead.
      for (const [id, p] of this.waiting) {
        this.waiting.delete(id);
        loadConfig(p.dir).then(p.resolve, p.reject);
      }
    };
    w.on('error', fail);
    w.on('exit', fail);
    this.worker = w;
    return w;
  }
}
