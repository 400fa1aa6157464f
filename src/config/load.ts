/**
 * Configuration loader: a directory (perimeter.yaml + sites/*.yaml) → an
 * immutable Snapshot, or every error found, each with file, line, column
 * and a fix. YAML is parsed keeping positions; the shape is checked by the
 * zod schemas of ./schema.ts; then names and references are cross-checked
 * and defaults merged (built-in ← defaults ← cluster / service ← site).
 */
import { existsSync, readFileSync, type Dirent } from 'node:fs';
import { open, readdir, readFile, stat } from 'node:fs/promises';
import path from 'node:path';
import { isAlias, isMap, isScalar, isSeq, LineCounter, parseDocument, type Document, type Node as YamlNode } from 'yaml';
import type { z } from 'zod';
import type {
  AccessLogSpec,
  AcmeSpec,
  AdminSpec,
  AllowlistStoreSpec,
  BalancerKind,
  UpstreamProtocol,
  ClusterSpec,
  ConfigIssue,
  DiscoverySpec,
  DnsSrvSpec,
  HealthSpec,
  LimitSpec,
  ListenAddress,
  PanicSpec,
  PassiveHealthSpec,
  RetrySpec,
  ServiceSpec,
  SiteSpec,
  Snapshot,
  StaticBackend,
  TcpListenerSpec,
  TimeoutSpec,
  TlsSpec,
} from './types.js';
import {
  platformKeys,
  platformSchema,
  securityKeys,
  siteSchema,
  siteTimeoutBounds,
  valueFormats,
  type PlatformWire,
  type SiteWire,
} from './schema.js';
import { closest, didYouMean } from './suggest.js';
import type { GeoSpec } from './types.js';
import { builtinAsnDb, builtinCountryDb, ASN_PACKAGE, COUNTRY_PACKAGE } from '../geo/builtin.js';
import { checkDnsName, describe, formatDuration, parseCidr, parseDuration, parseHostPort, parsePercent, parseSize, parseStatusRanges, parseSiteHost } from './values.js';

export type LoadResult = { ok: true; snapshot: Snapshot; warnings: ConfigIssue[] } | { ok: false; issues: ConfigIssue[] };

export const PLATFORM_FILE = 'perimeter.yaml';
export const SITES_DIR = 'sites';
/** Where the access log goes when perimeter.yaml does not say (relative to the working directory). */
export const DEFAULT_ACCESS_LOG = 'logs/access.log';
export const DEFAULT_DATA_DIR = 'data';

/** Built-in values: what a setting is when no file says otherwise. */
export const builtinDefaults = {
  balancer: 'latency' as BalancerKind,
  protocol: 'http1' as UpstreamProtocol,
  timeouts: {
    requestHeaderMs: 10_000,
    clientIdleMs: 60_000,
    connectMs: 3_000,
    responseMs: 60_000,
    // Below Node's default server keep-alive timeout (5s), so a pooled
    // connection is dropped by us before a typical backend closes it under us.
    upstreamIdleMs: 4_000,
  } satisfies TimeoutSpec,
  limits: { headerBytes: 32 * 1024, headerCount: 100, uriLength: 8 * 1024, bodyBytes: 0 } satisfies LimitSpec,
  health: {
    kind: 'http',
    path: '/',
    intervalMs: 5_000,
    timeoutMs: 2_000,
    jitter: 0.1,
    rise: 2,
    fall: 3,
    expectStatus: [[200, 399]],
    host: '',
  } satisfies HealthSpec,
  passive: { consecutiveFailures: 5, baseEjectionMs: 10_000, maxEjectionMs: 300_000, maxEjectedPercent: 50 } satisfies PassiveHealthSpec,
  panic: { thresholdPercent: 50, mode: 'serve-all' } satisfies PanicSpec,
  retries: { attempts: 2, budgetPercent: 20, minRetryConcurrency: 3 } satisfies RetrySpec,
  dnsSrv: { minTtlMs: 1_000, maxTtlMs: 300_000, timeoutMs: 2_000 },
  tcp: { connectTimeoutMs: 5_000, idleTimeoutMs: 3_600_000, proxyHeaderTimeoutMs: 5_000, maxConnections: 10_000, maxPerSource: 100 },
} as const;

function format(i: ConfigIssue, severity: 'error' | 'warning'): string {
  return `${i.file}:${i.line}:${i.column}: ${severity}: ${i.message}${i.fix ? `\n  fix: ${i.fix}` : ''}`;
}

/** "sites/a.yaml:3:5: error: <message>\n  fix: <fix>" */
export function formatIssue(i: ConfigIssue): string {
  return format(i, 'error');
}

/** As formatIssue, for LoadResult.warnings. */
export function formatWarning(i: ConfigIssue): string {
  return format(i, 'warning');
}

type Path = readonly PropertyKey[];
type Pos = { line: number; column: number };

/** One YAML file with its positions kept. */
class SourceFile {
  readonly lines = new LineCounter();
  readonly doc: Document.Parsed;
  constructor(
    readonly rel: string,
    text: string,
  ) {
    this.doc = parseDocument(text, { lineCounter: this.lines, keepSourceTokens: true, uniqueKeys: false, prettyErrors: false });
  }

  at(offset: number): Pos {
    const p = this.lines.linePos(offset);
    return { line: p.line, column: p.col };
  }

  nodePos(node: YamlNode | null | undefined): Pos | undefined {
    return node?.range ? this.at(node.range[0]) : undefined;
  }

  /** The key and value nodes at a path; stops at the deepest part that exists. */
  locate(p: Path): { key?: YamlNode; value?: YamlNode; found: boolean } {
    let cur: unknown = this.doc.contents;
    let key: YamlNode | undefined;
    for (const seg of p) {
      if (isAlias(cur)) cur = cur.resolve(this.doc);
      if (isMap(cur)) {
        // The last of duplicate keys wins, as in toJS().
        const pair = [...cur.items].reverse().find((it) => keyText(it.key) === String(seg));
        if (!pair) return { key, value: cur, found: false };
        key = pair.key as YamlNode;
        cur = pair.value;
      } else if (isSeq(cur)) {
        const item = cur.items[Number(seg)];
        if (item === undefined) return { key, value: cur, found: false };
        key = undefined;
        cur = item;
      } else {
        return { key, value: (cur as YamlNode | null) ?? undefined, found: false };
      }
    }
    return { key, value: (cur as YamlNode | null) ?? undefined, found: true };
  }

  /** Where to point for a value: the value itself, or its key when it is empty. */
  valuePos(p: Path): Pos {
    const { key, value, found } = this.locate(p);
    const valueHasText = value?.range && (!isScalar(value) || value.value !== null || (value.source ?? '') !== '');
    if (found && valueHasText) return this.nodePos(value)!;
    return this.nodePos(key) ?? this.nodePos(value) ?? { line: 1, column: 1 };
  }

  keyPos(p: Path): Pos {
    const { key, value } = this.locate(p);
    return this.nodePos(key) ?? this.nodePos(value) ?? { line: 1, column: 1 };
  }
}

function keyText(k: unknown): string {
  if (isScalar(k)) return String(k.value);
  return String(k);
}

class Issues {
  readonly errors: ConfigIssue[] = [];
  readonly warnings: ConfigIssue[] = [];
  error(file: string, pos: Pos, message: string, fix: string): void {
    this.errors.push({ file, line: pos.line, column: pos.column, message, fix });
  }
  warn(file: string, pos: Pos, message: string, fix: string): void {
    this.warnings.push({ file, line: pos.line, column: pos.column, message, fix });
  }
}

function fileRank(f: string): string {
  return f === PLATFORM_FILE ? '' : f;
}

function sortIssues(list: ConfigIssue[]): ConfigIssue[] {
  return [...list].sort((a, b) => fileRank(a.file).localeCompare(fileRank(b.file)) || a.line - b.line || a.column - b.column);
}

// ---------------------------------------------------------------------------
// zod issues → positioned messages

interface ZodDefLike {
  type: string;
  innerType?: z.ZodType;
  in?: z.ZodType;
  shape?: Record<string, z.ZodType>;
  valueType?: z.ZodType;
  element?: z.ZodType;
  options?: z.ZodType[];
}

function defOf(s: z.ZodType): ZodDefLike {
  return (s as unknown as { _zod: { def: ZodDefLike } })._zod.def;
}

function unwrap(s: z.ZodType): z.ZodType {
  let cur = s;
  for (let i = 0; i < 10; i++) {
    const d = defOf(cur);
    if (valueFormats.has(cur)) return cur;
    if ((d.type === 'optional' || d.type === 'nullable' || d.type === 'default' || d.type === 'readonly') && d.innerType) cur = d.innerType;
    else if (d.type === 'pipe' && d.in) cur = d.in;
    else return cur;
  }
  return cur;
}

/** The schema that describes the value at a path (through optional, record, array, union). */
function schemaAt(root: z.ZodType, p: Path): z.ZodType | undefined {
  let cur: z.ZodType | undefined = unwrap(root);
  for (const seg of p) {
    if (!cur) return undefined;
    const d = defOf(cur);
    let next: z.ZodType | undefined;
    if (d.type === 'object') next = d.shape?.[String(seg)];
    else if (d.type === 'record') next = d.valueType;
    else if (d.type === 'array') next = d.element;
    else if (d.type === 'union') {
      for (const o of d.options ?? []) {
        const od = defOf(unwrap(o));
        if (typeof seg === 'number' && od.type === 'array') next = od.element;
        else if (typeof seg !== 'number' && od.type === 'object') next = od.shape?.[String(seg)];
        if (next) break;
      }
    }
    cur = next ? unwrap(next) : undefined;
  }
  return cur;
}

