/**
 * PROXY protocol (haproxy proxy-protocol.txt): the v2 encoder against the
 * spec's byte layout, the v1/v2 parser against the spec's examples and
 * limits, and a fuzz run (random and mutated inputs: never throws, always
 * answers, respects the bounds).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { encodeProxyV1, encodeProxyV2, parseProxyHeader, V1_MAX, V2_SIGNATURE, type ParseResult } from '../../src/tcp/proxy-protocol.js';

const hex = (s: string): Buffer => Buffer.from(s.replace(/\s+/g, ''), 'hex');

test('v2 header for TCP over IPv4 is the spec layout byte for byte', () => {
  const h = encodeProxyV2({ address: '192.168.0.1', port: 56324 }, { address: '192.168.0.11', port: 443 });
  // signature | ver/cmd 0x21 | fam TCP4 0x11 | len 12 | src | dst | sport | dport (section 2.2)
  assert.deepEqual(h, hex('0d0a0d0a000d0a515549540a 21 11 000c c0a80001 c0a8000b dc04 01bb'));
});

test('v2 header for TCP over IPv6, and IPv4 mapped into IPv6 when the families differ', () => {
  const h = encodeProxyV2({ address: '2001:db8::1', port: 1 }, { address: '2001:db8:0:0:1::2', port: 22 });
  assert.deepEqual(h, hex('0d0a0d0a000d0a515549540a 21 21 0024 20010db8000000000000000000000001 20010db8000000000001000000000002 0001 0016'));
  const m = encodeProxyV2({ address: '198.51.100.7', port: 40000 }, { address: '::1', port: 22 });
  assert.equal(m[13], 0x21);
  assert.deepEqual(m.subarray(16, 32), hex('00000000000000000000ffffc6336407'));
  // ::ffff:a.b.c.d on both sides is plain IPv4.
  const v4 = encodeProxyV2({ address: '::ffff:198.51.100.7', port: 1 }, { address: '::ffff:127.0.0.1', port: 2 });
  assert.equal(v4[13], 0x11);
  assert.equal(v4.length, 28);
});

test('v2 round trip through the parser', () => {
  const cases: [string, string][] = [
    ['203.0.113.9', '10.0.0.1'],
    ['2001:db8::7', '2001:db8::22'],
    ['fe80::1:2:3:4', '::'],
    ['1:2:3:4:5:6:7:8', '1::8'],
    ['1:0:0:2::3', '::1'],
  ];
  for (const [src, dst] of cases) {
    const h = encodeProxyV2({ address: src, port: 65535 }, { address: dst, port: 0 });
    const r = parseProxyHeader(Buffer.concat([h, Buffer.from('payload')]));
    assert.equal(r.state, 'ok', src);
    if (r.state !== 'ok') continue;
    assert.equal(r.length, h.length);
    assert.deepEqual(r.header, { version: 2, command: 'proxy', source: { address: src, port: 65535 }, destination: { address: dst, port: 0 } });
  }
  // RFC 5952: the longest zero run is compressed, lower-case.
  const r = parseProxyHeader(encodeProxyV2({ address: '1:0:0:2:0:0:0:3', port: 1 }, { address: '::1', port: 2 }));
  assert.equal(r.state === 'ok' && r.header.source?.address, '1:0:0:2::3');
});

test('v2 LOCAL, UNSPEC and TLVs; UDP, UNIX and bad versions are refused', () => {
  const local = Buffer.concat([V2_SIGNATURE, hex('20 00 0000')]);
  assert.deepEqual(parseProxyHeader(local), { state: 'ok', header: { version: 2, command: 'local' }, length: 16 });
  const unspec = Buffer.concat([V2_SIGNATURE, hex('21 00 0000')]);
  assert.deepEqual(parseProxyHeader(unspec), { state: 'ok', header: { version: 2, command: 'local' }, length: 16 });
  // TCP4 with a TLV (PP2_TYPE_AUTHORITY "a.io") after the addresses: skipped, counted in the length.
  const tlv = Buffer.concat([V2_SIGNATURE, hex('21 11 0013 c0000201 c0000202 0016 0017 02 0004'), Buffer.from('a.io')]);
  const r = parseProxyHeader(tlv);
  assert.equal(r.state, 'ok');
  assert.equal(r.state === 'ok' && r.length, 16 + 19);
  assert.equal(r.state === 'ok' && r.header.source?.address, '192.0.2.1');
  for (const bad of ['21 12 000c', '21 31 00d8', '11 11 000c', '22 11 000c', '21 41 000c', '21 11 0008']) {
    const buf = Buffer.concat([V2_SIGNATURE, hex(bad), Buffer.alloc(216)]);
    assert.equal(parseProxyHeader(buf).state, 'invalid', bad);
  }
});

test('v1 examples from the spec', () => {
  const ok = (line: string): ParseResult => parseProxyHeader(Buffer.from(line + 'SSH-2.0-x\r\n', 'latin1'));
  assert.deepEqual(ok('PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\n'), {
    state: 'ok',
    header: { version: 1, command: 'proxy', source: { address: '192.168.0.1', port: 56324 }, destination: { address: '192.168.0.11', port: 443 } },
    length: 47,
  });
  assert.deepEqual(ok('PROXY TCP4 255.255.255.255 255.255.255.255 65535 65535\r\n').state, 'ok');
  const worst6 = 'PROXY TCP6 ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff 65535 65535\r\n';
  assert.equal(worst6.length, 104);
  assert.equal(ok(worst6).state, 'ok');
  assert.deepEqual(ok('PROXY UNKNOWN\r\n'), { state: 'ok', header: { version: 1, command: 'local' }, length: 15 });
  const worstUnknown = 'PROXY UNKNOWN ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff 65535 65535\r\n';
  assert.equal(worstUnknown.length, V1_MAX);
  assert.equal(ok(worstUnknown).state, 'ok');
  const mapped = ok('PROXY TCP6 ::ffff:198.51.100.7 ::1 1 2\r\n');
  assert.equal(mapped.state === 'ok' && mapped.header.source?.address, '198.51.100.7');
});

test('v1 is strict and bounded', () => {
  const bad = [
    'PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\n', // LF without CR
    'PROXY TCP4 192.168.0.1 192.168.0.11 56324\r\n', // a field missing
    'PROXY TCP4 192.168.0.1  192.168.0.11 56324 443\r\n', // two spaces
    'PROXY TCP4 2001:db8::1 192.168.0.11 56324 443\r\n', // family mismatch
    'PROXY TCP6 192.168.0.1 192.168.0.11 56324 443\r\n',
    'PROXY TCP4 192.168.0.1 192.168.0.11 65536 443\r\n', // port out of range
    'PROXY TCP4 192.168.0.1 192.168.0.11 056324 443\r\n', // leading zero
    'PROXY TCP4 192.168.0.256 192.168.0.11 1 443\r\n',
    'PROXY UDP4 192.168.0.1 192.168.0.11 56324 443\r\n',
    'PROXY tcp4 192.168.0.1 192.168.0.11 56324 443\r\n',
    'PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\r\n',
    'PROXY \x00TCP4\r\n',
    'proxy TCP4 192.168.0.1 192.168.0.11 56324 443\r\n',
    'GET / HTTP/1.1\r\n',
    'SSH-2.0-OpenSSH_9.6\r\n',
  ];
  for (const line of bad) assert.equal(parseProxyHeader(Buffer.from(line, 'latin1')).state, 'invalid', JSON.stringify(line));
  // No CRLF within 107 bytes: invalid, however much more arrives.
  const long = Buffer.from('PROXY UNKNOWN ' + 'a'.repeat(200), 'latin1');
  assert.equal(parseProxyHeader(long.subarray(0, V1_MAX)).state, 'invalid');
  assert.equal(parseProxyHeader(long).state, 'invalid');
  assert.equal(parseProxyHeader(long.subarray(0, V1_MAX - 1)).state, 'incomplete');
  // 107 bytes with the CRLF is the longest line; 108 is one too many.
  assert.equal(parseProxyHeader(Buffer.from('PROXY UNKNOWN ' + 'a'.repeat(V1_MAX - 16) + '\r\n', 'latin1')).state, 'ok');
  assert.equal(parseProxyHeader(Buffer.from('PROXY UNKNOWN ' + 'a'.repeat(V1_MAX - 15) + '\r\n', 'latin1')).state, 'invalid');
});

test('every proper prefix of a valid header is incomplete; the whole is ok', () => {
  const headers = [
    encodeProxyV1({ address: '192.0.2.1', port: 1234 }, { address: '192.0.2.2', port: 22 }),
    encodeProxyV1({ address: '2001:db8::1', port: 1234 }, { address: '2001:db8::2', port: 22 }),
    encodeProxyV2({ address: '192.0.2.1', port: 1234 }, { address: '192.0.2.2', port: 22 }),
    encodeProxyV2({ address: '2001:db8::1', port: 1234 }, { address: '2001:db8::2', port: 22 }),
  ];
  for (const h of headers) {
    for (let i = 0; i < h.length; i++) assert.equal(parseProxyHeader(h.subarray(0, i)).state, 'incomplete', `${h.length} bytes, prefix ${i}`);
    const r = parseProxyHeader(h);
    assert.equal(r.state, 'ok');
    assert.equal(r.state === 'ok' && r.length, h.length);
  }
});

/** xorshift32: reproducible fuzzing (the seed is in the failure message). */
function rng(seed: number): () => number {
  let x = seed >>> 0 || 1;
  return () => {
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    return x / 0x100000000;
  };
}

