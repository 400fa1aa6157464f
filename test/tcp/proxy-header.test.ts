/**
 * PROXY protocol on real sockets: v2 towards backends carries the real
 * client address; v1/v2 from trusted load balancers (127.0.0.4 here) is
 * required and decides the allowlist check; from anyone else it is data.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { rm } from 'node:fs/promises';
import { connectFrom, entry, eventually, metricValue, sleep, startEcho, startTcpPerimeter, type EchoBackend, type TcpPerimeter } from './harness.js';
import { encodeProxyV1, encodeProxyV2 } from '../../src/tcp/proxy-protocol.js';

const LB = '127.0.0.4';

async function withSetup(listener: string, fn: (p: TcpPerimeter, b: EchoBackend) => Promise<void>): Promise<void> {
  const b = await startEcho({ proxyHeader: true });
  const p = await startTcpPerimeter({ backends: [b.port], listener, health: '{ type: none }' }).catch(async (err: unknown) => {
    await b.close();
    throw err;
  });
  p.runtime.allowlists.set('partners', [entry('partners', '127.0.0.2/32', 'Local'), entry('partners', '203.0.113.0/24', 'Acme Music')]);
  try {
    await fn(p, b);
  } finally {
    await p.close();
    await b.close();
    await rm(p.accessLog, { force: true });
  }
}

const V2_OUT = '    proxy-protocol: v2';
const TRUSTED = `    proxy-protocol: v2\n    trusted-load-balancers: ["${LB}/32"]\n    timeouts: { proxy-header: 400ms }`;

test('PROXY v2 towards the backend carries the real client address and the listener address', { timeout: 30_000 }, async () => {
  await withSetup(V2_OUT, async (p, b) => {
    const c = await connectFrom(p.tcpPort(), '127.0.0.2');
    c.socket.write('data');
    await c.waitFor(`from 127.0.0.2:${c.socket.localPort}\ndata`);
    assert.deepEqual(b.headers[0]?.destination, { address: '127.0.0.1', port: p.tcpPort() });
    assert.equal(b.bytes, 4, 'the header is not counted as data');
    c.socket.end();
    await c.closed;
  });
});

test('v1 and v2 headers from a trusted load balancer admit by the address they name', { timeout: 30_000 }, async () => {
  await withSetup(TRUSTED, async (p, b) => {
    const v1 = await connectFrom(p.tcpPort(), LB);
    v1.socket.write(Buffer.concat([encodeProxyV1({ address: '203.0.113.9', port: 5555 }, { address: '192.0.2.10', port: 22 }), Buffer.from('hello-v1')]));
    await v1.waitFor('from 203.0.113.9:5555\nhello-v1');
    // The destination from the balancer's header is passed on.
    assert.deepEqual(b.headers[0]?.destination, { address: '192.0.2.10', port: 22 });

    // v2, sent a few bytes at a time.
    const v2 = await connectFrom(p.tcpPort(), LB);
    const h = encodeProxyV2({ address: '203.0.113.77', port: 6000 }, { address: '192.0.2.10', port: 22 });
    for (let i = 0; i < h.length; i += 5) {
      v2.socket.write(h.subarray(i, i + 5));
      await sleep(5);
    }
    v2.socket.write('hello-v2');
    await v2.waitFor('from 203.0.113.77:6000\nhello-v2');
    assert.equal(b.bytes, 16);

    // A header naming an address that is not listed: refused, nothing reaches the backend.
    const served = b.served;
    const denied = await connectFrom(p.tcpPort(), LB);
    denied.socket.write(Buffer.concat([encodeProxyV2({ address: '198.51.100.1', port: 1 }, { address: '192.0.2.10', port: 22 }), Buffer.from('x')]));
    await denied.closed;
    assert.equal(denied.received(), '');
    await sleep(50);
    assert.equal(b.served, served);
    const text = await p.runtime.metrics.registry.metrics();
    assert.equal(metricValue(text, 'perimeter_tcp_connections_total', { listener: 'upload', result: 'denied_allowlist' }), 1);
    v1.socket.end();
    v2.socket.end();
    await Promise.all([v1.closed, v2.closed]);
  });
});

test('a PROXY header from an untrusted peer is not believed: it is checked by its own address and the header is data', { timeout: 30_000 }, async () => {
  await withSetup(TRUSTED, async (p, b) => {
    // Unlisted peer claiming a listed address: refused.
    const liar = await connectFrom(p.tcpPort(), '127.0.0.3');
    liar.socket.write(encodeProxyV1({ address: '203.0.113.9', port: 5555 }, { address: '192.0.2.10', port: 22 }));
    await liar.closed;
    assert.equal(liar.received(), '');
    assert.equal(b.served, 0);
    // Listed peer sending a header: admitted as itself; the header bytes are passed on as data.
    const c = await connectFrom(p.tcpPort(), '127.0.0.2');
    const fake = encodeProxyV1({ address: '203.0.113.9', port: 5555 }, { address: '192.0.2.10', port: 22 });
    c.socket.write(fake);
    await c.waitFor(`from 127.0.0.2:${c.socket.localPort}\n${fake.toString('latin1')}`);
    c.socket.end();
    await c.closed;
  });
});

test('a trusted load balancer that sends no header is closed after the proxy-header timeout; a malformed one at once', { timeout: 30_000 }, async () => {
  await withSetup(TRUSTED, async (p, b) => {
    const t0 = Date.now();
    const silent = await connectFrom(p.tcpPort(), LB);
    await silent.closed;
    assert.ok(Date.now() - t0 >= 300, `closed after the 400 ms header timeout, not before (${Date.now() - t0} ms)`);
    const garbage = await connectFrom(p.tcpPort(), LB);
    garbage.socket.write('SSH-2.0-OpenSSH_9.6\r\n');
    await garbage.closed;
    assert.equal(garbage.received(), '');
    assert.equal(b.served, 0);
    assert.equal(b.accepted, 0);
    await eventually(async () => metricValue(await p.runtime.metrics.registry.metrics(), 'perimeter_tcp_connections_total', { listener: 'upload', result: 'proxy_header_bad' }) === 2, 'two bad headers counted');
  });
});
