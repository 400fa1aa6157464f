/**
 * DNS SRV discovery for one service: `_<service>._tcp.<domain>`.
 *
 * - Re-resolves when the smallest TTL of the records used expires, clamped
 *   to [minTtlMs, maxTtlMs] (and never more often than every 50 ms, so a
 *   zero TTL cannot turn into a query storm).
 * - Weight is the SRV weight, 0 counted as 1 (RFC 2782 weight 0 still means
 *   "selectable"; the pool's balancers need a positive weight).
 * - Priority: only the lowest-priority group that has at least one address
 *   is used; higher groups are the fallback when every target of the lower
 *   ones has no address. Health is the pool's business, not discovery's, so
 *   the fallback is not health-driven.
 * - Target addresses come from the additional section when the server puts
 *   them there, else from A and AAAA queries.
 * - A failure (timeout, SERVFAIL, network error, any lookup of the round
 *   failing) keeps the last good answer and retries with exponential backoff
 *   (from min(minTtlMs, 1 s), capped at min(maxTtlMs, 30 s)). An empty list
 *   is never delivered because of a failure.
 * - NXDOMAIN / NODATA is a real answer, but for an edge a sudden empty answer
 *   is more often a broken zone push than a decommissioned service, and
 *   delivering it takes the site down at once, while keeping stale members a
 *   little longer costs little (health checks catch dead ones). So when the
 *   last good answer had members, the empty answer must persist for
 *   `emptyGraceMs` (re-queried meanwhile) before it is delivered; with no
 *   previous members (or emptyGraceMs 0, Envoy strict_dns behaviour) it is
 *   delivered at once.
 */
import * as net from 'node:net';
import type { Answer, SrvAnswer } from 'dns-packet';
import type { DnsSrvSpec } from '../../config/types.js';
import type { MemberAddress } from '../types.js';
import type { DnsClient, DnsResponse } from '../../net/dns-client.js';
import { lowerName, negativeTtl, recordsFor } from '../../net/dns-client.js';
import { normalizeMembers } from './members.js';
import type { DiscoveryLog } from './log.js';

const MIN_REFRESH_MS = 50;
const MAX_BACKOFF_MS = 30_000;
/** Re-query interval for an empty answer without an SOA to say how long it holds. */
const DEFAULT_NEGATIVE_TTL_S = 30;

export interface SrvResolution {
  readonly members: readonly MemberAddress[];
  /** Smallest TTL of the records used, seconds (undefined when nothing said). */
  readonly ttlSeconds: number | undefined;
}

export function srvName(service: string, domain: string): string {
  return `_${service}._tcp.${domain.replace(/\.$/, '')}`;
}

/** One resolution round: SRV, then addresses of the lowest-priority group that has any. */
export async function resolveSrv(client: DnsClient, name: string): Promise<SrvResolution> {
  const ttls: number[] = [];
  const srvResp = await client.query(name, 'SRV');
  // RFC 2782: a single target of "." means "decidedly not available here".
  const srvs = recordsFor(srvResp.answers, name, 'SRV').filter((r) => lowerName(r.data.target) !== '');
  if (srvs.length === 0) {
    return { members: [], ttlSeconds: negativeTtl(srvResp) ?? DEFAULT_NEGATIVE_TTL_S };
  }
  for (const r of recordsFor(srvResp.answers, name, 'SRV')) ttls.push(r.ttl ?? 0);

  const groups = new Map<number, SrvAnswer[]>();
  for (const r of srvs) {
    const p = r.data.priority ?? 0;
    let g = groups.get(p);
    if (!g) groups.set(p, (g = []));
    g.push(r);
  }
  for (const priority of [...groups.keys()].sort((a, b) => a - b)) {
    const group = groups.get(priority)!;
    const resolved = await Promise.all(group.map((r) => addressesOf(client, r.data.target, srvResp)));
    const members: MemberAddress[] = [];
    group.forEach((r, i) => {
      const { addrs, ttls: addrTtls } = resolved[i]!;
      ttls.push(...addrTtls);
      for (const host of addrs) members.push({ host, port: r.data.port, weight: r.data.weight || 1 });
    });
    if (members.length > 0) return { members: normalizeMembers(members), ttlSeconds: Math.min(...ttls) };
  }
  return { members: [], ttlSeconds: ttls.length > 0 ? Math.min(...ttls) : DEFAULT_NEGATIVE_TTL_S };
}

async function addressesOf(client: DnsClient, target: string, srvResp: DnsResponse): Promise<{ addrs: string[]; ttls: number[] }> {
  const literal = target.replace(/\.$/, '');
  if (net.isIP(literal)) return { addrs: [literal], ttls: [] };
  const fromAdditional = [...recordsFor(srvResp.additionals, target, 'A'), ...recordsFor(srvResp.additionals, target, 'AAAA')];
  if (fromAdditional.length > 0) return collect(fromAdditional);
  // Any failure here fails the whole round: a partial answer would shrink the pool.
  const [a, aaaa] = await Promise.all([client.query(target, 'A'), client.query(target, 'AAAA')]);
  const records = [...recordsFor(a.answers, target, 'A'), ...recordsFor(aaaa.answers, target, 'AAAA')];
  const out = collect(records);
  if (records.length === 0) {
    // No address: the negative TTL says when to look again.
    for (const r of [a, aaaa]) {
      const t = negativeTtl(r);
      if (t !== undefined) out.ttls.push(t);
    }
  }
  return out;
}

