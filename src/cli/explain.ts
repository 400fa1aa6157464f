/**
 * `perimeter explain DIR --host H`: which cluster, site, service, backends
 * and policies apply to a request, and which rule says so, without sending
 * it. The decision is src/web/explain.ts, which runs the proxy's own parse
 * and route code; this file reads the configuration, optionally the live
 * pool state from the admin API, and prints.
 */
import { stat } from 'node:fs/promises';
import { isIP } from 'node:net';
import { parseArgs } from 'node:util';
import { formatIssue, loadConfig } from '../config/load.js';
import { formatDuration } from '../config/values.js';
import { clientAddress } from '../net/cidr.js';
import type { PoolDescription } from '../upstream/pool.js';
import { clustersOnPort, ExplainInputError, explainRequest } from '../web/explain.js';
import type { Explanation } from '../web/explain.js';
import { adminBase, adminFromConfig, adminRequest, AdminUnreachable, readToken } from './reload.js';

export const help = `Usage: perimeter explain DIR --host HOST [options]

Say what perimeter would do with an HTTP request, and why, without sending
it: the listener and cluster, the site and how it matched, the service and
its backends, the balancer, panic, retry, forwarding, timeout, limit and log
policies. It runs the proxy's own parsing and routing code on DIR's
configuration.

Options:
  --host HOST          the Host header (any case, may carry a port)
  --path PATH          request target, query string allowed (default /)
  --method METHOD      request method, case-sensitive (default GET)
  --from IP            the client (peer) address: decides whether its
                       X-Forwarded-* headers are trusted
  --cluster NAME       the cluster whose listener receives the request
  --port N             ... or the listener port that receives it
                       (default: the cluster that declares the host)
  --admin URL          also ask the running perimeter's admin API (e.g.
                       http://127.0.0.1:9901) for live backends, health,
                       ejection, balancer scores and panic state
  --token-file FILE    bearer token for the admin API (default:
                       admin.token-file in DIR/perimeter.yaml)
  --json               print the decision as JSON

Exit status: 0 the request would be routed to a backend, 1 perimeter would
answer it itself with an error (or the configuration is invalid), 2 usage
error, 3 the admin API could not be reached.
`;

function usage(message: string): number {
  process.stderr.write(`perimeter explain: ${message}\n\n${help}`);
  return 2;
}

function size(n: number): string {
  for (const [unit, s] of [['g', 1024 ** 3], ['m', 1024 ** 2], ['k', 1024]] as const) {
    if (n >= s && n % s === 0) return `${n / s}${unit}`;
  }
  return String(n);
}

/** The human-readable form: aligned "label  value" lines, then the reasons. */
export function formatExplanation(e: Explanation): string {
  const lines: [string, string][] = [];
  const r = e.request;
  lines.push(['request', `${r.method} ${r.path} Host: ${r.host}${r.from ? ` from ${r.from}` : ''}`]);
  lines.push(['outcome', e.outcome === 'route' ? 'routed to a backend' : `perimeter answers ${e.status} ${e.errorCode}`]);
  lines.push(['cluster', `${e.cluster} (listener ${e.listener ?? 'none'})`]);
  if (e.site) lines.push(['site', `${e.site} (${e.matchedBy}), declared in ${e.declaredAt}${e.owner ? `, owner ${e.owner}` : ''}`]);
  if (e.service) lines.push(['service', `${e.service} (${e.serviceSource}), balancer ${e.balancer}`]);
  if (e.service) {
    if (e.backends.length === 0) lines.push(['backends', e.backendsFrom === 'run time' ? 'resolved at run time (pass --admin to see them)' : 'none']);
    e.backends.forEach((b, i) => {
      let s = `${b.key}  weight ${b.weight}  ${b.health}`;
      if (b.ejected) s += ` ejected until ${b.ejectedUntil ?? '?'}`;
      if (b.score !== undefined) s += `  score ${Number.isFinite(b.score) && b.score < 1e300 ? b.score.toFixed(1) : 'max'}`;
      if (b.reason) s += `  (${b.reason})`;
      lines.push([i === 0 ? 'backends' : '', s]);
    });
  }
  if (e.panic) {
    const state = e.panic.inPanic === undefined ? '' : e.panic.inPanic ? 'IN PANIC now, ' : 'not in panic, ';
    lines.push(['panic', `${state}threshold ${e.panic.thresholdPercent}%, mode ${e.panic.mode}`]);
  }
  if (e.retries) lines.push(['retries', `${r.method} ${e.retries.idempotent ? 'is' : 'is not'} idempotent; up to ${e.retries.attempts} more ${e.retries.attempts === 1 ? 'try' : 'tries'}, budget ${e.retries.budgetPercent}% (min ${e.retries.minConcurrency})`]);
  lines.push(['forwarding', `${e.forwarding.trustedPeer ? 'trusted proxy' : 'untrusted client'}: X-Forwarded-For ${e.forwarding.xForwardedFor}`]);
  const t = e.timeouts;
  lines.push(['timeouts', `request-header ${formatDuration(t.requestHeaderMs)}, client-idle ${formatDuration(t.clientIdleMs)}, connect ${formatDuration(t.connectMs)}, response ${formatDuration(t.responseMs)}, upstream-idle ${formatDuration(t.upstreamIdleMs)}`]);
  const l = e.limits;
  lines.push(['limits', `header-bytes ${size(l.headerBytes)}, header-count ${l.headerCount}, uri-length ${size(l.uriLength)}, body-bytes ${l.bodyBytes === 0 ? 'unlimited' : size(l.bodyBytes)}`]);
  lines.push(['log', e.logPolicy.omit.length > 0 ? `omits ${e.logPolicy.omit.join(', ')}` : 'omits nothing']);
  const width = Math.max(...lines.map(([k]) => k.length));
  let out = lines.map(([k, v]) => `${k.padEnd(width)}  ${v}`).join('\n') + '\n\nwhy:\n';
  for (const reason of e.reasons) out += `  - ${reason}\n`;
  return out;
}

