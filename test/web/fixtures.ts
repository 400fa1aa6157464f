/** YAML for web tests: one cluster on an ephemeral loopback port, static backends. */
export interface WebConfigOptions {
  readonly services: Readonly<Record<string, readonly number[]>>;
  /** host → service (plus optional extra site YAML lines, indented by 2) */
  readonly sites: Readonly<Record<string, string | { service: string; extra?: string }>>;
  readonly cluster?: string; // extra cluster YAML lines, indented by 4
  readonly defaults?: string; // extra defaults YAML lines, indented by 2
  /** Keep the built-in geolocation databases on (default off: most tests are not about geo). */
  readonly geo?: boolean;
}

export function webConfig(o: WebConfigOptions): { perimeter: string; sites: Record<string, string> } {
  const svc = Object.entries(o.services)
    .map(([name, ports]) => `    ${name}: [${ports.map((p) => `"127.0.0.1:${p}"`).join(', ')}]`)
    .join('\n');
  const perimeter = `clusters:
  web:
    listen: { http: "127.0.0.1:0" }
${o.cluster ?? ''}
defaults:
  health: { type: none }
${o.defaults ?? ''}
discovery:
  static:
${svc}
access-log:
  path: "off"
${o.geo ? '' : 'geo:\n  country-db: off\n  asn-db: off\n'}`;
  let site = '';
  for (const [host, v] of Object.entries(o.sites)) {
    const s = typeof v === 'string' ? { service: v } : v;
    site += `"${host}":\n  service: ${s.service}\n${s.extra ?? ''}\n`;
  }
  return { perimeter, sites: { 'team.yaml': site } };
}