function collect(records: Answer[]): { addrs: string[]; ttls: number[] } {
  const addrs: string[] = [];
  const ttls: number[] = [];
  for (const r of records) {
    if ((r.type === 'A' || r.type === 'AAAA') && net.isIP(r.data)) {
      addrs.push(r.data);
      ttls.push(r.ttl ?? 0);
    }
  }
  return { addrs, ttls };
}

export interface DnsSrvWatcherOptions {
  readonly emptyGraceMs: number;
}

/** Watches one service; calls `deliver` with each answer it accepts (the caller drops repeats). */
export class DnsSrvWatcher {
  private readonly name: string;
  private timer: NodeJS.Timeout | undefined;
  private stopped = false;
  private failures = 0;
  private emptySince: number | undefined;

  constructor(
    private readonly service: string,
    private readonly spec: DnsSrvSpec,
    private readonly client: DnsClient,
    private readonly log: DiscoveryLog,
    private readonly deliver: (members: readonly MemberAddress[]) => void,
    private readonly options: DnsSrvWatcherOptions,
    /** The last good answer (kept across a restart on config reload). */
    private lastGood: readonly MemberAddress[] | undefined,
  ) {
    this.name = srvName(service, spec.domain);
  }

  start(): void {
    void this.round();
  }

  stop(): void {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
  }

  private schedule(ms: number): void {
    if (this.stopped) return;
    this.timer = setTimeout(() => void this.round(), ms);
    // Discovery never keeps the process alive by itself; listeners do.
    this.timer.unref();
  }

  private clampTtl(seconds: number | undefined): number {
    const ms = (seconds ?? DEFAULT_NEGATIVE_TTL_S) * 1000;
    return Math.max(MIN_REFRESH_MS, Math.min(this.spec.maxTtlMs, Math.max(this.spec.minTtlMs, ms)));
  }

  private async round(): Promise<void> {
    this.timer = undefined;
    let result: SrvResolution;
    try {
      result = await resolveSrv(this.client, this.name);
    } catch (err) {
      if (this.stopped) return;
      this.failures++;
      const base = Math.max(MIN_REFRESH_MS, Math.min(this.spec.minTtlMs, 1000));
      const cap = Math.max(base, Math.min(this.spec.maxTtlMs, MAX_BACKOFF_MS));
      const backoff = Math.min(cap, base * 2 ** (this.failures - 1));
      // Jitter downward only, so hosts spread out but never wait past the cap.
      const delay = Math.max(MIN_REFRESH_MS, Math.round(backoff * (0.8 + 0.2 * Math.random())));
      this.log.warn(
        {
          service: this.service,
          source: 'dns-srv',
          name: this.name,
          err: { code: (err as { code?: string }).code, message: (err as Error).message },
          failures: this.failures,
          retryInMs: delay,
          keeping: this.lastGood?.length ?? 0,
        },
        'discovery: DNS lookup failed; keeping the last good answer',
      );
      this.schedule(delay);
      return;
    }
    if (this.stopped) return;
    if (this.failures > 0) {
      this.log.info({ service: this.service, source: 'dns-srv', name: this.name, failures: this.failures }, 'discovery: DNS lookups recovered');
    }
    this.failures = 0;
    const next = this.clampTtl(result.ttlSeconds);
    if (result.members.length > 0) {
      this.emptySince = undefined;
      this.lastGood = result.members;
      this.deliver(result.members);
      this.schedule(next);
      return;
    }
    // An empty answer.
    const now = Date.now();
    const hadMembers = this.lastGood !== undefined && this.lastGood.length > 0;
    if (!hadMembers || this.options.emptyGraceMs <= 0) {
      this.emptySince = undefined;
      this.lastGood = result.members;
      this.log.info({ service: this.service, source: 'dns-srv', name: this.name }, 'discovery: DNS has no members for this service');
      this.deliver(result.members);
      this.schedule(next);
      return;
    }
    this.emptySince ??= now;
    const left = this.emptySince + this.options.emptyGraceMs - now;
    if (left <= 0) {
      this.log.warn(
        { service: this.service, source: 'dns-srv', name: this.name, emptyForMs: now - this.emptySince, removed: this.lastGood?.length ?? 0 },
        'discovery: DNS still has no members after the grace period; removing them',
      );
      this.emptySince = undefined;
      this.lastGood = result.members;
      this.deliver(result.members);
      this.schedule(next);
      return;
    }
    this.log.warn(
      { service: this.service, source: 'dns-srv', name: this.name, keeping: this.lastGood?.length ?? 0, graceLeftMs: left },
      'discovery: DNS answered no members; keeping the last good answer during the grace period',
    );
    this.schedule(Math.max(MIN_REFRESH_MS, Math.min(next, left)));
  }
}
