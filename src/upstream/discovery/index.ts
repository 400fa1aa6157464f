/**
 * Service discovery: who the members of a service are, from one of three
 * sources, delivered to subscribers (the pools) whenever the list changes.
 *
 * Delivery rules, the same for every source:
 * - `onChange` gets the full member list, normalized (sorted by address,
 *   duplicates merged), and only when it differs from the last one delivered.
 * - When the list is already known at `watch()` time it is delivered
 *   synchronously, before `watch()` returns: always for static members, for
 *   a file registry that could be read, and for a service another subscriber
 *   already watches. So a pool built at config apply has its members before
 *   the listener serves. DNS answers arrive later (asynchronously).
 * - A failing source (DNS down, registry unreadable or broken) never causes
 *   an empty list; an empty list is an answer (service absent from static
 *   config or the registry file; NXDOMAIN/NODATA, see dns-srv.ts).
 */
import type { DiscoverySpec, DnsSrvSpec, StaticBackend } from '../../config/types.js';
import type { MemberAddress } from '../types.js';
import { DnsClient, systemNameservers } from '../../net/dns-client.js';
import { DnsSrvWatcher } from './dns-srv.js';
import { FileRegistry } from './file-registry.js';
import type { FileRegistryOptions } from './file-registry.js';
import { normalizeMembers, sameMembers } from './members.js';
import type { DiscoveryLog } from './log.js';

export type { DiscoveryLog } from './log.js';
export { normalizeMembers, sameMembers } from './members.js';
export { parseRegistry, parseMemberAddress, FileRegistry } from './file-registry.js';
export type { RegistryIssue, RegistryParse } from './file-registry.js';
export { resolveSrv, srvName } from './dns-srv.js';

export type DiscoverySource = 'static' | 'file' | 'dns-srv';

export interface DiscoveryOptions {
  /**
   * How long DNS must keep answering "no members" (NXDOMAIN/NODATA) before a
   * service that had members is emptied; 0 delivers empty answers at once.
   * Default 60 s.
   */
  readonly emptyGraceMs?: number;
  /** File registry stat poll interval; default 2000 ms. */
  readonly filePollMs?: number;
  /** File registry debounce; default 50 ms. */
  readonly fileDebounceMs?: number;
}

type Listener = (members: readonly MemberAddress[]) => void;

interface Watch {
  readonly service: string;
  readonly source: DiscoverySource;
  readonly listeners: Set<{ readonly fn: Listener }>;
  /** Last list delivered. */
  members: readonly MemberAddress[] | undefined;
  stop: () => void;
}

export class Discovery {
  private spec: DiscoverySpec;
  private readonly watches = new Map<string, Watch>();
  private readonly registries = new Map<string, FileRegistry>();
  private dnsClient: DnsClient | undefined;
  private closed = false;
  private readonly emptyGraceMs: number;
  private readonly fileOptions: FileRegistryOptions;

  constructor(
    spec: DiscoverySpec,
    private readonly log: DiscoveryLog,
    options: DiscoveryOptions = {},
  ) {
    this.spec = spec;
    this.emptyGraceMs = options.emptyGraceMs ?? 60_000;
    this.fileOptions = { pollMs: options.filePollMs ?? 2000, debounceMs: options.fileDebounceMs ?? 50 };
  }

  /**
   * Start watching `service` from `source`; `onChange` is called with the
   * full member list on every change (and once with the first answer).
   * Returns an unsubscribe function. Duplicate subscriptions for the same
   * service share one watcher.
   */
  watch(service: string, source: DiscoverySource, onChange: Listener): () => void {
    if (this.closed) throw new Error('discovery is closed');
    const key = `${source}\0${service}`;
    let w = this.watches.get(key);
    const fresh = !w;
    if (!w) {
      w = { service, source, listeners: new Set(), members: undefined, stop: () => {} };
      this.watches.set(key, w);
    }
    const sub = { fn: onChange };
    w.listeners.add(sub);
    if (fresh) this.start(w);
    else if (w.members) this.call(w, sub.fn, w.members);
    let done = false;
    const watch = w;
    return () => {
      if (done) return;
      done = true;
      watch.listeners.delete(sub);
      if (watch.listeners.size === 0 && this.watches.get(key) === watch) {
        watch.stop();
        this.watches.delete(key);
        this.dropIdleRegistries();
      }
    };
  }

