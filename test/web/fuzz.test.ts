/**
 * Randomly mutated requests (seeded, bounded): whatever arrives, perimeter
 * answers with a backend response or one of its own error codes, never an
 * internal error, and keeps serving.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { startUpstream } from '../helpers/upstream.js';
import { rawRequest, startPerimeter } from '../helpers/perimeter.js';
import { webConfig } from './fixtures.js';
import { mutate, rng } from '../helpers/mutate.js';

const BASES = [
  'GET /a?b=c HTTP/1.1\r\nHost: www.example.com\r\nAccept: */*\r\nConnection: close\r\n\r\n',
  'POST /p HTTP/1.1\r\nHost: www.example.com\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello',
  'POST /c HTTP/1.1\r\nHost: www.example.com\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n5\r\nhello\r\n0\r\n\r\n',
  'GET / HTTP/1.0\r\nHost: www.example.com\r\n\r\n',
];
const INSERTS = ['\r', '\n', '\r\n', '\0', ' ', '\t', ':', ',', 'chunked', 'Content-Length: 3\r\n', 'Transfer-Encoding: chunked\r\n', '\x7f', '\xff', '0\r\n\r\n', 'Host: other\r\n'];

test('300 randomly mutated requests: only backend answers or perimeter error codes, no internal errors', async (t) => {
  const upstream = await startUpstream();
  const p = await startPerimeter(webConfig({ services: { app: [upstream.port] }, sites: { 'www.example.com': 'app' }, cluster: '    timeouts: { request-header: 1s }' }));
  t.after(async () => {
    await p.close();
    await upstream.close();
  });
  const r = rng(20261122);
  const cases = Array.from({ length: 300 }, () => mutate(BASES[Math.floor(r() * BASES.length)]!, r, INSERTS));
  const statuses = new Map<number, number>();
  for (let i = 0; i < cases.length; i += 20) {
    const batch = cases.slice(i, i + 20);
    const res = await Promise.all(batch.map((c) => rawRequest(p.port(), Buffer.from(c, 'latin1'), { waitMs: 1500 })));
    for (const x of res) for (const s of x.statuses) statuses.set(s, (statuses.get(s) ?? 0) + 1);
  }
  t.diagnostic(`statuses: ${[...statuses].sort((a, b) => a[0] - b[0]).map(([s, n]) => `${s}×${n}`).join(' ')}`);
  const internal = p.records.filter((x) => x.errorCode === 'PRM_INTERNAL');
  assert.deepEqual(internal.map((x) => x.reason), []);
  // 502: a mutated method (e.g. 'GEX') is a valid token that perimeter forwards and node:http backends refuse.
  for (const s of statuses.keys()) assert.ok([200, 400, 408, 413, 414, 421, 431, 501, 502, 505].includes(s), `unexpected status ${s}`);
  assert.ok((statuses.get(400) ?? 0) > 50, 'most mutations are rejected');
  // Every request the backend saw was well-formed enough for node:http, and perimeter still serves.
  const ok = await rawRequest(p.port(), 'GET / HTTP/1.1\r\nHost: www.example.com\r\nConnection: close\r\n\r\n');
  assert.deepEqual(ok.statuses, [200]);
});
