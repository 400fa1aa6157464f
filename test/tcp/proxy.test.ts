/**
 * The TCP proxy end to end on real sockets: allowlist before any byte,
 * least connections, failover, half-close, idle timeout, limits, resets,
 * metrics and the session log line.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFile, rm } from 'node:fs/promises';
import net from 'node:net';
import { connectFrom, entry, eventually, metricValue, sleep, startEcho, startTcpPerimeter, tcpConfig, type EchoBackend, type TcpPerimeter } from './harness.js';

async function withSetup(
  opts: { backends?: number; listener?: string; proxyHeader?: boolean; mode?: 'echo' | 'manual'; health?: string },
  fn: (p: TcpPerimeter, backends: EchoBackend[]) => Promise<void>,
): Promise<void> {
  const backends: EchoBackend[] = [];
  let p: TcpPerimeter | undefined;
  try {
    for (let i = 0; i < (opts.backends ?? 1); i++) backends.push(await startEcho({ proxyHeader: opts.proxyHeader, mode: opts.mode }));
    p = await startTcpPerimeter({ backends: backends.map((b) => b.port), listener: opts.listener, health: opts.health });
    await fn(p, backends);
  } finally {
    if (p) {
      await p.close();
      await rm(p.accessLog, { force: true });
    }
    await Promise.all(backends.map((b) => b.close()));
  }
}

async function metrics(p: TcpPerimeter): Promise<string> {
  return p.runtime.metrics.registry.metrics();
}

test('an allowlisted source gets through to the echo service; bytes are counted both ways and the session is logged', { timeout: 30_000 }, async () => {
  await withSetup({}, async (p, [b]) => {
    const e = entry('partners', '127.0.0.2/32', 'Acme Music');
    p.runtime.allowlists.set('partners', [e]);
    const c = await connectFrom(p.tcpPort(), '127.0.0.2');
    c.socket.write('SSH-2.0-test\r\n');
    await c.waitFor('SSH-2.0-test\r\n');
    assert.equal(b!.served, 1);
    c.socket.end();
    const how = await c.closed;
    assert.equal(how.error, undefined);
    assert.equal(how.ended, true);
    await eventually(() => p.runtime.tcp.activeSessions === 0, 'session over');
    const text = await metrics(p);
    assert.equal(metricValue(text, 'perimeter_tcp_connections_total', { listener: 'upload', result: 'accepted' }), 1);
    assert.equal(metricValue(text, 'perimeter_tcp_bytes_total', { listener: 'upload', direction: 'in' }), 14);
    assert.equal(metricValue(text, 'perimeter_tcp_bytes_total', { listener: 'upload', direction: 'out' }), 14);
    assert.equal(metricValue(text, 'perimeter_tcp_session_duration_seconds_count', { listener: 'upload' }), 1);
    // One access log line for the session, naming the entry and partner that admitted it.
    let line: Record<string, unknown> | undefined;
    await eventually(async () => {
      const log = await readFile(p.accessLog, 'utf8').catch(() => '');
      const l = log.split('\n').find((x) => x.includes('"tcp-session"'));
      if (l) line = JSON.parse(l) as Record<string, unknown>;
      return line !== undefined;
    }, 'session line in the access log');
    const rec = line as {
      source: { ip: string; bytes: number };
      destination: { port: number; bytes: number };
      event: { reason: string; duration: number };
      perimeter: { listener: string; backend: string; allowlist: { entry_id: string; partner: string; name: string } };
    };
    assert.equal(rec.source.ip, '127.0.0.2');
    assert.equal(rec.source.bytes, 14);
    assert.equal(rec.destination.bytes, 14);
    assert.equal(rec.destination.port, b!.port);
    assert.equal(rec.event.reason, 'client-closed');
    assert.ok(rec.event.duration > 0);
    assert.equal(rec.perimeter.listener, 'upload');
    assert.equal(rec.perimeter.backend, `127.0.0.1:${b!.port}`);
    assert.deepEqual(rec.perimeter.allowlist, { name: 'partners', entry_id: e.id, partner: 'Acme Music', cidr: '127.0.0.2/32' });
  });
});

test('a source not on the allowlist is closed with zero bytes reaching any backend and no backend connection', { timeout: 30_000 }, async () => {
  // No active checks: every connection a backend accepts would be the proxy's.
  await withSetup({ backends: 2, health: '{ type: none }' }, async (p, backends) => {
    p.runtime.allowlists.set('partners', [entry('partners', '127.0.0.2/32')]);
    for (let i = 0; i < 5; i++) {
      const c = await connectFrom(p.tcpPort(), '127.0.0.3');
      c.socket.write('SSH-2.0-scanner\r\n');
      const how = await c.closed;
      assert.equal(c.received(), '', 'nothing is written to a denied client');
      assert.ok(how.error === 'ECONNRESET' || how.ended, `closed (${JSON.stringify(how)})`);
    }
    await sleep(100);
    assert.deepEqual(backends.map((b) => b.accepted), [0, 0]);
    assert.deepEqual(backends.map((b) => b.bytes), [0, 0]);
    const text = await metrics(p);
    assert.equal(metricValue(text, 'perimeter_tcp_connections_total', { listener: 'upload', result: 'denied_allowlist' }), 5);
    assert.equal(metricValue(text, 'perimeter_tcp_connections_total', { listener: 'upload', result: 'accepted' }), 0);
  });
});

test('an unknown allowlist admits nobody (secure default)', { timeout: 30_000 }, async () => {
  await withSetup({ health: '{ type: none }' }, async (p, [b]) => {
    const c = await connectFrom(p.tcpPort(), '127.0.0.2');
    c.socket.write('hello');
    await c.closed;
    assert.equal(b!.accepted, 0);
    assert.equal(c.received(), '');
  });
});

test('an added entry admits within a second; removing it keeps the established session and refuses new ones', { timeout: 30_000 }, async () => {
  await withSetup({}, async (p, [b]) => {
    const other = entry('partners', '10.9.8.0/24', 'Other');
    p.runtime.allowlists.set('partners', [other]);
    const before = await connectFrom(p.tcpPort(), '127.0.0.2');
    await before.closed;
    assert.equal(b!.served, 0);

    const e = entry('partners', '127.0.0.2/32');
    p.runtime.allowlists.set('partners', [other, e]);
    const t0 = Date.now();
    let c;
    for (;;) {
      c = await connectFrom(p.tcpPort(), '127.0.0.2');
      c.socket.write('ping\n');
      try {
        await c.waitFor('ping\n', 300);
        break;
      } catch {
        c.socket.destroy();
        assert.ok(Date.now() - t0 < 1000, 'admitted within a second');
      }
    }
    // Removed: the open session keeps working, a new connection is refused.
    p.runtime.allowlists.set('partners', [other]);
    c.socket.write('still\n');
    await c.waitFor('still\n');
    const refused = await connectFrom(p.tcpPort(), '127.0.0.2');
    refused.socket.write('x');
    await refused.closed;
    assert.equal(refused.received(), '');
    c.socket.write('and again\n');
    await c.waitFor('and again\n');
    assert.equal(b!.served, 1);
    c.socket.end();
    await c.closed;
  });
});

test('least connections spreads concurrent sessions evenly over the backends', { timeout: 30_000 }, async () => {
  await withSetup({ backends: 3 }, async (p, backends) => {
    p.runtime.allowlists.set('partners', [entry('partners', '127.0.0.0/24')]);
    const clients = [];
    for (let i = 0; i < 6; i++) {
      const c = await connectFrom(p.tcpPort(), '127.0.0.2');
      c.socket.write(`c${i}\n`);
      await c.waitFor(`c${i}\n`);
      clients.push(c);
    }
    assert.deepEqual(backends.map((b) => b.open), [2, 2, 2]);
    // One backend's sessions end: the next two go there.
    for (const s of [...backends[1]!.sockets]) s.end(); // the clients answer the FIN with theirs
    await eventually(() => p.runtime.tcp.activeSessions === 4, 'two sessions ended');
    for (let i = 0; i < 2; i++) {
      const c = await connectFrom(p.tcpPort(), '127.0.0.2');
      c.socket.write('n\n');
      await c.waitFor('n\n');
      clients.push(c);
    }
    assert.deepEqual(backends.map((b) => b.open), [2, 2, 2]);
    for (const c of clients) c.socket.destroy();
  });
});

test('a backend that refuses connections: the next backend takes them; the health check then removes it', { timeout: 30_000 }, async () => {
  await withSetup({ backends: 2 }, async (p, backends) => {
    p.runtime.allowlists.set('partners', [entry('partners', '127.0.0.2/32')]);
    await backends[0]!.close();
    for (let i = 0; i < 4; i++) {
      const c = await connectFrom(p.tcpPort(), '127.0.0.2');
      c.socket.write(`m${i}`);
      await c.waitFor(`m${i}`);
      c.socket.end();
      await c.closed;
    }
    assert.equal(backends[1]!.served, 4);
    await eventually(() => p.runtime.pool('sftp')!.describe().backends.find((x) => x.port === backends[0]!.port)?.active === 'unhealthy', 'health check marks it unhealthy');
    assert.equal(metricValue(await metrics(p), 'perimeter_tcp_connections_total', { listener: 'upload', result: 'connect_failed' }), 0);
  });
});

test('no backend available: the client is closed and counted', { timeout: 30_000 }, async () => {
  await withSetup({ backends: 1 }, async (p, [b]) => {
    p.runtime.allowlists.set('partners', [entry('partners', '127.0.0.2/32')]);
    await b!.close();
    const c = await connectFrom(p.tcpPort(), '127.0.0.2');
    c.socket.write('x');
    await c.closed;
    assert.equal(c.received(), '');
    const text = await metrics(p);
    const failed = metricValue(text, 'perimeter_tcp_connections_total', { listener: 'upload', result: 'connect_failed' });
    const none = metricValue(text, 'perimeter_tcp_connections_total', { listener: 'upload', result: 'no_backend' });
    assert.equal(failed + none, 1);
  });
});

test('half-close: the client FIN reaches the backend and the reply still flows back', { timeout: 30_000 }, async () => {
  await withSetup({ mode: 'manual' }, async (p, [b]) => {
    p.runtime.allowlists.set('partners', [entry('partners', '127.0.0.2/32')]);
    const c = await connectFrom(p.tcpPort(), '127.0.0.2', { halfOpen: true });
    c.socket.write('upload-data');
    await eventually(() => b!.bytes === 11, 'backend got the bytes');
    const [bs] = [...b!.sockets];
    const backendEnded = new Promise<void>((r) => bs!.once('end', () => r()));
    c.socket.end();
    await backendEnded;
    // The backend answers after the client's FIN, then ends.
    bs!.write('receipt:11');
    await c.waitFor('receipt:11');
    assert.equal(c.ended(), false);
    bs!.end();
    const how = await c.closed;
    assert.equal(how.ended, true);
    assert.equal(how.error, undefined);
  });
});

test('half-close: the backend FIN reaches the client and the client can still send', { timeout: 30_000 }, async () => {
  await withSetup({ mode: 'manual' }, async (p, [b]) => {
    p.runtime.allowlists.set('partners', [entry('partners', '127.0.0.2/32')]);
    const c = await connectFrom(p.tcpPort(), '127.0.0.2', { halfOpen: true });
    c.socket.write('hi');
    await eventually(() => b!.bytes === 2, 'backend got hi');
    const [bs] = [...b!.sockets];
    bs!.end('banner-then-fin');
    await eventually(() => c.ended(), 'client sees the FIN');
    assert.equal(c.received(), 'banner-then-fin');
    c.socket.write('late-data');
    await eventually(() => b!.bytes === 11, 'late data reached the backend');
    c.socket.end();
    const how = await c.closed;
    assert.equal(how.error, undefined);
  });
});

test('a reset on one side is passed on as a reset to the other', { timeout: 30_000 }, async () => {
  await withSetup({ mode: 'manual' }, async (p, [b]) => {
    p.runtime.allowlists.set('partners', [entry('partners', '127.0.0.2/32')]);
    const c = await connectFrom(p.tcpPort(), '127.0.0.2');
    c.socket.write('x');
    await eventually(() => b!.bytes === 1, 'backend got x');
    const [bs] = [...b!.sockets];
    bs!.resetAndDestroy();
    const how = await c.closed;
    assert.equal(how.error, 'ECONNRESET');
    // And the other way.
    const c2 = await connectFrom(p.tcpPort(), '127.0.0.2');
    c2.socket.write('y');
    await eventually(() => b!.bytes === 2, 'backend got y');
    const bs2 = [...b!.sockets][0]!;
    const backendClosed = new Promise<string | undefined>((r) => {
      let code: string | undefined;
      bs2.on('error', (e: NodeJS.ErrnoException) => (code = e.code));
      bs2.on('close', () => r(code));
    });
    c2.socket.resetAndDestroy();
    assert.equal(await backendClosed, 'ECONNRESET');
  });
});

test('idle timeout closes a session with no bytes either way; traffic keeps it open', { timeout: 30_000 }, async () => {
  await withSetup({ listener: '    timeouts: { idle: 400ms }' }, async (p) => {
    p.runtime.allowlists.set('partners', [entry('partners', '127.0.0.2/32')]);
    const busy = await connectFrom(p.tcpPort(), '127.0.0.2');
    const idle = await connectFrom(p.tcpPort(), '127.0.0.2');
    idle.socket.write('once');
    await idle.waitFor('once');
    for (let i = 0; i < 8; i++) {
      busy.socket.write(`t${i};`);
      await busy.waitFor(`t${i};`);
      await sleep(100);
    }
    assert.equal(busy.socket.destroyed, false, 'a session with traffic every 100 ms stays open past the 400 ms idle timeout');
    await idle.closed;
    busy.socket.end();
    await busy.closed;
    await eventually(async () => (await readFile(p.accessLog, 'utf8').catch(() => '')).includes('"reason":"idle-timeout"'), 'idle-timeout logged');
  });
});

test('listener and per-source connection limits close the excess at once, counted by reason', { timeout: 30_000 }, async () => {
  await withSetup({ listener: '    limits: { connections: 3, per-source: 2 }' }, async (p, [b]) => {
    p.runtime.allowlists.set('partners', [entry('partners', '127.0.0.0/24')]);
    const open = [];
    for (let i = 0; i < 2; i++) {
      const c = await connectFrom(p.tcpPort(), '127.0.0.2');
      c.socket.write('a');
      await c.waitFor('a');
      open.push(c);
    }
    const third = await connectFrom(p.tcpPort(), '127.0.0.2');
    third.socket.write('a');
    await third.closed;
    assert.equal(third.received(), '');
    // Another source is still admitted, up to the listener's limit.
    const other = await connectFrom(p.tcpPort(), '127.0.0.5');
    other.socket.write('b');
    await other.waitFor('b');
    const over = await connectFrom(p.tcpPort(), '127.0.0.6');
    over.socket.write('c');
    await over.closed;
    assert.equal(over.received(), '');
    assert.equal(b!.served, 3);
    const text = await metrics(p);
    assert.equal(metricValue(text, 'perimeter_tcp_connections_total', { listener: 'upload', result: 'limit_source' }), 1);
    assert.equal(metricValue(text, 'perimeter_tcp_connections_total', { listener: 'upload', result: 'limit_listener' }), 1);
    for (const c of [...open, other]) c.socket.destroy();
  });
});

test('reload keeps the listening socket and established sessions; a removed listener stops accepting but its session runs on', { timeout: 30_000 }, async (t) => {
  const b = await startEcho();
  t.after(() => b.close());
  const p = await startTcpPerimeter({ backends: [b.port] });
  try {
    p.runtime.allowlists.set('partners', [entry('partners', '127.0.0.2/32')]);
    const port = p.tcpPort();
    const c = await connectFrom(port, '127.0.0.2');
    c.socket.write('one;');
    await c.waitFor('one;');
    // A reload that changes the listener's settings keeps its socket (port 0 is keyed by name) and the session.
    await p.reload({ perimeter: tcpConfig({ backends: [b.port], listener: '    timeouts: { idle: 30s }' }, p.accessLog), sites: {} });
    assert.equal(p.tcpPort(), port);
    c.socket.write('two;');
    await c.waitFor('two;');
    const c2 = await connectFrom(port, '127.0.0.2');
    c2.socket.write('new;');
    await c2.waitFor('new;');
    c2.socket.end();
    await c2.closed;
    // Remove the listener (renamed: a port-0 listener's identity is its name).
    await p.reload({ perimeter: tcpConfig({ backends: [b.port], name: 'renamed' }, p.accessLog), sites: {} });
    assert.notEqual(p.tcpPort('renamed'), port);
    c.socket.write('three;');
    await c.waitFor('three;');
    await assert.rejects(
      new Promise<void>((resolve, reject) => {
        const s = net.connect({ host: '127.0.0.1', port, localAddress: '127.0.0.2' });
        s.on('connect', () => {
          s.destroy();
          resolve();
        });
        s.on('error', reject);
      }),
      /ECONNREFUSED/,
    );
    const d = p.runtime.tcp.describe().find((x) => x.name === 'upload');
    assert.equal(d?.draining, true);
    assert.equal(d?.activeSessions, 1);
    c.socket.end();
    await c.closed;
  } finally {
    await p.close();
    await b.close();
    await rm(p.accessLog, { force: true });
  }
});

test('shutdown: sessions get the drain deadline, then are cut', { timeout: 30_000 }, async (t) => {
  const b = await startEcho();
  t.after(() => b.close());
  const p = await startTcpPerimeter({ backends: [b.port] });
  try {
    p.runtime.allowlists.set('partners', [entry('partners', '127.0.0.2/32')]);
    const c = await connectFrom(p.tcpPort(), '127.0.0.2');
    c.socket.write('x');
    await c.waitFor('x');
    const closing = p.runtime.close(300);
    c.socket.write('y');
    await c.waitFor('y');
    await closing;
    await c.closed;
    assert.equal(b.open, 0);
  } finally {
    await p.close();
    await b.close();
    await rm(p.accessLog, { force: true });
  }
});