  /** Replace the spec on config reload: keep watchers whose source settings are unchanged, restart the others. */
  update(spec: DiscoverySpec): void {
    if (this.closed) return;
    const old = this.spec;
    this.spec = spec;
    const dnsChanged = !sameDnsSpec(old.dnsSrv, spec.dnsSrv);
    const fileChanged = old.file?.path !== spec.file?.path;
    if (dnsChanged) {
      // Watchers using the old client are restarted below; close it after.
      const oldClient = this.dnsClient;
      this.dnsClient = undefined;
      this.restartWhere((w) => w.source === 'dns-srv');
      oldClient?.close();
    }
    if (fileChanged) this.restartWhere((w) => w.source === 'file');
    this.restartWhere((w) => w.source === 'static' && !sameStatic(old.static.get(w.service), spec.static.get(w.service)));
    this.dropIdleRegistries();
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    for (const w of this.watches.values()) w.stop();
    this.watches.clear();
    for (const r of this.registries.values()) r.close();
    this.registries.clear();
    this.dnsClient?.close();
    this.dnsClient = undefined;
  }

  private restartWhere(pred: (w: Watch) => boolean): void {
    for (const w of this.watches.values()) {
      if (!pred(w)) continue;
      w.stop();
      w.stop = () => {};
      this.start(w);
    }
  }

  private start(w: Watch): void {
    const deliver = (members: readonly MemberAddress[]): void => this.deliver(w, members);
    switch (w.source) {
      case 'static': {
        const list = this.spec.static.get(w.service);
        if (!list) this.log.warn({ service: w.service, source: 'static' }, 'discovery: no static members configured for this service');
        deliver(normalizeMembers((list ?? []).map((b) => ({ host: b.host, port: b.port, weight: b.weight }))));
        w.stop = () => {};
        return;
      }
      case 'file': {
        const file = this.spec.file;
        if (!file) {
          this.log.warn({ service: w.service, source: 'file' }, 'discovery: service uses the file registry but none is configured');
          w.stop = () => {};
          return;
        }
        let registry = this.registries.get(file.path);
        if (!registry) {
          registry = new FileRegistry(file.path, this.log, this.fileOptions);
          this.registries.set(file.path, registry);
        }
        w.stop = registry.subscribe(w.service, deliver);
        return;
      }
      case 'dns-srv': {
        const dns = this.spec.dnsSrv;
        if (!dns) {
          this.log.warn({ service: w.service, source: 'dns-srv' }, 'discovery: service uses DNS SRV but no dns-srv domain is configured');
          w.stop = () => {};
          return;
        }
        this.dnsClient ??= newClient(dns, this.log);
        const watcher = new DnsSrvWatcher(w.service, dns, this.dnsClient, this.log, deliver, { emptyGraceMs: this.emptyGraceMs }, w.members);
        watcher.start();
        w.stop = () => watcher.stop();
        return;
      }
    }
  }

  private deliver(w: Watch, members: readonly MemberAddress[]): void {
    if (w.members && sameMembers(w.members, members)) return;
    const before = w.members?.length;
    w.members = members;
    this.log.info({ service: w.service, source: w.source, members: members.length, before }, 'discovery: members changed');
    for (const sub of [...w.listeners]) this.call(w, sub.fn, members);
  }

  private call(w: Watch, fn: Listener, members: readonly MemberAddress[]): void {
    try {
      fn(members);
    } catch (err) {
      // One bad subscriber must not stop the others or the watcher.
      this.log.warn({ service: w.service, source: w.source, err: { message: (err as Error).message } }, 'discovery: subscriber threw');
    }
  }

  private dropIdleRegistries(): void {
    for (const [p, r] of this.registries) {
      if (r.subscribers === 0) {
        r.close();
        this.registries.delete(p);
      }
    }
  }
}

function newClient(spec: DnsSrvSpec, log: DiscoveryLog): DnsClient {
  const servers = spec.servers.length > 0 ? spec.servers : systemNameservers();
  if (servers.length === 0) log.warn({ source: 'dns-srv' }, 'discovery: no DNS servers configured and none in /etc/resolv.conf');
  return new DnsClient({ servers, timeoutMs: spec.timeoutMs });
}

function sameDnsSpec(a: DnsSrvSpec | undefined, b: DnsSrvSpec | undefined): boolean {
  if (!a || !b) return a === b;
  return (
    a.domain === b.domain &&
    a.minTtlMs === b.minTtlMs &&
    a.maxTtlMs === b.maxTtlMs &&
    a.timeoutMs === b.timeoutMs &&
    a.servers.length === b.servers.length &&
    a.servers.every((s, i) => s.host === b.servers[i]!.host && s.port === b.servers[i]!.port)
  );
}

function sameStatic(a: readonly StaticBackend[] | undefined, b: readonly StaticBackend[] | undefined): boolean {
  if (!a || !b) return a === b;
  return a.length === b.length && a.every((x, i) => x.host === b[i]!.host && x.port === b[i]!.port && x.weight === b[i]!.weight);
}
