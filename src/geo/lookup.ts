/**
 * Geolocation of the client: country code and AS number from MaxMind-format
 * (mmdb) databases, as headers for the backend. Opened once per geo
 * configuration; the request path only calls lookup()/headers(). The
 * database files are watched and reopened when they change; until a new
 * file has opened cleanly the old one keeps answering.
 */
import { watch, type FSWatcher } from 'node:fs';
import { stat } from 'node:fs/promises';
import { isIP } from 'node:net';
import path from 'node:path';
import maxmind, { type Reader, type Response } from 'maxmind';
import type { GeoSpec } from '../config/types.js';
import { builtinAsnDb, ensureBuiltinAsnDb } from './builtin.js';

export type { GeoSpec };

/** Addresses whose header lines headers() keeps (cleared whole when full: cheap, and a scan of many addresses only costs lookups). */
const HEADER_CACHE_SIZE = 8192;

/** What headers() sends when the database has no answer: never a real country or AS. */
export const UNKNOWN_COUNTRY = 'XX'; // ISO 3166 user-assigned code; Cloudflare uses the same
export const UNKNOWN_ASN = 0; // AS0 is reserved (RFC 7607) and never originates routes

export interface GeoResult {
  /** ISO 3166-1 alpha-2, upper case; '' when unknown. */
  readonly country: string;
  /** 0 when unknown. */
  readonly asn: number;
}

export interface GeoDatabaseInfo {
  readonly path: string;
  /** The database's own build date (metadata build_epoch), ISO 8601. */
  readonly buildDate: string;
  /** metadata database_type, e.g. 'GeoLite2-Country', 'country ipvAll'. */
  readonly type: string;
  /** When this process opened it, ISO 8601. */
  readonly loadedAt: string;
}

export interface GeoInfo {
  readonly country?: GeoDatabaseInfo;
  readonly asn?: GeoDatabaseInfo;
}

/** The subset of a pino logger that this module uses. */
export interface GeoLog {
  info(obj: object, msg: string): void;
  warn(obj: object, msg: string): void;
}

export interface GeoOpenOptions {
  /** How often the files are stat()ed in case fs.watch misses a change (default 10 s). */
  readonly pollIntervalMs?: number;
  /** Quiet time after a change before the file is reopened, so a copy in progress is not read (default 200 ms). */
  readonly settleMs?: number;
}

const NO_LOG: GeoLog = { info: () => undefined, warn: () => undefined };

/** Country records: ip-location-db's {country_code} or MaxMind's GeoIP2/GeoLite2 {country: {iso_code}}. */
interface CountryRecord {
  country_code?: unknown;
  country?: { iso_code?: unknown };
  registered_country?: { iso_code?: unknown };
}
/** ASN records: the same field in MaxMind's GeoLite2-ASN and ip-location-db's files. */
interface AsnRecord {
  autonomous_system_number?: unknown;
}

function countryOf(rec: CountryRecord | null): string {
  if (!rec) return '';
  const code = rec.country_code ?? rec.country?.iso_code ?? rec.registered_country?.iso_code;
  // Validated so a strange database can never put anything but two letters into a header.
  if (typeof code !== 'string' || !/^[A-Za-z]{2}$/.test(code)) return '';
  return code.toUpperCase();
}

function asnOf(rec: AsnRecord | null): number {
  const n = rec?.autonomous_system_number;
  return typeof n === 'number' && Number.isInteger(n) && n > 0 && n <= 0xffff_ffff ? n : 0;
}

/** An IPv4-mapped IPv6 address (::ffff:a.b.c.d, as dual-stack sockets report) as plain IPv4; zone ids dropped. */
export function normalizeAddress(ip: string): string {
  let s = ip;
  const zone = s.indexOf('%');
  if (zone >= 0) s = s.slice(0, zone);
  if (s.length > 7 && s.slice(0, 7).toLowerCase() === '::ffff:' && isIP(s.slice(7)) === 4) return s.slice(7);
  return s;
}

interface FileIdentity {
  mtimeMs: number;
  size: number;
  ino: number;
}

/** One watched database file with the reader currently answering for it. */
class WatchedDatabase<T extends Response> {
  private watcher: FSWatcher | undefined;
  private poll: NodeJS.Timeout | undefined;
  private settle: NodeJS.Timeout | undefined;
  private reloading = false;
  private again = false;
  private closed = false;

  private constructor(
    readonly kind: 'country' | 'asn',
    readonly path: string,
    public reader: Reader<T>,
    private identity: FileIdentity,
    private loadedAt: Date,
    private readonly log: GeoLog,
    private readonly settleMs: number,
  ) {}

