/**
 * The platform file of the TLS tests: one cluster `web` with the given
 * listeners and certificates, service `app` at `backendPort` (and any
 * other static services), no health checks, no access log.
 */
export interface TlsPlatform {
  readonly backendPort: number;
  readonly certs: readonly { readonly cert: string; readonly key: string }[];
  /** The cluster's `listen` map (default: an https listener on a free port). */
  readonly listen?: string;
  /** More lines for the cluster, after its certificates (indented for the cluster or its `tls`). */
  readonly extra?: string;
  /** More static services, name → port. */
  readonly services?: Readonly<Record<string, number>>;
}

export function tlsPlatformYaml(o: TlsPlatform): string {
  const services = Object.entries(o.services ?? {}).map(([name, port]) => `    ${name}: ["127.0.0.1:${port}"]\n`).join('');
  return `clusters:
  web:
    listen: ${o.listen ?? '{ https: "127.0.0.1:0" }'}
    tls:
      certificates:
${o.certs.map((c) => `        - { cert: "${c.cert}", key: "${c.key}" }`).join('\n')}
${o.extra ?? ''}
defaults:
  health: { type: none }
discovery:
  static:
    app: ["127.0.0.1:${o.backendPort}"]
${services}access-log:
  path: "off"
`;
}
