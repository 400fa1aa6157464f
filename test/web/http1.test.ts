/**
 * The head scanner against the reference parser (src/web/http1.ts): wherever
 * the scanner answers, its head must equal the reference parser's, field for
 * field; wherever the reference parser refuses a head, the scanner must not
 * have accepted it. Over a seeded corpus of valid heads and random mutations
 * of them (the same kinds of bytes as test/web/fuzz.test.ts), requests and
 * responses. The corpus is also checked to exercise both sides: the scanner
 * must answer most valid heads itself, and the mutations must be refused often.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  fieldList,
  findHeadEnd,
  HeadRuns,
  HostCache,
  isHopByHopField,
  NEED_MORE,
  ParseError,
  parseRequestHead,
  parseRequestHeadReference,
  parseResponseHead,
  parseResponseHeadReference,
  scanRequestHead,
  scanResponseHead,
  FIELD_STRIDE,
} from '../../src/web/http1.js';
import { Errors } from '../../src/core/errors.js';
import { mutate as mutateWith, rng } from '../helpers/mutate.js';

const REQUESTS = [
  'GET /a?b=c HTTP/1.1\r\nHost: www.example.com\r\nAccept: */*\r\nConnection: close\r\n\r\n',
  'GET /small HTTP/1.1\r\nHost: bench.test\r\n\r\n',
  'POST /p HTTP/1.1\r\nHost: www.example.com:8080\r\nContent-Length: 5\r\nConnection: keep-alive\r\n\r\n',
  'PUT /c HTTP/1.1\r\nhost: WWW.Example.COM.\r\nTransfer-Encoding: chunked\r\nExpect: 100-continue\r\n\r\n',
  'GET / HTTP/1.0\r\nHost: www.example.com\r\nConnection: Keep-Alive\r\n\r\n',
  'GET / HTTP/1.0\r\n\r\n',
  'OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n',
  'GET http://www.example.com/x HTTP/1.1\r\nHost: www.example.com\r\n\r\n',
  'GET /ws HTTP/1.1\r\nHost: [::1]:8080\r\nConnection: Upgrade, x-drop\r\nUpgrade: websocket\r\nX-Drop: 1\r\n\r\n',
  'DELETE /r HTTP/1.1\r\nHost: h\r\nX-Forwarded-For: 192.0.2.1\r\nX-Forwarded-For: 192.0.2.2\r\nForwarded: for=192.0.2.9\r\nX-Forwarded-Proto: https\r\nX-Forwarded-Host: a.example\r\nX-Request-Id: abc-123\r\nX-Real-IP: 192.0.2.1\r\n\r\n',
  'GET /b HTTP/1.1\r\nHost: www.example.com\r\nUser-Agent: Mozilla/5.0 (X11)\r\nReferer: https://e.example/?q=1\r\nCookie: a=1; b=2\r\nCookie: c=3\r\nAuthorization: Bearer x.y\r\nAccept: text/html\r\nAccept: application/json\r\nX-Odd:   spaced value  \t\r\nX-Empty:\r\n\r\n',
  'PATCH /p HTTP/1.1\r\nHost: h\r\nContent-Length: 0\r\nTE: trailers\r\nTrailer: x\r\nKeep-Alive: timeout=5\r\nProxy-Connection: keep-alive\r\nProxy-Authorization: Basic x\r\n\r\n',
];
/** Refused by the reference parser as they stand (mutations may make some valid). */
const HOSTILE_REQUESTS = [
  'CONNECT /x HTTP/1.1\r\nHost: h\r\n\r\n',
  'POST /p HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n',
  'POST /p HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\n',
  'POST /p HTTP/1.0\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n',
  'GET / HTTP/1.1\r\nHost: h\r\nHost: h\r\n\r\n',
  'GET / HTTP/1.1\r\nX: 1\r\n\r\n',
  'GET / HTTP/1.1\r\nHost: h\r\nExpect: 200-ok\r\n\r\n',
  'GET / HTTP/1.1\r\nHost: h/x\r\n\r\n',
  'GET / HTTP/2.0\r\nHost: h\r\n\r\n',
  'GET /' + 'x'.repeat(70) + ' HTTP/1.1\r\nHost: h\r\n\r\n',
];
const RESPONSES = [
  'HTTP/1.1 200 OK\r\nServer: nginx/1.22.1\r\nDate: Sun, 06 Dec 2026 06:00:00 GMT\r\nContent-Type: text/plain\r\nContent-Length: 100\r\nConnection: keep-alive\r\n\r\n',
  'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n',
  'HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\nContent-Length: 7\r\n\r\n',
  'HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n',
  'HTTP/1.0 200 OK\r\nContent-Length: 3\r\n\r\n',
  'HTTP/1.1 204 \r\n\r\n',
  'HTTP/1.1 304\r\nETag: "x"\r\n\r\n',
  'HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n',
  'HTTP/1.1 200 OK\r\nContent-Length: 3\r\nContent-Length: 3\r\nConnection: close, x-secret\r\nX-Secret: 1\r\nStrict-Transport-Security: max-age=1\r\n\r\n',
  'HTTP/1.1 103 Early Hints\r\nLink: </s.css>; rel=preload\r\n\r\n',
];
const INSERTS = ['\r', '\n', '\r\n', '\0', ' ', '\t', ':', ',', '[', ']', '.', 'chunked', 'Content-Length: 3\r\n', 'Transfer-Encoding: chunked\r\n', 'Host: other\r\n', 'Connection: close\r\n', '\x7f', '\xff', '0'];

