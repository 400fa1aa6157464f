/**
 * `perimeter validate DIR`: what a configuration repository's CI runs before
 * merge. Lists every error (not just the first) with file:line:column and a
 * fix, and exits 1 if there is any.
 */
import { stat } from 'node:fs/promises';
import { formatIssue, formatWarning, loadConfig } from '../config/load.js';

export const help = `Usage: perimeter validate [--json] DIR

Check the configuration in DIR (perimeter.yaml and sites/*.yaml) and list
every error with its file, line, column and fix.

Options:
  --json    print {"ok", "errors", "warnings"} as JSON on stdout

Exit status: 0 valid, 1 errors found, 2 usage error (no DIR, DIR missing).
`;

function plural(n: number, word: string): string {
  return `${n} ${word}${n === 1 ? '' : 's'}`;
}

export async function run(argv: string[]): Promise<number> {
  const json = argv.includes('--json');
  const rest = argv.filter((a) => a !== '--json');
  const unknown = rest.filter((a) => a.startsWith('-'));
  if (unknown.length > 0 || rest.length !== 1) {
    process.stderr.write(unknown.length > 0 ? `perimeter validate: unknown option '${unknown[0]}'\n\n${help}` : `perimeter validate: expected one configuration directory\n\n${help}`);
    return 2;
  }
  const dir = rest[0]!;
  const isDir = await stat(dir).then((s) => s.isDirectory(), () => false);
  if (!isDir) {
    process.stderr.write(`perimeter validate: '${dir}' is not a directory\n`);
    return 2;
  }
  const result = await loadConfig(dir, { blockingReads: true }); // a one-shot command: nothing else runs meanwhile
  if (json) {
    const doc = result.ok ? { ok: true, errors: [], warnings: result.warnings } : { ok: false, errors: result.issues, warnings: [] };
    process.stdout.write(JSON.stringify(doc, null, 2) + '\n');
    return result.ok ? 0 : 1;
  }
  if (!result.ok) {
    for (const i of result.issues) process.stderr.write(formatIssue(i) + '\n');
    const files = new Set(result.issues.map((i) => i.file)).size;
    process.stderr.write(`${plural(result.issues.length, 'error')} in ${plural(files, 'file')}\n`);
    return 1;
  }
  for (const w of result.warnings) process.stderr.write(formatWarning(w) + '\n');
  const s = result.snapshot;
  process.stdout.write(`ok: ${plural(s.sites.size, 'site')} in ${plural(s.clusters.size, 'cluster')}\n`);
  return 0;
}