function checkResult(r: ParseResult, input: Buffer, seed: number): void {
  const where = `seed ${seed}, input ${input.toString('hex').slice(0, 240)}`;
  assert.ok(r.state === 'ok' || r.state === 'invalid' || r.state === 'incomplete', where);
  if (r.state === 'ok') {
    assert.ok(r.length > 0 && r.length <= input.length, where);
    if (r.header.version === 1) assert.ok(r.length <= V1_MAX, where);
    else assert.ok(r.length <= 16 + 0xffff, where);
    if (r.header.command === 'proxy') {
      assert.ok(r.header.source && r.header.destination, where);
      assert.ok(r.header.source.port >= 0 && r.header.source.port <= 65535, where);
    }
  }
  if (r.state === 'incomplete') {
    // Incomplete only below the bounds: a v1 line never waits past 107 bytes.
    if (input.subarray(0, 6).toString('latin1') === 'PROXY ') assert.ok(input.length < V1_MAX, where);
  }
}

test('fuzz: random and mutated inputs never throw, never wait past the bounds', { timeout: 60_000 }, () => {
  const seed = Number(process.env.FUZZ_SEED ?? Date.now() % 1_000_000);
  const rand = rng(seed);
  const int = (n: number): number => Math.floor(rand() * n);
  const seeds = [
    encodeProxyV1({ address: '192.0.2.1', port: 1234 }, { address: '192.0.2.2', port: 22 }),
    encodeProxyV1({ address: '2001:db8::1', port: 1234 }, { address: '2001:db8::2', port: 22 }),
    Buffer.from('PROXY UNKNOWN\r\n'),
    encodeProxyV2({ address: '192.0.2.1', port: 1234 }, { address: '192.0.2.2', port: 22 }),
    encodeProxyV2({ address: '2001:db8::1', port: 1234 }, { address: '2001:db8::2', port: 22 }),
    Buffer.concat([V2_SIGNATURE, hex('20 00 0000')]),
  ];
  const deadline = Date.now() + 5000;
  let n = 0;
  for (; n < 200_000 && Date.now() < deadline; n++) {
    let input: Buffer;
    const kind = int(4);
    if (kind === 0) {
      input = Buffer.alloc(int(300));
      for (let i = 0; i < input.length; i++) input[i] = int(256);
    } else {
      input = Buffer.from(seeds[int(seeds.length)]!);
      const edits = 1 + int(4);
      for (let e = 0; e < edits; e++) {
        const op = int(4);
        const at = int(input.length + 1);
        if (op === 0 && input.length > 0) input[Math.min(at, input.length - 1)] = int(256);
        else if (op === 1) input = Buffer.concat([input.subarray(0, at), Buffer.from([int(256)]), input.subarray(at)]);
        else if (op === 2) input = Buffer.concat([input.subarray(0, at), input.subarray(at + 1 + int(8))]);
        else input = input.subarray(0, at);
      }
      // Printable mutations exercise the v1 grammar more than random bytes do.
      if (kind === 3) for (let i = 0; i < input.length; i++) if (input[i]! > 0x7e) input[i] = 0x20 + (input[i]! % 0x5f);
    }
    let r: ParseResult;
    try {
      r = parseProxyHeader(input);
    } catch (err) {
      assert.fail(`threw on seed ${seed}, input ${input.toString('hex')}: ${String(err)}`);
    }
    checkResult(r, input, seed);
  }
  assert.ok(n > 1000, `ran ${n} cases`);
});