const mutate = (base: string, r: () => number): string => mutateWith(base, r, INSERTS, true);

const LIMITS = { headerBytes: 16 * 1024, headerCount: 12, uriLength: 64 };

/** The head's length as the proxy finds it, or null when there is no complete head. */
function headLength(buf: Buffer): number | null {
  try {
    const len = findHeadEnd(buf, 0, 1 << 20, Errors.HEADERS_TOO_LARGE);
    return len === NEED_MORE ? null : len;
  } catch {
    return null;
  }
}

function outcome<T>(f: () => T): { ok: T } | { error: string } {
  try {
    return { ok: f() };
  } catch (e) {
    if (!(e instanceof ParseError)) throw e;
    return { error: `${e.def.code}: ${e.detail}` };
  }
}

/** A head as plain data, for deepEqual (the two parsers build the same class; compare what they hold). */
const plain = (h: object): unknown => JSON.parse(JSON.stringify(h));

test('a rejected head makes its ParseError without a stack trace, and leaves the stack trace limit as it was', () => {
  const limit = Error.stackTraceLimit;
  const head = Buffer.from('GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n');
  let err: unknown;
  try {
    parseRequestHead(head, 0, head.length, LIMITS);
  } catch (e) {
    err = e;
  }
  assert.ok(err instanceof ParseError && err instanceof Error);
  assert.equal(err.detail, 'duplicate Host header');
  assert.equal(err.message, 'duplicate Host header');
  assert.equal(err.stack, 'Error: duplicate Host header', 'no frames below the message line');
  assert.equal(Error.stackTraceLimit, limit);
});

test('the request scanner agrees with the reference parser on 20,000 valid and mutated heads', () => {
  const r = rng(20261206);
  let scanned = 0;
  let refused = 0;
  let validScanned = 0;
  const bases = [...REQUESTS, ...HOSTILE_REQUESTS];
  for (let i = 0; i < 20_000; i++) {
    const base = bases[i % bases.length]!;
    const text = i < bases.length ? base : mutate(base, r);
    const buf = Buffer.from(text, 'latin1');
    const len = headLength(buf);
    if (len === null) continue;
    const ref = outcome(() => parseRequestHeadReference(buf, 0, len, LIMITS));
    const scan = scanRequestHead(buf, 0, len, LIMITS);
    if (scan !== null) {
      scanned++;
      assert.ok('ok' in ref, `the scanner accepted what the reference refuses (${'error' in ref ? ref.error : ''}): ${JSON.stringify(text)}`);
      assert.deepEqual(plain(scan), plain(ref.ok), `different heads for ${JSON.stringify(text)}`);
    }
    if ('error' in ref) refused++;
    if (i < REQUESTS.length && scan !== null) validScanned++;
    if (i >= REQUESTS.length && i < bases.length) assert.ok('error' in ref, `hostile base accepted: ${JSON.stringify(text)}`);
    // What the proxy calls: the reference's answer, whoever gives it; with a host cache as a connection has.
    const cache = new HostCache();
    const both = outcome(() => parseRequestHead(buf, 0, len, LIMITS, cache));
    assert.deepEqual('ok' in both ? plain(both.ok) : both, 'ok' in ref ? plain(ref.ok) : ref);
  }
  // The scanner answers the plain valid heads itself (absolute-form, '*' and IPv6 hosts are the reference's).
  assert.ok(validScanned >= REQUESTS.length - 3, `scanner answered ${validScanned} of ${REQUESTS.length} valid heads`);
  assert.ok(scanned > 2000, `scanner answered ${scanned}`);
  assert.ok(refused > 5000, `reference refused ${refused}`);
});

