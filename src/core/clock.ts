/**
 * One coarse clock and one sweep for every deadline in the process.
 * Arming a per-request setTimeout costs more than the rest of a small
 * request's bookkeeping; instead each connection keeps a deadline number
 * and a single interval checks them. Resolution is TICK_MS.
 */
export const TICK_MS = 100;

export interface Expirable {
  /** Absolute coarse time (ms) at which `expire` runs; 0 = none. */
  deadline: number;
  expire(now: number): void;
  /**
   * An item whose deadline is checked along with this one's, without being
   * tracked itself: a client connection's current exchange (one Set add and
   * delete per request were a measurable share of a small request's cost).
   */
  readonly dependent?: Expirable | null;
}

class Sweeper {
  now = Date.now();
  private readonly items = new Set<Expirable>();
  private timer: NodeJS.Timeout | undefined;

  add(item: Expirable): void {
    this.items.add(item);
    if (!this.timer) {
      this.now = Date.now();
      this.timer = setInterval(() => this.tick(), TICK_MS);
      this.timer.unref();
    }
  }

  delete(item: Expirable): void {
    this.items.delete(item);
  }

  private tick(): void {
    const now = (this.now = Date.now());
    for (const item of this.items) {
      if (item.deadline !== 0 && item.deadline <= now) expire(item, now);
      const d = item.dependent;
      if (d != null && d.deadline !== 0 && d.deadline <= now) expire(d, now);
    }
    if (this.items.size === 0 && this.timer) {
      clearInterval(this.timer);
      this.timer = undefined;
    }
  }
}

function expire(item: Expirable, now: number): void {
  item.deadline = 0;
  try {
    item.expire(now);
  } catch {
    // expire handlers close sockets; a throw must not stop the sweep
  }
}

export const sweeper = new Sweeper();

/** Coarse now (refreshed every tick while anything is tracked). */
export function coarseNow(): number {
  return sweeper.now;
}
