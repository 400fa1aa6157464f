/**
 * TCP proxy tests: real backends (an "SFTP-like" echo service that counts
 * accepted connections and bytes, optionally reading a PROXY v2 header),
 * perimeter in-process from YAML with the allowlist tables seeded directly,
 * and clients bound to distinct 127.0.0.x source addresses.
 */
import net from 'node:net';
import { randomUUID } from 'node:crypto';
import { join } from 'node:path';
import { startPerimeter, type TestPerimeter } from '../helpers/perimeter.js';
import type { AllowEntry } from '../../src/allowlist/types.js';
import { parseProxyHeader, type ProxyHeader } from '../../src/tcp/proxy-protocol.js';

export interface EchoBackend {
  readonly port: number;
  readonly name: string;
  /** Connections accepted (TCP health checks included). */
  readonly accepted: number;
  /** Connections that carried at least one byte (not health checks). */
  readonly served: number;
  /** Bytes received (after any PROXY header). */
  readonly bytes: number;
  /** Connections open now that carried data (health checks are not). */
  readonly open: number;
  /** PROXY headers parsed (proxyV2: true), in order. */
  readonly headers: ProxyHeader[];
  /** Sockets that carried data and are open now, for tests that steer one side. */
  readonly sockets: Set<net.Socket>;
  /** Stop listening and cut every connection. */
  close(): Promise<void>;
}

export interface EchoOptions {
  readonly name?: string;
  /** Expect and parse a PROXY header first; its source is answered as "from <ip>:<port>\n". */
  readonly proxyHeader?: boolean;
  /** 'echo' (default): every byte back, FIN answered with FIN. 'manual': the test drives the sockets. */
  readonly mode?: 'echo' | 'manual';
  readonly port?: number;
}

export async function startEcho(opts: EchoOptions = {}): Promise<EchoBackend> {
  let accepted = 0;
  let served = 0;
  let bytes = 0;
  const headers: ProxyHeader[] = [];
  const sockets = new Set<net.Socket>();
  const all = new Set<net.Socket>();
  const server = net.createServer({ allowHalfOpen: true }, (sock) => {
    accepted++;
    all.add(sock);
    sock.on('close', () => {
      sockets.delete(sock);
      all.delete(sock);
    });
    sock.on('error', () => sock.destroy());
    let pending: Buffer | undefined = opts.proxyHeader ? Buffer.alloc(0) : undefined;
    sock.once('data', () => {
      served++;
      if (!sock.destroyed) sockets.add(sock);
    });
    sock.on('data', (chunk: Buffer) => {
      if (pending !== undefined) {
        pending = Buffer.concat([pending, chunk]);
        const r = parseProxyHeader(pending);
        if (r.state === 'incomplete') return;
        if (r.state === 'invalid') {
          sock.destroy();
          return;
        }
        headers.push(r.header);
        chunk = pending.subarray(r.length);
        pending = undefined;
        sock.write(`from ${r.header.source?.address ?? '?'}:${r.header.source?.port ?? 0}\n`);
        if (chunk.length === 0) return;
      }
      bytes += chunk.length;
      if ((opts.mode ?? 'echo') === 'echo') sock.write(chunk);
    });
    sock.on('end', () => {
      if ((opts.mode ?? 'echo') === 'echo') sock.end();
    });
  });
  await new Promise<void>((r) => server.listen(opts.port ?? 0, '127.0.0.1', r));
  const port = (server.address() as net.AddressInfo).port;
  return {
    port,
    name: opts.name ?? `echo-${port}`,
    get accepted() {
      return accepted;
    },
    get served() {
      return served;
    },
    get bytes() {
      return bytes;
    },
    get open() {
      return sockets.size;
    },
    headers,
    sockets,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        for (const s of all) s.destroy();
      }),
  };
}

export function entry(list: string, cidr: string, partner = 'Acme Music'): AllowEntry {
  return { id: randomUUID(), list, cidr, partner, note: '', addedBy: 'test', addedAt: new Date().toISOString() };
}

export interface TcpTestOptions {
  readonly backends: readonly number[];
  /** Extra YAML lines under the tcp listener (indented 4 spaces). */
  readonly listener?: string;
  /** Extra top-level YAML (e.g. services overrides). */
  readonly extra?: string;
  readonly name?: string;
  /** The service's health section (default: TCP checks every 200 ms). */
  readonly health?: string;
}

