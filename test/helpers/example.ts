/**
 * An example started as a user starts it: its own process group (so npm and
 * everything it starts can be signalled together), output collected, killed
 * after the test.
 */
import { spawn } from 'node:child_process';
import type { TestContext } from 'node:test';

export interface RunningExample {
  /** Everything printed so far (stdout and stderr). */
  output(): string;
  /** Resolves with the exit code. */
  readonly exited: Promise<number | null>;
  /** Signal the whole process group. */
  signal(sig: NodeJS.Signals): void;
}

export function startExample(t: TestContext, command: string, args: string[]): RunningExample {
  const child = spawn(command, args, { detached: true, stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, PERIMETER_LOG_LEVEL: 'warn' } });
  let out = '';
  child.stdout.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr.on('data', (d: Buffer) => (out += d.toString()));
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  const signal = (sig: NodeJS.Signals): void => {
    try {
      process.kill(-child.pid!, sig);
    } catch {
      // already gone
    }
  };
  t.after(() => signal('SIGKILL'));
  return { output: () => out, exited, signal };
}
