/**
 * GeoLookup with the shipped databases (real data from the npm packages),
 * with configured files in both record shapes, and reloading when a file
 * changes on disk.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { copyFile, mkdir, rename, rm, unlink, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { formatIssue, loadConfig } from '../../src/config/load.js';
import type { GeoSpec } from '../../src/config/types.js';
import { builtinCountryDb } from '../../src/geo/builtin.js';
import { GeoLookup, type GeoLog } from '../../src/geo/lookup.js';
import { addressToBigInt, writeMmdb, type MmdbValue } from '../../src/geo/mmdb-writer.js';
import { configDir, minimalPlatform } from '../config/fixtures.js';
import { waitFor } from '../helpers/upstream.js';

const site = 'www.example.com:\n  service: web-frontend\n';

async function geoSpecOf(dir: string): Promise<GeoSpec | undefined> {
  const r = await loadConfig(dir);
  assert.ok(r.ok, r.ok ? '' : r.issues.map(formatIssue).join('\n'));
  return r.snapshot.geo;
}

/** A small mmdb: each [first, last, record] range; last may equal first. */
function mmdb(type: string, buildDate: string, ranges: [string, string, MmdbValue][]): Buffer {
  return writeMmdb({
    databaseType: type,
    description: 'test',
    buildEpochSeconds: Date.parse(buildDate) / 1000,
    records: ranges.map((r) => r[2]),
    ranges: ranges.map(([a, b], i) => ({ start: addressToBigInt(a)!, end: addressToBigInt(b)!, record: i })),
  });
}

function memoryLog(): GeoLog & { records: { level: string; obj: object; msg: string }[] } {
  const records: { level: string; obj: object; msg: string }[] = [];
  return {
    records,
    info: (obj, msg) => records.push({ level: 'info', obj, msg }),
    warn: (obj, msg) => records.push({ level: 'warn', obj, msg }),
  };
}

test('by default: the built-in databases and X-Geo-Country / X-Geo-ASN', { timeout: 60_000 }, async () => {
  const cfg = await configDir({ 'perimeter.yaml': minimalPlatform, 'sites/a.yaml': site });
  try {
    const spec = await geoSpecOf(cfg.dir);
    assert.ok(spec);
    assert.equal(spec.countryDb, builtinCountryDb());
    assert.equal(spec.countryHeader, 'X-Geo-Country');
    assert.equal(spec.asnHeader, 'X-Geo-ASN');
    // Compiles the ASN database when the cache is missing (seconds, once per package version).
    const geo = await GeoLookup.open(spec);
    try {
      // Long-standing assignments, checked against the shipped data.
      const known: [string, string, number][] = [
        ['8.8.8.8', 'US', 15169], // Google
        ['193.0.6.139', 'NL', 3333], // RIPE NCC, Amsterdam
        ['130.237.28.40', 'SE', 1653], // KTH Stockholm (SUNET)
        ['81.2.69.160', 'GB', 20712], // Andrews & Arnold
        ['195.54.164.1', 'DE', 50472], // Chaos Computer Club
      ];
      for (const [ip, country, asn] of known) assert.deepEqual(geo.lookup(ip), { country, asn }, ip);
      assert.equal(geo.lookup('1.1.1.1').asn, 13335); // Cloudflare (the country differs between databases)
      assert.equal(geo.lookup('2001:4860:4860::8888').asn, 15169);
      assert.match(geo.lookup('2001:4860:4860::8888').country, /^[A-Z]{2}$/);
      // Dual-stack sockets report IPv4 clients as IPv4-mapped IPv6.
      assert.deepEqual(geo.lookup('::ffff:193.0.6.139'), { country: 'NL', asn: 3333 });
      // Private, loopback, documentation and garbage addresses are unknown.
      for (const ip of ['127.0.0.1', '10.1.2.3', '192.168.1.1', '172.16.0.1', '100.64.0.1', '::1', 'fd00::1', 'fe80::1', '0.0.0.0', 'not-an-address', '']) {
        assert.deepEqual(geo.lookup(ip), { country: '', asn: 0 }, ip);
      }
      assert.equal(geo.headers('130.237.28.40'), 'X-Geo-Country: SE\r\nX-Geo-ASN: 1653\r\n');
      assert.equal(geo.headers('10.0.0.1'), 'X-Geo-Country: XX\r\nX-Geo-ASN: 0\r\n');
      assert.deepEqual(geo.fields('8.8.8.8'), [['X-Geo-Country', 'US'], ['X-Geo-ASN', '15169']]);
      assert.equal(geo.countryHeader, 'x-geo-country');
      assert.equal(geo.asnHeader, 'x-geo-asn');
      const info = geo.info();
      assert.equal(info.country?.path, spec.countryDb);
      assert.equal(info.asn?.path, spec.asnDb);
      assert.equal(info.asn?.type, 'perimeter-asn');
      for (const db of [info.country, info.asn]) {
        assert.ok(db);
        // A real build date: after these packages existed, not in the future.
        const built = Date.parse(db.buildDate);
        assert.ok(built > Date.parse('2024-01-01') && built < Date.now() + 86_400_000, db.buildDate);
      }
    } finally {
      geo.close();
    }
  } finally {
    await cfg.cleanup();
  }
});

