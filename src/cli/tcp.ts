/**
 * `perimeter tcp DIR`: the TCP proxy listeners the security team audits:
 * where each listens, its service and allowlist, PROXY protocol, trusted
 * load balancers, limits, timeouts and the declaring file:line. Live
 * sessions and bytes are on the admin API (GET /api/tcp).
 */
import { formatTable, loadListing, type Column } from './listing.js';
import type { TcpListenerSpec } from '../config/types.js';

export const help = `Usage: perimeter tcp [--json] DIR

List every TCP proxy listener of the configuration in DIR: address,
service, allowlist, PROXY protocol towards backends, trusted load balancers
(whose PROXY header is required), limits, timeouts, and the file:line:column
that declares it. Sorted by name. Live sessions and bytes: GET /api/tcp on
the admin listener.

Options:
  --json    print the rows as a JSON array on stdout

Exit status: 0 listed, 1 the configuration is invalid (errors on stderr),
2 usage error (no DIR, DIR missing).
`;

export interface TcpRow {
  readonly name: string;
  readonly listen: string;
  readonly service: string;
  readonly allowlist: string;
  readonly proxyProtocol: TcpListenerSpec['proxyProtocol'];
  readonly trustedLoadBalancers: readonly string[];
  readonly maxConnections: number;
  readonly maxPerSource: number;
  readonly connectTimeoutMs: number;
  readonly idleTimeoutMs: number;
  readonly proxyHeaderTimeoutMs: number;
  readonly file: string;
  readonly line: number;
  readonly column: number;
}

export function tcpInventory(specs: Iterable<TcpListenerSpec>): TcpRow[] {
  return [...specs]
    .map((t) => ({
      name: t.name,
      listen: `${t.listen.host.includes(':') ? `[${t.listen.host}]` : t.listen.host}:${t.listen.port}`,
      service: t.service,
      allowlist: t.allowlist,
      proxyProtocol: t.proxyProtocol,
      trustedLoadBalancers: t.trustedLoadBalancers,
      maxConnections: t.maxConnections,
      maxPerSource: t.maxPerSource,
      connectTimeoutMs: t.connectTimeoutMs,
      idleTimeoutMs: t.idleTimeoutMs,
      proxyHeaderTimeoutMs: t.proxyHeaderTimeoutMs,
      file: t.pos.file,
      line: t.pos.line,
      column: t.pos.column,
    }))
    .sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
}

function ms(n: number): string {
  if (n % 3_600_000 === 0) return `${n / 3_600_000}h`;
  if (n % 60_000 === 0) return `${n / 60_000}m`;
  if (n % 1000 === 0) return `${n / 1000}s`;
  return `${n}ms`;
}

const COLUMNS: readonly Column<TcpRow>[] = [
  { title: 'NAME', value: (r) => r.name },
  { title: 'LISTEN', value: (r) => r.listen },
  { title: 'SERVICE', value: (r) => r.service },
  { title: 'ALLOWLIST', value: (r) => r.allowlist },
  { title: 'PROXY-OUT', value: (r) => r.proxyProtocol },
  { title: 'TRUSTED-LBS', value: (r) => r.trustedLoadBalancers.join(',') || '-' },
  { title: 'LIMITS', value: (r) => `${r.maxConnections} total, ${r.maxPerSource}/source` },
  { title: 'TIMEOUTS', value: (r) => `connect ${ms(r.connectTimeoutMs)}, idle ${ms(r.idleTimeoutMs)}${r.trustedLoadBalancers.length ? `, header ${ms(r.proxyHeaderTimeoutMs)}` : ''}` },
  { title: 'DECLARED IN', value: (r) => `${r.file}:${r.line}:${r.column}` },
];

export function formatTcpTable(rows: readonly TcpRow[]): string {
  return formatTable(COLUMNS, rows);
}

export async function run(argv: string[]): Promise<number> {
  const loaded = await loadListing('tcp', argv, help);
  if (typeof loaded === 'number') return loaded;
  const { dir, snapshot, json } = loaded;
  const rows = tcpInventory(snapshot.tcp.values());
  if (json) process.stdout.write(JSON.stringify(rows, null, 2) + '\n');
  else if (rows.length === 0) process.stdout.write(`no tcp listeners in ${dir}\n`);
  else process.stdout.write(formatTcpTable(rows));
  return 0;
}
