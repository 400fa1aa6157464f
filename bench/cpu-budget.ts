/**
 * CPU quotas for the "1 vs 2 workers on a CPU budget" row of bench/run.ts.
 *
 * On a 2-CPU machine that also runs the load generator and the backend, no
 * proxy can show 2 workers doing twice the work of one: there is no idle
 * second CPU to give the second worker. Capping each worker process at the
 * same fraction of a CPU (its own cgroup, CFS quota) makes the second worker
 * bring exactly as much CPU again, with room left for wrk and the backend,
 * so the ratio says whether throughput grows with the CPU the workers get:
 * what "scales across cores" means, minus effects of the hardware itself
 * (shared caches, memory bandwidth).
 *
 * cgroup v1 (`/sys/fs/cgroup/cpu`, cpu.cfs_quota_us) or v2 (cpu.max); needs
 * root. Groups are named perimeter-bench-<pid>-<n> and removed by release().
 */
import { existsSync, mkdirSync, readFileSync, rmdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

const PERIOD_US = 100_000;

interface Layout {
  readonly root: string;
  readonly v2: boolean;
}

function layout(): Layout | string {
  if (existsSync('/sys/fs/cgroup/cpu/cpu.cfs_quota_us')) return { root: '/sys/fs/cgroup/cpu', v2: false };
  if (existsSync('/sys/fs/cgroup/cgroup.controllers')) {
    const controllers = readFileSync('/sys/fs/cgroup/cgroup.controllers', 'utf8');
    if (!/\bcpu\b/.test(controllers)) return 'the cgroup v2 cpu controller is not available';
    try {
      writeFileSync('/sys/fs/cgroup/cgroup.subtree_control', '+cpu');
    } catch {
      // already enabled, or not permitted: creating a group below says which
    }
    return { root: '/sys/fs/cgroup', v2: true };
  }
  return 'no cgroup cpu controller under /sys/fs/cgroup';
}

export class CpuBudget {
  private readonly groups: { dir: string; pids: number[] }[] = [];
  private next = 0;

  private constructor(
    private readonly where: Layout,
    /** Fraction of one CPU each limited process may use. */
    readonly share: number,
  ) {}

  /** A budget of `share` of a CPU per process, or why there cannot be one here. */
  static open(share: number): CpuBudget | string {
    const l = layout();
    if (typeof l === 'string') return l;
    const b = new CpuBudget(l, share);
    try {
      const probe = b.group();
      rmdirSync(probe);
      b.next = 0;
    } catch (err) {
      return `cannot create a cgroup (${err instanceof Error ? err.message : String(err)}); run as root`;
    }
    return b;
  }

  private group(): string {
    const dir = join(this.where.root, `perimeter-bench-${process.pid}-${this.next++}`);
    mkdirSync(dir);
    const quota = Math.round(this.share * PERIOD_US);
    if (this.where.v2) {
      writeFileSync(join(dir, 'cpu.max'), `${quota} ${PERIOD_US}`);
    } else {
      writeFileSync(join(dir, 'cpu.cfs_period_us'), String(PERIOD_US));
      writeFileSync(join(dir, 'cpu.cfs_quota_us'), String(quota));
    }
    return dir;
  }

  /** Put each process (every thread of it) in a group of its own, capped at `share` of a CPU. */
  limit(pids: readonly number[]): void {
    for (const pid of pids) {
      const dir = this.group();
      writeFileSync(join(dir, 'cgroup.procs'), String(pid));
      this.groups.push({ dir, pids: [pid] });
    }
  }

  /** Move every limited process back to the root group and remove the groups. */
  release(): void {
    for (const g of this.groups.splice(0)) {
      for (const pid of g.pids) {
        try {
          writeFileSync(join(this.where.root, 'cgroup.procs'), String(pid));
        } catch {
          // exited
        }
      }
      try {
        rmdirSync(g.dir);
      } catch {
        // still has a task that exited meanwhile; the kernel frees it with the last one
      }
    }
  }
}
