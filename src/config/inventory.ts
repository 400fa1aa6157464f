/**
 * The site inventory the security team audits: every site, where it is
 * served, by whom, and which file declared it. Used by `perimeter sites`
 * and the admin API.
 */
import type { Snapshot } from './types.js';
import { certificateFor, type CertPosture } from '../tls/posture.js';

export interface SiteRow {
  readonly host: string;
  readonly cluster: string;
  readonly service: string;
  readonly owner: string;
  /** e.g. ["http://127.0.0.1:8080"] */
  readonly listeners: readonly string[];
  /** TLS state: 'none' until HTTPS listeners exist (issue 5). */
  readonly tls: string;
  readonly hsts: string;
  /** The certificate serving the site (HTTPS clusters), or null when none covers it. */
  readonly certificate: CertPosture | null;
  readonly file: string;
  readonly line: number;
  readonly column: number;
}

function addr(host: string, port: number): string {
  const h = host === '' ? '*' : host.includes(':') ? `[${host}]` : host;
  return `${h}:${port}`;
}

export function siteInventory(snapshot: Snapshot): SiteRow[] {
  const rows: SiteRow[] = [];
  for (const site of snapshot.sites.values()) {
    const cluster = snapshot.clusters.get(site.cluster);
    const listeners: string[] = [];
    if (cluster?.listen.http) listeners.push(`http://${addr(cluster.listen.http.host, cluster.listen.http.port)}`);
    if (cluster?.listen.https) listeners.push(`https://${addr(cluster.listen.https.host, cluster.listen.https.port)}`);
    const t = cluster?.tls;
    rows.push({
      host: site.host,
      cluster: site.cluster,
      service: site.service,
      owner: site.owner,
      listeners,
      tls: t ? `${t.minVersion === 'TLSv1.3' ? 'TLS 1.3' : 'TLS 1.2+1.3'}${t.redirect && cluster?.listen.http ? ', http redirects' : ''}` : 'none (no https listener)',
      hsts: t ? `max-age=${t.hstsMaxAgeS}${t.hstsIncludeSubdomains ? '; includeSubDomains' : ''}${t.hstsPreload ? '; preload' : ''}` : 'off (needs TLS)',
      certificate: t ? (certificateFor(snapshot, site.cluster, site.host) ?? null) : null,
      file: site.pos.file,
      line: site.pos.line,
      column: site.pos.column,
    });
  }
  rows.sort((a, b) => a.cluster.localeCompare(b.cluster) || a.host.localeCompare(b.host));
  return rows;
}
