/**
 * Which address is geolocated: the peer, or behind trusted proxies the
 * right-most X-Forwarded-For entry that is not itself trusted.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { BlockList } from 'node:net';
import { clientAddressForGeo, normalizeAddress } from '../../src/geo/lookup.js';

function trustedSet(...cidrs: string[]): (ip: string) => boolean {
  const list = new BlockList();
  for (const c of cidrs) {
    const [addr, len] = c.split('/');
    const type = addr!.includes(':') ? 'ipv6' : 'ipv4';
    list.addSubnet(addr!, Number(len), type);
  }
  return (ip) => list.check(ip, ip.includes(':') ? 'ipv6' : 'ipv4');
}

const lb = trustedSet('10.0.0.0/8', '127.0.0.1/32', 'fd00::/8');

test('an untrusted peer is the client, whatever it sends', () => {
  assert.equal(clientAddressForGeo('203.0.113.9', '8.8.8.8', lb), '203.0.113.9');
  assert.equal(clientAddressForGeo('203.0.113.9', undefined, lb), '203.0.113.9');
  assert.equal(clientAddressForGeo('2001:db8::9', '8.8.8.8', lb), '2001:db8::9');
});

test('a trusted peer without X-Forwarded-For is the client', () => {
  assert.equal(clientAddressForGeo('10.1.1.1', undefined, lb), '10.1.1.1');
  assert.equal(clientAddressForGeo('10.1.1.1', '', lb), '10.1.1.1');
  assert.equal(clientAddressForGeo('10.1.1.1', ' , ', lb), '10.1.1.1');
});

test('behind a trusted peer: the right-most untrusted address', () => {
  assert.equal(clientAddressForGeo('10.1.1.1', '8.8.8.8', lb), '8.8.8.8');
  // The client wrote 1.2.3.4 itself; the trusted chain says 8.8.8.8 connected.
  assert.equal(clientAddressForGeo('10.1.1.1', '1.2.3.4, 8.8.8.8', lb), '8.8.8.8');
  // Several trusted hops are skipped (real_ip_recursive on).
  assert.equal(clientAddressForGeo('10.1.1.1', '1.2.3.4, 8.8.8.8, 10.9.9.9, 10.2.2.2', lb), '8.8.8.8');
  assert.equal(clientAddressForGeo('127.0.0.1', '193.0.6.139', lb), '193.0.6.139');
});

test('spaces and tabs around entries do not matter; empty entries are skipped', () => {
  assert.equal(clientAddressForGeo('10.1.1.1', '  1.2.3.4 ,\t8.8.8.8\t', lb), '8.8.8.8');
  assert.equal(clientAddressForGeo('10.1.1.1', '1.2.3.4,,8.8.8.8,', lb), '8.8.8.8');
  assert.equal(clientAddressForGeo('10.1.1.1', '8.8.8.8,10.0.0.2', lb), '8.8.8.8');
});

test('IPv6 entries, bracketed with ports, IPv4 with ports, IPv4-mapped peers', () => {
  assert.equal(clientAddressForGeo('fd00::1', '2001:4860:4860::8888', lb), '2001:4860:4860::8888');
  assert.equal(clientAddressForGeo('fd00::1', '[2001:4860:4860::8888]:4711', lb), '2001:4860:4860::8888');
  assert.equal(clientAddressForGeo('fd00::1', '[2001:4860:4860::8888]', lb), '2001:4860:4860::8888');
  assert.equal(clientAddressForGeo('10.1.1.1', '8.8.8.8:51234', lb), '8.8.8.8');
  // Dual-stack sockets report IPv4 peers as ::ffff:a.b.c.d.
  assert.equal(clientAddressForGeo('::ffff:10.1.1.1', '8.8.8.8', lb), '8.8.8.8');
  assert.equal(clientAddressForGeo('::ffff:203.0.113.9', '8.8.8.8', lb), '203.0.113.9');
  assert.equal(clientAddressForGeo('10.1.1.1', '::ffff:8.8.8.8', lb), '8.8.8.8');
  // Trusted IPv6 hop in the chain.
  assert.equal(clientAddressForGeo('10.1.1.1', '130.237.28.40, fd12::7', lb), '130.237.28.40');
});

test('garbage stops the walk: the last good address is used', () => {
  // Garbage left of the first untrusted address is never reached.
  assert.equal(clientAddressForGeo('10.1.1.1', 'unknown, 8.8.8.8', lb), '8.8.8.8');
  // Garbage right after trusted hops: the last trusted address parsed is the client.
  assert.equal(clientAddressForGeo('10.1.1.1', '8.8.8.8, not-an-ip, 10.0.0.2', lb), '10.0.0.2');
  assert.equal(clientAddressForGeo('10.1.1.1', '8.8.8.8, not-an-ip', lb), '10.1.1.1');
  for (const junk of ['999.1.1.1', '1.2.3', '[8.8.8.8]', '8.8.8.8:port', 'example.com', '"8.8.8.8"', '_hidden', '2001:db8::1:80:']) {
    assert.equal(clientAddressForGeo('10.1.1.1', `1.1.1.1, ${junk}`, lb), '10.1.1.1', junk);
  }
});

test('when every address is trusted, the left-most one is the client', () => {
  assert.equal(clientAddressForGeo('10.1.1.1', '10.3.3.3, 10.2.2.2', lb), '10.3.3.3');
});

test('normalizeAddress unwraps IPv4-mapped addresses and drops zone ids only', () => {
  assert.equal(normalizeAddress('::ffff:1.2.3.4'), '1.2.3.4');
  assert.equal(normalizeAddress('::FFFF:1.2.3.4'), '1.2.3.4');
  assert.equal(normalizeAddress('fe80::1%eth0'), 'fe80::1');
  assert.equal(normalizeAddress('::ffff:abcd'), '::ffff:abcd');
  assert.equal(normalizeAddress('2001:db8::1'), '2001:db8::1');
});
