/**
 * The file registry: one YAML (or JSON) file naming each service's members,
 * written by a deploy tool or by hand.
 *
 *   services:
 *     web-frontend: ["127.0.0.1:9001", { address: "127.0.0.1:9002", weight: 2 }]
 *
 * It is watched with fs.watch on its directory (editors and deploy tools
 * replace the file by rename, which a watch on the file itself would lose),
 * with a slow stat poll as a fallback for file systems where events are not
 * delivered (network mounts, some containers). Events are debounced so a
 * burst of writes is read once. A file that fails to read or parse keeps the
 * last good content and logs where the problem is (file:line:col); a
 * missing file is treated the same way (a deploy that deletes the registry
 * must not empty every pool). A service absent from a good file has no
 * members.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as net from 'node:net';
import { LineCounter, isMap, isScalar, isSeq, parseDocument } from 'yaml';
import type { Node } from 'yaml';
import type { MemberAddress } from '../types.js';
import { normalizeMembers } from './members.js';
import type { DiscoveryLog } from './log.js';

export interface RegistryIssue {
  readonly file: string;
  readonly line: number;
  readonly column: number;
  readonly message: string;
}

export type RegistryParse =
  | { readonly ok: true; readonly services: ReadonlyMap<string, readonly MemberAddress[]> }
  | { readonly ok: false; readonly issues: readonly RegistryIssue[] };

const HOSTNAME = /^(?=.{1,253}$)[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*\.?$/i;

/** Parse "host:port" or "[v6]:port"; undefined when it is not one. */
export function parseMemberAddress(text: string): { host: string; port: number } | undefined {
  const m = /^\[([^\]]+)\]:(\d{1,5})$/.exec(text) ?? /^([^:[\]]+):(\d{1,5})$/.exec(text);
  if (!m) return undefined;
  const host = m[1]!;
  const port = Number(m[2]);
  if (port < 1 || port > 65535) return undefined;
  if (text.startsWith('[') ? !net.isIPv6(host) : !(net.isIPv4(host) || HOSTNAME.test(host))) return undefined;
  return { host: host.toLowerCase(), port };
}

export function parseRegistry(text: string, file: string): RegistryParse {
  const lines = new LineCounter();
  const doc = parseDocument(text, { lineCounter: lines, prettyErrors: false, uniqueKeys: true });
  const issues: RegistryIssue[] = [];
  const at = (offset: number | undefined, message: string): void => {
    const { line, col } = lines.linePos(offset ?? 0);
    issues.push({ file, line: Math.max(1, line), column: Math.max(1, col), message });
  };
  const where = (node: unknown): number | undefined => (node as Node | null)?.range?.[0];
  for (const e of doc.errors) at(e.pos[0], e.message.split('\n')[0] ?? e.message);
  if (issues.length > 0) return { ok: false, issues };

  const root = doc.contents;
  if (!isMap(root)) {
    at(where(root), 'the registry must be a mapping with a "services" key');
    return { ok: false, issues };
  }
  const services = new Map<string, readonly MemberAddress[]>();
  for (const pair of root.items) {
    const key = isScalar(pair.key) ? String(pair.key.value) : undefined;
    if (key !== 'services') {
      at(where(pair.key), `unknown key ${JSON.stringify(key ?? '?')}; the registry has only "services"`);
      continue;
    }
    if (pair.value === null || (isScalar(pair.value) && pair.value.value === null)) continue; // no services yet
    if (!isMap(pair.value)) {
      at(where(pair.value) ?? where(pair.key), '"services" must map service names to lists of "host:port"');
      continue;
    }
    for (const svc of pair.value.items) {
      const name = isScalar(svc.key) ? String(svc.key.value) : undefined;
      if (!name) {
        at(where(svc.key), 'a service name must be a string');
        continue;
      }
      const members: MemberAddress[] = [];
      if (svc.value === null || (isScalar(svc.value) && svc.value.value === null)) {
        services.set(name, normalizeMembers(members));
        continue;
      }
      if (!isSeq(svc.value)) {
        at(where(svc.value), `service "${name}" must be a list of "host:port" or { address, weight }`);
        continue;
      }
      for (const item of svc.value.items) {
        const member = parseMember(item, name, at, where);
        if (member) members.push(member);
      }
      services.set(name, normalizeMembers(members));
    }
  }
  return issues.length > 0 ? { ok: false, issues } : { ok: true, services };
}

function parseMember(
  item: unknown,
  service: string,
  at: (offset: number | undefined, message: string) => void,
  where: (node: unknown) => number | undefined,
): MemberAddress | undefined {
  if (isScalar(item)) {
    const addr = typeof item.value === 'string' ? parseMemberAddress(item.value) : undefined;
    if (!addr) {
      at(where(item), `"${String(item.value)}" in service "${service}" is not "host:port" (IPv6 as "[::1]:port")`);
      return undefined;
    }
    return { ...addr, weight: 1 };
  }
  if (!isMap(item)) {
    at(where(item), `a member of service "${service}" must be "host:port" or { address, weight }`);
    return undefined;
  }
  let addr: { host: string; port: number } | undefined;
  let weight = 1;
  let ok = true;
  for (const pair of item.items) {
    const key = isScalar(pair.key) ? String(pair.key.value) : '?';
    const value = isScalar(pair.value) ? pair.value.value : undefined;
    if (key === 'address') {
      addr = typeof value === 'string' ? parseMemberAddress(value) : undefined;
      if (!addr) {
        at(where(pair.value) ?? where(pair.key), `address in service "${service}" is not "host:port"`);
        ok = false;
      }
    } else if (key === 'weight') {
      if (typeof value !== 'number' || !Number.isInteger(value) || value < 1 || value > 65535) {
        at(where(pair.value) ?? where(pair.key), `weight in service "${service}" must be a whole number from 1 to 65535`);
        ok = false;
      } else weight = value;
    } else {
      at(where(pair.key), `unknown key "${key}" in a member of service "${service}"; use "address" and "weight"`);
      ok = false;
    }
  }
  if (ok && !addr) {
    at(where(item), `a member of service "${service}" needs an "address"`);
    return undefined;
  }
  return ok && addr ? { ...addr, weight } : undefined;
}