test('the response scanner agrees with the reference parser on 20,000 valid and mutated heads', () => {
  const r = rng(61202026);
  let scanned = 0;
  let refused = 0;
  for (let i = 0; i < 20_000; i++) {
    const base = RESPONSES[i % RESPONSES.length]!;
    const text = i < RESPONSES.length ? base : mutate(base, r);
    const buf = Buffer.from(text, 'latin1');
    const len = headLength(buf);
    if (len === null) continue;
    const ref = outcome(() => parseResponseHeadReference(buf, 0, len, 6));
    const scan = scanResponseHead(buf, 0, len, 6);
    if (i < RESPONSES.length) assert.notEqual(scan, null, `scanner gave up on a valid head: ${JSON.stringify(text)}`);
    if (scan !== null) {
      scanned++;
      assert.ok('ok' in ref, `the scanner accepted what the reference refuses (${'error' in ref ? ref.error : ''}): ${JSON.stringify(text)}`);
      assert.deepEqual(plain(scan), plain(ref.ok), `different heads for ${JSON.stringify(text)}`);
    }
    if ('error' in ref) refused++;
    const both = outcome(() => parseResponseHead(buf, 0, len, 6));
    assert.deepEqual('ok' in both ? plain(both.ok) : both, 'ok' in ref ? plain(ref.ok) : ref);
  }
  assert.ok(scanned > 3000, `scanner answered ${scanned}`);
  assert.ok(refused > 3000, `reference refused ${refused}`);
});

test('a head at an offset in a larger buffer: positions are the buffer\'s, the fields read back as sent', () => {
  const pre = Buffer.from('xxxxHTTP/1.1 200 OK\r\nX-A:  1 \r\nconnection: close, X-A\r\nContent-Length: 2\r\n\r\nhi', 'latin1');
  const len = findHeadEnd(pre, 4, 1 << 20, Errors.UPSTREAM_PROTOCOL);
  const r = parseResponseHead(pre, 4, len, 10);
  assert.equal(r.lineStart, 4);
  assert.equal(pre.toString('latin1', r.lineStart, r.lineEnd), 'HTTP/1.1 200 OK\r\n');
  assert.deepEqual(fieldList(r.fields, pre), [
    { name: 'x-a', rawName: 'X-A', value: '1' },
    { name: 'connection', rawName: 'connection', value: 'close, X-A' },
    { name: 'content-length', rawName: 'Content-Length', value: '2' },
  ]);
  assert.deepEqual(r.connectionTokens, ['close', 'x-a']);
  // X-A is named by Connection, so it is hop-by-hop here; so is Connection; Content-Length is not.
  assert.deepEqual([0, 1, 2].map((i) => isHopByHopField(r.fields, i, pre, r.connectionTokens)), [true, true, false]);
  // Runs: the status line and the kept line, copied byte for byte.
  const runs = new HeadRuns().reset();
  runs.keepRange(r.lineStart, r.lineEnd);
  runs.keep(r.fields, 2);
  const out = Buffer.alloc(runs.bytes + 2);
  runs.write(out, 0, '', pre, '\r\n');
  assert.equal(out.toString('latin1'), 'HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n');
  assert.equal(r.fields.length, 3 * FIELD_STRIDE);
});

test('the host cache gives the same strings for the same Host bytes and new ones when they change', () => {
  const cache = new HostCache();
  const a = Buffer.from('GET / HTTP/1.1\r\nHost: A.example:80\r\n\r\n');
  const b = Buffer.from('GET / HTTP/1.1\r\nHost: b.example\r\n\r\n');
  const h1 = parseRequestHead(a, 0, a.length, LIMITS, cache);
  const h2 = parseRequestHead(a, 0, a.length, LIMITS, cache);
  assert.equal(h1.host, 'a.example');
  assert.equal(h2.hostHeader, 'A.example:80');
  const h3 = parseRequestHead(b, 0, b.length, LIMITS, cache);
  assert.equal(h3.host, 'b.example');
  assert.equal(h3.hostHeader, 'b.example');
  // A later head with the first Host again is not served the second's strings.
  assert.equal(parseRequestHead(a, 0, a.length, LIMITS, cache).host, 'a.example');
});
