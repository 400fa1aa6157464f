/**
 * The mmdb writer against the `maxmind` reader: what is written is what a
 * standard reader finds, at range edges, for IPv4 and IPv6.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Reader } from 'maxmind';
import { addressToBigInt, writeMmdb, type MmdbInput } from '../../src/geo/mmdb-writer.js';

const a = (s: string): bigint => {
  const v = addressToBigInt(s);
  assert.ok(v !== undefined, s);
  return v;
};

test('addressToBigInt parses IPv4, IPv6, embedded IPv4 and refuses garbage', () => {
  assert.equal(addressToBigInt('0.0.0.1'), 1n);
  assert.equal(addressToBigInt('1.2.3.4'), 0x01020304n);
  assert.equal(addressToBigInt('255.255.255.255'), 0xffffffffn);
  assert.equal(addressToBigInt('::'), 0n);
  assert.equal(addressToBigInt('::1'), 1n);
  assert.equal(addressToBigInt('2001:db8::1'), (0x20010db8n << 96n) | 1n);
  assert.equal(addressToBigInt('::ffff:1.2.3.4'), (0xffffn << 32n) | 0x01020304n);
  assert.equal(addressToBigInt('64:ff9b::1.2.3.4'), (0x64n << 112n) | (0xff9bn << 96n) | 0x01020304n);
  assert.equal(addressToBigInt('fe80::1%eth0'), (0xfe80n << 112n) | 1n);
  assert.equal(addressToBigInt('ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff'), (1n << 128n) - 1n);
  for (const bad of ['', '1.2.3', '1.2.3.256', '1.2.3.4.5', '01234.1.1.1', 'a.b.c.d', '1::2::3', 'gggg::1', 'example.com']) {
    assert.equal(addressToBigInt(bad), undefined, bad);
  }
});

test('a written database answers exactly within each range, IPv4 and IPv6', () => {
  const input: MmdbInput = {
    databaseType: 'test-asn',
    description: 'unit test',
    buildEpochSeconds: 1_700_000_000,
    records: [{ autonomous_system_number: 64_500, autonomous_system_organization: 'Example "One"' }, { autonomous_system_number: 4_200_000_000 }, { nested: { list: ['a', 'b'], flag: true } }],
    ranges: [
      { start: a('1.0.0.0'), end: a('1.0.0.255'), record: 0 },
      { start: a('1.0.1.7'), end: a('1.0.3.9'), record: 1 }, // not aligned to a CIDR
      { start: a('9.0.0.0'), end: a('9.255.255.255'), record: 2 },
      { start: a('2001:db8::'), end: a('2001:db8:ffff:ffff:ffff:ffff:ffff:ffff'), record: 1 },
      { start: a('2001:db9::5'), end: a('2001:db9::5'), record: 0 },
    ],
  };
  const reader = new Reader<Record<string, unknown>>(writeMmdb(input));
  assert.equal(reader.metadata.databaseType, 'test-asn');
  assert.equal(reader.metadata.ipVersion, 6);
  assert.equal(reader.metadata.recordSize, 32);
  assert.equal(reader.metadata.buildEpoch.toISOString(), new Date(1_700_000_000_000).toISOString());
  assert.deepEqual(reader.get('1.0.0.0'), { autonomous_system_number: 64_500, autonomous_system_organization: 'Example "One"' });
  assert.deepEqual(reader.get('1.0.0.255'), reader.get('1.0.0.0'));
  assert.equal(reader.get('1.0.1.6'), null);
  assert.deepEqual(reader.get('1.0.1.7'), { autonomous_system_number: 4_200_000_000 });
  assert.deepEqual(reader.get('1.0.2.200'), { autonomous_system_number: 4_200_000_000 });
  assert.deepEqual(reader.get('1.0.3.9'), { autonomous_system_number: 4_200_000_000 });
  assert.equal(reader.get('1.0.3.10'), null);
  assert.deepEqual(reader.get('9.128.0.1'), { nested: { list: ['a', 'b'], flag: true } });
  assert.equal(reader.get('8.255.255.255'), null);
  assert.equal(reader.get('10.0.0.0'), null);
  assert.equal(reader.get('0.0.0.0'), null);
  assert.deepEqual(reader.get('2001:db8:1234::1'), { autonomous_system_number: 4_200_000_000 });
  assert.equal(reader.get('2001:db7:ffff::1'), null);
  assert.deepEqual(reader.get('2001:db9::5'), reader.get('1.0.0.0'));
  assert.equal(reader.get('2001:db9::4'), null);
  assert.equal(reader.get('2001:db9::6'), null);
  assert.equal(reader.get('::1'), null);
});

test('an empty database is valid and answers nothing', () => {
  const reader = new Reader(writeMmdb({ databaseType: 'empty', description: '', buildEpochSeconds: 0, records: [], ranges: [] }));
  assert.equal(reader.get('8.8.8.8'), null);
  assert.equal(reader.get('2001:db8::1'), null);
});

test('overlapping or unsorted ranges are refused', () => {
  const base = { databaseType: 't', description: '', buildEpochSeconds: 0, records: [{ x: 1 }] };
  assert.throws(() => writeMmdb({ ...base, ranges: [{ start: 10n, end: 20n, record: 0 }, { start: 15n, end: 30n, record: 0 }] }), /sorted/);
  assert.throws(() => writeMmdb({ ...base, ranges: [{ start: 0xffff_fff0n, end: 0x1_0000_0010n, record: 0 }] }), /IPv4 space/);
});