test('configured files in MaxMind GeoIP2/GeoLite2 shape, with custom header names', async () => {
  const cfg = await configDir({
    'perimeter.yaml': `${minimalPlatform}geo:\n  country-db: geo/GeoLite2-Country.mmdb\n  asn-db: geo/GeoLite2-ASN.mmdb\n  headers: { country: CDN-Country, asn: cdn-asn }\n`,
    'sites/a.yaml': site,
  });
  try {
    await mkdir(path.join(cfg.dir, 'geo'));
    await writeFile(
      path.join(cfg.dir, 'geo/GeoLite2-Country.mmdb'),
      mmdb('GeoLite2-Country', '2025-03-04T00:00:00Z', [
        ['2.0.0.0', '2.0.0.255', { country: { iso_code: 'FR', names: { en: 'France' } }, registered_country: { iso_code: 'FR' } }],
        // No country, only where the block is registered (anonymous proxies, satellite).
        ['2.0.1.0', '2.0.1.255', { registered_country: { iso_code: 'se' } }],
        // Something a header must never carry.
        ['2.0.2.0', '2.0.2.255', { country_code: 'S\r\nE' }],
        ['2001:db8::', '2001:db8::ffff', { country: { iso_code: 'JP' } }],
      ]),
    );
    await writeFile(
      path.join(cfg.dir, 'geo/GeoLite2-ASN.mmdb'),
      mmdb('GeoLite2-ASN', '2025-03-05T00:00:00Z', [['2.0.0.0', '2.0.1.255', { autonomous_system_number: 3215, autonomous_system_organization: 'Orange' }]]),
    );
    const spec = await geoSpecOf(cfg.dir);
    assert.ok(spec);
    assert.equal(spec.countryDb, path.join(cfg.dir, 'geo/GeoLite2-Country.mmdb'));
    const geo = await GeoLookup.open(spec);
    try {
      assert.deepEqual(geo.lookup('2.0.0.7'), { country: 'FR', asn: 3215 });
      assert.deepEqual(geo.lookup('2.0.1.7'), { country: 'SE', asn: 3215 });
      assert.deepEqual(geo.lookup('2.0.2.7'), { country: '', asn: 0 });
      assert.deepEqual(geo.lookup('2001:db8::1'), { country: 'JP', asn: 0 });
      assert.equal(geo.headers('2.0.0.7'), 'CDN-Country: FR\r\ncdn-asn: 3215\r\n');
      assert.equal(geo.headers('2.0.2.7'), 'CDN-Country: XX\r\ncdn-asn: 0\r\n');
      assert.equal(geo.countryHeader, 'cdn-country');
      assert.equal(geo.asnHeader, 'cdn-asn');
      assert.equal(geo.info().country?.type, 'GeoLite2-Country');
      assert.equal(geo.info().country?.buildDate, '2025-03-04T00:00:00.000Z');
      assert.equal(geo.info().asn?.buildDate, '2025-03-05T00:00:00.000Z');
    } finally {
      geo.close();
    }
  } finally {
    await cfg.cleanup();
  }
});

