/**
 * The Node.js peers of `npm run bench` (bench/node-peers.ts), run as the
 * bench runs them: the compiled program on a free port in front of a real
 * node:http backend. Needs no nginx or wrk.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { Agent, createServer, request, type IncomingHttpHeaders } from 'node:http';
import { freePort } from '../helpers/cli.js';

const BODY = 'peer-body-0123456789\n';

/** Starts `node dist/bench/node-peers.js PEER PORT BACKEND` and resolves on its ready line. */
function startPeer(peer: string, port: number, backendPort: number): Promise<ChildProcess> {
  const child = spawn(process.execPath, ['dist/bench/node-peers.js', peer, String(port), String(backendPort)], { stdio: ['ignore', 'pipe', 'pipe'] });
  return new Promise((resolve, reject) => {
    let out = '';
    const t = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`${peer} printed no ready line in 15 s: ${out}`));
    }, 15_000);
    child.stdout!.on('data', (d: Buffer) => {
      out += d.toString();
      if (out.includes(' ready on ')) {
        clearTimeout(t);
        resolve(child);
      }
    });
    child.stderr!.on('data', (d: Buffer) => (out += d.toString()));
    child.on('exit', (code) => {
      clearTimeout(t);
      reject(new Error(`${peer} exited (${code}) before its ready line: ${out}`));
    });
  });
}

function get(port: number, agent: Agent): Promise<{ status: number; seenHost: string; body: string }> {
  return new Promise((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port, path: '/small', headers: { host: 'bench.test' }, agent }, (res) => {
      let body = '';
      res.setEncoding('latin1');
      res.on('data', (c: string) => (body += c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, seenHost: String(res.headers['x-seen-host']), body }));
    });
    req.on('error', reject);
    req.end();
  });
}

for (const peer of ['fastify', 'http-proxy']) {
  test(`node-peers ${peer}: forwards the client's Host and X-Forwarded-For, answers the backend's body, and reuses one backend connection`, async () => {
    const seen: IncomingHttpHeaders[] = [];
    let connections = 0;
    const backend = createServer((req, res) => {
      seen.push(req.headers);
      // The backend echoes the Host it saw; the body the client gets is fixed.
      res.writeHead(200, { 'content-type': 'text/plain', 'x-seen-host': String(req.headers.host) });
      res.end(BODY);
    });
    backend.on('connection', () => connections++);
    await new Promise<void>((r) => backend.listen(0, '127.0.0.1', r));
    const backendPort = (backend.address() as { port: number }).port;
    // A keep-alive client like wrk: http-proxy passes a client's `Connection: close` on to the
    // backend (it forwards the Connection header), which would close the upstream connection too.
    const agent = new Agent({ keepAlive: true, maxSockets: 1 });
    let child: ChildProcess | undefined;
    try {
      const port = await freePort();
      child = await startPeer(peer, port, backendPort);
      const first = await get(port, agent);
      const second = await get(port, agent);
      for (const r of [first, second]) assert.deepEqual(r, { status: 200, seenHost: 'bench.test', body: BODY });
      assert.equal(seen.length, 2);
      for (const h of seen) {
        assert.equal(h.host, 'bench.test', 'the client\'s Host reaches the backend');
        assert.equal(h['x-forwarded-for'], '127.0.0.1');
        assert.notEqual(h.connection, 'close', 'the peer asks the backend to keep the connection');
      }
      assert.equal(connections, 1, 'both requests went over one kept-alive backend connection');
    } finally {
      agent.destroy();
      child?.kill('SIGKILL');
      backend.closeAllConnections();
      await new Promise<void>((r) => backend.close(() => r()));
    }
  });
}

test('node-peers: an unknown peer or a missing port is a usage error', async () => {
  for (const argv of [['nginx', '1', '2'], ['fastify', 'x', '2'], ['http-proxy', '1']]) {
    const child = spawn(process.execPath, ['dist/bench/node-peers.js', ...argv], { stdio: ['ignore', 'ignore', 'pipe'] });
    let err = '';
    child.stderr.on('data', (d: Buffer) => (err += d.toString()));
    const code = await new Promise<number | null>((r) => child.on('exit', r));
    assert.equal(code, 2, argv.join(' '));
    assert.match(err, /usage: node-peers\.js fastify\|http-proxy PORT BACKEND_PORT/);
  }
});
