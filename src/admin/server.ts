/**
 * The admin listener: Prometheus metrics and the state of every pool
 * (backends, health, ejection, balancer score and its reason, panic). Bound
 * to loopback only (enforced by the config loader) until it has
 * authentication. Not on the request path: node:http is fine here.
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import type { ListenAddress } from '../config/types.js';
import type { Metrics } from '../core/metrics.js';
import type { PoolDescription } from '../upstream/pool.js';

export interface AdminSource {
  readonly metrics: Metrics;
  generation(): number;
  pools(): PoolDescription[];
}

export class AdminServer {
  private readonly server: http.Server;
  readonly address: ListenAddress;

  private constructor(server: http.Server, address: ListenAddress) {
    this.server = server;
    this.address = address;
  }

  static start(addr: ListenAddress, source: AdminSource): Promise<AdminServer> {
    const server = http.createServer((req, res) => {
      void handle(source, req, res).catch((err: unknown) => {
        res.statusCode = 500;
        res.end(`internal error: ${String(err)}\n`);
      });
    });
    return new Promise((resolve, reject) => {
      server.once('error', (err) => reject(new Error(`admin listener cannot listen on ${addr.host}:${addr.port}: ${err.message}`)));
      server.listen({ host: addr.host, port: addr.port }, () => resolve(new AdminServer(server, addr)));
    });
  }

  port(): number {
    return (this.server.address() as AddressInfo).port;
  }

  close(): Promise<void> {
    return new Promise((resolve) => {
      this.server.close(() => resolve());
      this.server.closeAllConnections();
    });
  }
}

async function handle(source: AdminSource, req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
  const path = (req.url ?? '/').split('?')[0];
  if (req.method !== 'GET' && req.method !== 'HEAD') {
    res.writeHead(405, { allow: 'GET, HEAD', 'content-type': 'text/plain' });
    res.end('method not allowed\n');
    return;
  }
  if (path === '/metrics') {
    const body = await source.metrics.registry.metrics();
    res.writeHead(200, { 'content-type': source.metrics.registry.contentType });
    res.end(body);
    return;
  }
  if (path === '/api/pools') {
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(JSON.stringify({ generation: source.generation(), pools: source.pools() }, null, 2) + '\n');
    return;
  }
  res.writeHead(404, { 'content-type': 'text/plain' });
  res.end('not found: try /metrics or /api/pools\n');
}
