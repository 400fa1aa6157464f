/**
 * Geolocation headers through the proxy (issue 5 acceptance): requests from
 * three countries, simulated by X-Forwarded-For from a trusted proxy, reach
 * the backend with the right country and AS number; geo headers a client
 * sends are replaced, and an untrusted client's X-Forwarded-For is ignored.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import { startPerimeter } from '../helpers/perimeter.js';
import { startUpstream, type ReceivedRequest } from '../helpers/upstream.js';

function get(port: number, host: string, headers: Record<string, string>): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = http.request({ host: '127.0.0.1', port, path: '/', headers: { host, ...headers }, agent: false }, (res) => {
      res.resume();
      res.on('end', () => resolve(res.statusCode ?? 0));
    });
    req.setTimeout(5_000, () => req.destroy(new Error('timeout')));
    req.on('error', reject);
    req.end();
  });
}

/** Every value the backend received under a header name (raw, so duplicates show). */
function values(r: ReceivedRequest, name: string): string[] {
  const out: string[] = [];
  for (let i = 0; i < r.rawHeaders.length; i += 2) if (r.rawHeaders[i]!.toLowerCase() === name) out.push(r.rawHeaders[i + 1]!);
  return out;
}

test('geo headers from a trusted X-Forwarded-For; spoofed ones replaced', { timeout: 60_000 }, async () => {
  const backend = await startUpstream({ name: 'app' });
  const p = await startPerimeter({
    perimeter: `clusters:
  web:
    default: true
    listen: { http: "127.0.0.1:0" }
    trusted-proxies: ["127.0.0.1/32"]
  edge:
    listen: { http: "127.0.0.1:0" }
discovery:
  static:
    app: ["127.0.0.1:${backend.port}"]
defaults:
  health: { type: none }
`,
    sites: { 'a.yaml': 'behind-lb.example.com:\n  service: app\ndirect.example.com:\n  service: app\n  cluster: edge\n' },
  });
  try {
    const cases: [string, string, string][] = [
      ['8.8.8.8', 'US', '15169'],
      ['193.0.6.139', 'NL', '3333'],
      ['130.237.28.40', 'SE', '1653'],
    ];
    for (const [ip, country, asn] of cases) {
      backend.resetCounts();
      // The client also claims a country; the trusted load balancer appended the real address.
      const status = await get(p.port('web'), 'behind-lb.example.com', { 'x-forwarded-for': `203.0.113.7, ${ip}`, 'x-geo-country': 'ZZ', 'X-Geo-ASN': '64512' });
      assert.equal(status, 200);
      const r = backend.received[0]!;
      assert.deepEqual(values(r, 'x-geo-country'), [country], ip);
      assert.deepEqual(values(r, 'x-geo-asn'), [asn], ip);
    }

    // Untrusted peer (this cluster trusts no proxy): X-Forwarded-For is not believed; the peer,
    // loopback, has no country, and the spoofed headers are gone.
    backend.resetCounts();
    assert.equal(await get(p.port('edge'), 'direct.example.com', { 'x-forwarded-for': '8.8.8.8', 'x-geo-country': 'US', 'x-geo-asn': '15169' }), 200);
    const r = backend.received[0]!;
    assert.deepEqual(values(r, 'x-geo-country'), ['XX']);
    assert.deepEqual(values(r, 'x-geo-asn'), ['0']);
  } finally {
    await p.close();
    await backend.close();
  }
});