export interface FileRegistryOptions {
  /** Stat poll interval, the fallback when fs.watch events are missed. */
  readonly pollMs?: number;
  /** Quiet time after the last event before the file is read. */
  readonly debounceMs?: number;
}

type Listener = (members: readonly MemberAddress[]) => void;

/** One watched registry file, shared by every service that reads it. */
export class FileRegistry {
  readonly path: string;
  private services: ReadonlyMap<string, readonly MemberAddress[]> | undefined;
  private lastText: string | undefined;
  private lastStat = '';
  private readonly listeners = new Map<string, Set<Listener>>();
  private watcher: fs.FSWatcher | undefined;
  private readonly poll: NodeJS.Timeout;
  private debounce: NodeJS.Timeout | undefined;
  private reading = false;
  private readAgain = false;
  private closed = false;
  private readonly debounceMs: number;

  constructor(
    file: string,
    private readonly log: DiscoveryLog,
    options: FileRegistryOptions = {},
  ) {
    this.path = path.resolve(file);
    this.debounceMs = options.debounceMs ?? 50;
    // Read at once so the first watch() has members before anything serves.
    this.lastStat = this.statKey();
    this.apply(this.readSync());
    this.startWatch();
    this.poll = setInterval(() => this.onPoll(), options.pollMs ?? 2000);
    this.poll.unref();
  }

  /** Calls `fn` now if the content is known, then on every change of the file. */
  subscribe(service: string, fn: Listener): () => void {
    let set = this.listeners.get(service);
    if (!set) this.listeners.set(service, (set = new Set()));
    set.add(fn);
    if (this.services) fn(this.services.get(service) ?? normalizeMembers([]));
    return () => {
      const s = this.listeners.get(service);
      s?.delete(fn);
      if (s && s.size === 0) this.listeners.delete(service);
    };
  }

  get subscribers(): number {
    let n = 0;
    for (const s of this.listeners.values()) n += s.size;
    return n;
  }

  close(): void {
    this.closed = true;
    clearInterval(this.poll);
    if (this.debounce) clearTimeout(this.debounce);
    this.watcher?.close();
    this.watcher = undefined;
    this.listeners.clear();
  }

  private startWatch(): void {
    if (this.watcher || this.closed) return;
    const base = path.basename(this.path);
    try {
      this.watcher = fs.watch(path.dirname(this.path), { persistent: false }, (_event, name) => {
        // Some platforms omit the name; then any event in the directory counts.
        if (name === null || name === base) this.kick();
      });
      this.watcher.on('error', () => {
        // The directory went away or the watch broke; the poll re-establishes it.
        this.watcher?.close();
        this.watcher = undefined;
      });
    } catch {
      this.watcher = undefined; // directory missing: the poll keeps trying
    }
  }

  private onPoll(): void {
    if (!this.watcher) this.startWatch();
    const key = this.statKey();
    if (key !== this.lastStat) this.kick();
  }

  private statKey(): string {
    try {
      const st = fs.statSync(this.path);
      return `${st.ino}:${st.size}:${st.mtimeMs}`;
    } catch {
      return 'missing';
    }
  }

  private kick(): void {
    if (this.closed) return;
    if (this.debounce) clearTimeout(this.debounce);
    this.debounce = setTimeout(() => void this.reload(), this.debounceMs);
    this.debounce.unref();
  }

  private async reload(): Promise<void> {
    this.debounce = undefined;
    if (this.reading) {
      this.readAgain = true;
      return;
    }
    this.reading = true;
    try {
      this.lastStat = this.statKey();
      let text: string | Error;
      try {
        text = await fs.promises.readFile(this.path, 'utf8');
      } catch (err) {
        text = err as Error;
      }
      if (!this.closed) this.apply(text);
    } finally {
      this.reading = false;
      if (this.readAgain && !this.closed) {
        this.readAgain = false;
        this.kick();
      }
    }
  }

  private readSync(): string | Error {
    try {
      return fs.readFileSync(this.path, 'utf8');
    } catch (err) {
      return err as Error;
    }
  }

  private apply(text: string | Error): void {
    if (text instanceof Error) {
      this.log.warn(
        { source: 'file', file: this.path, err: { code: (text as NodeJS.ErrnoException).code, message: text.message }, keeping: this.services !== undefined },
        'discovery: cannot read the registry file; keeping the last good content',
      );
      this.lastText = undefined; // re-read and re-parse once it is back
      return;
    }
    if (text === this.lastText) return;
    this.lastText = text;
    const parsed = parseRegistry(text, this.path);
    if (!parsed.ok) {
      const first = parsed.issues[0]!;
      this.log.warn(
        {
          source: 'file',
          file: this.path,
          issues: parsed.issues.map((i) => `${i.file}:${i.line}:${i.column}: ${i.message}`),
          keeping: this.services !== undefined,
        },
        `discovery: registry file is invalid (${first.file}:${first.line}:${first.column}: ${first.message}); keeping the last good content`,
      );
      return;
    }
    this.services = parsed.services;
    const empty = normalizeMembers([]);
    for (const [service, set] of this.listeners) {
      const members = parsed.services.get(service) ?? empty;
      for (const fn of [...set]) fn(members);
    }
  }
}
