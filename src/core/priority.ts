/**
 * Scheduling priority of background work in the control process.
 *
 * With workers, the control process shares the machine's cores with the
 * data-plane workers (one worker per core; the bench pins control and
 * worker to the same core). Whatever the control process does on a reload
 * takes the core from a worker's requests. Its main thread must keep the
 * workers' priority, because Linux gives a forked child the nice value of
 * the thread that forked it, and an unprivileged worker could not raise its
 * own back. Its other threads need not: V8's platform threads (garbage
 * collection and optimising compilation, mostly for the configuration
 * loader thread), libuv's thread pool (the reload's file reads) and the
 * loader thread itself (../config/load-thread.ts). Linux keeps a nice value
 * per thread (setpriority(2) on a thread id), so these go to nice +10: on a
 * busy core the kernel runs the worker's requests first, on an idle one
 * nothing changes. Measured with the bench's configuration
 * (/proc/<pid>/task/<tid>/schedstat over 100 reloads, two runs each), the
 * control process's CPU per reload at the workers' priority fell from
 * 3.7 ms (main thread 1.2, V8's threads 2.0, the pool 0.5) to 1.4–1.5 ms,
 * the main thread's; the worker's own 1.1 ms is unchanged, and the loader
 * thread's 5–7 ms already ran at nice +10.
 *
 * Not SCHED_IDLE, though the kernel would then preempt these threads at
 * once: on a saturated core a SCHED_IDLE thread gets 0.3% of it, and the
 * thread pool also serves the admin listener (password hashing, file
 * reads) and DNS lookups, which an operator needs most when the workers are
 * overloaded. At nice +10 they keep about 10%.
 */
import { readdirSync } from 'node:fs';
import os from 'node:os';

/** How many nice steps background threads go below the main thread (capped at 19). */
export const BACKGROUND_NICE_STEPS = 10;

/** The nice value background threads run at: the calling thread's plus `steps`, at most 19. */
function backgroundNice(steps = BACKGROUND_NICE_STEPS): number {
  return Math.min(19, os.getPriority() + steps);
}

/** Lower the calling thread (a worker thread) by `steps` nice values; where that is not allowed it keeps its priority. */
export function lowerThisThread(steps = BACKGROUND_NICE_STEPS): void {
  try {
    os.setPriority(backgroundNice(steps));
  } catch {
    // not allowed here (some sandboxes)
  }
}

/**
 * Lower every thread of this process but the main thread to the background
 * nice value (threads already lower keep theirs). Linux only
 * (/proc/self/task); elsewhere, or where it is refused, nothing changes.
 * Call it from the main thread once its helper threads exist (after the
 * first configuration load started libuv's pool). Threads started later
 * lower themselves (the loader thread) or are the main thread's to lower.
 * Returns how many threads were lowered.
 */
export function lowerHelperThreads(steps = BACKGROUND_NICE_STEPS): number {
  if (process.platform !== 'linux') return 0;
  let tids: string[];
  try {
    tids = readdirSync('/proc/self/task');
  } catch {
    return 0;
  }
  const want = backgroundNice(steps);
  let lowered = 0;
  for (const t of tids) {
    const tid = Number(t);
    if (tid === process.pid || !Number.isInteger(tid)) continue;
    try {
      if (os.getPriority(tid) < want) os.setPriority(tid, want);
      lowered++;
    } catch {
      // the thread ended meanwhile, or lowering is not allowed here
    }
  }
  return lowered;
}

/**
 * Let the event loop serve what is waiting before the next step of a
 * reload: a timer, not setImmediate, so the loop passes through its I/O poll
 * (a setImmediate scheduled from I/O runs before the next poll). In a
 * worker, requests that arrived during the previous step are answered
 * first; in the control process, which shares a core with a worker at the
 * same priority, the process sleeps for a moment and the worker gets the
 * core. A reload's steps each take 0.1–0.4 ms; one block of all of them
 * delayed a burst of requests by about a millisecond (BENCHMARKS.md,
 * configuration changes). Each yield adds about 1 ms to the reload.
 */
export function yieldToRequests(): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, 0));
}
