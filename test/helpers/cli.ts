/**
 * Run the real `perimeter run` CLI as a child process (control process plus
 * workers), read its JSON event log, and find its worker processes.
 */
import { spawn, execFileSync, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
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

/** Binds 127.0.0.1:port and closes again: the port bound (the kernel's choice for 0), or null if it was taken. */
function tryListen(port: number): Promise<number | null> {
  return new Promise((resolve) => {
    const srv = net.createServer();
    srv.once('error', () => resolve(null));
    srv.listen(port, '127.0.0.1', () => {
      const got = (srv.address() as net.AddressInfo).port;
      srv.close(() => resolve(got));
    });
  });
}

/** The first port of the kernel's ephemeral range (ip_local_port_range), where listen(0) and outgoing connections take ports. */
function ephemeralStart(): number {
  try {
    const lo = Number(readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8').trim().split(/\s+/)[0]);
    if (Number.isInteger(lo)) return lo;
  } catch {
    /* not Linux */
  }
  return 32768;
}

/**
 * A TCP port that was free a moment ago on 127.0.0.1, for a test that must
 * write a port into a configuration before anything listens on it. Chosen
 * at random below the ephemeral range: a port from listen(0) lies in that
 * range, where an outgoing connection of a test running beside this one
 * can take it as its local port before perimeter listens (a CI run failed
 * on EADDRINUSE that way). Falls back to listen(0).
 */
export async function freePort(): Promise<number> {
  const lo = ephemeralStart();
  const from = 10_000;
  for (let i = 0; i < 50 && lo - from > 1000; i++) {
    const port = from + Math.floor(Math.random() * (lo - from));
    if ((await tryListen(port)) !== null) return port;
  }
  const port = await tryListen(0);
  if (port === null) throw new Error('no free port on 127.0.0.1');
  return port;
}
