/**
 * The CIDR normalizer and the longest-prefix matcher, including a
 * property-style comparison with a naive linear scan (seeded PRNG).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { formatV4, formatV6, normalizeCidr, parseAddress } from '../../src/allowlist/cidr.js';
import { compileMatcher } from '../../src/allowlist/matcher.js';
import { AllowlistTables } from '../../src/allowlist/tables.js';
import { AllowlistInputError, type AllowEntry } from '../../src/allowlist/types.js';
import { rng } from '../helpers/mutate.js';

function entry(cidr: string, over: Partial<AllowEntry> = {}): AllowEntry {
  return { id: over.id ?? cidr, list: 'l', cidr, partner: 'p', note: '', addedBy: 't', addedAt: '2026-01-01T00:00:00.000Z', ...over };
}

function refused(input: string, pattern: RegExp, fix?: RegExp): void {
  assert.throws(
    () => normalizeCidr(input),
    (err: unknown) => {
      assert.ok(err instanceof AllowlistInputError, `${input}: ${String(err)}`);
      assert.equal(err.field, 'cidr');
      assert.match(err.message, pattern, input);
      if (fix) assert.match(err.fix, fix, input);
      return true;
    },
  );
}

test('normalizeCidr: bare addresses, IPv6 canonical text, IPv4-mapped stored as IPv4', () => {
  assert.equal(normalizeCidr('198.51.100.7').text, '198.51.100.7/32');
  assert.equal(normalizeCidr(' 198.51.100.0/24 ').text, '198.51.100.0/24');
  assert.equal(normalizeCidr('2001:DB8:0:0::7').text, '2001:db8::7/128');
  assert.equal(normalizeCidr('2001:db8:0000:0000:0001:0:0:0/80').text, '2001:db8:0:0:1::/80');
  assert.equal(normalizeCidr('2001:0:0:1:0:0:0:1').text, '2001:0:0:1::1/128');
  assert.equal(normalizeCidr('::ffff:198.51.100.7').text, '198.51.100.7/32');
  assert.equal(normalizeCidr('::ffff:c633:6400/120').text, '198.51.100.0/24');
  assert.equal(normalizeCidr('10.0.0.0/8').text, '10.0.0.0/8');
  assert.equal(normalizeCidr('2001:db8::/32').text, '2001:db8::/32');
});

test('normalizeCidr: refuses malformed, too broad and host-bit input with a fix', () => {
  refused('', /empty/);
  refused('not-an-ip', /not an IP address/, /198\.51\.100\.7/);
  refused('198.51.100', /not an IP address/, /all four parts/);
  refused('010.1.2.3', /not an IP address/, /leading zeros/);
  refused('198.51.100.0/33', /invalid prefix/, /0 to 32/);
  refused('198.51.100.0/abc', /invalid prefix/);
  refused('198.51.100.0/', /invalid prefix/);
  refused('2001:db8::/129', /invalid prefix/, /0 to 128/);
  refused('0.0.0.0/0', /too broad.*whole internet/);
  refused('::/0', /too broad.*whole internet/);
  refused('64.0.0.0/2', /too broad/, /\/8 or longer/);
  refused('2001::/16', /too broad/, /\/32 or longer/);
  refused('::ffff:0:0/96', /too broad.*whole internet/);
  refused('198.51.100.7/24', /host bits/, /did you mean 198\.51\.100\.0\/24/);
  refused('2001:db8::1/48', /host bits/, /did you mean 2001:db8::\/48/);
  refused('fe80::1%eth0', /zone/);
});

test('matcher: longest prefix wins, IPv6, IPv4-mapped and garbage', () => {
  const m = compileMatcher([
    entry('198.51.100.0/24', { id: 'net' }),
    entry('198.51.100.7/32', { id: 'host' }),
    entry('2001:db8::/48', { id: 'v6net' }),
    entry('2001:db8::5/128', { id: 'v6host' }),
    entry('10.0.0.0/8', { id: 'ten' }),
  ]);
  assert.equal(m.size, 5);
  assert.equal(m.lookup('198.51.100.7')?.id, 'host');
  assert.equal(m.lookup('198.51.100.8')?.id, 'net');
  assert.equal(m.lookup('::ffff:198.51.100.7')?.id, 'host');
  assert.equal(m.lookup('::ffff:c633:6408')?.id, 'net');
  assert.equal(m.lookup('198.51.101.1'), undefined);
  assert.equal(m.lookup('10.200.3.4')?.id, 'ten');
  assert.equal(m.lookup('2001:db8::5')?.id, 'v6host');
  assert.equal(m.lookup('2001:db8:0:ffff::1')?.id, 'v6net');
  assert.equal(m.lookup('2001:db8:1::1'), undefined);
  assert.equal(m.lookup('fe80::1%eth0'), undefined);
  assert.equal(m.lookup('garbage'), undefined);
  assert.equal(m.lookup(''), undefined);
  // An IPv6 entry never admits an IPv4 client and vice versa.
  assert.equal(compileMatcher([entry('2001:db8::/32')]).lookup('32.1.13.184'), undefined);
});

test('matcher: expired entries never match; a shorter unexpired prefix still does', () => {
  const now = Date.parse('2026-06-01T00:00:00Z');
  const m = compileMatcher([
    entry('198.51.100.0/24', { id: 'net' }),
    entry('198.51.100.7/32', { id: 'host', expiresAt: '2026-06-01T00:00:00.000Z' }),
    entry('203.0.113.9/32', { id: 'later', expiresAt: '2026-07-01T00:00:00.000Z' }),
    entry('203.0.113.9/32', { id: 'forever' }),
    entry('192.0.2.1/32', { id: 'gone', expiresAt: '2026-05-01T00:00:00.000Z' }),
  ]);
  assert.equal(m.lookup('198.51.100.7', now - 1)?.id, 'host');
  assert.equal(m.lookup('198.51.100.7', now)?.id, 'net', 'expiresAt <= now does not match');
  assert.equal(m.lookup('192.0.2.1', now), undefined);
  assert.equal(m.lookup('192.0.2.1', Date.parse('2026-04-01T00:00:00Z'))?.id, 'gone');
  assert.equal(m.lookup('203.0.113.9', now)?.id, 'forever', 'the longest-lived of equal CIDRs');
});

test('matcher agrees with a naive linear scan on random entries and addresses', () => {
  const rnd = rng(20260601); // seeded: failures reproduce
  const u32 = (): number => Math.floor(rnd() * 2 ** 32) >>> 0;
  const u128 = (): bigint => (BigInt(u32()) << 96n) | (BigInt(u32()) << 64n) | (BigInt(u32()) << 32n) | BigInt(u32());
  // Addresses concentrated in a few regions so that entries overlap a lot.
  const v4Bases = [0xc6336400, 0x0a000000, 0xcb007100]; // 198.51.100.0, 10.0.0.0, 203.0.113.0
  const v6Base = 0x20010db8n << 96n;
  const randV4 = (): number => {
    const base = v4Bases[Math.floor(rnd() * v4Bases.length)]!;
    return rnd() < 0.8 ? (base + Math.floor(rnd() * 4096)) >>> 0 : u32();
  };
  const randV6 = (): bigint => (rnd() < 0.8 ? v6Base | (u128() & ((1n << 72n) - 1n)) : u128());
  const now = 1_800_000_000_000;
  // Entries and addresses are generated as numbers, formatted to text for the
  // matcher; the naive reference compares the numbers (independent of parsing).
  interface Ref {
    readonly e: AllowEntry;
    readonly v4: boolean;
    readonly net: bigint;
    readonly len: number;
    readonly exp: number;
  }
  const entries: AllowEntry[] = [];
  const ref: Ref[] = [];
  for (let i = 0; i < 3000; i++) {
    const expiresAt = rnd() < 0.2 ? new Date(now + (rnd() < 0.5 ? -1 : 1) * Math.floor(rnd() * 1e6 + 1)).toISOString() : undefined;
    const v4 = rnd() < 0.6;
    const bits = v4 ? 32 : 128;
    const len = v4 ? 8 + Math.floor(rnd() * 25) : 32 + Math.floor(rnd() * 97);
    const value = v4 ? BigInt(randV4()) : randV6();
    const net = (value >> BigInt(bits - len)) << BigInt(bits - len);
    const cidr = `${v4 ? formatV4(Number(net)) : formatV6(net)}/${len}`;
    const e = entry(cidr, { id: `e${String(i).padStart(5, '0')}`, expiresAt });
    entries.push(e);
    ref.push({ e, v4, net, len, exp: expiresAt ? Date.parse(expiresAt) : Infinity });
  }
  const m = compileMatcher(entries);
  assert.equal(m.size, entries.length);

  const naive = (addr: bigint, v4: boolean): AllowEntry | undefined => {
    const bits = v4 ? 32 : 128;
    let best: Ref | undefined;
    for (const r of ref) {
      if (r.v4 !== v4 || r.exp <= now) continue;
      const shift = BigInt(bits - r.len);
      if (addr >> shift !== r.net >> shift) continue;
      if (!best || r.len > best.len || (r.len === best.len && (r.exp > best.exp || (r.exp === best.exp && r.e.id < best.e.id)))) best = r;
    }
    return best?.e;
  };
  let hits = 0;
  for (let i = 0; i < 3000; i++) {
    const v4 = rnd() < 0.5;
    const value = v4 ? BigInt(randV4()) : randV6();
    const addr = v4 ? formatV4(Number(value)) : formatV6(value);
    const want = naive(value, v4);
    const got = m.lookup(addr, now);
    assert.equal(got?.id, want?.id, `lookup(${addr})`);
    if (v4) assert.equal(m.lookup(`::ffff:${addr}`, now)?.id, want?.id, `lookup(::ffff:${addr})`);
    if (want) hits++;
  }
  assert.ok(hits > 300, `the random addresses hit entries often enough to mean something (${hits})`);
});

test('parseAddress: IPv4-mapped in both notations is IPv4', () => {
  assert.deepEqual(parseAddress('::ffff:1.2.3.4'), { family: 4, v4: 0x01020304 });
  assert.deepEqual(parseAddress('::FFFF:102:304'), { family: 4, v4: 0x01020304 });
  assert.equal(parseAddress('1.2.3.4.5'), undefined);
  assert.equal(parseAddress('::1')?.family, 6);
});

test('AllowlistTables: set/get/names/version and change events', () => {
  const t = new AllowlistTables();
  const seen: string[] = [];
  const off = t.onChange((name, v) => seen.push(`${name}@${v}`));
  assert.equal(t.get('partners'), undefined, 'unknown list: nobody allowed');
  t.set('partners', [entry('198.51.100.0/24')]);
  t.set('ops', []);
  assert.equal(t.get('partners')?.lookup('198.51.100.9')?.cidr, '198.51.100.0/24');
  assert.equal(t.get('ops')?.lookup('198.51.100.9'), undefined);
  assert.deepEqual(t.names(), ['ops', 'partners']);
  assert.equal(t.version, 2);
  assert.equal(t.entries('partners')?.length, 1);
  t.delete('ops');
  t.delete('ops');
  off();
  t.set('partners', []);
  assert.deepEqual(seen, ['partners@1', 'ops@2', 'ops@3']);
  assert.equal(t.version, 4);
});