export function tcpConfig(opts: TcpTestOptions, accessLog: string): string {
  const name = opts.name ?? 'upload';
  return `clusters:
  web:
    listen: { http: "127.0.0.1:0" }
access-log: { path: ${JSON.stringify(accessLog)} }
tcp:
  ${name}:
    listen: "127.0.0.1:0"
    service: sftp
    allowlist: partners
${opts.listener ?? ''}
services:
  sftp:
    health: ${opts.health ?? '{ interval: 200ms, timeout: 100ms, rise: 1, fall: 1 }'}
discovery:
  static:
    sftp: [${opts.backends.map((p) => `"127.0.0.1:${p}"`).join(', ')}]
${opts.extra ?? ''}
`;
}

export interface TcpPerimeter extends TestPerimeter {
  readonly accessLog: string;
  tcpPort(name?: string): number;
}

export async function startTcpPerimeter(opts: TcpTestOptions): Promise<TcpPerimeter> {
  // The access log path is fixed before the directory exists: put it in the OS temp dir.
  const accessLog = join(process.env.TMPDIR ?? '/tmp', `perimeter-tcp-${randomUUID()}.log`);
  const p = await startPerimeter({ perimeter: tcpConfig(opts, accessLog), sites: {} });
  return Object.assign(p, {
    accessLog,
    tcpPort(name?: string) {
      const b = p.runtime.tcp.bound().find((l) => name === undefined || l.name === name);
      if (!b) throw new Error(`no tcp listener ${name ?? ''}`);
      return b.port;
    },
  });
}

export interface Client {
  readonly socket: net.Socket;
  /** Everything received so far. */
  readonly received: () => string;
  /** Resolves when `text` has been received (or rejects after `ms`). */
  waitFor(text: string, ms?: number): Promise<void>;
  /** Resolves when the server closed or reset the connection: how it ended. */
  readonly closed: Promise<{ error?: string; ended: boolean }>;
  readonly ended: () => boolean;
}

/**
 * A client connected to the proxy from `from` (a 127.0.0.x address). It
 * resolves also when the connection is refused or reset before it was
 * established (a denial can be that fast); `closed` then tells how.
 * halfOpen: keep sending after the server's FIN (default: answer FIN with FIN).
 */
export function connectFrom(port: number, from: string, opts: { halfOpen?: boolean } = {}): Promise<Client> {
  return new Promise((resolve) => {
    const socket = net.connect({ host: '127.0.0.1', port, localAddress: from, allowHalfOpen: opts.halfOpen ?? false });
    const chunks: Buffer[] = [];
    let ended = false;
    let error: string | undefined;
    const waiters = new Set<() => void>();
    socket.on('data', (c: Buffer) => {
      chunks.push(c);
      for (const w of waiters) w();
    });
    socket.on('end', () => (ended = true));
    socket.on('error', (err: NodeJS.ErrnoException) => (error = err.code ?? err.message));
    const closed = new Promise<{ error?: string; ended: boolean }>((r) => socket.on('close', () => r({ ...(error ? { error } : {}), ended })));
    const received = (): string => Buffer.concat(chunks).toString('latin1');
    const client: Client = {
      socket,
      received,
      closed,
      ended: () => ended,
      waitFor(text, ms = 3000) {
        if (received().includes(text)) return Promise.resolve();
        return new Promise((res, rej) => {
          const check = (): void => {
            if (received().includes(text)) {
              clearTimeout(timer);
              waiters.delete(check);
              res();
            }
          };
          const timer = setTimeout(() => {
            waiters.delete(check);
            rej(new Error(`did not receive ${JSON.stringify(text)} within ${ms} ms; got ${JSON.stringify(received())}`));
          }, ms);
          waiters.add(check);
        });
      },
    };
    socket.once('connect', () => resolve(client));
    socket.once('close', () => resolve(client));
  });
}

/** Poll `pred` every 20 ms until true or `ms` passes (then throw with `what`). */
export async function eventually(pred: () => boolean | Promise<boolean>, what: string, ms = 3000): Promise<void> {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    if (await pred()) return;
    await new Promise((r) => setTimeout(r, 20));
  }
  if (await pred()) return;
  throw new Error(`timed out after ${ms} ms waiting for: ${what}`);
}

export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/** The value of one Prometheus series in exposition text (0 when absent). */
export function metricValue(text: string, name: string, labels: Record<string, string>): number {
  for (const line of text.split('\n')) {
    if (!line.startsWith(name + '{') && line.split(' ')[0] !== name) continue;
    const ok = Object.entries(labels).every(([k, v]) => line.includes(`${k}="${v}"`));
    if (ok) return Number(line.slice(line.lastIndexOf(' ') + 1));
  }
  return 0;
}
