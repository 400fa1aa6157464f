/**
 * Malformed and malicious requests: each is answered with its error status
 * and stable code, the connection is closed, and no byte reaches a backend.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { startUpstream } from '../helpers/upstream.js';
import { rawRequest, startPerimeter } from '../helpers/perimeter.js';
import { webConfig } from './fixtures.js';

const H = 'Host: www.example.com\r\n';
const post = (headers: string, body = ''): string => `POST /submit HTTP/1.1\r\n${H}${headers}\r\n${body}`;

interface Case {
  readonly name: string;
  readonly raw: string | Buffer;
  readonly status: number;
  readonly code: string;
}

const corpus: Case[] = [
  // Framing conflicts (request smuggling).
  { name: 'CL.TE', raw: post('Content-Length: 6\r\nTransfer-Encoding: chunked\r\n', '0\r\n\r\nG'), status: 400, code: 'PRM_AMBIGUOUS_FRAMING' },
  { name: 'TE.CL', raw: post('Transfer-Encoding: chunked\r\nContent-Length: 4\r\n', '5c\r\nGPOST / HTTP/1.1\r\n\r\n0\r\n\r\n'), status: 400, code: 'PRM_AMBIGUOUS_FRAMING' },
  { name: 'TE.TE duplicate', raw: post('Transfer-Encoding: chunked\r\nTransfer-Encoding: identity\r\n', '0\r\n\r\n'), status: 400, code: 'PRM_AMBIGUOUS_FRAMING' },
  { name: 'TE obfuscated: xchunked', raw: post('Transfer-Encoding: xchunked\r\n', '0\r\n\r\n'), status: 400, code: 'PRM_AMBIGUOUS_FRAMING' },
  { name: 'TE obfuscated: list', raw: post('Transfer-Encoding: gzip, chunked\r\n', '0\r\n\r\n'), status: 400, code: 'PRM_AMBIGUOUS_FRAMING' },
  { name: 'TE obfuscated: chunked, identity', raw: post('Transfer-Encoding: chunked, identity\r\n', '0\r\n\r\n'), status: 400, code: 'PRM_AMBIGUOUS_FRAMING' },
  { name: 'TE obfuscated: quoted', raw: post('Transfer-Encoding: "chunked"\r\n', '0\r\n\r\n'), status: 400, code: 'PRM_AMBIGUOUS_FRAMING' },
  { name: 'TE obfuscated: space before colon', raw: post('Transfer-Encoding : chunked\r\n', '0\r\n\r\n'), status: 400, code: 'PRM_BAD_HEADER' },
  { name: 'TE obfuscated: obs-fold', raw: post('Transfer-Encoding:\r\n chunked\r\n', '0\r\n\r\n'), status: 400, code: 'PRM_BAD_HEADER' },
  { name: 'TE in HTTP/1.0', raw: `POST / HTTP/1.0\r\n${H}Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n`, status: 400, code: 'PRM_AMBIGUOUS_FRAMING' },
  { name: 'duplicate Content-Length (same)', raw: post('Content-Length: 5\r\nContent-Length: 5\r\n', 'hello'), status: 400, code: 'PRM_AMBIGUOUS_FRAMING' },
  { name: 'duplicate Content-Length (different)', raw: post('Content-Length: 5\r\nContent-Length: 6\r\n', 'hello!'), status: 400, code: 'PRM_AMBIGUOUS_FRAMING' },
  { name: 'Content-Length list', raw: post('Content-Length: 5, 5\r\n', 'hello'), status: 400, code: 'PRM_AMBIGUOUS_FRAMING' },
  { name: 'Content-Length negative', raw: post('Content-Length: -1\r\n', 'x'), status: 400, code: 'PRM_AMBIGUOUS_FRAMING' },
  { name: 'Content-Length with sign', raw: post('Content-Length: +5\r\n', 'hello'), status: 400, code: 'PRM_AMBIGUOUS_FRAMING' },
  { name: 'Content-Length hex', raw: post('Content-Length: 0x5\r\n', 'hello'), status: 400, code: 'PRM_AMBIGUOUS_FRAMING' },
  { name: 'Content-Length trailing junk', raw: post('Content-Length: 5abc\r\n', 'hello'), status: 400, code: 'PRM_AMBIGUOUS_FRAMING' },
  { name: 'Content-Length overflow', raw: post('Content-Length: 99999999999999999999\r\n', 'x'), status: 400, code: 'PRM_AMBIGUOUS_FRAMING' },
  // Chunked body errors (all bytes arrive with the head: rejected before any backend is contacted).
  { name: 'chunk size not hex', raw: post('Transfer-Encoding: chunked\r\n', 'zz\r\nhello\r\n0\r\n\r\n'), status: 400, code: 'PRM_BAD_CHUNK' },
  { name: 'chunk size negative', raw: post('Transfer-Encoding: chunked\r\n', '-5\r\nhello\r\n0\r\n\r\n'), status: 400, code: 'PRM_BAD_CHUNK' },
  { name: 'chunk size with leading space', raw: post('Transfer-Encoding: chunked\r\n', ' 5\r\nhello\r\n0\r\n\r\n'), status: 400, code: 'PRM_BAD_CHUNK' },
  { name: 'chunk size too large', raw: post('Transfer-Encoding: chunked\r\n', 'fffffffffffffffff\r\nx\r\n'), status: 400, code: 'PRM_BAD_CHUNK' },
  { name: 'chunk data longer than size', raw: post('Transfer-Encoding: chunked\r\n', '3\r\nhello\r\n0\r\n\r\n'), status: 400, code: 'PRM_BAD_CHUNK' },
  { name: 'chunk lines with bare LF', raw: post('Transfer-Encoding: chunked\r\n', '5\nhello\n0\n\n'), status: 400, code: 'PRM_BAD_CHUNK' },
  { name: 'chunk extension with control char', raw: post('Transfer-Encoding: chunked\r\n', '5;a=\x01b\r\nhello\r\n0\r\n\r\n'), status: 400, code: 'PRM_BAD_CHUNK' },
  { name: 'chunked trailer with obs-fold', raw: post('Transfer-Encoding: chunked\r\n', '5\r\nhello\r\n0\r\nX-T: a\r\n b\r\n\r\n'), status: 400, code: 'PRM_BAD_CHUNK' },
  // Line endings and forbidden bytes.
  { name: 'bare LF line endings', raw: `GET / HTTP/1.1\nHost: www.example.com\n\n`, status: 400, code: 'PRM_BAD_REQUEST' },
  { name: 'bare LF inside head', raw: `GET / HTTP/1.1\r\n${H}X-A: 1\nX-B: 2\r\n\r\n`, status: 400, code: 'PRM_BAD_REQUEST' },
  { name: 'bare CR inside value', raw: `GET / HTTP/1.1\r\n${H}X-A: 1\rX-B: 2\r\n\r\n`, status: 400, code: 'PRM_BAD_REQUEST' },
  { name: 'obs-fold continuation', raw: `GET / HTTP/1.1\r\n${H}X-A: 1\r\n  continued\r\n\r\n`, status: 400, code: 'PRM_BAD_HEADER' },
  { name: 'NUL in header value', raw: `GET / HTTP/1.1\r\n${H}X-A: a\x00b\r\n\r\n`, status: 400, code: 'PRM_BAD_REQUEST' },
  { name: 'NUL in target', raw: `GET /a\x00b HTTP/1.1\r\n${H}\r\n`, status: 400, code: 'PRM_BAD_REQUEST' },
  { name: 'CTL in header value', raw: `GET / HTTP/1.1\r\n${H}X-A: a\x01b\r\n\r\n`, status: 400, code: 'PRM_BAD_HEADER' },
  { name: 'DEL in header value', raw: `GET / HTTP/1.1\r\n${H}X-A: a\x7fb\r\n\r\n`, status: 400, code: 'PRM_BAD_HEADER' },
  { name: 'header name with space', raw: `GET / HTTP/1.1\r\n${H}Bad Header: x\r\n\r\n`, status: 400, code: 'PRM_BAD_HEADER' },
  { name: 'header line without colon', raw: `GET / HTTP/1.1\r\n${H}NoColonHere\r\n\r\n`, status: 400, code: 'PRM_BAD_HEADER' },
  // Targets, hosts, versions.
  { name: 'absolute-form target disagrees with Host', raw: `GET http://evil.example/ HTTP/1.1\r\n${H}\r\n`, status: 400, code: 'PRM_HOST_MISMATCH' },
  { name: 'absolute-form target with userinfo', raw: `GET http://user@www.example.com/ HTTP/1.1\r\n${H}\r\n`, status: 400, code: 'PRM_BAD_REQUEST' },
  { name: 'duplicate Host', raw: `GET / HTTP/1.1\r\n${H}Host: evil.example\r\n\r\n`, status: 400, code: 'PRM_BAD_REQUEST' },
  { name: 'missing Host in HTTP/1.1', raw: `GET / HTTP/1.1\r\nX-A: 1\r\n\r\n`, status: 400, code: 'PRM_MISSING_HOST' },
  { name: 'Host with illegal characters', raw: `GET / HTTP/1.1\r\nHost: www.example.com/../x\r\n\r\n`, status: 400, code: 'PRM_BAD_REQUEST' },
  { name: 'space inside target', raw: `GET /a b HTTP/1.1\r\n${H}\r\n`, status: 400, code: 'PRM_BAD_REQUEST' },
  { name: 'invalid method token', raw: `GE(T / HTTP/1.1\r\n${H}\r\n`, status: 400, code: 'PRM_BAD_REQUEST' },
  { name: 'request line without version', raw: `GET /\r\n${H}\r\n`, status: 400, code: 'PRM_BAD_REQUEST' },
  { name: 'unsupported version', raw: `GET / HTTP/1.2\r\n${H}\r\n`, status: 505, code: 'PRM_HTTP_VERSION' },
  { name: 'HTTP/2 preface on HTTP/1 listener', raw: 'PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n', status: 505, code: 'PRM_HTTP_VERSION' },
  { name: 'CONNECT on a web listener', raw: `CONNECT www.example.com:443 HTTP/1.1\r\n${H}\r\n`, status: 501, code: 'PRM_METHOD_NOT_SUPPORTED' },
  // Size limits.
  { name: 'oversized header', raw: `GET / HTTP/1.1\r\n${H}X-Big: ${'a'.repeat(20_000)}\r\n\r\n`, status: 431, code: 'PRM_HEADERS_TOO_LARGE' },
  { name: 'oversized head without end', raw: `GET / HTTP/1.1\r\n${H}X-Big: ${'a'.repeat(20_000)}`, status: 431, code: 'PRM_HEADERS_TOO_LARGE' },
  { name: 'too many headers', raw: `GET / HTTP/1.1\r\n${H}${Array.from({ length: 60 }, (_, i) => `X-H${i}: v\r\n`).join('')}\r\n`, status: 431, code: 'PRM_HEADERS_TOO_LARGE' },
  { name: 'URI too long', raw: `GET /${'a'.repeat(5000)} HTTP/1.1\r\n${H}\r\n`, status: 414, code: 'PRM_URI_TOO_LONG' },
  { name: 'body over the limit', raw: post('Content-Length: 2000000\r\n', 'x'), status: 413, code: 'PRM_BODY_TOO_LARGE' },
];

test(`malformed request corpus (${corpus.length} cases): rejected, closed, never forwarded`, async (t) => {
  assert.ok(corpus.length >= 30);
  const upstream = await startUpstream();
  const p = await startPerimeter(
    webConfig({
      services: { app: [upstream.port] },
      sites: { 'www.example.com': 'app' },
      cluster: '    limits: { header-bytes: 16k, header-count: 50, uri-length: 4k, body-bytes: 1m }',
    }),
  );
  t.after(async () => {
    await p.close();
    await upstream.close();
  });
  const failures: string[] = [];
  for (const c of corpus) {
    const before = p.records.length;
    const r = await rawRequest(p.port(), c.raw, { waitMs: 3000 });
    const rec = p.records.slice(before).find((x) => x.errorCode !== '');
    const problems: string[] = [];
    if (r.statuses[0] !== c.status) problems.push(`status ${r.statuses.join(',') || 'none'} (want ${c.status})`);
    if (r.statuses.length !== 1) problems.push(`${r.statuses.length} responses`);
    if (!r.text.includes(c.code)) problems.push(`code missing (want ${c.code}; got ${/X-Perimeter-Error: (\S+)/.exec(r.text)?.[1] ?? 'none'})`);
    if (!r.closed) problems.push('connection left open');
    if (!rec || rec.errorCode !== c.code) problems.push(`record code ${rec?.errorCode ?? 'none'}`);
    if (upstream.connections !== 0) problems.push(`backend saw ${upstream.connections} connection(s)`);
    if (problems.length) failures.push(`${c.name}: ${problems.join('; ')} [reason: ${rec?.reason ?? '-'}]`);
  }
  assert.deepEqual(failures, []);
  assert.equal(upstream.requests, 0);
  // The same listener still serves a good request afterwards.
  const ok = await rawRequest(p.port(), `GET / HTTP/1.1\r\n${H}Connection: close\r\n\r\n`);
  assert.deepEqual(ok.statuses, [200]);
});

test('an invalid chunk arriving after the body started is cut; the backend never gets a complete request', async (t) => {
  const upstream = await startUpstream();
  const p = await startPerimeter(webConfig({ services: { app: [upstream.port] }, sites: { 'www.example.com': 'app' } }));
  t.after(async () => {
    await p.close();
    await upstream.close();
  });
  const r = await rawRequest(p.port(), [post('Transfer-Encoding: chunked\r\n', '5\r\nhello\r\n'), 'zz\r\nGET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n'], { gapMs: 300, waitMs: 3000 });
  assert.equal(r.closed, true);
  assert.ok(r.statuses.length <= 1);
  if (r.statuses.length === 1) assert.equal(r.statuses[0], 400);
  await new Promise((res) => setTimeout(res, 200));
  // The backend may have seen the start of the body but no complete request and nothing smuggled.
  assert.equal(upstream.received.filter((x) => x.url === '/smuggled').length, 0);
  assert.equal(upstream.received.filter((x) => x.method === 'POST' && x.body.toString() === 'hello').length, 0);
});

test('a bad request after a good one on the same connection: the good one is served, the bad one rejected', async (t) => {
  const upstream = await startUpstream();
  const p = await startPerimeter(webConfig({ services: { app: [upstream.port] }, sites: { 'www.example.com': 'app' } }));
  t.after(async () => {
    await p.close();
    await upstream.close();
  });
  const r = await rawRequest(p.port(), `GET /ok HTTP/1.1\r\n${H}\r\nPOST /bad HTTP/1.1\r\n${H}Content-Length: 3\r\nContent-Length: 4\r\n\r\nabcd`);
  assert.deepEqual(r.statuses, [200, 400]);
  assert.equal(r.closed, true);
  assert.deepEqual(
    upstream.received.map((x) => x.url),
    ['/ok'],
  );
});