  static async open<T extends Response>(kind: 'country' | 'asn', file: string, log: GeoLog, opts: GeoOpenOptions): Promise<WatchedDatabase<T>> {
    const identity = await identify(file);
    const reader = await maxmind.open<T>(file);
    const db = new WatchedDatabase<T>(kind, file, reader, identity, new Date(), log, opts.settleMs ?? 200);
    db.startWatching(opts.pollIntervalMs ?? 10_000);
    log.info({ event: { action: 'geo-database-opened' }, geo: { database: kind, ...db.info() } }, `opened the ${kind} database`);
    return db;
  }

  info(): GeoDatabaseInfo {
    return { path: this.path, buildDate: this.reader.metadata.buildEpoch.toISOString(), type: this.reader.metadata.databaseType, loadedAt: this.loadedAt.toISOString() };
  }

  private startWatching(pollIntervalMs: number): void {
    // The directory, not the file: replacing a file by rename (the safe way
    // to update it) gives it a new inode that a watch on the old one misses.
    const base = path.basename(this.path);
    try {
      this.watcher = watch(path.dirname(this.path), { persistent: false }, (_event, name) => {
        if (name === null || name === base || name.toString() === base) this.changed();
      });
      this.watcher.on('error', () => {
        // The directory went away or watching is not supported: polling still runs.
        this.watcher?.close();
        this.watcher = undefined;
      });
    } catch {
      this.watcher = undefined;
    }
    this.poll = setInterval(() => this.changed(), pollIntervalMs);
    this.poll.unref();
  }

  private changed(): void {
    if (this.closed) return;
    if (this.settle) clearTimeout(this.settle);
    this.settle = setTimeout(() => {
      this.settle = undefined;
      void this.reloadIfChanged();
    }, this.settleMs);
    this.settle.unref();
  }

  private async reloadIfChanged(): Promise<void> {
    if (this.reloading) {
      this.again = true;
      return;
    }
    this.reloading = true;
    try {
      const id = await identify(this.path).catch(() => undefined);
      // Gone (mid-replace, or deleted): keep serving the one we have.
      if (!id || sameFile(id, this.identity) || this.closed) return;
      try {
        const reader = await maxmind.open<T>(this.path);
        if (this.closed) return;
        const before = this.reader.metadata.buildEpoch.toISOString();
        this.reader = reader;
        this.identity = id;
        this.loadedAt = new Date();
        this.log.info({ event: { action: 'geo-database-reloaded' }, geo: { database: this.kind, previous_build_date: before, ...this.info() } }, `reloaded the ${this.kind} database`);
      } catch (err) {
        // Remember the broken file so it is not retried until it changes again.
        this.identity = id;
        this.log.warn(
          { event: { action: 'geo-database-reload-failed' }, geo: { database: this.kind, path: this.path }, error: { message: (err as Error).message } },
          `the new ${this.kind} database file cannot be read; still serving the previous one`,
        );
      }
    } finally {
      this.reloading = false;
      if (this.again && !this.closed) {
        this.again = false;
        void this.reloadIfChanged();
      }
    }
  }

  close(): void {
    this.closed = true;
    this.watcher?.close();
    if (this.poll) clearInterval(this.poll);
    if (this.settle) clearTimeout(this.settle);
  }
}

async function identify(file: string): Promise<FileIdentity> {
  const st = await stat(file);
  if (!st.isFile()) throw new Error(`${file} is not a file`);
  return { mtimeMs: st.mtimeMs, size: st.size, ino: st.ino };
}

function sameFile(a: FileIdentity, b: FileIdentity): boolean {
  return a.mtimeMs === b.mtimeMs && a.size === b.size && a.ino === b.ino;
}

const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;

export class GeoLookup {
  /** Lower-case header names, so the proxy can drop what a client sent under them; '' when that database is off. */
  readonly countryHeader: string;
  readonly asnHeader: string;
  /** The names as configured, for HTTP/1.1 output. */
  private readonly countryName: string;
  private readonly asnName: string;

  private constructor(
    private readonly country: WatchedDatabase<CountryRecord & Response> | undefined,
    private readonly asn: WatchedDatabase<AsnRecord & Response> | undefined,
    spec: GeoSpec,
  ) {
    this.countryName = country ? spec.countryHeader : '';
    this.asnName = asn ? spec.asnHeader : '';
    this.countryHeader = this.countryName.toLowerCase();
    this.asnHeader = this.asnName.toLowerCase();
  }