export async function run(argv: string[]): Promise<number> {
  let parsed;
  try {
    parsed = parseArgs({
      args: argv,
      allowPositionals: true,
      options: {
        host: { type: 'string' },
        path: { type: 'string' },
        method: { type: 'string' },
        from: { type: 'string' },
        port: { type: 'string' },
        cluster: { type: 'string' },
        admin: { type: 'string' },
        'token-file': { type: 'string' },
        json: { type: 'boolean' },
      },
    });
  } catch (e) {
    return usage((e as Error).message);
  }
  const { values: v, positionals } = parsed;
  if (positionals.length !== 1) return usage('expected one configuration directory');
  if (v.host === undefined) return usage('--host is required');
  if (v.port !== undefined && v.cluster !== undefined) return usage('give --port or --cluster, not both');
  if (v.from !== undefined && isIP(clientAddress(v.from)) === 0) return usage(`--from '${v.from}' is not an IP address`);
  let port: number | undefined;
  if (v.port !== undefined) {
    if (!/^[0-9]{1,5}$/.test(v.port) || Number(v.port) > 65535) return usage(`--port '${v.port}' is not a port number`);
    port = Number(v.port);
  }
  if (v.path !== undefined && v.path === '') return usage('--path is empty (use / for the root)');
  const dir = positionals[0]!;
  if (!(await stat(dir).then((s) => s.isDirectory(), () => false))) {
    process.stderr.write(`perimeter explain: '${dir}' is not a directory\n`);
    return 2;
  }
  let token: string | undefined;
  try {
    token = await readToken(v['token-file']);
    if (token === undefined && v.admin !== undefined) {
      const tokenFile = (await adminFromConfig(dir)).tokenFile;
      if (tokenFile) token = await readToken(tokenFile).catch(() => undefined);
    }
  } catch (e) {
    process.stderr.write(`perimeter explain: ${(e as Error).message}\n`);
    return 2;
  }

  const loaded = await loadConfig(dir, { blockingReads: true }); // a one-shot command: nothing else runs meanwhile
  if (!loaded.ok) {
    for (const i of loaded.issues) process.stderr.write(formatIssue(i) + '\n');
    process.stderr.write(`perimeter explain: the configuration in ${dir} is invalid; fix it first (perimeter validate ${dir})\n`);
    return 1;
  }
  const snapshot = loaded.snapshot;
  let cluster = v.cluster;
  if (port !== undefined) {
    const on = clustersOnPort(snapshot, port);
    if (on.length === 0) return usage(`no cluster listens on port ${port}`);
    if (on.length > 1) return usage(`clusters ${on.join(', ')} all listen on port ${port}: use --cluster`);
    cluster = on[0];
  }

  let live: PoolDescription[] | undefined;
  let liveNote: string | undefined;
  if (v.admin !== undefined) {
    const base = adminBase(v.admin);
    try {
      const res = await adminRequest(base, '/api/pools', { token });
      const body = res.body as { generation?: unknown; pools?: unknown };
      if (res.status !== 200 || !Array.isArray(body.pools)) throw new AdminUnreachable(`the admin API at ${base} answered /api/pools with ${res.status} and no pool list`);
      live = body.pools as PoolDescription[];
      liveNote = `live state from ${base} (running generation ${String(body.generation)}; it serves the configuration it last applied, which may differ from ${dir})`;
    } catch (e) {
      if (!(e instanceof AdminUnreachable)) throw e;
      process.stderr.write(`perimeter explain: ${e.message}\n`);
      return 3;
    }
  }

  let explanation: Explanation;
  try {
    explanation = explainRequest(snapshot, { host: v.host, path: v.path, method: v.method, from: v.from, cluster }, live);
  } catch (e) {
    if (e instanceof ExplainInputError) return usage(e.message);
    throw e;
  }
  if (liveNote) explanation = { ...explanation, reasons: [...explanation.reasons, liveNote] };
  process.stdout.write(v.json ? JSON.stringify(explanation, null, 2) + '\n' : formatExplanation(explanation));
  return explanation.outcome === 'route' ? 0 : 1;
}