test("'off' turns one database (and its header) or all of geolocation off", async () => {
  const one = await configDir({ 'perimeter.yaml': `${minimalPlatform}geo:\n  asn-db: off\n`, 'sites/a.yaml': site });
  const both = await configDir({ 'perimeter.yaml': `${minimalPlatform}geo: { country-db: off, asn-db: off }\n`, 'sites/a.yaml': site });
  try {
    const spec = await geoSpecOf(one.dir);
    assert.ok(spec);
    assert.equal(spec.asnDb, undefined);
    const geo = await GeoLookup.open(spec);
    try {
      assert.equal(geo.headers('193.0.6.139'), 'X-Geo-Country: NL\r\n');
      assert.equal(geo.asnHeader, '');
      assert.equal(geo.info().asn, undefined);
    } finally {
      geo.close();
    }
    assert.equal(await geoSpecOf(both.dir), undefined);
  } finally {
    await one.cleanup();
    await both.cleanup();
  }
});

test('a replaced database file is reloaded; a broken one keeps the previous database', { timeout: 20_000 }, async () => {
  const cfg = await configDir({ 'perimeter.yaml': `${minimalPlatform}geo:\n  country-db: db/country.mmdb\n  asn-db: off\n`, 'sites/a.yaml': site });
  const file = path.join(cfg.dir, 'db/country.mmdb');
  const log = memoryLog();
  let geo: GeoLookup | undefined;
  try {
    await mkdir(path.dirname(file));
    // Start with a copy of the shipped database.
    await copyFile(builtinCountryDb()!, file);
    const spec = await geoSpecOf(cfg.dir);
    assert.ok(spec);
    geo = await GeoLookup.open(spec, log, { pollIntervalMs: 100, settleMs: 50 });
    const g = geo;
    const shippedDate = g.info().country!.buildDate;
    assert.equal(g.lookup('130.237.28.40').country, 'SE');
    assert.match(g.headers('130.237.28.40'), /^X-Geo-Country: SE\r\n/); // now cached

    // Replaced the safe way (write beside, rename over): a different database.
    await writeFile(`${file}.new`, mmdb('test-country', '2020-01-02T03:04:05Z', [['130.237.0.0', '130.237.255.255', { country_code: 'NO' }]]));
    await rename(`${file}.new`, file);
    await waitFor(() => g.info().country!.buildDate !== shippedDate, 5_000, 20);
    assert.equal(g.info().country!.buildDate, '2020-01-02T03:04:05.000Z');
    assert.equal(g.lookup('130.237.28.40').country, 'NO');
    assert.match(g.headers('130.237.28.40'), /^X-Geo-Country: NO\r\n/, 'cached header lines are dropped on reload');
    assert.equal(g.lookup('8.8.8.8').country, '');
    assert.ok(log.records.some((r) => r.msg.includes('reloaded the country database')));

    // A broken file: logged, and the previous database keeps answering.
    await writeFile(`${file}.new`, 'this is not a database');
    await rename(`${file}.new`, file);
    await waitFor(() => log.records.some((r) => r.level === 'warn'), 5_000, 20);
    assert.equal(g.lookup('130.237.28.40').country, 'NO');
    assert.equal(g.info().country!.buildDate, '2020-01-02T03:04:05.000Z');

    // Rewritten in place (same inode) with a good one: picked up too.
    await writeFile(file, mmdb('test-country', '2021-06-07T00:00:00Z', [['130.237.0.0', '130.237.255.255', { country_code: 'DK' }]]));
    await waitFor(() => g.info().country!.buildDate === '2021-06-07T00:00:00.000Z', 5_000, 20);
    assert.equal(g.lookup('130.237.28.40').country, 'DK');

    // Deleted: keeps serving what it has.
    await unlink(file);
    await new Promise((r) => setTimeout(r, 300));
    assert.equal(g.lookup('130.237.28.40').country, 'DK');
  } finally {
    geo?.close();
    await rm(`${file}.new`, { force: true });
    await cfg.cleanup();
  }
});

test('open() refuses a file that is not a database', async () => {
  const cfg = await configDir({ 'bad.mmdb': 'nope' });
  try {
    await assert.rejects(GeoLookup.open({ countryDb: path.join(cfg.dir, 'bad.mmdb'), countryHeader: 'X-Geo-Country', asnHeader: 'X-Geo-ASN' }));
    await assert.rejects(GeoLookup.open({ countryHeader: 'X Bad', asnHeader: 'X-Geo-ASN' }), /not an HTTP token/);
  } finally {
    await cfg.cleanup();
  }
});
