import { test } from 'node:test';
import assert from 'node:assert/strict';
import { closest, editDistance } from '../../src/config/suggest.js';
import { parseCidr, parseDuration, parseHostPort, parsePercent, parseSiteHost, parseSize, parseStatusRanges } from '../../src/config/values.js';

const value = <T>(r: { ok: true; value: T } | { ok: false; message: string }): T => {
  if (!r.ok) assert.fail(r.message);
  return r.value;
};

test('durations', () => {
  assert.equal(value(parseDuration('250ms')), 250);
  assert.equal(value(parseDuration('5s')), 5000);
  assert.equal(value(parseDuration('2m')), 120_000);
  assert.equal(value(parseDuration('1h')), 3_600_000);
  assert.equal(value(parseDuration('1m30s')), 90_000);
  assert.equal(value(parseDuration('1.5s')), 1500);
  const bare = parseDuration(5);
  assert.ok(!bare.ok && bare.fix.startsWith('add a unit, e.g. 5s'));
  assert.ok(!parseDuration('5').ok);
  assert.ok(!parseDuration('0s').ok);
  assert.ok(!parseDuration('5 s').ok);
  assert.ok(!parseDuration('5d').ok);
});

test('sizes and percentages', () => {
  assert.equal(value(parseSize('32k')), 32_768);
  assert.equal(value(parseSize('1m')), 1_048_576);
  assert.equal(value(parseSize('1G')), 1024 ** 3);
  assert.equal(value(parseSize('512')), 512);
  assert.equal(value(parseSize(0)), 0);
  assert.ok(!parseSize(-1).ok);
  assert.ok(!parseSize('1t').ok);
  assert.equal(value(parsePercent('20%')), 20);
  assert.equal(value(parsePercent(12.5)), 12.5);
  assert.ok(!parsePercent('120%').ok);
  assert.ok(!parsePercent('20').ok, 'a string percentage needs its % sign');
  assert.deepEqual(value(parseStatusRanges('200-399')), [[200, 399]]);
  assert.deepEqual(value(parseStatusRanges(204)), [[204, 204]]);
  assert.ok(!parseStatusRanges('399-200').ok);
});

test('host:port addresses', () => {
  const listen = { hostRequired: false, hostRule: 'any' } as const;
  const backend = { hostRequired: true, hostRule: 'any' } as const;
  assert.deepEqual(value(parseHostPort(':8080', 'listen address', listen)), { host: '', port: 8080 });
  assert.deepEqual(value(parseHostPort('[::1]:8080', 'listen address', listen)), { host: '::1', port: 8080 });
  assert.deepEqual(value(parseHostPort('Backend.Internal:80', 'backend address', backend)), { host: 'backend.internal', port: 80 });
  assert.ok(!parseHostPort(':8080', 'backend address', backend).ok, 'a backend needs a host');
  assert.ok(!parseHostPort('10.0.0.1', 'backend address', backend).ok, 'a backend needs a port');
  assert.ok(!parseHostPort('10.0.0.1:0', 'backend address', backend).ok);
  assert.ok(!parseHostPort('::1:80', 'backend address', backend).ok, 'IPv6 needs brackets');
  assert.ok(!parseHostPort('bad_host:80', 'backend address', backend).ok);
  const dns = { hostRequired: true, hostRule: 'ip', defaultPort: 53 } as const;
  assert.deepEqual(value(parseHostPort('127.0.0.1', 'DNS server', dns)), { host: '127.0.0.1', port: 53 });
  assert.ok(!parseHostPort('ns1.example.com:53', 'DNS server', dns).ok);
});

test('CIDRs are normalized and host bits refused', () => {
  assert.equal(value(parseCidr('10.0.0.0/8')), '10.0.0.0/8');
  assert.equal(value(parseCidr('192.0.2.1')), '192.0.2.1/32');
  assert.equal(value(parseCidr('2001:DB8:0:0::/32')), '2001:db8::/32');
  assert.equal(value(parseCidr('::ffff:10.0.0.0/104')), '::ffff:a00:0/104');
  const hostBits = parseCidr('10.1.2.3/8');
  assert.ok(!hostBits.ok && hostBits.fix === "write '10.0.0.0/8'");
  const v6 = parseCidr('fd00::1/8');
  assert.ok(!v6.ok && v6.fix === "write 'fd00::/8'");
  assert.ok(!parseCidr('10.0.0.0/33').ok);
});

test('site names', () => {
  assert.equal(value(parseSiteHost('WWW.Example.COM.')), 'www.example.com');
  assert.equal(value(parseSiteHost('*.apps.example.com')), '*.apps.example.com');
  assert.equal(value(parseSiteHost('localhost')), 'localhost');
  const url = parseSiteHost('https://www.example.com/path');
  assert.ok(!url.ok && url.fix.startsWith("write 'www.example.com:'"));
  assert.ok(!parseSiteHost('www.example.com:443').ok);
  assert.ok(!parseSiteHost('www.*.example.com').ok);
  assert.ok(!parseSiteHost('-bad.example.com').ok);
  assert.ok(!parseSiteHost('a..b').ok);
});

test('did-you-mean suggestions', () => {
  assert.equal(editDistance('sevrice', 'service'), 1, 'a transposition is one edit');
  assert.equal(closest('sevice', ['service', 'cluster', 'owner']), 'service');
  assert.equal(closest('trusted_proxies', ['trusted-proxies', 'timeouts']), 'trusted-proxies');
  assert.equal(closest('xyz', ['service', 'cluster']), undefined);
  assert.equal(closest('wbe', ['web', 'api']), 'web');
});

test('a listener may ask for any free port (tests); a backend may not', () => {
  assert.deepEqual(value(parseHostPort('127.0.0.1:0', 'listen address', { hostRequired: false, hostRule: 'any', allowZero: true })), { host: '127.0.0.1', port: 0 });
  assert.ok(!parseHostPort('127.0.0.1:0', 'backend address', { hostRequired: true, hostRule: 'any' }).ok);
});
