/**
 * Reference contenders for the TLS full-handshake scenario of bench/run.ts:
 * what Node.js itself costs per TLS connection, with none of perimeter.
 *
 *   node dist/bench/tls-floor.js answer PORT CERT KEY            # node:tls answering the request itself
 *   node dist/bench/tls-floor.js proxy PORT CERT KEY BACKEND_PORT # node:tls + a kept-alive backend connection per request
 *   node dist/bench/tls-floor.js h2proxy PORT CERT KEY BACKEND_PORT # node:http2, each stream over a kept-alive backend connection
 *
 * Same certificate, versions, groups and ALPN as perimeter's listener, session
 * tickets off (full handshakes) for the first two. None parses HTTP: each
 * assumes the bench's request arrives in one read and the backend's 100-byte
 * answer in one read, which holds for wrk's and h2load's GET /small on
 * loopback and for nothing else. They are floors to compare with, not proxies.
 * `h2proxy` is the HTTP/2 scenario's: what node:http2 itself costs per
 * stream when each becomes a request to the backend, with resumption as
 * perimeter's listener has it (h2load keeps its connections anyway).
 */
import { constants } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { connect, type Server, type Socket } from 'node:net';
import { createSecureServer, type ServerHttp2Stream } from 'node:http2';
import { createServer, type TLSSocket } from 'node:tls';

const [mode, portArg, certFile, keyFile, backendArg] = process.argv.slice(2);
if ((mode !== 'answer' && mode !== 'proxy' && mode !== 'h2proxy') || !portArg || !certFile || !keyFile || (mode !== 'answer' && !backendArg)) {
  process.stderr.write('usage: tls-floor.js answer|proxy|h2proxy PORT CERT KEY [BACKEND_PORT]\n');
  process.exit(2);
}
const body = 'x'.repeat(99) + '\n';
const answer = `HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: ${body.length}\r\nConnection: close\r\n\r\n${body}`;
const request = Buffer.from('GET /small HTTP/1.1\r\nHost: bench.test\r\nX-Forwarded-For: 127.0.0.1\r\n\r\n');
const CLOSE = Buffer.from('Connection: close\r\n');
const idle: Socket[] = [];

/** A kept-alive backend connection, or a new one. */
function upstreamSocket(): Socket {
  const upstream = idle.pop() ?? connect(Number(backendArg), '127.0.0.1').on('error', () => upstream.destroy());
  upstream.removeAllListeners('data');
  return upstream;
}

/** What every floor's TLS shares with perimeter's listener: certificate, versions, groups. */
const tlsOptions = {
  cert: readFileSync(certFile),
  key: readFileSync(keyFile),
  minVersion: 'TLSv1.2',
  ecdhCurve: 'X25519:prime256v1:secp384r1',
} as const;

/** node:http2: each stream one request to the backend, answered with its status and body. */
function h2Floor(): Server {
  const server = createSecureServer(tlsOptions);
  server.on('stream', (stream: ServerHttp2Stream) => {
    stream.on('error', () => {});
    const upstream = upstreamSocket();
    upstream.once('data', (response: Buffer) => {
      idle.push(upstream);
      if (stream.destroyed) return;
      const head = response.indexOf('\r\n\r\n');
      const body = response.subarray(head + 4);
      stream.respond({ ':status': Number(response.toString('latin1', 9, 12)), 'content-type': 'text/plain', 'content-length': body.length });
      stream.end(body);
    });
    upstream.write(request);
  });
  // The bench's readiness check speaks HTTP/1.1 without ALPN: answer it on the raw TLS socket.
  server.on('unknownProtocol', (socket: TLSSocket) => {
    socket.once('data', () => socket.end(answer));
    socket.on('error', () => socket.destroy());
  });
  return server;
}

/** node:tls, one request per connection: answered here, or passed to the backend. */
function tlsFloor(): Server {
  return createServer(
    { ...tlsOptions, ALPNProtocols: ['http/1.1'], secureOptions: constants.SSL_OP_NO_TICKET | constants.SSL_OP_NO_RENEGOTIATION },
    (client) => {
      client.on('error', () => client.destroy());
      client.once('data', () => {
        if (mode === 'answer') {
          client.end(answer);
          return;
        }
        const upstream = upstreamSocket();
        upstream.once('data', (response: Buffer) => {
          idle.push(upstream);
          // The backend's answer with "Connection: close" after its status line: the client asked for it.
          const eol = response.indexOf('\r\n') + 2;
          client.end(Buffer.concat([response.subarray(0, eol), CLOSE, response.subarray(eol)]));
        });
        upstream.write(request);
      });
    },
  );
}

(mode === 'h2proxy' ? h2Floor() : tlsFloor()).listen(Number(portArg), '127.0.0.1');
process.on('SIGTERM', () => process.exit(0));