function objectKeys(s: z.ZodType | undefined): string[] {
  if (!s) return [];
  const d = defOf(s);
  if (d.type === 'object') return Object.keys(d.shape ?? {});
  if (d.type === 'union') return (d.options ?? []).flatMap((o) => objectKeys(unwrap(o)));
  return [];
}

function getIn(data: unknown, p: Path): unknown {
  let cur = data;
  for (const seg of p) {
    if (cur === null || typeof cur !== 'object') return undefined;
    cur = (cur as Record<PropertyKey, unknown>)[seg as string];
  }
  return cur;
}

function expectedText(expected: string): string {
  switch (expected) {
    case 'object':
      return 'a map';
    case 'array':
      return 'a list';
    case 'int':
      return 'a whole number';
    case 'number':
      return 'a number';
    case 'string':
      return 'a string';
    case 'boolean':
      return 'true or false';
    default:
      return expected;
  }
}

function schemaKindText(s: z.ZodType): string {
  const d = defOf(unwrap(s));
  if (d.type === 'object' || d.type === 'record') return 'a map';
  if (d.type === 'array') return 'a list';
  return `a ${d.type}`;
}

const requiredFixes: Record<string, string> = {
  service: "add 'service: <name>' with the service-discovery name of the backends, e.g. 'service: web-frontend'",
  clusters: "add a cluster, e.g. 'clusters: { web: { listen: { http: \":8080\" } } }'",
  listen: "add 'listen: { http: \":8080\" }'",
  address: "add 'address: host:port'",
  domain: "add 'domain: <the domain SRV names live under>'",
  path: "add 'path: <file>'",
};

interface Where {
  readonly file: SourceFile;
  readonly root: z.ZodType;
  readonly data: unknown;
  /** Where the schema's root sits in the file. */
  readonly base: Path;
  /** Site files: the path depth of a site's own keys, for the security-key message. */
  readonly siteDepth?: number;
}

/** How a message names the value at a path: 'rise', or item 2 of 'web-frontend'. */
function nameAt(full: Path): string {
  const last = full[full.length - 1];
  if (last === undefined) return 'the file';
  if (typeof last === 'number') return `item ${last + 1} of '${String(full[full.length - 2] ?? '')}'`;
  return `'${String(last)}'`;
}

/** Keys of a site's health and timeouts maps that exist, but are the platform's to set. */
const platformOnlySiteKeys: Record<string, readonly string[]> = {
  health: ['type', 'interval', 'timeout', 'jitter', 'rise', 'fall', 'expect-status', 'host'],
  timeouts: ['request-header', 'upstream-idle'],
};

function reportZodIssues(issues: readonly z.core.$ZodIssue[], w: Where, out: Issues, prefix: Path = []): void {
  for (const iss of issues) reportZodIssue(iss, w, out, prefix);
}

function reportZodIssue(iss: z.core.$ZodIssue, w: Where, out: Issues, prefix: Path): void {
  const rel = [...prefix, ...iss.path];
  const full = [...w.base, ...rel];
  const f = w.file;
  const last = full.length > 0 ? String(full[full.length - 1]) : '';
  const input = getIn(w.data, rel);
  const schema = schemaAt(w.root, rel);
  switch (iss.code) {
    case 'unrecognized_keys': {
      const known = objectKeys(schema);
      for (const k of iss.keys) {
        const pos = f.keyPos([...full, k]);
        if (w.siteDepth !== undefined && full.length === w.siteDepth && securityKeys.has(k)) {
          out.error(f.rel, pos, `'${k}' is a security default that a site cannot change; it is set by the platform team in ${PLATFORM_FILE}`, `remove '${k}' from the site, or ask the platform team to change it for the cluster`);
        } else if (w.siteDepth !== undefined && full.length === w.siteDepth && platformKeys.has(k)) {
          out.error(f.rel, pos, `'${k}' is not a site setting; the platform team sets it in ${PLATFORM_FILE}`, `remove '${k}'; a site may set ${known.join(', ')}`);
        } else if (w.siteDepth !== undefined && full.length === w.siteDepth + 1 && platformOnlySiteKeys[String(full[w.siteDepth])]?.includes(k)) {
          const section = String(full[w.siteDepth]);
          out.error(f.rel, pos, `'${k}' in ${section} is set by the platform team in ${PLATFORM_FILE}; a site may set only ${known.join(', ')}`, `remove '${k}', or ask the platform team to set it for service or cluster`);
        } else {
          const hint = didYouMean(k, known);
          out.error(f.rel, pos, `unknown key '${k}'${hint}`, hint ? `rename it to '${closest(k, known)}'` : `remove it; allowed keys here: ${known.join(', ')}`);
        }
      }
      return;
    }
    case 'invalid_type': {
      if (input === undefined) {
        const parent = full.slice(0, -1);
        const pos = parent.length === 0 ? { line: 1, column: 1 } : f.keyPos(parent);
        const owner = parent[parent.length - 1];
        const where =
          parent.length === 0 ? '' : typeof owner === 'number' ? ` in item ${owner + 1} of '${String(parent[parent.length - 2])}'` : ` in '${String(owner)}'`;
        out.error(f.rel, pos, `missing required key '${last}'${where}`, requiredFixes[last] ?? `add '${last}'`);
        return;
      }
      const fmt = schema ? valueFormats.get(schema) : undefined;
      const r = fmt?.(input);
      if (r && !r.ok) {
        out.error(f.rel, f.valuePos(full), r.message, r.fix);
        return;
      }
      const expected = expectedText(iss.expected);
      out.error(f.rel, f.valuePos(full), `${nameAt(full)} must be ${expected}, got ${describe(input)}`, `write ${expected} here`);
      return;
    }
    case 'invalid_union': {
      const fmt = schema ? valueFormats.get(schema) : undefined;
      const r = fmt?.(input);
      if (r && !r.ok) {
        out.error(f.rel, f.valuePos(full), r.message, r.fix);
        return;
      }
      // Report the branch whose type matched the value (a map for a map…).
      const matching = iss.errors.filter((branch) => !branch.some((e) => e.code === 'invalid_type' && e.path.length === 0));
      if (matching.length > 0 && matching[0]) {
        reportZodIssues(matching[0], w, out, rel);
        return;
      }
      const options = defOf(schema ?? w.root).options ?? [];
      const kinds = [...new Set(options.map(schemaKindText))].join(' or ');
      out.error(f.rel, f.valuePos(full), `${nameAt(full)} must be ${kinds || 'another type'}, got ${describe(input)}`, `write ${kinds || 'a valid value'} here`);
      return;
    }
    case 'invalid_value': {
      const values = iss.values.map(String);
      const hint = typeof input === 'string' ? didYouMean(input, values) : '';
      out.error(f.rel, f.valuePos(full), `${describe(input)} is not a valid ${last}${hint}`, `use one of: ${values.join(', ')}`);
      return;
    }
    case 'too_small':
    case 'too_big': {
      const bound = iss.code === 'too_small' ? iss.minimum : iss.maximum;
      const word = iss.code === 'too_small' ? 'at least' : 'at most';
      if (iss.origin === 'string' && iss.code === 'too_small') {
        out.error(f.rel, f.valuePos(full), `'${last}' must not be empty`, `write a value for '${last}'`);
      } else if (iss.origin === 'array') {
        out.error(f.rel, f.valuePos(full), `'${last}' must have ${word} ${String(bound)} items`, `change the list`);
      } else {
        out.error(f.rel, f.valuePos(full), `${nameAt(full)} must be ${word} ${String(bound)}, got ${describe(input)}`, `use a value ${word} ${String(bound)}`);
      }
      return;
    }
    case 'custom': {
      const fix = (iss.params as { fix?: string } | undefined)?.fix ?? '';
      out.error(f.rel, f.valuePos(full), iss.message, fix);
      return;
    }
    default:
      out.error(f.rel, f.valuePos(full), iss.message, 'see docs/configuration.md');
  }
}

// ---------------------------------------------------------------------------
// reading files

/**
 * Parsed files of the latest load of each directory, by path relative to it.
 * A file whose text is unchanged since that load is not parsed again: a
 * reload that changes one site file of a thousand parses one. Parsing is the
 * largest part of a load after the reads (the yaml library builds a node
 * tree with positions), and a SourceFile is not changed once parsed, so
 * sharing one between loads is safe. Bounded: the files of the latest load
 * of at most PARSED_DIRS directories, kept only where a load asks for it
 * (LoadOptions.reuseParsed: the loader thread).
 */
interface ParsedFile {
  readonly text: string;
  readonly file: SourceFile;
}
const parsedFiles = new Map<string, Map<string, ParsedFile>>();
const PARSED_DIRS = 8;
let parseCount = 0;

/** How many files loadConfig has parsed in this thread (tests: an unchanged file is not parsed again). */
export function parsedFileCount(): number {
  return parseCount;
}