  /**
   * Open the databases of a geo configuration. The built-in ASN database is
   * compiled first when it is missing or stale (seconds, once per package
   * version): open it in the control process before workers start. Throws
   * when a database cannot be opened (the loader has checked the files).
   */
  static async open(spec: GeoSpec, log: GeoLog = NO_LOG, opts: GeoOpenOptions = {}): Promise<GeoLookup> {
    for (const name of [spec.countryHeader, spec.asnHeader]) {
      if (!TOKEN.test(name)) throw new Error(`geo header name '${name}' is not an HTTP token`);
    }
    let country: WatchedDatabase<CountryRecord & Response> | undefined;
    let asn: WatchedDatabase<AsnRecord & Response> | undefined;
    try {
      if (spec.countryDb !== undefined) country = await WatchedDatabase.open('country', spec.countryDb, log, opts);
      if (spec.asnDb !== undefined) {
        if (spec.asnDb === builtinAsnDb()) await ensureBuiltinAsnDb(log);
        asn = await WatchedDatabase.open('asn', spec.asnDb, log, opts);
      }
    } catch (err) {
      country?.close();
      throw err;
    }
    return new GeoLookup(country, asn, spec);
  }

  /** Country and AS of an address; '' and 0 for what the databases do not know (private, loopback, garbage). */
  lookup(ip: string): GeoResult {
    const addr = normalizeAddress(ip);
    if (isIP(addr) === 0) return { country: '', asn: 0 };
    return {
      country: this.country ? countryOf(this.country.reader.get(addr)) : '',
      asn: this.asn ? asnOf(this.asn.reader.get(addr)) : 0,
    };
  }

  /**
   * The header fields for a backend, as [name, value] pairs with the names as
   * configured. Both are always present (a database that is off excepted):
   * unknown is 'XX' and '0', so a backend never mistakes a missing header
   * for a proxy that forgot.
   */
  fields(ip: string): [string, string][] {
    const r = this.lookup(ip);
    const out: [string, string][] = [];
    if (this.countryName) out.push([this.countryName, r.country || UNKNOWN_COUNTRY]);
    if (this.asnName) out.push([this.asnName, String(r.asn || UNKNOWN_ASN)]);
    return out;
  }

  /**
   * fields() as HTTP/1.1 header lines: "X-Geo-Country: SE\r\nX-Geo-ASN: 1653\r\n".
   * On the request path for every request: the lines are cached per address
   * (keep-alive clients repeat theirs), bounded, and dropped when a database
   * is reloaded.
   */
  headers(ip: string): string {
    const country = this.country?.reader;
    const asn = this.asn?.reader;
    if (country !== this.cachedCountry || asn !== this.cachedAsn) {
      this.lines.clear();
      this.cachedCountry = country;
      this.cachedAsn = asn;
    }
    let s = this.lines.get(ip);
    if (s !== undefined) return s;
    s = '';
    for (const [name, value] of this.fields(ip)) s += `${name}: ${value}\r\n`;
    if (this.lines.size >= HEADER_CACHE_SIZE) this.lines.clear();
    this.lines.set(ip, s);
    return s;
  }

  private readonly lines = new Map<string, string>();
  private cachedCountry: unknown;
  private cachedAsn: unknown;

  /** The databases in use and their build dates (admin API). */
  info(): GeoInfo {
    return { ...(this.country ? { country: this.country.info() } : {}), ...(this.asn ? { asn: this.asn.info() } : {}) };
  }

  /** Stop watching the files. */
  close(): void {
    this.country?.close();
    this.asn?.close();
  }
}

/** One X-Forwarded-For element as an address: bare, "[v6]", "[v6]:port" or "v4:port"; undefined when garbage. */
function forwardedAddress(raw: string): string | undefined {
  const s = raw.trim();
  if (isIP(s) !== 0) return normalizeAddress(s);
  const bracketed = /^\[([^\]]+)\](?::\d{1,5})?$/.exec(s);
  if (bracketed?.[1] && isIP(bracketed[1]) === 6) return normalizeAddress(bracketed[1]);
  const withPort = /^([0-9.]+):\d{1,5}$/.exec(s);
  if (withPort?.[1] && isIP(withPort[1]) === 4) return withPort[1];
  return undefined;
}

/**
 * The real client address for geolocation: the peer, or, when the peer is a
 * trusted proxy, the right-most X-Forwarded-For address that is not itself
 * trusted (nginx's realip with real_ip_recursive on). Entries left of the
 * first untrusted one are the client's to write and are ignored; a garbage
 * entry stops the walk and the last good address is used. When every
 * address is trusted, the left-most one is the client. Multiple
 * X-Forwarded-For header fields must be joined with ',' in order.
 */
export function clientAddressForGeo(peer: string, xff: string | undefined, trusted: (ip: string) => boolean): string {
  let client = normalizeAddress(peer);
  if (xff === undefined || !trusted(client)) return client;
  const parts = xff.split(',');
  for (let i = parts.length - 1; i >= 0; i--) {
    const raw = parts[i]!;
    if (raw.trim() === '') continue;
    const addr = forwardedAddress(raw);
    if (addr === undefined) return client;
    client = addr;
    if (!trusted(addr)) return addr;
  }
  return client;
}
