/**
 * The Node.js peers of issue 4's "≥ 2× Fastify/http-proxy" target, run by
 * bench/run.ts in the same rounds as nginx, HAProxy and perimeter (contenders
 * (c) and (d) of ../shared/PERF-BASELINE.md):
 *
 *   node dist/bench/node-peers.js fastify PORT BACKEND_PORT     # Fastify 5 + @fastify/http-proxy
 *   node dist/bench/node-peers.js http-proxy PORT BACKEND_PORT  # node:http + http-proxy 1.18
 *
 * Each listens on 127.0.0.1:PORT and proxies every request to
 * 127.0.0.1:BACKEND_PORT with upstream keep-alive, no logging, configured as
 * each project's README shows a plain reverse proxy; it prints one ready line
 * once it listens. Like the other contenders, both forward the client's Host
 * header and add X-Forwarded-For (nginx, HAProxy and perimeter all do in the
 * bench), so neither skips header work the others do.
 */
import { Agent, createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import fastify from 'fastify';
import fastifyHttpProxy from '@fastify/http-proxy';
import httpProxy from 'http-proxy';

const NODE_PEERS = ['fastify', 'http-proxy'] as const;

/**
 * Upstream connections each peer may open: @fastify/reply-from's default for
 * its undici pool (`connections: 128`), and the same cap for http-proxy's
 * http.Agent, so neither queues the bench's 50 client connections.
 */
const UPSTREAM_SOCKETS = 128;

/** Fastify 5 + @fastify/http-proxy, upstream over its default undici pool (keep-alive, 128 connections). */
async function startFastify(port: number, backendPort: number): Promise<void> {
  const app = fastify({ logger: false });
  await app.register(fastifyHttpProxy, {
    upstream: `http://127.0.0.1:${backendPort}`,
    disableRequestLogging: true,
    replyOptions: {
      // reply-from sets Host to the upstream's address; its documented hook for
      // keeping the client's Host (and adding headers) is rewriteRequestHeaders.
      // `headers` is already reply-from's own copy, so it is changed in place.
      rewriteRequestHeaders: (request, headers) => {
        headers.host = request.headers.host;
        headers['x-forwarded-for'] = request.ip;
        return headers;
      },
    },
  });
  await app.listen({ host: '127.0.0.1', port });
}

/**
 * node:http + http-proxy with a keep-alive http.Agent: without an agent
 * http-proxy sends `Connection: close` upstream (lib/http-proxy/common.js).
 * changeOrigin stays false (the default), so the client's Host goes upstream;
 * xfwd adds X-Forwarded-For (and -Port, -Proto, -Host). http-proxy passes the
 * client's Connection header on, so a client's `Connection: close` closes the
 * upstream connection too; wrk sends none, and the bench's keep-alive check
 * (backend accepts) would show it.
 */
function startHttpProxy(port: number, backendPort: number): Promise<void> {
  const proxy = httpProxy.createProxyServer({
    target: `http://127.0.0.1:${backendPort}`,
    agent: new Agent({ keepAlive: true, maxSockets: UPSTREAM_SOCKETS }),
    xfwd: true,
  });
  // http-proxy's README: without an 'error' listener a backend failure throws and ends the process.
  proxy.on('error', (_err, _req, res) => {
    const r = res as ServerResponse;
    if (typeof r.writeHead !== 'function') return; // a socket (WebSocket upgrade): not used here
    if (!r.headersSent) r.writeHead(502, { 'content-type': 'text/plain' });
    r.end('bad gateway\n');
  });
  const server = createServer((req: IncomingMessage, res: ServerResponse) => proxy.web(req, res));
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, '127.0.0.1', () => resolve());
  });
}

const [peer, portArg, backendArg] = process.argv.slice(2);
const port = Number(portArg);
const backendPort = Number(backendArg);
if (!(NODE_PEERS as readonly string[]).includes(peer ?? '') || !Number.isInteger(port) || !Number.isInteger(backendPort) || port <= 0 || backendPort <= 0) {
  process.stderr.write(`usage: node-peers.js ${NODE_PEERS.join('|')} PORT BACKEND_PORT\n`);
  process.exit(2);
}
process.on('SIGTERM', () => process.exit(0));
try {
  await (peer === 'fastify' ? startFastify(port, backendPort) : startHttpProxy(port, backendPort));
  process.stdout.write(`node-peers: ${peer} ready on 127.0.0.1:${port}, proxying to 127.0.0.1:${backendPort}\n`);
} catch (e) {
  process.stderr.write(`node-peers: ${peer} did not start: ${(e as Error).message}\n`);
  process.exit(1);
}
