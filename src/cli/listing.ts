/**
 * What the listing commands (`perimeter sites`, `perimeter tcp`) share: the
 * arguments `[--json] DIR`, loading a valid configuration, and an aligned
 * plain-text table.
 */
import { stat } from 'node:fs/promises';
import { parseArgs } from 'node:util';
import { formatIssue, loadConfig } from '../config/load.js';
import type { Snapshot } from '../config/types.js';

export interface Column<R> {
  readonly title: string;
  readonly value: (r: R) => string;
}

/** Plain-text table, columns padded to their widest cell, no trailing spaces. */
export function formatTable<R>(columns: readonly Column<R>[], rows: readonly R[]): string {
  const cells = [columns.map((c) => c.title), ...rows.map((r) => columns.map((c) => c.value(r)))];
  const widths = columns.map((_, i) => Math.max(...cells.map((line) => line[i]!.length)));
  return cells.map((line) => line.map((cell, i) => (i === line.length - 1 ? cell : cell.padEnd(widths[i]!))).join('  ')).join('\n') + '\n';
}

/**
 * Parse `[--json] DIR` and load DIR. Returns the exit status when that
 * failed (2 usage, 1 invalid configuration, with the reason on stderr).
 */
export async function loadListing(command: string, argv: string[], help: string): Promise<{ dir: string; snapshot: Snapshot; json: boolean } | number> {
  let parsed;
  try {
    parsed = parseArgs({ args: argv, allowPositionals: true, options: { json: { type: 'boolean' } } });
  } catch (e) {
    process.stderr.write(`perimeter ${command}: ${(e as Error).message}\n\n${help}`);
    return 2;
  }
  if (parsed.positionals.length !== 1) {
    process.stderr.write(`perimeter ${command}: expected one configuration directory\n\n${help}`);
    return 2;
  }
  const dir = parsed.positionals[0]!;
  if (!(await stat(dir).then((s) => s.isDirectory(), () => false))) {
    process.stderr.write(`perimeter ${command}: '${dir}' is not a directory\n`);
    return 2;
  }
  const result = await loadConfig(dir, { blockingReads: true }); // a one-shot command: nothing else runs meanwhile
  if (!result.ok) {
    for (const i of result.issues) process.stderr.write(formatIssue(i) + '\n');
    process.stderr.write(`perimeter ${command}: the configuration in ${dir} is invalid; fix it first (perimeter validate ${dir})\n`);
    return 1;
  }
  return { dir, snapshot: result.snapshot, json: parsed.values.json === true };
}
