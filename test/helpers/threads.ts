/** Threads of a process and their nice values, from Linux /proc (tests of src/core/priority.ts). */
import { readdirSync, readFileSync } from 'node:fs';

export interface ThreadNice {
  readonly tid: number;
  readonly nice: number;
}

/** Every thread of `pid` (this process by default) with its nice value (/proc/<pid>/task/<tid>/stat field 19), main thread first. */
export function threadNices(pid: number | 'self' = 'self'): ThreadNice[] {
  const main = pid === 'self' ? process.pid : pid;
  const out: ThreadNice[] = [];
  for (const t of readdirSync(`/proc/${pid}/task`)) {
    try {
      const f = readFileSync(`/proc/${pid}/task/${t}/stat`, 'utf8').split(') ')[1]!.split(' ');
      out.push({ tid: Number(t), nice: Number(f[16]) });
    } catch {
      // the thread ended meanwhile
    }
  }
  return out.sort((a, b) => (a.tid === main ? -1 : b.tid === main ? 1 : a.tid - b.tid));
}
