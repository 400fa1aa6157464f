/**
 * Run the real `perimeter run` CLI as a child process (control process plus
 * workers), read its JSON event log, and find its worker processes.
 */
import { spawn, execFileSync, type ChildProcess } from 'node:child_process';
import net from 'node:net';

export interface LogLine {
  readonly message?: string;
  readonly event?: { readonly action?: string };
  readonly generation?: number;
  readonly worker?: number;
  readonly [k: string]: unknown;
}

export interface RunningPerimeter {
  readonly child: ChildProcess;
  readonly pid: number;
  readonly lines: LogLine[];
  readonly stderr: () => string;
  /** Resolves with the first log line (already seen or future) that matches. */
  waitForLog(pred: (l: LogLine) => boolean, timeoutMs?: number): Promise<LogLine>;
  workerPids(): number[];
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null; at: number }>;
  kill(signal?: NodeJS.Signals): void;
}

export function runPerimeter(dir: string, args: string[] = []): RunningPerimeter {
  const child = spawn(process.execPath, ['dist/src/cli/main.js', 'run', dir, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  const lines: LogLine[] = [];
  const waiters: { pred: (l: LogLine) => boolean; resolve: (l: LogLine) => void }[] = [];
  let buf = '';
  let err = '';
  child.stdout!.setEncoding('utf8');
  child.stdout!.on('data', (d: string) => {
    buf += d;
    let nl: number;
    while ((nl = buf.indexOf('\n')) !== -1) {
      const text = buf.slice(0, nl);
      buf = buf.slice(nl + 1);
      let line: LogLine;
      try {
        line = JSON.parse(text) as LogLine;
      } catch {
        line = { message: text };
      }
      lines.push(line);
      for (let i = waiters.length - 1; i >= 0; i--) {
        if (waiters[i]!.pred(line)) {
          waiters[i]!.resolve(line);
          waiters.splice(i, 1);
        }
      }
    }
  });
  child.stderr!.setEncoding('utf8');
  child.stderr!.on('data', (d: string) => (err += d));
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null; at: number }>((resolve) =>
    child.on('exit', (code, signal) => resolve({ code, signal, at: Date.now() })),
  );
  return {
    child,
    pid: child.pid!,
    lines,
    stderr: () => err,
    waitForLog(pred, timeoutMs = 15_000) {
      const seen = lines.find(pred);
      if (seen) return Promise.resolve(seen);
      return new Promise((resolve, reject) => {
        const w = { pred, resolve: (l: LogLine) => (clearTimeout(timer), resolve(l)) };
        const timer = setTimeout(() => {
          const i = waiters.indexOf(w);
          if (i !== -1) waiters.splice(i, 1);
          reject(new Error(`no matching log line within ${timeoutMs} ms; stderr: ${err}; last lines:\n${lines.slice(-8).map((l) => JSON.stringify(l)).join('\n')}`));
        }, timeoutMs);
        waiters.push(w);
      });
    },
    workerPids() {
      try {
        return execFileSync('pgrep', ['-P', String(child.pid)], { encoding: 'utf8' })
          .split('\n')
          .filter(Boolean)
          .map(Number);
      } catch {
        return [];
      }
    },
    exited,
    kill(signal = 'SIGTERM') {
      child.kill(signal);
    },
  };
}

/** A TCP port that was free a moment ago on 127.0.0.1. */
export async function freePort(): Promise<number> {
  const srv = net.createServer();
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
  const port = (srv.address() as net.AddressInfo).port;
  await new Promise<void>((r) => srv.close(() => r()));
  return port;
}
