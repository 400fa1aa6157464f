/**
 * Reference contenders for the TLS full-handshake scenario of bench/run.ts:
 * what Node.js itself costs per TLS connection, with none of perimeter.
 *
 *   node dist/bench/tls-floor.js answer PORT CERT KEY            # node:tls answering the request itself
 *   node dist/bench/tls-floor.js proxy PORT CERT KEY BACKEND_PORT # node:tls + a kept-alive backend connection per request
 *
 * Same certificate, versions, groups and ALPN as perimeter's listener, session
 * tickets off (full handshakes). Neither parses HTTP: each assumes the bench's
 * request arrives in one read and the backend's 100-byte answer in one read,
 * which holds for wrk's GET /small on loopback and for nothing else. They are
 * floors to compare with, not proxies.
 */
import { constants } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { connect, type Socket } from 'node:net';
import { createServer } from 'node:tls';

const [mode, portArg, certFile, keyFile, backendArg] = process.argv.slice(2);
if ((mode !== 'answer' && mode !== 'proxy') || !portArg || !certFile || !keyFile || (mode === 'proxy' && !backendArg)) {
  process.stderr.write('usage: tls-floor.js answer|proxy PORT CERT KEY [BACKEND_PORT]\n');
  process.exit(2);
}
const body = 'x'.repeat(99) + '\n';
const answer = `HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: ${body.length}\r\nConnection: close\r\n\r\n${body}`;
const request = Buffer.from('GET /small HTTP/1.1\r\nHost: bench.test\r\nX-Forwarded-For: 127.0.0.1\r\n\r\n');
const CLOSE = Buffer.from('Connection: close\r\n');
const idle: Socket[] = [];

const server = createServer(
  {
    cert: readFileSync(certFile),
    key: readFileSync(keyFile),
    minVersion: 'TLSv1.2',
    ecdhCurve: 'X25519:prime256v1:secp384r1',
    ALPNProtocols: ['http/1.1'],
    secureOptions: constants.SSL_OP_NO_TICKET | constants.SSL_OP_NO_RENEGOTIATION,
  },
  (client) => {
    client.on('error', () => client.destroy());
    client.once('data', () => {
      if (mode === 'answer') {
        client.end(answer);
        return;
      }
      const upstream = idle.pop() ?? connect(Number(backendArg), '127.0.0.1').on('error', () => upstream.destroy());
      upstream.removeAllListeners('data');
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
server.listen(Number(portArg), '127.0.0.1');
process.on('SIGTERM', () => process.exit(0));
