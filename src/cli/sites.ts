/**
 * `perimeter sites DIR`: the site inventory the security team audits. Every
 * site with its cluster, service, owner, listeners, TLS and HSTS state and
 * the file:line that declared it, as an aligned table or JSON rows.
 */
import { stat } from 'node:fs/promises';
import { parseArgs } from 'node:util';
import { formatIssue, loadConfig } from '../config/load.js';
import { siteInventory } from '../config/inventory.js';
import type { SiteRow } from '../config/inventory.js';

export const help = `Usage: perimeter sites [--json] DIR

List every site of the configuration in DIR: its cluster, service, owner,
listeners, TLS and HSTS state, and the file:line:column that declares it.
Sorted by cluster, then host.

Options:
  --json    print the rows as a JSON array on stdout

Exit status: 0 listed, 1 the configuration is invalid (errors on stderr),
2 usage error (no DIR, DIR missing).
`;

const COLUMNS: readonly { title: string; value: (r: SiteRow) => string }[] = [
  { title: 'HOST', value: (r) => r.host },
  { title: 'CLUSTER', value: (r) => r.cluster },
  { title: 'SERVICE', value: (r) => r.service },
  { title: 'OWNER', value: (r) => r.owner || '-' },
  { title: 'LISTENERS', value: (r) => r.listeners.join(', ') || '-' },
  { title: 'TLS', value: (r) => r.tls },
  { title: 'HSTS', value: (r) => r.hsts },
  {
    title: 'CERTIFICATE',
    value: (r) =>
      r.certificate
        ? `${r.certificate.source} ${r.certificate.issuer.replace(/^.*CN=/, 'CN=')}, until ${r.certificate.notAfter.slice(0, 10)} (${r.certificate.daysLeft}d)`
        : r.tls.startsWith('none')
          ? '-'
          : 'NONE (handshakes fail)',
  },
  { title: 'DECLARED IN', value: (r) => `${r.file}:${r.line}:${r.column}` },
];

/** Plain-text table, columns padded to their widest cell, no trailing spaces. */
export function formatSiteTable(rows: readonly SiteRow[]): string {
  const cells = [COLUMNS.map((c) => c.title), ...rows.map((r) => COLUMNS.map((c) => c.value(r)))];
  const widths = COLUMNS.map((_, i) => Math.max(...cells.map((line) => line[i]!.length)));
  return cells.map((line) => line.map((cell, i) => (i === line.length - 1 ? cell : cell.padEnd(widths[i]!))).join('  ')).join('\n') + '\n';
}

export async function run(argv: string[]): Promise<number> {
  let parsed;
  try {
    parsed = parseArgs({ args: argv, allowPositionals: true, options: { json: { type: 'boolean' } } });
  } catch (e) {
    process.stderr.write(`perimeter sites: ${(e as Error).message}\n\n${help}`);
    return 2;
  }
  if (parsed.positionals.length !== 1) {
    process.stderr.write(`perimeter sites: expected one configuration directory\n\n${help}`);
    return 2;
  }
  const dir = parsed.positionals[0]!;
  if (!(await stat(dir).then((s) => s.isDirectory(), () => false))) {
    process.stderr.write(`perimeter sites: '${dir}' is not a directory\n`);
    return 2;
  }
  const result = await loadConfig(dir);
  if (!result.ok) {
    for (const i of result.issues) process.stderr.write(formatIssue(i) + '\n');
    process.stderr.write(`perimeter sites: the configuration in ${dir} is invalid; fix it first (perimeter validate ${dir})\n`);
    return 1;
  }
  const rows = siteInventory(result.snapshot);
  process.stdout.write(parsed.values.json ? JSON.stringify(rows, null, 2) + '\n' : formatSiteTable(rows));
  return 0;
}
