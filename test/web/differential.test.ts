/**
 * Differential: perimeter's view of message boundaries must be the backend's.
 * Random pipelined sequences of requests (valid, odd and mutated) go through
 * perimeter to a node:http (llhttp) backend; every request the backend parsed
 * must be one perimeter forwarded, with the same method, target and body, and
 * nothing else may arrive. A disagreement is a smuggling vector.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { startUpstream } from '../helpers/upstream.js';
import { rawRequest, startPerimeter } from '../helpers/perimeter.js';
import { webConfig } from './fixtures.js';

function rng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return s / 4294967296;
  };
}

const H = 'Host: www.example.com\r\n';

function oneRequest(r: () => number, id: number): string {
  const body = 'x'.repeat(Math.floor(r() * 40)) + `#${id}`;
  const kinds = [
    () => `GET /r/${id}?q=${id} HTTP/1.1\r\n${H}\r\n`,
    () => `POST /r/${id} HTTP/1.1\r\n${H}Content-Length: ${body.length}\r\n\r\n${body}`,
    () => {
      const parts = [body.slice(0, 5), body.slice(5)].filter((p) => p.length > 0);
      return `PUT /r/${id} HTTP/1.1\r\n${H}Transfer-Encoding: chunked\r\n\r\n${parts.map((p) => `${p.length.toString(16)}\r\n${p}\r\n`).join('')}0\r\n\r\n`;
    },
    () => `DELETE /r/${id} HTTP/1.1\r\n${H}Content-Length: 0\r\n\r\n`,
    () => `OPTIONS /r/${id} HTTP/1.1\r\n${H}X-Odd:   spaced value  \r\n\r\n`,
    () => `GET /r/${id} HTTP/1.1\r\n${H}Transfer-Encoding: CHUNKED\r\n\r\n0\r\n\r\n`,
    () => `POST /r/${id} HTTP/1.1\r\n${H}Transfer-Encoding: chunked\r\n\r\n${body.length.toString(16)};ext=1\r\n${body}\r\n0\r\nX-Trailer: t\r\n\r\n`,
    // Hostile: these must be refused, never split differently.
    () => `POST /r/${id} HTTP/1.1\r\n${H}Content-Length: ${body.length}\r\nTransfer-Encoding: chunked\r\n\r\n${body}`,
    () => `POST /r/${id} HTTP/1.1\r\n${H}Content-Length: ${body.length}\r\nContent-Length: ${body.length + 1}\r\n\r\n${body}`,
    () => `POST /r/${id} HTTP/1.1\r\n${H}Transfer-Encoding: chunked\r\n\r\n${body.length.toString(16)}\r\n${body}\n0\r\n\r\n`,
    () => `GET /r/${id} HTTP/1.1\r\n${H}X-A: 1\nX-B: 2\r\n\r\n`,
  ];
  return kinds[Math.floor(r() * kinds.length)]!();
}

test('200 random pipelined sequences: the backend sees exactly the requests perimeter forwarded', { timeout: 60_000 }, async (t) => {
  const upstream = await startUpstream({ handler: (req, res, body) => res.end(`${req.method} ${req.url} ${body.length}`) });
  const p = await startPerimeter(webConfig({ services: { app: [upstream.port] }, sites: { 'www.example.com': 'app' }, cluster: '    timeouts: { request-header: 1s }' }));
  t.after(async () => {
    await p.close();
    await upstream.close();
  });
  const r = rng(4242);
  let id = 0;
  for (let seq = 0; seq < 200; seq++) {
    const n = 1 + Math.floor(r() * 4);
    let raw = '';
    for (let i = 0; i < n; i++) raw += oneRequest(r, id++);
    raw += `GET /end/${seq} HTTP/1.1\r\n${H}Connection: close\r\n\r\n`;
    // Split at a random point to exercise parsing across packets.
    const cut = Math.floor(r() * raw.length);
    await rawRequest(p.port(), [raw.slice(0, cut), raw.slice(cut)], { waitMs: 1500 });
  }
  await new Promise((res) => setTimeout(res, 200));
  const forwarded = p.records.filter((x) => x.upstreamStatus > 0).map((x) => `${x.method} ${x.target}`);
  const seen = upstream.received.map((x) => `${x.method} ${x.url}`);
  assert.deepEqual([...seen].sort(), [...forwarded].sort());
  // Bodies arrived whole: each body ends with its request id.
  for (const x of upstream.received) {
    if (x.body.length > 0) assert.match(x.body.toString(), new RegExp(`#${x.url!.split('/')[2]!.split('?')[0]}$`));
  }
  const refused = p.records.filter((x) => x.errorCode !== '' && x.status === 400).length;
  t.diagnostic(`${seen.length} requests reached the backend, ${refused} refused with 400`);
  assert.ok(refused > 20 && seen.length > 200);
});