/** The parsed files of one load: what the previous load of the directory parsed, and what this one uses. */
interface ParseCache {
  readonly previous: ReadonlyMap<string, ParsedFile> | undefined;
  readonly current: Map<string, ParsedFile>;
}

async function readText(file: string, opts: LoadOptions): Promise<string> {
  return opts.blockingReads ? readFileSync(file, 'utf8') : readFile(file, 'utf8');
}

async function readSource(dir: string, rel: string, out: Issues, cache: ParseCache | undefined, opts: LoadOptions): Promise<SourceFile | undefined> {
  const text = await readText(path.join(dir, rel), opts);
  const before = cache?.previous?.get(rel);
  const file = before !== undefined && before.text === text ? before.file : new SourceFile(rel, text);
  if (file !== before?.file) parseCount++;
  cache?.current.set(rel, { text, file });
  // An unquoted "*.example.com:" is an alias to YAML, and the parser's own
  // errors about it are cascades; name the actual mistake instead.
  const wildcards = file.doc.errors.length > 0 ? [...text.matchAll(/^([ \t]*)(\*\.[^\s:'"]*)[ \t]*:/gm)] : [];
  for (const m of wildcards) {
    const offset = (m.index ?? 0) + (m[1]?.length ?? 0);
    out.error(rel, file.at(offset), `'${m[2]}' must be quoted: YAML reads a leading '*' as an alias`, `write "${m[2]}": with the quotes`);
  }
  if (wildcards.length > 0) return undefined;
  for (const e of file.doc.errors) {
    const message = e.code === 'MULTIPLE_DOCS' ? "a second YAML document starts here ('---'); a file holds one" : e.message;
    out.error(rel, file.at(e.pos[0]), `YAML syntax error: ${message}`, yamlFix(e.code));
  }
  for (const e of file.doc.warnings) {
    out.warn(rel, file.at(e.pos[0]), `YAML: ${e.message}`, '');
  }
  return file.doc.errors.length > 0 ? undefined : file;
}

function yamlFix(code: string): string {
  switch (code) {
    case 'TAB_AS_INDENT':
      return 'indent with spaces, not tabs';
    case 'BAD_INDENT':
    case 'MISSING_CHAR':
      return 'check the indentation and closing brackets or quotes here';
    case 'MULTIPLE_DOCS':
      return "keep one YAML document per file (remove the '---' separator)";
    case 'DUPLICATE_KEY':
      return 'remove one of the duplicate keys';
    case 'BLOCK_AS_IMPLICIT_KEY':
    case 'MULTILINE_IMPLICIT_KEY':
      return "put a space after ':' and check that the key fits on one line";
    default:
      return 'fix the YAML syntax at this position (quote values that contain ": " or start with special characters)';
  }
}

/** Every map's duplicate keys; the site file's top level is reported as a duplicate site. */
function checkDuplicateKeys(f: SourceFile, out: Issues, topIsSites: boolean): Set<string> {
  const reported = new Set<string>();
  const visit = (node: unknown, depth: number): void => {
    if (isMap(node)) {
      const seen = new Map<string, YamlNode>();
      for (const pair of node.items) {
        const k = keyText(pair.key);
        const first = seen.get(k);
        const pos = f.nodePos(pair.key as YamlNode) ?? { line: 1, column: 1 };
        if (first) {
          const firstLine = f.nodePos(first)?.line ?? 1;
          if (depth === 0 && topIsSites) {
            reported.add(k);
            out.error(f.rel, pos, `site '${k}' is declared twice in ${f.rel} (lines ${firstLine} and ${pos.line})`, 'a site is declared once: merge the two entries and remove one');
          } else {
            out.error(f.rel, pos, `duplicate key '${k}' (also at line ${firstLine})`, 'remove one of them; only one value can apply');
          }
        } else {
          seen.set(k, pair.key as YamlNode);
        }
        visit(pair.value, depth + 1);
      }
    } else if (isSeq(node)) {
      for (const item of node.items) visit(item, depth + 1);
    }
  };
  visit(f.doc.contents, 0);
  return reported;
}

async function siteFileNames(dir: string): Promise<string[]> {
  let entries: Dirent[];
  try {
    entries = await readdir(path.join(dir, SITES_DIR), { withFileTypes: true });
  } catch {
    return [];
  }
  const out: string[] = [];
  for (const e of entries.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0))) {
    const n = e.name;
    if (n.startsWith('.') || !(n.endsWith('.yaml') || n.endsWith('.yml'))) continue;
    // The directory entry's type answers for regular files; a symbolic link is followed.
    const isFile = e.isSymbolicLink() ? (await stat(path.join(dir, SITES_DIR, n)).catch(() => undefined))?.isFile() : e.isFile();
    if (isFile) out.push(`${SITES_DIR}/${n}`);
  }
  return out;
}

// ---------------------------------------------------------------------------
// merging wire values onto defaults

function dur(v: string | undefined, base: number): number {
  if (v === undefined) return base;
  const r = parseDuration(v);
  return r.ok ? r.value : base;
}
function bytes(v: string | number | undefined, base: number): number {
  if (v === undefined) return base;
  const r = parseSize(v);
  return r.ok ? r.value : base;
}
function pct(v: string | number | undefined, base: number): number {
  if (v === undefined) return base;
  const r = parsePercent(v);
  return r.ok ? r.value : base;
}

type TimeoutsWire = NonNullable<NonNullable<PlatformWire['defaults']>['timeouts']>;
type LimitsWire = NonNullable<NonNullable<PlatformWire['defaults']>['limits']>;
type HealthWire = NonNullable<NonNullable<PlatformWire['defaults']>['health']>;
type PassiveWire = NonNullable<NonNullable<PlatformWire['defaults']>['passive']>;
type PanicWire = NonNullable<NonNullable<PlatformWire['defaults']>['panic']>;
type RetriesWire = NonNullable<NonNullable<PlatformWire['defaults']>['retries']>;
type ServiceWire = NonNullable<PlatformWire['services']>[string];

function mergeTimeouts(base: TimeoutSpec, w: Partial<TimeoutsWire> | undefined): TimeoutSpec {
  if (!w) return base;
  return {
    requestHeaderMs: dur(w['request-header'], base.requestHeaderMs),
    clientIdleMs: dur(w['client-idle'], base.clientIdleMs),
    connectMs: dur(w.connect, base.connectMs),
    responseMs: dur(w.response, base.responseMs),
    upstreamIdleMs: dur(w['upstream-idle'], base.upstreamIdleMs),
  };
}

function mergeLimits(base: LimitSpec, w: LimitsWire | undefined): LimitSpec {
  if (!w) return base;
  return {
    headerBytes: bytes(w['header-bytes'], base.headerBytes),
    headerCount: w['header-count'] ?? base.headerCount,
    uriLength: bytes(w['uri-length'], base.uriLength),
    bodyBytes: bytes(w['body-bytes'], base.bodyBytes),
  };
}

function mergeHealth(base: HealthSpec, w: HealthWire | undefined): HealthSpec {
  if (!w) return base;
  const status = w['expect-status'] === undefined ? undefined : parseStatusRanges(w['expect-status']);
  return {
    kind: w.type ?? base.kind,
    path: w.path ?? base.path,
    intervalMs: dur(w.interval, base.intervalMs),
    timeoutMs: dur(w.timeout, base.timeoutMs),
    jitter: w.jitter === undefined ? base.jitter : pct(w.jitter, base.jitter * 100) / 100,
    rise: w.rise ?? base.rise,
    fall: w.fall ?? base.fall,
    expectStatus: status?.ok ? status.value : base.expectStatus,
    host: w.host ?? base.host,
  };
}

function mergePassive(base: PassiveHealthSpec, w: PassiveWire | undefined): PassiveHealthSpec {
  if (!w) return base;
  return {
    consecutiveFailures: w['consecutive-failures'] ?? base.consecutiveFailures,
    baseEjectionMs: dur(w['base-ejection'], base.baseEjectionMs),
    maxEjectionMs: dur(w['max-ejection'], base.maxEjectionMs),
    maxEjectedPercent: pct(w['max-ejected'], base.maxEjectedPercent),
  };
}

function mergePanic(base: PanicSpec, w: PanicWire | undefined): PanicSpec {
  if (!w) return base;
  return { thresholdPercent: pct(w.threshold, base.thresholdPercent), mode: w.mode ?? base.mode };
}

function mergeRetries(base: RetrySpec, w: RetriesWire | undefined): RetrySpec {
  if (!w) return base;
  return {
    attempts: w.attempts ?? base.attempts,
    budgetPercent: pct(w.budget, base.budgetPercent),
    minRetryConcurrency: w['min-concurrency'] ?? base.minRetryConcurrency,
  };
}

interface ServiceBase {
  balancer: BalancerKind;
  protocol: UpstreamProtocol;
  health: HealthSpec;
  passive: PassiveHealthSpec;
  panic: PanicSpec;
  retries: RetrySpec;
}

function mergeService(base: ServiceBase, w: ServiceWire | undefined): ServiceBase {
  if (!w) return base;
  return {
    balancer: w.balancer ?? base.balancer,
    protocol: w.protocol ?? base.protocol,
    health: mergeHealth(base.health, w.health),
    passive: mergePassive(base.passive, w.passive),
    panic: mergePanic(base.panic, w.panic),
    retries: mergeRetries(base.retries, w.retries),
  };
}

/** Relations between values of one layer once merged: timeout < interval, base ≤ max ejection. */
function checkServiceLayer(f: SourceFile, at: Path, merged: ServiceBase, w: ServiceWire | undefined, out: Issues): void {
  if (!w) return;
  const h = merged.health;
  if (w.health && (w.health.timeout !== undefined || w.health.interval !== undefined) && h.timeoutMs >= h.intervalMs) {
    const p = w.health.timeout !== undefined ? [...at, 'health', 'timeout'] : [...at, 'health', 'interval'];
    out.error(
      f.rel,
      f.valuePos(p),
      `health check timeout ${formatDuration(h.timeoutMs)} is not shorter than its interval ${formatDuration(h.intervalMs)}`,
      'make timeout shorter than interval, so one check ends before the next starts',
    );
  }
  const pv = merged.passive;
  if (w.passive && (w.passive['base-ejection'] !== undefined || w.passive['max-ejection'] !== undefined) && pv.baseEjectionMs > pv.maxEjectionMs) {
    const p = w.passive['max-ejection'] !== undefined ? [...at, 'passive', 'max-ejection'] : [...at, 'passive', 'base-ejection'];
    out.error(f.rel, f.valuePos(p), `max-ejection ${formatDuration(pv.maxEjectionMs)} is shorter than base-ejection ${formatDuration(pv.baseEjectionMs)}`, 'make max-ejection at least base-ejection');
  }
}

// ---------------------------------------------------------------------------
// the platform file

/** What site checks need from perimeter.yaml, read even when it has other errors. */
interface PlatformView {
  readonly clusterNames: readonly string[];
  readonly defaultCluster: string | undefined;
  readonly staticServices: readonly string[];
  readonly hasFile: boolean;
  readonly hasDnsSrv: boolean;
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return v !== null && typeof v === 'object' && !Array.isArray(v);
}

function viewOf(raw: unknown): PlatformView {
  const r = isRecord(raw) ? raw : {};
  const clusters = isRecord(r.clusters) ? r.clusters : {};
  const names = Object.keys(clusters);
  const defaults = names.filter((n) => isRecord(clusters[n]) && clusters[n].default === true);
  const discovery = isRecord(r.discovery) ? r.discovery : {};
  return {
    clusterNames: names,
    defaultCluster: names.length === 1 ? names[0] : defaults.length === 1 ? defaults[0] : undefined,
    staticServices: isRecord(discovery.static) ? Object.keys(discovery.static) : [],
    hasFile: discovery.file != null,
    hasDnsSrv: discovery['dns-srv'] != null,
  };
}

const clusterNamePattern = /^[a-z0-9]([a-z0-9-]*[a-z0-9])?$/;

interface CompiledPlatform {
  clusters: Map<string, ClusterSpec>;
  serviceBase: ServiceBase;
  serviceOverrides: Map<string, ServiceWire>;
  discovery: DiscoverySpec;
  admin?: AdminSpec;
  /** Absolute path of admin.token-file; read by loadConfig (reading is async). */
  adminTokenFile?: string;
  tcp: Map<string, TcpListenerSpec>;
  dataDir: string;
  /** Undefined while the URL is still to be read from allowlistUrlFile (or after an error). */
  allowlistStore?: AllowlistStoreSpec;
  allowlistUrlFile?: string;
}

function listenText(a: ListenAddress): string {
  return a.host.includes(':') ? `[${a.host}]:${a.port}` : `${a.host}:${a.port}`;
}

function isWildcard(host: string): boolean {
  return host === '' || host === '0.0.0.0' || host === '::';
}

function compilePlatform(dir: string, f: SourceFile, p: PlatformWire, out: Issues): CompiledPlatform {
  const d = p.defaults ?? {};
  const timeouts = mergeTimeouts(builtinDefaults.timeouts, d.timeouts);
  const limits = mergeLimits(builtinDefaults.limits, d.limits);
  const builtinService: ServiceBase = {
    balancer: builtinDefaults.balancer,
    protocol: builtinDefaults.protocol,
    health: builtinDefaults.health,
    passive: builtinDefaults.passive,
    panic: builtinDefaults.panic,
    retries: builtinDefaults.retries,
  };
  const serviceBase = mergeService(builtinService, d);
  checkServiceLayer(f, ['defaults'], serviceBase, d, out);

  // Clusters.
  const names = Object.keys(p.clusters);
  if (names.length === 0) {
    out.error(f.rel, f.valuePos(['clusters']), 'no clusters are defined', requiredFixes.clusters ?? '');
  }
  const explicitDefaults = names.filter((n) => p.clusters[n]?.default === true);
  if (explicitDefaults.length > 1) {
    for (const n of explicitDefaults.slice(1)) {
      out.error(f.rel, f.valuePos(['clusters', n, 'default']), `clusters '${explicitDefaults[0]}' and '${n}' are both marked default`, "set 'default: true' on one cluster only");
    }
  } else if (explicitDefaults.length === 0 && names.length > 1) {
    out.error(f.rel, f.keyPos(['clusters']), `no default cluster among ${names.join(', ')}`, "add 'default: true' to the cluster that serves sites which name no cluster");
  }
  const defaultName = names.length === 1 ? names[0] : explicitDefaults[0];
  const clusters = new Map<string, ClusterSpec>();
  const listeners: { addr: ListenAddress; cluster: string; pos: Pos }[] = [];
  for (const name of names) {
    const c = p.clusters[name]!;
    const keyPos = f.keyPos(['clusters', name]);
    if (!clusterNamePattern.test(name)) {
      out.error(f.rel, keyPos, `cluster name '${name}' may only hold lower-case letters, digits and inner hyphens`, `rename it, e.g. '${name.toLowerCase().replace(/[^a-z0-9-]+/g, '-').replace(/^-+|-+$/g, '') || 'web'}'`);
    }
    const listenOne = (proto: 'http' | 'https'): ListenAddress | undefined => {
      const text = c.listen[proto];
      if (text === undefined) return undefined;
      const r = parseHostPort(text, 'listen address', { hostRequired: false, hostRule: 'any', allowZero: true });
      if (!r.ok) return undefined;
      const addr = r.value;
      const pos = f.valuePos(['clusters', name, 'listen', proto]);
      // Port 0 asks the OS for a free port (tests): never a clash.
      const clash = listeners.find((l) => addr.port !== 0 && l.addr.port === addr.port && (l.addr.host === addr.host || isWildcard(l.addr.host) || isWildcard(addr.host)));
      if (clash) {
        out.error(
          f.rel,
          pos,
          `listen address '${text}' of cluster '${name}' overlaps '${listenText(clash.addr)}' of cluster '${clash.cluster}' (${f.rel}:${clash.pos.line}:${clash.pos.column})`,
          'give each listener its own port or address',
        );
      }
      listeners.push({ addr, cluster: name, pos });
      return addr;
    };
    const http = listenOne('http');
    const https = listenOne('https');
    if (c.listen.http === undefined && c.listen.https === undefined) {
      out.error(f.rel, f.keyPos(['clusters', name, 'listen']), `cluster '${name}' has no listener`, "add 'http: \":8080\"' (or 'https: \":8443\"') under listen");
    }
    let tls: TlsSpec | undefined;
    if (c.tls !== undefined && c.listen.https === undefined) {
      out.error(f.rel, f.keyPos(['clusters', name, 'tls']), `cluster '${name}' has tls settings but no https listener`, "add 'https: \":443\"' under listen, or remove tls");
    }
    if (c.listen.https !== undefined) {
      const t = c.tls ?? {};
      const certificates = (t.certificates ?? []).map((x, i) => {
        for (const which of ['cert', 'key'] as const) {
          const abs = path.resolve(dir, x[which]);
          if (!existsSync(abs)) out.error(f.rel, f.valuePos(['clusters', name, 'tls', 'certificates', i, which]), `${which} file ${abs} does not exist`, 'fix the path (relative to the configuration directory)');
        }
        return { certFile: path.resolve(dir, x.cert), keyFile: path.resolve(dir, x.key) };
      });
      let hstsMaxAgeS = 365 * 86400;
      if (t.hsts?.['max-age'] !== undefined) {
        const d = parseDuration(t.hsts['max-age']);
        if (d.ok) {
          if (d.value < 180 * 86400) out.error(f.rel, f.valuePos(['clusters', name, 'tls', 'hsts', 'max-age']), `HSTS max-age ${t.hsts['max-age']} is below 180d`, 'HSTS is a security default: use at least 180d (365d recommended)');
          hstsMaxAgeS = Math.floor(d.value / 1000);
        }
      }
      tls = {
        certificates,
        hstsMaxAgeS,
        hstsIncludeSubdomains: t.hsts?.['include-subdomains'] ?? true,
        hstsPreload: t.hsts?.preload ?? false,
        minVersion: t['min-version'] ?? 'TLSv1.2',
        sessionTickets: t['session-tickets'] ?? true,
        redirect: t.redirect ?? true,
      };
    }
    const trusted: string[] = [];
    for (const t of c['trusted-proxies'] ?? []) {
      const r = parseCidr(t);
      if (r.ok) trusted.push(r.value);
    }
    clusters.set(name, {
      name,
      isDefault: name === defaultName,
      listen: { ...(http ? { http } : {}), ...(https ? { https } : {}) },
      ...(tls ? { tls } : {}),
      logOmit: [...new Set(c.log?.omit ?? [])],
      trustedProxies: trusted,
      timeouts: mergeTimeouts(timeouts, c.timeouts),
      limits: mergeLimits(limits, c.limits),
      pos: { file: f.rel, ...keyPos },
    });
  }

  // TCP proxy listeners (their addresses share the clash check; the name is
  // prefixed so messages say which kind of listener is in the way).
  const tcp = new Map<string, TcpListenerSpec>();
  for (const [name, t] of Object.entries(p.tcp ?? {})) {
    const keyPos = f.keyPos(['tcp', name]);
    if (!clusterNamePattern.test(name)) {
      out.error(f.rel, keyPos, `tcp listener name '${name}' may only hold lower-case letters, digits and inner hyphens`, `rename it, e.g. '${name.toLowerCase().replace(/[^a-z0-9-]+/g, '-').replace(/^-+|-+$/g, '') || 'upload'}'`);
    }
    const r = parseHostPort(t.listen, 'listen address', { hostRequired: false, hostRule: 'any', allowZero: true });
    if (!r.ok) continue;
    const addr = r.value;
    const pos = f.valuePos(['tcp', name, 'listen']);
    const clash = listeners.find((l) => addr.port !== 0 && l.addr.port === addr.port && (l.addr.host === addr.host || isWildcard(l.addr.host) || isWildcard(addr.host)));
    if (clash) {
      const what = clash.cluster.startsWith('tcp ') ? clash.cluster : `cluster '${clash.cluster}'`;
      out.error(f.rel, pos, `listen address '${t.listen}' of tcp listener '${name}' overlaps '${listenText(clash.addr)}' of ${what} (${f.rel}:${clash.pos.line}:${clash.pos.column})`, 'give each listener its own port or address');
    }
    listeners.push({ addr, cluster: `tcp listener '${name}'`, pos });
    const trusted: string[] = [];
    for (const c of t['trusted-load-balancers'] ?? []) {
      const x = parseCidr(c);
      if (x.ok) trusted.push(x.value);
    }
    tcp.set(name, {
      name,
      listen: addr,
      service: t.service,
      allowlist: t.allowlist,
      proxyProtocol: t['proxy-protocol'] ?? 'off',
      trustedLoadBalancers: trusted,
      connectTimeoutMs: dur(t.timeouts?.connect, builtinDefaults.tcp.connectTimeoutMs),
      idleTimeoutMs: dur(t.timeouts?.idle, builtinDefaults.tcp.idleTimeoutMs),
      proxyHeaderTimeoutMs: dur(t.timeouts?.['proxy-header'], builtinDefaults.tcp.proxyHeaderTimeoutMs),
      maxConnections: t.limits?.connections ?? builtinDefaults.tcp.maxConnections,
      maxPerSource: t.limits?.['per-source'] ?? builtinDefaults.tcp.maxPerSource,
      pos: { file: f.rel, ...keyPos },
    });
  }

  // Platform service overrides.
  const serviceOverrides = new Map<string, ServiceWire>();
  for (const [name, w] of Object.entries(p.services ?? {})) {
    serviceOverrides.set(name, w);
    checkServiceLayer(f, ['services', name], mergeService(serviceBase, w), w, out);
  }

  // Admin listener: anywhere but loopback only with a token (it can reload and shows every backend).
  let admin: AdminSpec | undefined;
  const tokenFile = p.admin?.['token-file'];
  if (p.admin !== undefined) {
    const r = parseHostPort(p.admin.listen, 'admin listen address', { hostRequired: true, hostRule: 'ip', allowZero: true });
    const pos = f.valuePos(['admin', 'listen']);
    if (r.ok) {
      const h = r.value.host;
      if (!(h === '::1' || /^127\./.test(h)) && tokenFile === undefined) {
        out.error(f.rel, pos, `admin listen address '${p.admin.listen}' is not loopback: set admin.token-file`, "add 'token-file: admin.token' (a file holding a random token, e.g. from 'openssl rand -hex 32'), or listen on 127.0.0.1:PORT and reach it through SSH");
      } else {
        const clash = listeners.find((l) => r.value.port !== 0 && l.addr.port === r.value.port && (l.addr.host === h || isWildcard(l.addr.host) || isWildcard(h)));
        if (clash) out.error(f.rel, pos, `admin listen address '${p.admin.listen}' overlaps the listener of ${clash.cluster.startsWith('tcp ') ? clash.cluster : `cluster '${clash.cluster}'`}`, 'give the admin listener its own port');
        else admin = { listen: r.value, ...(p.admin['users-file'] !== undefined ? { usersFile: path.resolve(dir, p.admin['users-file']) } : {}) };
      }
    }
  }

  const dataDir = path.resolve(dir, p['data-dir'] ?? DEFAULT_DATA_DIR);
  let allowlistStore: AllowlistStoreSpec | undefined = { kind: 'sqlite', file: path.join(dataDir, 'allowlists.db') };
  let allowlistUrlFile: string | undefined;
  const al = p.allowlists;
  if (al?.store === 'postgres') {
    const pg = al.postgres;
    if (pg === undefined || (pg.url === undefined) === (pg['url-file'] === undefined)) {
      allowlistStore = undefined;
      out.error(
        f.rel,
        pg === undefined ? f.valuePos(['allowlists', 'store']) : f.keyPos(['allowlists', 'postgres']),
        pg === undefined ? 'allowlists.store is postgres but allowlists.postgres is missing' : 'allowlists.postgres needs exactly one of url and url-file',
        "add 'postgres: { url: postgres://user@host/db }' under allowlists, or 'url-file: pg.url' when the URL holds a password",
      );
    } else if (pg.url !== undefined) {
      if (!/^postgres(ql)?:\/\//.test(pg.url)) {
        out.error(f.rel, f.valuePos(['allowlists', 'postgres', 'url']), `'${pg.url.replace(/:[^:@/]*@/, ':***@')}' is not a postgres:// URL`, 'write it as postgres://user@host:5432/database');
      } else if (/^postgres(ql)?:\/\/[^/@]*:[^/@]*@/.test(pg.url)) {
        out.error(f.rel, f.valuePos(['allowlists', 'postgres', 'url']), 'the PostgreSQL URL in perimeter.yaml holds a password', "move the URL to a file readable only by perimeter and point 'url-file' at it");
      }
      allowlistStore = { kind: 'postgres', url: pg.url };
    } else {
      allowlistUrlFile = path.resolve(dir, pg['url-file']!);
      allowlistStore = undefined;
    }
  } else if (al?.postgres !== undefined) {
    out.warn(f.rel, f.keyPos(['allowlists', 'postgres']), 'allowlists.postgres is set but the store is sqlite', "add 'store: postgres' to use it, or remove the postgres section");
  }

  return {
    clusters,
    tcp,
    dataDir,
    ...(allowlistStore ? { allowlistStore } : {}),
    ...(allowlistUrlFile !== undefined ? { allowlistUrlFile } : {}),
    serviceBase,
    serviceOverrides,
    discovery: compileDiscovery(dir, f, p, out),
    admin,
    ...(tokenFile !== undefined ? { adminTokenFile: path.resolve(dir, tokenFile) } : {}),
  };
}

const ADMIN_TOKEN_MIN_LENGTH = 16;

/** The admin token from its file (surrounding whitespace dropped), or undefined after reporting why not. */
async function readAdminToken(file: string, f: SourceFile, out: Issues): Promise<string | undefined> {
  const token = await readSecretFile(file, f, ['admin', 'token-file'], 'admin token', out);
  if (token === undefined) return undefined;
  const pos = f.valuePos(['admin', 'token-file']);
  // Never quote the token in a message: these end up in CI logs.
  if (!/^[\x21-\x7e]*$/.test(token)) {
    out.error(f.rel, pos, `the admin token in ${file} contains spaces or characters other than visible ASCII`, "put one token on one line, e.g. the output of 'openssl rand -hex 32'");
    return undefined;
  }
  if (token.length < ADMIN_TOKEN_MIN_LENGTH) {
    out.error(f.rel, pos, `the admin token in ${file} has ${token.length} characters; it needs at least ${ADMIN_TOKEN_MIN_LENGTH}`, "use a longer random token, e.g. 'openssl rand -hex 32'");
    return undefined;
  }
  return token;
}

/** A secret from its file (surrounding whitespace dropped), with a warning when every user can read it; undefined after reporting why not. */
async function readSecretFile(file: string, f: SourceFile, at: Path, what: string, out: Issues): Promise<string | undefined> {
  const pos = f.valuePos(at);
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code ?? 'unknown error';
    out.error(
      f.rel,
      pos,
      `${what} file ${file} cannot be read (${code})`,
      code === 'ENOENT' ? `create it, or fix the path (relative to the configuration directory)${what === 'admin token' ? "; a random token comes from 'openssl rand -hex 32'" : ''}` : 'make it a regular file readable by the user perimeter runs as',
    );
    return undefined;
  }
  const st = await stat(file).catch(() => undefined);
  if (st && (st.mode & 0o004) !== 0) out.warn(f.rel, pos, `${what} file ${file} can be read by every user on this host`, `chmod 600 ${file}`);
  return text.trim();
}

function compileDiscovery(dir: string, f: SourceFile, p: PlatformWire, out: Issues): DiscoverySpec {
  const disc = p.discovery ?? {};
  const statics = new Map<string, readonly StaticBackend[]>();
  for (const [service, entries] of Object.entries(disc.static ?? {})) {
    const keyPos = f.keyPos(['discovery', 'static', service]);
    if (!/^[a-z0-9]([a-z0-9._-]*[a-z0-9])?$/i.test(service)) {
      out.error(f.rel, keyPos, `'${service}' is not a valid service name`, "use letters, digits, '.', '_' and '-'");
    }
    if (entries.length === 0) {
      out.warn(f.rel, keyPos, `static service '${service}' has no backends; its sites will answer 503`, 'list at least one backend address');
    }
    const backends: StaticBackend[] = [];
    const seen = new Map<string, number>();
    entries.forEach((e, i) => {
      const address = typeof e === 'string' ? e : e.address;
      const weight = typeof e === 'string' ? 1 : (e.weight ?? 1);
      const r = parseHostPort(address, 'backend address', { hostRequired: true, hostRule: 'any' });
      if (!r.ok) return;
      const id = listenText(r.value);
      const first = seen.get(id);
      if (first !== undefined) {
        const pos = f.valuePos(['discovery', 'static', service, i]);
        out.error(f.rel, pos, `backend '${id}' is listed twice for service '${service}' (items ${first + 1} and ${i + 1})`, 'list each backend once; use weight to give it more traffic');
        return;
      }
      seen.set(id, i);
      backends.push({ host: r.value.host, port: r.value.port, weight });
    });
    statics.set(service, backends);
  }

  let dnsSrv: DnsSrvSpec | undefined;
  const ds = disc['dns-srv'];
  if (ds) {
    const name = checkDnsName(ds.domain);
    if (!name.ok) out.error(f.rel, f.valuePos(['discovery', 'dns-srv', 'domain']), `dns-srv domain '${ds.domain}' is not a valid domain: ${name.message}`, name.fix);
    const servers: ListenAddress[] = [];
    for (const s of ds.servers ?? []) {
      const r = parseHostPort(s, 'DNS server', { hostRequired: true, hostRule: 'ip', defaultPort: 53 });
      if (r.ok) servers.push(r.value);
    }
    dnsSrv = {
      domain: name.ok ? name.value : ds.domain,
      servers,
      minTtlMs: dur(ds['min-ttl'], builtinDefaults.dnsSrv.minTtlMs),
      maxTtlMs: dur(ds['max-ttl'], builtinDefaults.dnsSrv.maxTtlMs),
      timeoutMs: dur(ds.timeout, builtinDefaults.dnsSrv.timeoutMs),
    };
    if (dnsSrv.minTtlMs > dnsSrv.maxTtlMs) {
      const at = ds['max-ttl'] !== undefined ? 'max-ttl' : 'min-ttl';
      out.error(f.rel, f.valuePos(['discovery', 'dns-srv', at]), `min-ttl ${formatDuration(dnsSrv.minTtlMs)} is longer than max-ttl ${formatDuration(dnsSrv.maxTtlMs)}`, 'make min-ttl at most max-ttl');
    }
  }

  let file: { path: string } | undefined;
  if (disc.file) {
    file = { path: path.resolve(dir, disc.file.path) };
  }
  return { static: statics, ...(dnsSrv ? { dnsSrv } : {}), ...(file ? { file } : {}) };
}

// ---------------------------------------------------------------------------
// site files

interface SiteEntry {
  readonly file: SourceFile;
  readonly key: string; // as written
  readonly host: string; // normalized
  readonly wire: SiteWire;
  readonly pos: Pos;
}

function checkSiteFile(f: SourceFile, out: Issues, seen: Map<string, { file: SourceFile; pos: Pos }>, entries: SiteEntry[]): void {
  const contents = f.doc.contents;
  if (contents === null || (isScalar(contents) && contents.value === null)) {
    out.error(f.rel, { line: 1, column: 1 }, `${f.rel} is empty; a site file maps host names to sites`, "add a site such as 'www.example.com: { service: web-frontend }', or delete the file");
    return;
  }
  if (!isMap(contents)) {
    const data = f.doc.toJS() as unknown;
    out.error(
      f.rel,
      f.nodePos(contents as YamlNode) ?? { line: 1, column: 1 },
      `a site file must be a map of host names to sites, got ${describe(data)}`,
      "write one entry per site: 'www.example.com:' followed by '  service: web-frontend' on the next line",
    );
    return;
  }
  const dupWithin = checkDuplicateKeys(f, out, true);
  const data = f.doc.toJS() as Record<string, unknown>;
  for (const key of Object.keys(data)) {
    const keyPos = f.keyPos([key]);
    const host = parseSiteHost(key);
    const value = data[key];
    if (!isRecord(value)) {
      const example = typeof value === 'string' ? value : 'web-frontend';
      out.error(f.rel, f.valuePos([key]), `site '${key}' must be a map with at least 'service', got ${describe(value)}`, `write '${key}:' and on the next line '  service: ${example}'`);
      continue;
    }
    const parsed = siteSchema.safeParse(value);
    if (!parsed.success) {
      reportZodIssues(parsed.error.issues, { file: f, root: siteSchema, data: value, base: [key], siteDepth: 1 }, out);
    }
    if (!host.ok) {
      out.error(f.rel, keyPos, host.message, host.fix);
      continue;
    }
    if (dupWithin.has(key)) continue;
    const prior = seen.get(host.value);
    if (prior) {
      const where = prior.file === f ? `${f.rel} (lines ${prior.pos.line} and ${keyPos.line})` : `${prior.file.rel}:${prior.pos.line}:${prior.pos.column} and ${f.rel}:${keyPos.line}:${keyPos.column}`;
      out.error(f.rel, keyPos, `site '${host.value}' is declared in both ${where}`, `a site has one owner: remove it from one of the files (or from ${prior.file.rel})`);
      continue;
    }
    // Claimed even when its settings are invalid, so a duplicate is still named.
    seen.set(host.value, { file: f, pos: keyPos });
    if (!parsed.success) continue;
    entries.push({ file: f, key, host: host.value, wire: parsed.data, pos: keyPos });
  }
}

interface SiteResolution {
  cluster?: string;
  source?: ServiceSpec['source'];
}

/** Cross-checks that need the platform: the cluster exists, the service can be discovered. */
function resolveSite(e: SiteEntry, view: PlatformView, out: Issues): SiteResolution {
  const f = e.file;
  const res: SiteResolution = {};
  if (e.wire.cluster !== undefined) {
    if (view.clusterNames.includes(e.wire.cluster)) res.cluster = e.wire.cluster;
    else {
      out.error(
        f.rel,
        f.valuePos([e.key, 'cluster']),
        `cluster '${e.wire.cluster}' does not exist${didYouMean(e.wire.cluster, view.clusterNames)}`,
        view.clusterNames.length ? `use one of: ${view.clusterNames.join(', ')} (clusters are defined in ${PLATFORM_FILE})` : `define clusters in ${PLATFORM_FILE}`,
      );
    }
  } else {
    res.cluster = view.defaultCluster;
  }
  const source = serviceSource(e.wire.service, view, f, [e.key, 'service'], out);
  if (source) res.source = source;
  return res;
}

/** Which discovery source provides a service (static first, then file, then DNS SRV), or undefined after reporting why none does. */
function serviceSource(svc: string, view: PlatformView, f: SourceFile, at: Path, out: Issues): ServiceSpec['source'] | undefined {
  if (view.staticServices.includes(svc)) return 'static';
  if (view.hasFile) return 'file';
  if (view.hasDnsSrv) return 'dns-srv';
  const hint = didYouMean(svc, view.staticServices);
  out.error(
    f.rel,
    f.valuePos(at),
    `service '${svc}' is not in discovery.static and no dynamic discovery (file, dns-srv) is configured${hint}`,
    hint ? `use '${closest(svc, view.staticServices)}', or add '${svc}' to discovery.static in ${PLATFORM_FILE}` : `add '${svc}' to discovery.static in ${PLATFORM_FILE}, or configure discovery.file or discovery.dns-srv`,
  );
  return undefined;
}

function siteTimeouts(e: SiteEntry, base: TimeoutSpec, out: Issues): TimeoutSpec {
  const t = e.wire.timeouts;
  if (!t) return base;
  for (const [key, [lo, hi]] of Object.entries(siteTimeoutBounds)) {
    const v = t[key as keyof typeof t];
    if (v === undefined) continue;
    const r = parseDuration(v);
    if (r.ok && (r.value < lo || r.value > hi)) {
      out.error(
        e.file.rel,
        e.file.valuePos([e.key, 'timeouts', key]),
        `${key} timeout ${v} is out of bounds for a site (${formatDuration(lo)}..${formatDuration(hi)})`,
        `choose a value from ${formatDuration(lo)} to ${formatDuration(hi)}, or ask the platform team to change the cluster's timeouts`,
      );
    }
  }
  return mergeTimeouts(base, t);
}

// ---------------------------------------------------------------------------

/** How loadConfig reads. */
export interface LoadOptions {
  /**
   * Read files with blocking calls. For a caller with nothing else to run
   * meanwhile (the configuration loader thread, ./load-thread.ts; startup;
   * the one-shot CLI commands): a promise-based readFile takes four trips
   * through libuv's thread pool (open, fstat, read, close), which for a
   * thousand site files cost more than parsing them. Elsewhere reads stay
   * asynchronous, so the caller's event loop keeps running.
   */
  readonly blockingReads?: boolean;
  /**
   * Keep this load's parsed files for the next load of the same directory,
   * and reuse the previous load's where the text is unchanged (see
   * parsedFiles). For a thread that loads again and again (the loader
   * thread); a one-off load leaves nothing behind.
   */
  readonly reuseParsed?: boolean;
}

/** Load and validate a configuration directory. Never throws for bad content. */
export async function loadConfig(dir: string, opts: LoadOptions = {}): Promise<LoadResult> {
  const root = path.resolve(dir);
  if (!opts.reuseParsed) return loadParsed(root, undefined, opts);
  const cache: ParseCache = { previous: parsedFiles.get(root), current: new Map() };
  try {
    return await loadParsed(root, cache, opts);
  } finally {
    parsedFiles.delete(root);
    parsedFiles.set(root, cache.current);
    if (parsedFiles.size > PARSED_DIRS) parsedFiles.delete(parsedFiles.keys().next().value!);
  }
}

async function loadParsed(root: string, cache: ParseCache | undefined, opts: LoadOptions): Promise<LoadResult> {
  const out = new Issues();
  // perimeter.yaml
  let platformFile: SourceFile | undefined;
  let platform: PlatformWire | undefined;
  let view: PlatformView | undefined;
  const exists = await stat(path.join(root, PLATFORM_FILE)).then((s) => s.isFile(), () => false);
  if (!exists) {
    const yml = await stat(path.join(root, 'perimeter.yml')).then((s) => s.isFile(), () => false);
    out.error(PLATFORM_FILE, { line: 1, column: 1 }, `${PLATFORM_FILE} not found in ${root}`, yml ? 'rename perimeter.yml to perimeter.yaml' : `create ${PLATFORM_FILE} with at least clusters and discovery (see examples/quickstart)`);
  } else {
    platformFile = await readSource(root, PLATFORM_FILE, out, cache, opts);
  }
  if (platformFile) {
    const f = platformFile;
    const contents = f.doc.contents;
    if (contents === null || (isScalar(contents) && contents.value === null)) {
      out.error(f.rel, { line: 1, column: 1 }, `${PLATFORM_FILE} is empty`, requiredFixes.clusters ?? '');
    } else if (!isMap(contents)) {
      out.error(f.rel, f.nodePos(contents as YamlNode) ?? { line: 1, column: 1 }, `${PLATFORM_FILE} must be a map with clusters, discovery, defaults and services, got ${describe(f.doc.toJS())}`, requiredFixes.clusters ?? '');
    } else {
      checkDuplicateKeys(f, out, false);
      const data = f.doc.toJS() as unknown;
      view = viewOf(data);
      const parsed = platformSchema.safeParse(data);
      if (parsed.success) platform = parsed.data;
      else reportZodIssues(parsed.error.issues, { file: f, root: platformSchema, data, base: [] }, out);
    }
  }
  const compiled = platformFile && platform ? compilePlatform(root, platformFile, platform, out) : undefined;

  // sites/*.yaml
  const seen = new Map<string, { file: SourceFile; pos: Pos }>();
  const entries: SiteEntry[] = [];
  for (const rel of await siteFileNames(root)) {
    const f = await readSource(root, rel, out, cache, opts);
    if (f) checkSiteFile(f, out, seen, entries);
  }

  const sites = new Map<string, SiteSpec>();
  const healthPaths = new Map<string, SiteEntry>(); // service → first site that set a path
  const serviceSources = new Map<string, ServiceSpec['source']>();
  for (const e of entries) {
    const res = view ? resolveSite(e, view, out) : {};
    const hp = e.wire.health?.path;
    if (hp !== undefined) {
      const first = healthPaths.get(e.wire.service);
      if (!first) healthPaths.set(e.wire.service, e);
      else if (first.wire.health?.path !== hp) {
        const fp = first.file.valuePos([first.key, 'health', 'path']);
        out.error(
          e.file.rel,
          e.file.valuePos([e.key, 'health', 'path']),
          `site '${e.host}' sets health path '${hp}' for service '${e.wire.service}', but site '${first.host}' (${first.file.rel}:${fp.line}:${fp.column}) sets '${first.wire.health?.path}'`,
          'a service has one pool and one health check: use the same path in both sites, or remove it from one',
        );
      }
    }
    const cluster = res.cluster ? compiled?.clusters.get(res.cluster) : undefined;
    const timeouts = siteTimeouts(e, cluster?.timeouts ?? builtinDefaults.timeouts, out);
    if (res.source) serviceSources.set(e.wire.service, res.source);
    if (cluster) {
      sites.set(e.host, {
        host: e.host,
        cluster: cluster.name,
        service: e.wire.service,
        owner: e.wire.owner ?? '',
        timeouts,
        pos: { file: e.file.rel, ...e.pos },
      });
    }
  }

  // Services of TCP listeners: the same discovery; only TCP listeners use
  // them → a TCP health check unless the platform chose a kind.
  const tcpOnly = new Set<string>();
  if (compiled && platformFile && view) {
    for (const t of compiled.tcp.values()) {
      if (!serviceSources.has(t.service)) {
        const source = serviceSource(t.service, view, platformFile, ['tcp', t.name, 'service'], out);
        if (source) {
          serviceSources.set(t.service, source);
          tcpOnly.add(t.service);
        }
      }
    }
  }

  let geo: GeoSpec | undefined;
  let acme: AcmeSpec | undefined;
  if (compiled && platformFile) {
    if (compiled.allowlistUrlFile !== undefined) {
      const url = await readSecretFile(compiled.allowlistUrlFile, platformFile, ['allowlists', 'postgres', 'url-file'], 'PostgreSQL URL', out);
      if (url !== undefined) {
        if (/^postgres(ql)?:\/\//.test(url)) compiled.allowlistStore = { kind: 'postgres', url };
        else out.error(platformFile.rel, platformFile.valuePos(['allowlists', 'postgres', 'url-file']), `${compiled.allowlistUrlFile} does not hold a postgres:// URL`, 'put one URL on one line, e.g. postgres://perimeter:secret@db.internal:5432/perimeter');
      }
    }
    const used = new Set([...entries.map((e) => e.wire.service), ...[...compiled.tcp.values()].map((t) => t.service)]);
    for (const name of compiled.serviceOverrides.keys()) {
      if (!used.has(name)) {
        const hint = didYouMean(name, used);
        out.warn(platformFile.rel, platformFile.keyPos(['services', name]), `no site uses service '${name}'${hint}`, hint ? `rename it to '${closest(name, used)}'` : 'remove the entry, or add a site for it');
      }
    }
    if (compiled.discovery.file) {
      const ok = await stat(compiled.discovery.file.path).then(() => true, () => false);
      if (!ok) out.warn(platformFile.rel, platformFile.valuePos(['discovery', 'file', 'path']), `registry file ${compiled.discovery.file.path} does not exist yet`, 'create it, or fix the path (relative to the configuration directory)');
    }
    if (compiled.adminTokenFile !== undefined) {
      const token = await readAdminToken(compiled.adminTokenFile, platformFile, out);
      if (token !== undefined && compiled.admin) compiled.admin = { ...compiled.admin, token };
    }
    if (platform) geo = await compileGeo(root, platformFile, platform, out);
    if (platform) acme = compileAcme(root, platformFile, platform, out);
    if (platform && platform.acme === undefined) {
      for (const c of compiled.clusters.values()) {
        if (c.tls && c.tls.certificates.length === 0) {
          out.error(
            platformFile.rel,
            platformFile.valuePos(['clusters', c.name, 'listen', 'https']),
            `cluster '${c.name}' has an https listener but no certificate: every handshake would fail`,
            "add tls.certificates (cert and key files) to the cluster, or an 'acme' section so perimeter obtains certificates for its sites",
          );
        }
      }
    }
  }

  if (out.errors.length > 0 || !compiled) {
    return { ok: false, issues: sortIssues(out.errors) };
  }

  const services = new Map<string, ServiceSpec>();
  for (const name of [...serviceSources.keys()].sort()) {
    const override = compiled.serviceOverrides.get(name);
    let merged = mergeService(compiled.serviceBase, override);
    const kindChosen = override?.health?.type !== undefined || platform?.defaults?.health?.type !== undefined;
    if (tcpOnly.has(name) && !kindChosen) merged = { ...merged, health: { ...merged.health, kind: 'tcp' } };
    const sitePath = healthPaths.get(name)?.wire.health?.path;
    let health = sitePath === undefined ? merged.health : { ...merged.health, path: sitePath };
    // An h2c backend may not speak HTTP/1.1 at all: its HTTP checks speak h2c too.
    if (merged.protocol === 'h2c' && health.kind === 'http') health = { ...health, h2c: true };
    services.set(name, {
      name,
      source: serviceSources.get(name)!,
      balancer: merged.balancer,
      protocol: merged.protocol,
      health,
      passive: merged.passive,
      panic: merged.panic,
      retries: merged.retries,
    });
  }

  const snapshot: Snapshot = deepFreeze({
    source: root,
    clusters: compiled.clusters,
    sites,
    services,
    discovery: compiled.discovery,
    dataDir: compiled.dataDir,
    tcp: compiled.tcp,
    allowlists: compiled.allowlistStore!,
    ...(compiled.admin ? { admin: compiled.admin } : {}),
    ...(geo ? { geo } : {}),
    ...(acme ? { acme } : {}),
    ...accessLogOf(platform),
  });
  return { ok: true, snapshot, warnings: sortIssues(out.warnings) };
}

/** ACME: paths resolved against the configuration directory; the CA bundle must exist. */
function compileAcme(dir: string, f: SourceFile, p: PlatformWire, out: Issues): AcmeSpec | undefined {
  const a = p.acme;
  if (a === undefined) return undefined;
  let ok = true;
  let url: URL | undefined;
  try {
    url = new URL(a.directory);
  } catch {
    url = undefined;
  }
  if (url?.protocol !== 'https:') {
    ok = false;
    out.error(f.rel, f.valuePos(['acme', 'directory']), `acme directory '${a.directory}' is not an https URL`, 'use the https directory URL the CA publishes, e.g. https://acme-v02.api.letsencrypt.org/directory');
  }
  let caFile: string | undefined;
  if (a['ca-file'] !== undefined) {
    caFile = path.resolve(dir, a['ca-file']);
    if (!existsSync(caFile)) {
      ok = false;
      out.error(f.rel, f.valuePos(['acme', 'ca-file']), `acme ca-file ${caFile} does not exist`, 'fix the path (relative to the configuration directory), or remove ca-file for a publicly trusted CA');
    }
  }
  let renewBeforeMs: number | undefined;
  if (a['renew-before'] !== undefined) {
    const d = parseDuration(a['renew-before']);
    if (d.ok) renewBeforeMs = d.value;
  }
  if (!ok) return undefined;
  return {
    directory: a.directory,
    ...(a.email !== undefined ? { email: a.email } : {}),
    storage: path.resolve(dir, a.storage),
    challenges: [...new Set(a.challenges ?? (['http-01', 'tls-alpn-01'] as const))],
    ...(renewBeforeMs !== undefined ? { renewBeforeMs } : {}),
    ...(caFile !== undefined ? { caFile } : {}),
  };
}

/** Header names when perimeter.yaml does not say. */
export const DEFAULT_GEO_HEADERS = { country: 'X-Geo-Country', asn: 'X-Geo-ASN' } as const;

/** Geolocation: on by default with the built-in databases; each database can be a file or 'off'. */
async function compileGeo(dir: string, f: SourceFile, p: PlatformWire, out: Issues): Promise<GeoSpec | undefined> {
  const g = p.geo ?? {};
  const countryHeader = g.headers?.country ?? DEFAULT_GEO_HEADERS.country;
  const asnHeader = g.headers?.asn ?? DEFAULT_GEO_HEADERS.asn;
  if (countryHeader.toLowerCase() === asnHeader.toLowerCase()) {
    const at = g.headers?.asn !== undefined ? 'asn' : 'country';
    out.error(f.rel, f.valuePos(['geo', 'headers', at]), `the country and ASN headers are both named '${countryHeader}'`, 'give each its own name, e.g. X-Geo-Country and X-Geo-ASN');
  }
  const countryDb = await geoDatabase(dir, f, g['country-db'], 'country', out);
  const asnDb = await geoDatabase(dir, f, g['asn-db'], 'asn', out);
  if (countryDb === undefined && asnDb === undefined) return undefined;
  return { ...(countryDb !== undefined ? { countryDb } : {}), ...(asnDb !== undefined ? { asnDb } : {}), countryHeader, asnHeader };
}

const MMDB_MARKER = Buffer.from([0xab, 0xcd, 0xef, ...Buffer.from('MaxMind.com')]);

/** The absolute path of one geo database, undefined when off (or after reporting why it cannot be used). */
async function geoDatabase(dir: string, f: SourceFile, value: string | undefined, kind: 'country' | 'asn', out: Issues): Promise<string | undefined> {
  const key = kind === 'country' ? 'country-db' : 'asn-db';
  const pos = value === undefined ? (f.locate(['geo']).found ? f.keyPos(['geo']) : { line: 1, column: 1 }) : f.valuePos(['geo', key]);
  const setting = value ?? 'builtin';
  if (setting === 'off') return undefined;
  if (setting === 'builtin') {
    const file = kind === 'country' ? builtinCountryDb() : builtinAsnDb();
    const pkg = kind === 'country' ? COUNTRY_PACKAGE : ASN_PACKAGE;
    // The ASN database is compiled from its package on first use; the country file must be there.
    const present = file !== undefined && (kind === 'asn' || (await stat(file).then((st) => st.isFile(), () => false)));
    if (!present) {
      out.error(f.rel, pos, `the built-in ${kind} database is not installed (npm package ${pkg})`, `run 'npm install' in perimeter's directory, or set geo.${key} to an .mmdb file or 'off'`);
      return undefined;
    }
    return file;
  }
  const file = path.resolve(dir, setting);
  const st = await stat(file).catch((err: NodeJS.ErrnoException) => err);
  if (st instanceof Error) {
    const missing = st.code === 'ENOENT';
    out.error(
      f.rel,
      pos,
      missing ? `${kind} database ${file} does not exist` : `${kind} database ${file} cannot be read (${st.code ?? 'unknown error'})`,
      missing ? "fix the path (relative to the configuration directory), or write 'builtin' or 'off'" : 'make it a regular file readable by the user perimeter runs as',
    );
    return undefined;
  }
  if (!st.isFile()) {
    out.error(f.rel, pos, `${kind} database ${file} is not a file`, 'name the .mmdb file itself, not its directory');
    return undefined;
  }
  if (!(await hasMmdbMarker(file, st.size))) {
    out.error(f.rel, pos, `${kind} database ${file} is not a MaxMind DB (.mmdb) file`, 'point it at an .mmdb file (unpack a .mmdb.gz or .tar.gz first; CSV files are not read)');
    return undefined;
  }
  return file;
}

/** The metadata marker sits in the last 128 KiB of every mmdb file. */
async function hasMmdbMarker(file: string, size: number): Promise<boolean> {
  const length = Math.min(size, 128 * 1024);
  const fh = await open(file, 'r').catch(() => undefined);
  if (!fh) return false;
  try {
    const buf = Buffer.alloc(length);
    await fh.read(buf, 0, length, size - length);
    return buf.lastIndexOf(MMDB_MARKER) >= 0;
  } finally {
    await fh.close();
  }
}

/**
 * The access log: on by default (logs/access.log). Relative paths resolve
 * against the working directory, as a daemon's log paths do, not against the
 * configuration directory (a config repository holds no logs).
 */
function accessLogOf(p: PlatformWire | undefined): { accessLog?: AccessLogSpec } {
  const file = p?.['access-log']?.path ?? DEFAULT_ACCESS_LOG;
  if (file === 'off') return {};
  return { accessLog: { path: file === 'stdout' ? 'stdout' : path.resolve(file) } };
}

function deepFreeze<T>(v: T): T {
  if (v instanceof Map) {
    for (const x of v.values()) deepFreeze(x);
  } else if (v && typeof v === 'object') {
    for (const x of Object.values(v)) deepFreeze(x);
  }
  // Maps stay mutable at runtime (freezing does not stop set()); the types say readonly.
  return Object.freeze(v);
}

/** Plain JSON form of a snapshot (maps as objects with sorted keys), for golden tests and `--json`. */
export function snapshotToJSON(s: Snapshot): unknown {
  const plain = (v: unknown): unknown => {
    if (v instanceof Map) {
      const o: Record<string, unknown> = {};
      for (const k of [...v.keys()].map(String).sort()) o[k] = plain(v.get(k));
      return o;
    }
    if (Array.isArray(v)) return v.map(plain);
    if (v && typeof v === 'object') {
      const o: Record<string, unknown> = {};
      for (const k of Object.keys(v).sort()) o[k] = plain((v as Record<string, unknown>)[k]);
      return o;
    }
    return v;
  };
  // Secrets (the admin token, the PostgreSQL URL): say that there is one, never what it is.
  return plain(redactSecrets(s));
}

/** The snapshot with its secrets replaced by '<redacted>' (for JSON output and the admin API). */
export function redactSecrets(s: Snapshot): Snapshot {
  let out = s;
  if (s.admin?.token !== undefined) out = { ...out, admin: { ...s.admin, token: '<redacted>' } };
  if (s.allowlists?.kind === 'postgres') out = { ...out, allowlists: { kind: 'postgres', url: redactUrl(s.allowlists.url) } };
  return out;
}

/** A connection URL without its password. */
export function redactUrl(url: string): string {
  return url.replace(/^([a-z]+:\/\/[^/@:]*):[^/@]*@/, '$1:<redacted>@');
}
