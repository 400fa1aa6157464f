/**
 * `perimeter sites DIR`: the site inventory the security team audits. Every
 * site with its cluster, service, owner, listeners, TLS and HSTS state and
 * the file:line that declared it, as an aligned table or JSON rows.
 */
import { formatTable, loadListing, type Column } from './listing.js';
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

const COLUMNS: readonly Column<SiteRow>[] = [
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
  return formatTable(COLUMNS, rows);
}

export async function run(argv: string[]): Promise<number> {
  const loaded = await loadListing('sites', argv, help);
  if (typeof loaded === 'number') return loaded;
  const { snapshot, json } = loaded;
  const rows = siteInventory(snapshot);
  process.stdout.write(json ? JSON.stringify(rows, null, 2) + '\n' : formatSiteTable(rows));
  return 0;
}
