/** Shared by the CLI tests: run the compiled CLI as a user runs it, in a child process. */
import { execFile } from 'node:child_process';
import { fileURLToPath } from 'node:url';

/** The repository root (tests run compiled from <outDir>/test/cli; fixtures are read relative to it). */
export const repoRoot = process.cwd();

/** The compiled CLI next to this compiled test (works for dist/ and a private --outDir). */
export const cli = fileURLToPath(new URL('../../src/cli/main.js', import.meta.url));

export interface CliResult {
  readonly code: number;
  readonly stdout: string;
  readonly stderr: string;
}

export function perimeter(args: readonly string[], opts: { timeoutMs?: number } = {}): Promise<CliResult> {
  return new Promise((resolve) => {
    execFile(process.execPath, [cli, ...args], { cwd: repoRoot, timeout: opts.timeoutMs ?? 15_000 }, (err, stdout, stderr) => {
      const code = err ? (typeof err.code === 'number' ? err.code : -1) : 0;
      resolve({ code, stdout, stderr });
    });
  });
}
