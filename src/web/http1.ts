/**
 * HTTP/1.1 message heads and chunked framing, hand-written for the proxy's
 * hot path (see BENCHMARKS.md: node:http plus an HTTP client costs two full
 * HTTP stacks per request). Parsing is deliberately strict (RFC 9112): the
 * first ambiguity is an error, never a guess, because a proxy that guesses
 * differently from its backend is how request smuggling happens.
 *
 * Two parsers read a head. The scanner (`scanRequestHead`,
 * `scanResponseHead`) walks the bytes once, recognises the field names the
 * proxy acts on by a hash of their bytes, and makes no string for any other
 * field: it accepts only heads that are plainly valid and gives up (null) on
 * anything else, including everything that is an error. The reference parser
 * (`parseRequestHeadReference`, `parseResponseHeadReference`) works on the
 * head as text, field by field; it decides every head the scanner gave up
 * on, and throws the precise error. test/web/http1.test.ts checks that both
 * agree wherever the scanner answers.
 */
import { Errors, type ErrorDef } from '../core/errors.js';

/** A header field as text (the reference parser, HTTP/2 conversion, tests). */
export interface Header {
  /** Lower-case name. */
  readonly name: string;
  /** Name as the peer sent it. */
  readonly rawName: string;
  readonly value: string;
}

/** A request field the request records keep (access log): its lower-case name and value. */
export interface LoggedField {
  readonly name: string;
  readonly value: string;
}

export interface RequestHead {
  readonly method: string;
  /** Target as sent (origin-form after absolute-form was checked and reduced). */
  readonly target: string;
  readonly version: 0 | 1; // HTTP/1.0 or HTTP/1.1
  /** Bytes of the head including the final CRLFCRLF. */
  readonly headLength: number;
  /** Normalized host (lower-case, without port) and the Host header as sent. */
  readonly host: string;
  readonly hostHeader: string;
  /** -1 = no body, -2 = chunked, otherwise the Content-Length. */
  readonly bodyLength: number;
  readonly connectionTokens: readonly string[];
  readonly upgrade: string; // '' unless the client asked for an upgrade
  readonly expectContinue: boolean;
  /**
   * Where each field line lies in the parsed buffer, FIELD_STRIDE numbers per
   * field: line start, colon, line end (after its CRLF), name id (F_*, 0 for
   * a name the proxy does not act on). Meaningful only with that buffer, and
   * only while it holds the head (see HeadRuns).
   */
  readonly fields: readonly number[];
  /** The request line in the parsed buffer: [lineStart, lineEnd) with its CRLF. */
  readonly lineStart: number;
  readonly lineEnd: number;
  /** The received request line is `${method} ${target} HTTP/1.1` byte for byte (it can be forwarded as is). */
  readonly lineForwardable: boolean;
  /** Values the proxy uses after the buffer is gone; '' when absent. */
  readonly requestId: string; // the first X-Request-Id
  readonly accept: string;
  readonly xForwardedFor: string; // every X-Forwarded-For, joined by ', '
  readonly forwarded: string; // every Forwarded, joined by ', '
  readonly xForwardedProto: string; // the last one
  readonly xForwardedHost: string; // the last one
  /** User-Agent, Referer, Cookie and Authorization, for the request record. */
  readonly logged: readonly LoggedField[];
}

export interface ResponseHead {
  readonly status: number;
  readonly version: 0 | 1;
  readonly headLength: number;
  /** -1 = none declared (close-delimited unless no-body status), -2 = chunked, else Content-Length. */
  readonly bodyLength: number;
  readonly connectionTokens: readonly string[];
  /** As RequestHead.fields. */
  readonly fields: readonly number[];
  /** The status line in the parsed buffer: [lineStart, lineEnd) with its CRLF. */
  readonly lineStart: number;
  readonly lineEnd: number;
  /** The status line is `HTTP/1.1 NNN reason` and can be forwarded as is. */
  readonly lineForwardable: boolean;
  /** The status line's reason phrase, for rewriting a line that is not forwardable. */
  readonly reason: string;
  /** The Upgrade field's value ('' when absent). */
  readonly upgrade: string;
}

export interface HeadLimits {
  readonly headerBytes: number;
  readonly headerCount: number;
  readonly uriLength: number;
}

/**
 * A head or body the parsers reject. Made without a stack trace: it is
 * input's fault, never perimeter's, caught within the request path, and a
 * flood of bad requests should cost what their answer costs (capturing the
 * stack took about 10 µs per error, the largest share of a 400's CPU).
 */
export class ParseError extends Error {
  readonly def: ErrorDef;
  readonly detail: string;
  constructor(def: ErrorDef, detail: string) {
    const limit = Error.stackTraceLimit;
    Error.stackTraceLimit = 0;
    super(detail);
    Error.stackTraceLimit = limit;
    this.def = def;
    this.detail = detail;
  }
}

export const NEED_MORE = 0;

const CRLFCRLF = Buffer.from('\r\n\r\n');
const LFLF = Buffer.from('\n\n');

/**
 * Find the end of a head in `buf` (from `start`). Returns the length of the
 * head (through CRLFCRLF) or NEED_MORE; throws ParseError when the head is
 * already known to be bad (bare LF terminator, too large).
 */
export function findHeadEnd(buf: Buffer, start: number, maxBytes: number, tooLarge: ErrorDef): number {
  const end = buf.indexOf(CRLFCRLF, start);
  if (end !== -1) {
    const len = end + 4 - start;
    if (len > maxBytes) throw new ParseError(tooLarge, `head of ${len} bytes exceeds ${maxBytes}`);
    return len;
  }
  if (buf.indexOf(LFLF, start) !== -1) throw new ParseError(Errors.BAD_REQUEST, 'bare LF line ending');
  if (buf.length - start > maxBytes) throw new ParseError(tooLarge, `head exceeds ${maxBytes} bytes`);
  return NEED_MORE;
}

// ---------------------------------------------------------------- field names

/** Numbers per field in RequestHead.fields / ResponseHead.fields. */
export const FIELD_STRIDE = 4;

/** Field name ids: the names the proxy acts on. */
export const F_OTHER = 0;
export const F_HOST = 1;
export const F_CONTENT_LENGTH = 2;
export const F_TRANSFER_ENCODING = 3;
export const F_CONNECTION = 4;
export const F_UPGRADE = 5;
export const F_EXPECT = 6;
export const F_KEEP_ALIVE = 7;
export const F_PROXY_CONNECTION = 8;
export const F_TE = 9;
export const F_TRAILER = 10;
export const F_PROXY_AUTHENTICATE = 11;
export const F_PROXY_AUTHORIZATION = 12;
export const F_FORWARDED = 13;
export const F_X_FORWARDED_FOR = 14;
export const F_X_FORWARDED_PROTO = 15;
export const F_X_FORWARDED_HOST = 16;
export const F_X_FORWARDED_PORT = 17;
export const F_X_REAL_IP = 18;
export const F_X_REQUEST_ID = 19;
export const F_STRICT_TRANSPORT_SECURITY = 20;
export const F_ACCEPT = 21;
export const F_USER_AGENT = 22;
export const F_REFERER = 23;
export const F_COOKIE = 24;
export const F_AUTHORIZATION = 25;

/** Lower-case name by id. */
export const FIELD_NAMES: readonly string[] = [
  '',
  'host',
  'content-length',
  'transfer-encoding',
  'connection',
  'upgrade',
  'expect',
  'keep-alive',
  'proxy-connection',
  'te',
  'trailer',
  'proxy-authenticate',
  'proxy-authorization',
  'forwarded',
  'x-forwarded-for',
  'x-forwarded-proto',
  'x-forwarded-host',
  'x-forwarded-port',
  'x-real-ip',
  'x-request-id',
  'strict-transport-security',
  'accept',
  'user-agent',
  'referer',
  'cookie',
  'authorization',
];
const FIELD_ID = new Map(FIELD_NAMES.map((n, i) => [n, i] as const).filter(([n]) => n !== ''));

/** Hop-by-hop fields a proxy must not forward (RFC 9110 §7.6.1), by id. */
const HOP_BY_HOP_ID = new Uint8Array(FIELD_NAMES.length);
for (const id of [F_CONNECTION, F_KEEP_ALIVE, F_PROXY_CONNECTION, F_TE, F_TRAILER, F_TRANSFER_ENCODING, F_UPGRADE, F_PROXY_AUTHENTICATE, F_PROXY_AUTHORIZATION]) HOP_BY_HOP_ID[id] = 1;

/** Fields kept for the request record. */
const LOGGED_ID = new Uint8Array(FIELD_NAMES.length);
for (const id of [F_USER_AGENT, F_REFERER, F_COOKIE, F_AUTHORIZATION]) LOGGED_ID[id] = 1;

/**
 * tchar (RFC 9110 §5.6.2) by character code, as its lower-case code (0: not
 * a tchar): one lookup validates a name byte and folds its case for the hash.
 */
const TCHAR_LOWER = new Uint8Array(256);
for (const c of "!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyz") TCHAR_LOWER[c.charCodeAt(0)] = c.charCodeAt(0);
for (const c of 'ABCDEFGHIJKLMNOPQRSTUVWXYZ') TCHAR_LOWER[c.charCodeAt(0)] = c.charCodeAt(0) + 32;

/** The scanner's hash of a lower-case name (same steps as in the scan loops). */
function nameHash(lower: string): number {
  let h = 0;
  for (let i = 0; i < lower.length; i++) h = (Math.imul(h, 31) + lower.charCodeAt(i)) | 0;
  return h;
}

/** Open-addressing table: hash of a known name → its id (0: empty slot). */
const NAME_SLOTS = 128;
const slotId = new Uint8Array(NAME_SLOTS);
const slotHash = new Int32Array(NAME_SLOTS);
const NAME_BYTES: readonly Uint8Array[] = FIELD_NAMES.map((n) => Buffer.from(n, 'latin1'));
const slotOf = (h: number): number => (h ^ (h >>> 7)) & (NAME_SLOTS - 1);
for (let id = 1; id < FIELD_NAMES.length; id++) {
  const h = nameHash(FIELD_NAMES[id]!);
  let s = slotOf(h);
  while (slotId[s] !== 0) s = (s + 1) & (NAME_SLOTS - 1);
  slotId[s] = id;
  slotHash[s] = h;
}

/** The id of the name buf[start, end) with hash `h` (of its lower-case bytes), 0 if it is none of the known names. */
function nameId(h: number, buf: Uint8Array, start: number, end: number): number {
  let s = slotOf(h);
  for (;;) {
    const id = slotId[s]!;
    if (id === 0) return 0;
    if (slotHash[s] === h) {
      const known = NAME_BYTES[id]!;
      if (known.length === end - start) {
        let i = 0;
        while (i < known.length && TCHAR_LOWER[buf[start + i]!] === known[i]) i++;
        if (i === known.length) return id;
      }
    }
    s = (s + 1) & (NAME_SLOTS - 1);
  }
}

/** True if field `i`'s name (in `buf`) is `lower` (a lower-case name), ignoring case. */
export function fieldNameIs(fields: readonly number[], i: number, buf: Uint8Array, lower: string): boolean {
  const start = fields[i * FIELD_STRIDE]!;
  const colon = fields[i * FIELD_STRIDE + 1]!;
  if (colon - start !== lower.length) return false;
  for (let k = 0; k < lower.length; k++) if (TCHAR_LOWER[buf[start + k]!] !== lower.charCodeAt(k)) return false;
  return true;
}

/** True for a field a proxy must not forward: hop-by-hop by name, or named by the Connection field. */
export function isHopByHopField(fields: readonly number[], i: number, buf: Uint8Array, connectionTokens: readonly string[]): boolean {
  if (HOP_BY_HOP_ID[fields[i * FIELD_STRIDE + 3]!] === 1) return true;
  for (let t = 0; t < connectionTokens.length; t++) {
    if (fieldNameIs(fields, i, buf, connectionTokens[t]!)) return true;
  }
  return false;
}

/** The fields of a parsed head as text (HTTP/2 conversion, tests); `buf` must still hold the head. */
export function fieldList(fields: readonly number[], buf: Buffer): Header[] {
  const out: Header[] = [];
  for (let f = 0; f < fields.length; f += FIELD_STRIDE) {
    const id = fields[f + 3]!;
    const rawName = buf.toString('latin1', fields[f]!, fields[f + 1]!);
    out.push({ name: id !== 0 ? FIELD_NAMES[id]! : rawName.toLowerCase(), rawName, value: fieldValue(fields, f, buf) });
  }
  return out;
}

/** The lower-case name of the field at `fields[f]` (f: a multiple of FIELD_STRIDE). */
export function fieldName(fields: readonly number[], f: number, buf: Buffer): string {
  const id = fields[f + 3]!;
  return id !== 0 ? FIELD_NAMES[id]! : buf.toString('latin1', fields[f]!, fields[f + 1]!).toLowerCase();
}

/** The value of the field at `fields[f]`, without surrounding blanks. */
export function fieldValue(fields: readonly number[], f: number, buf: Buffer): string {
  let vs = fields[f + 1]! + 1;
  let ve = fields[f + 2]! - 2;
  while (vs < ve && (buf[vs] === 0x20 || buf[vs] === 0x09)) vs++;
  while (ve > vs && (buf[ve - 1] === 0x20 || buf[ve - 1] === 0x09)) ve--;
  return buf.toString('latin1', vs, ve);
}

// ---------------------------------------------------------------- small byte helpers

/** buf[start, end) equals `lower` (lower-case letters and '-') ignoring ASCII case. */
function bytesEqualLower(buf: Uint8Array, start: number, end: number, lower: string): boolean {
  if (end - start !== lower.length) return false;
  for (let i = 0; i < lower.length; i++) {
    let c = buf[start + i]!;
    if (c >= 0x41 && c <= 0x5a) c += 32;
    if (c !== lower.charCodeAt(i)) return false;
  }
  return true;
}

/** 1 to 15 decimal digits as a number, -1 otherwise. */
function digitsValue(buf: Uint8Array, start: number, end: number): number {
  const n = end - start;
  if (n < 1 || n > 15) return -1;
  let v = 0;
  for (let i = start; i < end; i++) {
    const d = buf[i]! - 0x30;
    if (d < 0 || d > 9) return -1;
    v = v * 10 + d;
  }
  return v;
}

const KEEP_ALIVE_TOKENS: readonly string[] = Object.freeze(['keep-alive']);
const CLOSE_TOKENS: readonly string[] = Object.freeze(['close']);
const NO_TOKENS: readonly string[] = Object.freeze([]);
const NO_LOGGED: readonly LoggedField[] = Object.freeze([]);

/** Connection tokens of the value buf[vs, ve) added to `prev` (shared arrays for the usual single token). */
function connectionTokensOf(buf: Buffer, vs: number, ve: number, prev: readonly string[]): readonly string[] {
  if (prev.length === 0) {
    if (bytesEqualLower(buf, vs, ve, 'keep-alive')) return KEEP_ALIVE_TOKENS;
    if (bytesEqualLower(buf, vs, ve, 'close')) return CLOSE_TOKENS;
  }
  const out = prev.slice();
  splitTokens(buf.toString('latin1', vs, ve), out);
  return out;
}

/** Request methods as shared strings (no string made per request for these). */
function methodOf(buf: Buffer, start: number, end: number): string {
  const n = end - start;
  const c = buf[start];
  if (n === 3 && c === 0x47 && buf[start + 1] === 0x45 && buf[start + 2] === 0x54) return 'GET';
  if (n === 4 && c === 0x50 && buf[start + 1] === 0x4f && buf[start + 2] === 0x53 && buf[start + 3] === 0x54) return 'POST';
  if (n === 4 && c === 0x48 && buf[start + 1] === 0x45 && buf[start + 2] === 0x41 && buf[start + 3] === 0x44) return 'HEAD';
  if (n === 3 && c === 0x50 && buf[start + 1] === 0x55 && buf[start + 2] === 0x54) return 'PUT';
  return buf.toString('latin1', start, end);
}

/** reg-name characters of a Host value (RFC 3986 unreserved, sub-delims, pct-encoded's '%'), by code. */
const HOST_CHAR = new Uint8Array(128);
for (const c of "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._~!$&'()*+,;=%-") HOST_CHAR[c.charCodeAt(0)] = 1;

/** A Host value of reg-name characters and an optional :port (1-5 digits); IPv6 literals go to the reference parser. */
function plainHostValue(buf: Uint8Array, start: number, end: number): boolean {
  let i = start;
  while (i < end) {
    const c = buf[i]!;
    if (c === 0x3a) break;
    if (c >= 128 || HOST_CHAR[c] === 0) return false;
    i++;
  }
  if (i === end) return true;
  const digits = end - i - 1;
  if (digits < 1 || digits > 5) return false;
  for (let k = i + 1; k < end; k++) if (buf[k]! < 0x30 || buf[k]! > 0x39) return false;
  return true;
}

/**
 * The Host values of one connection's last request: a client sends the same
 * Host on every request, and comparing its bytes is cheaper than making and
 * normalizing the strings again.
 */
export class HostCache {
  bytes: Buffer | null = null;
  hostHeader = '';
  host = '';
}

function hostStrings(buf: Buffer, vs: number, ve: number, cache: HostCache | undefined): HostCache {
  if (cache !== undefined) {
    const b = cache.bytes;
    if (b !== null && b.length === ve - vs) {
      let i = 0;
      while (i < b.length && b[i] === buf[vs + i]) i++;
      if (i === b.length) return cache;
    }
  }
  const c = cache ?? new HostCache();
  c.hostHeader = buf.toString('latin1', vs, ve);
  c.host = normalizeHost(c.hostHeader);
  c.bytes = Buffer.from(c.hostHeader, 'latin1');
  return c;
}

// ---------------------------------------------------------------- the scanner

class ScannedRequest implements RequestHead {
  method = '';
  target = '';
  version: 0 | 1 = 1;
  headLength = 0;
  host = '';
  hostHeader = '';
  bodyLength = -1;
  connectionTokens: readonly string[] = NO_TOKENS;
  upgrade = '';
  expectContinue = false;
  fields: number[] = [];
  lineStart = 0;
  lineEnd = 0;
  lineForwardable = false;
  requestId = '';
  accept = '';
  xForwardedFor = '';
  forwarded = '';
  xForwardedProto = '';
  xForwardedHost = '';
  logged: readonly LoggedField[] = NO_LOGGED;
}

class ScannedResponse implements ResponseHead {
  status = 0;
  version: 0 | 1 = 1;
  headLength = 0;
  bodyLength = -1;
  connectionTokens: readonly string[] = NO_TOKENS;
  fields: number[] = [];
  lineStart = 0;
  lineEnd = 0;
  lineForwardable = false;
  reason = '';
  upgrade = '';
}

/** "HTTP/1.x" at buf[p]: the minor version digit's code, or -1. */
function httpVersionAt(buf: Uint8Array, p: number): number {
  if (buf[p] !== 0x48 || buf[p + 1] !== 0x54 || buf[p + 2] !== 0x54 || buf[p + 3] !== 0x50 || buf[p + 4] !== 0x2f || buf[p + 5] !== 0x31 || buf[p + 6] !== 0x2e) return -1;
  const m = buf[p + 7]!;
  return m === 0x31 || m === 0x30 ? m : -1;
}

/**
 * Scan the field lines of a head from `p` to `end` (the start of the final
 * CRLFCRLF) into `fields`. Returns false (give up) on anything that is not a
 * plainly valid field line: the reference parser then decides, with the
 * precise error.
 */
function scanFields(buf: Buffer, p: number, end: number, fields: number[], maxCount: number): boolean {
  let n = 0;
  while (p < end) {
    const ls = p;
    let h = 0;
    for (;;) {
      if (p === end) return false;
      const c = buf[p]!;
      if (c === 0x3a) break;
      const l = TCHAR_LOWER[c]!;
      if (l === 0) return false;
      h = (Math.imul(h, 31) + l) | 0;
      p++;
    }
    if (p === ls) return false;
    const colon = p++;
    while (p < end) {
      const c = buf[p]!;
      if (c === 0x0d) break;
      if ((c < 0x20 && c !== 0x09) || c === 0x7f) return false;
      p++;
    }
    let le: number;
    if (p < end) {
      if (buf[p + 1] !== 0x0a) return false;
      le = p + 2;
    } else {
      le = end + 2; // the last line's CRLF opens the final CRLFCRLF
    }
    if (++n > maxCount) return false;
    fields.push(ls, colon, le, nameId(h, buf, ls, colon));
    p = le;
  }
  return true;
}

/** Start of field `f`'s value (after the colon and leading whitespace). */
function valueStart(buf: Uint8Array, fields: readonly number[], f: number): number {
  let vs = fields[f + 1]! + 1;
  const le = fields[f + 2]! - 2;
  while (vs < le && (buf[vs] === 0x20 || buf[vs] === 0x09)) vs++;
  return vs;
}

/** End of field `f`'s value (before trailing whitespace and the CRLF). */
function valueEnd(buf: Uint8Array, fields: readonly number[], f: number, vs: number): number {
  let ve = fields[f + 2]! - 2;
  while (ve > vs && (buf[ve - 1] === 0x20 || buf[ve - 1] === 0x09)) ve--;
  return ve;
}

/**
 * Scan a complete request head of `len` bytes at `buf[start]`. Returns null
 * when the head is not plainly valid (the caller then asks the reference
 * parser, which accepts it or throws the precise error).
 */
export function scanRequestHead(buf: Buffer, start: number, len: number, limits: HeadLimits, hostCache?: HostCache): RequestHead | null {
  const end = start + len - 4;
  let p = start;
  const m0 = p;
  while (p < end) {
    const c = buf[p]!;
    if (c === 0x20) break;
    if (TCHAR_LOWER[c] === 0) return null;
    p++;
  }
  if (p === m0 || p === end) return null;
  const m1 = p++;
  const t0 = p;
  while (p < end) {
    const c = buf[p]!;
    if (c === 0x20) break;
    if (c < 0x21 || c > 0x7e) return null;
    p++;
  }
  const t1 = p;
  // Origin-form only: absolute-form and '*' go to the reference parser.
  if (t1 === t0 || t1 === end || buf[t0] !== 0x2f || t1 - t0 > limits.uriLength) return null;
  p++;
  if (p + 8 > end) return null;
  const minor = httpVersionAt(buf, p);
  if (minor === -1) return null;
  p += 8;
  let lineEnd: number;
  if (p === end) {
    lineEnd = end + 2;
  } else {
    if (buf[p] !== 0x0d || buf[p + 1] !== 0x0a) return null;
    lineEnd = p + 2;
  }
  const h = new ScannedRequest();
  h.method = methodOf(buf, m0, m1);
  if (h.method === 'CONNECT') return null;
  h.version = minor === 0x31 ? 1 : 0;
  h.headLength = len;
  h.lineStart = start;
  h.lineEnd = lineEnd;
  h.lineForwardable = minor === 0x31;
  let hostVs = -1;
  let hostVe = -1;
  let contentLength = -1;
  let chunked = false;
  let upgrade = '';
  let logged: LoggedField[] | null = null;
  const fields = h.fields;
  if (!scanFields(buf, lineEnd < end ? lineEnd : end, end, fields, limits.headerCount)) return null;
  for (let f = 0; f < fields.length; f += FIELD_STRIDE) {
    const id = fields[f + 3]!;
    if (id === F_OTHER) continue;
    const vs = valueStart(buf, fields, f);
    const ve = valueEnd(buf, fields, f, vs);
    switch (id) {
      case F_HOST:
        if (hostVs !== -1 || !plainHostValue(buf, vs, ve)) return null;
        hostVs = vs;
        hostVe = ve;
        break;
      case F_CONTENT_LENGTH:
        if (contentLength !== -1) return null;
        contentLength = digitsValue(buf, vs, ve);
        if (contentLength === -1) return null;
        break;
      case F_TRANSFER_ENCODING:
        if (chunked || !bytesEqualLower(buf, vs, ve, 'chunked')) return null;
        chunked = true;
        break;
      case F_CONNECTION:
        h.connectionTokens = connectionTokensOf(buf, vs, ve, h.connectionTokens);
        break;
      case F_UPGRADE:
        if (upgrade === '') upgrade = buf.toString('latin1', vs, ve);
        break;
      case F_EXPECT:
        if (!bytesEqualLower(buf, vs, ve, '100-continue')) return null;
        h.expectContinue = true;
        break;
      case F_X_REQUEST_ID:
        if (h.requestId === '') h.requestId = buf.toString('latin1', vs, ve);
        break;
      case F_ACCEPT:
        if (h.accept === '') h.accept = buf.toString('latin1', vs, ve);
        break;
      case F_X_FORWARDED_FOR:
        h.xForwardedFor = h.xForwardedFor === '' ? buf.toString('latin1', vs, ve) : `${h.xForwardedFor}, ${buf.toString('latin1', vs, ve)}`;
        break;
      case F_FORWARDED:
        h.forwarded = h.forwarded === '' ? buf.toString('latin1', vs, ve) : `${h.forwarded}, ${buf.toString('latin1', vs, ve)}`;
        break;
      case F_X_FORWARDED_PROTO:
        h.xForwardedProto = buf.toString('latin1', vs, ve);
        break;
      case F_X_FORWARDED_HOST:
        h.xForwardedHost = buf.toString('latin1', vs, ve);
        break;
      default:
        if (LOGGED_ID[id] === 1) (logged ??= []).push({ name: FIELD_NAMES[id]!, value: buf.toString('latin1', vs, ve) });
    }
  }
  if (chunked && (contentLength !== -1 || h.version === 0)) return null;
  if (hostVs === -1) {
    if (h.version === 1) return null;
  } else {
    const hs = hostStrings(buf, hostVs, hostVe, hostCache);
    h.hostHeader = hs.hostHeader;
    h.host = hs.host;
  }
  h.target = buf.toString('latin1', t0, t1);
  h.bodyLength = chunked ? -2 : contentLength <= 0 ? -1 : contentLength;
  if (upgrade !== '' && h.connectionTokens.includes('upgrade')) h.upgrade = upgrade;
  if (logged !== null) h.logged = logged;
  return h;
}

/** Scan a complete response head; null when it is not plainly valid (see scanRequestHead). */
export function scanResponseHead(buf: Buffer, start: number, len: number, maxHeaders: number): ResponseHead | null {
  const end = start + len - 4;
  const minor = httpVersionAt(buf, start);
  if (minor === -1 || start + 12 > end || buf[start + 8] !== 0x20) return null;
  const d0 = buf[start + 9]! - 0x30;
  const d1 = buf[start + 10]! - 0x30;
  const d2 = buf[start + 11]! - 0x30;
  if (d0 < 0 || d0 > 9 || d1 < 0 || d1 > 9 || d2 < 0 || d2 > 9) return null;
  let p = start + 12;
  let lineEnd: number;
  if (p === end) {
    lineEnd = end + 2;
  } else if (buf[p] === 0x0d) {
    if (buf[p + 1] !== 0x0a) return null;
    lineEnd = p + 2;
  } else {
    if (buf[p] !== 0x20) return null;
    // The reason phrase: anything but NUL and line ends (as the reference parser).
    while (p < end) {
      const c = buf[p]!;
      if (c === 0x0d) break;
      if (c === 0x0a || c === 0) return null;
      p++;
    }
    if (p < end) {
      if (buf[p + 1] !== 0x0a) return null;
      lineEnd = p + 2;
    } else {
      lineEnd = end + 2;
    }
  }
  const r = new ScannedResponse();
  r.status = d0 * 100 + d1 * 10 + d2;
  r.version = minor === 0x31 ? 1 : 0;
  r.headLength = len;
  r.lineStart = start;
  r.lineEnd = lineEnd;
  r.lineForwardable = minor === 0x31 && lineEnd - start > 14;
  if (!r.lineForwardable) r.reason = lineEnd - start > 15 ? buf.toString('latin1', start + 13, lineEnd - 2) : '';
  let contentLength = -1;
  let sawTE = false;
  let chunked = false;
  const fields = r.fields;
  if (!scanFields(buf, lineEnd < end ? lineEnd : end, end, fields, maxHeaders)) return null;
  for (let f = 0; f < fields.length; f += FIELD_STRIDE) {
    const id = fields[f + 3]!;
    if (id !== F_CONTENT_LENGTH && id !== F_TRANSFER_ENCODING && id !== F_CONNECTION && id !== F_UPGRADE) continue;
    const vs = valueStart(buf, fields, f);
    const ve = valueEnd(buf, fields, f, vs);
    if (id === F_CONTENT_LENGTH) {
      // Identical duplicates are tolerated from backends (RFC 9110 §8.6), different ones are not.
      const v = digitsValue(buf, vs, ve);
      if (v === -1 || (contentLength !== -1 && contentLength !== v)) return null;
      contentLength = v;
    } else if (id === F_TRANSFER_ENCODING) {
      if (sawTE) return null;
      sawTE = true;
      chunked = bytesEqualLower(buf, vs, ve, 'chunked') || transferEncodingEndsChunked(buf.toString('latin1', vs, ve).toLowerCase());
    } else if (id === F_CONNECTION) {
      r.connectionTokens = connectionTokensOf(buf, vs, ve, r.connectionTokens);
    } else if (r.upgrade === '') {
      r.upgrade = buf.toString('latin1', vs, ve);
    }
  }
  r.bodyLength = sawTE ? (chunked ? -2 : -1) : contentLength; // TE overrides CL (RFC 9112 §6.3 rule 3)
  return r;
}

/** A response Transfer-Encoding list whose final coding is chunked (else the body is close-delimited, §6.3 rule 4). */
function transferEncodingEndsChunked(lower: string): boolean {
  return /(^|,)\s*chunked\s*$/.test(lower);
}

/** Parse a complete request head of `len` bytes at `buf[start]`; throws ParseError. `hostCache`: the connection's (see HostCache). */
export function parseRequestHead(buf: Buffer, start: number, len: number, limits: HeadLimits, hostCache?: HostCache): RequestHead {
  return scanRequestHead(buf, start, len, limits, hostCache) ?? parseRequestHeadReference(buf, start, len, limits);
}

/** Parse a complete response head; throws ParseError (the backend's fault: 502). */
export function parseResponseHead(buf: Buffer, start: number, len: number, maxHeaders: number): ResponseHead {
  return scanResponseHead(buf, start, len, maxHeaders) ?? parseResponseHeadReference(buf, start, len, maxHeaders);
}

// ---------------------------------------------------------------- the reference parser

/** Request target: visible ASCII only. */
const TARGET = /^[\x21-\x7e]+$/;
const DIGITS = /^[0-9]{1,15}$/;
const HOST_CHARS = /^(?:\[[0-9a-fA-F:.]+\]|[a-zA-Z0-9._~!$&'()*+,;=%-]*)(?::[0-9]{1,5})?$/;

/** head[start, end) is a non-empty token. */
function isToken(head: string, start: number, end: number): boolean {
  if (end <= start) return false;
  for (let i = start; i < end; i++) {
    const c = head.charCodeAt(i);
    if (c >= 128 || TCHAR_LOWER[c] === 0) return false;
  }
  return true;
}

/** head[start, end) holds a character a field value may not: field values are VCHAR, obs-text, SP and HTAB only (no CTLs, no NUL). */
function hasBadValueChar(head: string, start: number, end: number): boolean {
  for (let i = start; i < end; i++) {
    const c = head.charCodeAt(i);
    if ((c < 0x20 && c !== 0x09) || c === 0x7f) return true;
  }
  return false;
}

/** `base`: where head[0] lies in the buffer, for `fields`. */
function splitHeaderLines(head: string, base: number, headers: Header[], fields: number[], maxCount: number, tooMany: ErrorDef): void {
  let pos = head.indexOf('\r\n');
  if (pos === -1) return;
  pos += 2;
  let n = 0;
  const len = head.length;
  while (pos < len) {
    let eol = head.indexOf('\r\n', pos);
    if (eol === -1) eol = len;
    const start = pos;
    pos = eol + 2;
    if (eol === start) throw new ParseError(Errors.BAD_HEADER, 'empty header line');
    const c0 = head.charCodeAt(start);
    if (c0 === 0x20 || c0 === 0x09) throw new ParseError(Errors.BAD_HEADER, 'obsolete line folding (obs-fold)');
    const colon = head.indexOf(':', start);
    if (colon === -1 || colon === start || colon > eol) throw new ParseError(Errors.BAD_HEADER, 'header line without a name and colon');
    if (!isToken(head, start, colon)) throw new ParseError(Errors.BAD_HEADER, 'invalid header name'); // never quoted: it could carry a secret into the log
    const rawName = head.slice(start, colon);
    let vs = colon + 1;
    let ve = eol;
    while (vs < ve && (head.charCodeAt(vs) === 0x20 || head.charCodeAt(vs) === 0x09)) vs++;
    while (ve > vs && (head.charCodeAt(ve - 1) === 0x20 || head.charCodeAt(ve - 1) === 0x09)) ve--;
    if (hasBadValueChar(head, vs, ve)) throw new ParseError(Errors.BAD_HEADER, `control character in header ${rawName}`);
    if (++n > maxCount) throw new ParseError(tooMany, `more than ${maxCount} headers`);
    const name = rawName.toLowerCase();
    headers.push({ name, rawName, value: head.slice(vs, ve) });
    fields.push(base + start, base + colon, base + eol + 2, FIELD_ID.get(name) ?? F_OTHER);
  }
}

function isDigit(c: number): boolean {
  return c >= 0x30 && c <= 0x39;
}

function checkLineEndings(head: string): void {
  // Every LF must be part of CRLF and every CR followed by LF.
  let i = head.indexOf('\n');
  while (i !== -1) {
    if (i === 0 || head.charCodeAt(i - 1) !== 0x0d) throw new ParseError(Errors.BAD_REQUEST, 'bare LF line ending');
    i = head.indexOf('\n', i + 1);
  }
  i = head.indexOf('\r');
  while (i !== -1) {
    if (head.charCodeAt(i + 1) !== 0x0a) throw new ParseError(Errors.BAD_REQUEST, 'bare CR');
    i = head.indexOf('\r', i + 1);
  }
}

function splitTokens(value: string, into: string[]): void {
  for (const part of value.split(',')) {
    const t = part.trim().toLowerCase();
    if (t) into.push(t);
  }
}

/**
 * The reference request parser: the head as text, field by field, every
 * rule in order. It decides whatever the scanner gave up on and names the
 * precise error; its result equals the scanner's wherever both accept.
 */
export function parseRequestHeadReference(buf: Buffer, start: number, len: number, limits: HeadLimits): RequestHead {
  let head = buf.toString('latin1', start, start + len - 4);
  // RFC 9112 §2.2: a server SHOULD ignore at least one empty line before the request line.
  let base = start;
  while (head.startsWith('\r\n')) {
    head = head.slice(2);
    base += 2;
  }
  if (head.indexOf('\0') !== -1) throw new ParseError(Errors.BAD_REQUEST, 'NUL byte in request head');
  checkLineEndings(head);
  let eol = head.indexOf('\r\n');
  if (eol === -1) eol = head.length;
  const line = head.slice(0, eol);
  const sp1 = line.indexOf(' ');
  const sp2 = sp1 === -1 ? -1 : line.indexOf(' ', sp1 + 1);
  if (sp1 <= 0 || sp2 === -1 || line.indexOf(' ', sp2 + 1) !== -1) {
    throw new ParseError(Errors.BAD_REQUEST, 'malformed request line');
  }
  const method = line.slice(0, sp1);
  let target = line.slice(sp1 + 1, sp2);
  const ver = line.slice(sp2 + 1);
  if (!isToken(line, 0, sp1)) throw new ParseError(Errors.BAD_REQUEST, 'invalid method');
  if (target.length > limits.uriLength) throw new ParseError(Errors.URI_TOO_LONG, `target of ${target.length} bytes exceeds ${limits.uriLength}`);
  if (target.length === 0 || !TARGET.test(target)) throw new ParseError(Errors.BAD_REQUEST, 'invalid request target');
  let version: 0 | 1;
  if (ver === 'HTTP/1.1') version = 1;
  else if (ver === 'HTTP/1.0') version = 0;
  else if (/^HTTP\/[0-9]\.[0-9]$/.test(ver)) throw new ParseError(Errors.VERSION_NOT_SUPPORTED, `version ${ver}`);
  else throw new ParseError(Errors.BAD_REQUEST, 'invalid HTTP version');

  const headers: Header[] = [];
  const fields: number[] = [];
  splitHeaderLines(head, base, headers, fields, limits.headerCount, Errors.HEADERS_TOO_LARGE);

  let hostHeader: string | undefined;
  let contentLength = -1;
  let chunked = false;
  let sawTE = false;
  const connectionTokens: string[] = [];
  let upgrade = '';
  let expectContinue = false;
  let requestId: string | undefined;
  let accept: string | undefined;
  const xff: string[] = [];
  const fwd: string[] = [];
  let xfProto = '';
  let xfHost = '';
  const logged: LoggedField[] = [];
  for (const h of headers) {
    switch (h.name) {
      case 'host':
        if (hostHeader !== undefined) throw new ParseError(Errors.BAD_REQUEST, 'duplicate Host header');
        hostHeader = h.value;
        break;
      case 'content-length':
        if (contentLength !== -1) throw new ParseError(Errors.SMUGGLING, 'duplicate Content-Length');
        if (!DIGITS.test(h.value)) throw new ParseError(Errors.SMUGGLING, 'invalid Content-Length');
        contentLength = Number(h.value);
        break;
      case 'transfer-encoding':
        // Only a single, exact "chunked" is accepted: any other coding or
        // list is a framing a backend might read differently.
        if (sawTE) throw new ParseError(Errors.SMUGGLING, 'duplicate Transfer-Encoding');
        sawTE = true;
        if (h.value.toLowerCase() !== 'chunked') throw new ParseError(Errors.SMUGGLING, `unsupported Transfer-Encoding ${JSON.stringify(h.value.slice(0, 40))}`);
        chunked = true;
        break;
      case 'connection':
        splitTokens(h.value, connectionTokens);
        break;
      case 'upgrade':
        if (upgrade === '') upgrade = h.value;
        break;
      case 'expect':
        if (h.value.toLowerCase() === '100-continue') expectContinue = true;
        else throw new ParseError(Errors.BAD_REQUEST, 'unsupported Expect value');
        break;
      case 'x-request-id':
        requestId ??= h.value;
        break;
      case 'accept':
        accept ??= h.value;
        break;
      case 'x-forwarded-for':
        xff.push(h.value);
        break;
      case 'forwarded':
        fwd.push(h.value);
        break;
      case 'x-forwarded-proto':
        xfProto = h.value;
        break;
      case 'x-forwarded-host':
        xfHost = h.value;
        break;
      case 'user-agent':
      case 'referer':
      case 'cookie':
      case 'authorization':
        logged.push({ name: h.name, value: h.value });
        break;
    }
  }
  if (sawTE && contentLength !== -1) throw new ParseError(Errors.SMUGGLING, 'both Content-Length and Transfer-Encoding');
  if (sawTE && version === 0) throw new ParseError(Errors.SMUGGLING, 'Transfer-Encoding in an HTTP/1.0 request');

  if (method === 'CONNECT') throw new ParseError(Errors.METHOD_NOT_ALLOWED, 'CONNECT is not served by a web listener');
  // Absolute-form target: its authority must agree with Host (RFC 9112 §3.2.2).
  if (target.charCodeAt(0) !== 0x2f /* / */) {
    if (target === '*') {
      if (method !== 'OPTIONS') throw new ParseError(Errors.BAD_REQUEST, 'asterisk-form target outside OPTIONS');
    } else {
      const m = /^(https?):\/\/([^/?#]*)([^#]*)$/i.exec(target);
      if (!m) throw new ParseError(Errors.BAD_REQUEST, 'invalid request target form');
      const authority = m[2] ?? '';
      if (authority.includes('@')) throw new ParseError(Errors.BAD_REQUEST, 'userinfo in request target');
      if (hostHeader === undefined) hostHeader = authority;
      else if (authority.toLowerCase() !== hostHeader.toLowerCase()) {
        throw new ParseError(Errors.HOST_MISMATCH, 'absolute-form target authority differs from Host');
      }
      target = m[3] || '/';
      if (target.charCodeAt(0) !== 0x2f) target = '/' + target;
    }
  }
  if (hostHeader === undefined) {
    if (version === 1) throw new ParseError(Errors.MISSING_HOST, 'HTTP/1.1 request without Host');
    hostHeader = '';
  }
  if (!HOST_CHARS.test(hostHeader)) throw new ParseError(Errors.BAD_REQUEST, 'invalid Host header');

  const h = new ScannedRequest();
  h.method = method;
  h.target = target;
  h.version = version;
  h.headLength = len;
  h.host = normalizeHost(hostHeader);
  h.hostHeader = hostHeader;
  h.bodyLength = chunked ? -2 : contentLength === -1 ? -1 : contentLength === 0 ? -1 : contentLength;
  h.connectionTokens = connectionTokens;
  h.upgrade = upgrade && connectionTokens.includes('upgrade') ? upgrade : '';
  h.expectContinue = expectContinue;
  h.fields = fields;
  h.lineStart = base;
  h.lineEnd = base + eol + 2;
  h.lineForwardable = version === 1 && target === line.slice(sp1 + 1, sp2);
  h.requestId = requestId ?? '';
  h.accept = accept ?? '';
  h.xForwardedFor = xff.join(', ');
  h.forwarded = fwd.join(', ');
  h.xForwardedProto = xfProto;
  h.xForwardedHost = xfHost;
  h.logged = logged.length > 0 ? logged : NO_LOGGED;
  return h;
}

export function normalizeHost(hostHeader: string): string {
  let h = hostHeader;
  if (h.charCodeAt(0) === 0x5b /* [ */) {
    const close = h.indexOf(']');
    return h.slice(1, close).toLowerCase();
  }
  const colon = h.lastIndexOf(':');
  if (colon !== -1) h = h.slice(0, colon);
  if (h.endsWith('.')) h = h.slice(0, -1);
  return h.toLowerCase();
}

/** The reference response parser (see parseRequestHeadReference). Errors are the backend's fault (502). */
export function parseResponseHeadReference(buf: Buffer, start: number, len: number, maxHeaders: number): ResponseHead {
  const head = buf.toString('latin1', start, start + len - 4);
  if (head.indexOf('\0') !== -1) throw new ParseError(Errors.UPSTREAM_PROTOCOL, 'NUL in response head');
  try {
    checkLineEndings(head);
  } catch {
    throw new ParseError(Errors.UPSTREAM_PROTOCOL, 'bad line ending in response head');
  }
  let eol = head.indexOf('\r\n');
  if (eol === -1) eol = head.length;
  // HTTP/1.[01] SP 3DIGIT [SP reason]
  const minor = head.charCodeAt(7);
  if (
    eol < 12 ||
    !head.startsWith('HTTP/1.') ||
    (minor !== 0x30 && minor !== 0x31) ||
    head.charCodeAt(8) !== 0x20 ||
    !isDigit(head.charCodeAt(9)) ||
    !isDigit(head.charCodeAt(10)) ||
    !isDigit(head.charCodeAt(11)) ||
    (eol > 12 && head.charCodeAt(12) !== 0x20)
  ) {
    throw new ParseError(Errors.UPSTREAM_PROTOCOL, 'malformed status line');
  }
  const headers: Header[] = [];
  const fields: number[] = [];
  try {
    splitHeaderLines(head, start, headers, fields, maxHeaders, Errors.UPSTREAM_PROTOCOL);
  } catch (e) {
    throw new ParseError(Errors.UPSTREAM_PROTOCOL, e instanceof ParseError ? e.detail : 'bad header');
  }
  const status = (head.charCodeAt(9) - 0x30) * 100 + (head.charCodeAt(10) - 0x30) * 10 + (head.charCodeAt(11) - 0x30);
  let contentLength = -1;
  let chunked = false;
  let sawTE = false;
  const connectionTokens: string[] = [];
  let upgrade = '';
  for (const h of headers) {
    if (h.name === 'content-length') {
      // Identical duplicates are tolerated from backends (RFC 9110 §8.6), different ones are not.
      if (!DIGITS.test(h.value)) throw new ParseError(Errors.UPSTREAM_PROTOCOL, 'invalid Content-Length');
      const v = Number(h.value);
      if (contentLength !== -1 && contentLength !== v) throw new ParseError(Errors.UPSTREAM_PROTOCOL, 'conflicting Content-Length');
      contentLength = v;
    } else if (h.name === 'transfer-encoding') {
      if (sawTE) throw new ParseError(Errors.UPSTREAM_PROTOCOL, 'duplicate Transfer-Encoding');
      sawTE = true;
      const v = h.value.toLowerCase();
      chunked = v === 'chunked' || transferEncodingEndsChunked(v);
    } else if (h.name === 'connection') {
      splitTokens(h.value, connectionTokens);
    } else if (h.name === 'upgrade') {
      if (upgrade === '') upgrade = h.value;
    }
  }
  const r = new ScannedResponse();
  r.status = status;
  r.version = minor === 0x31 ? 1 : 0;
  r.headLength = len;
  r.bodyLength = sawTE ? (chunked ? -2 : -1) : contentLength; // TE overrides CL (§6.3 rule 3)
  r.connectionTokens = connectionTokens;
  r.fields = fields;
  r.lineStart = start;
  r.lineEnd = start + eol + 2;
  r.lineForwardable = minor === 0x31 && eol > 12;
  r.reason = r.lineForwardable ? '' : eol > 12 ? head.slice(13, eol) : '';
  r.upgrade = upgrade;
  return r;
}

/**
 * The header lines of a received head that a forwarded head keeps, as runs
 * of bytes to copy. A forwarded head is a first line (copied, or written
 * when it changes), these runs, then the fields perimeter adds: received
 * fields are copied byte for byte and never become one big string to encode
 * again. One scratch instance serves every head: building one is synchronous.
 */
export class HeadRuns {
  /** Start and end of each run; the first `n` numbers are this head's (reset keeps the array: no resize per head). */
  private readonly runs: number[] = [];
  private n = 0;
  /** Bytes in the runs. */
  bytes = 0;

  reset(): this {
    this.n = 0;
    this.bytes = 0;
    return this;
  }

  /** Keep the bytes [start, end) of the source. */
  keepRange(start: number, end: number): void {
    const r = this.runs;
    const n = this.n;
    if (n > 0 && r[n - 1] === start) {
      r[n - 1] = end;
    } else {
      r[n] = start;
      r[n + 1] = end;
      this.n = n + 2;
    }
    this.bytes += end - start;
  }

  /** Keep field line `i` of a head parsed into `fields`. */
  keep(fields: readonly number[], i: number): void {
    this.keepRange(fields[i * FIELD_STRIDE]!, fields[i * FIELD_STRIDE + 2]!);
  }

  /**
   * Write `first` (latin1), the kept runs of `src`, then `tail` (latin1) into
   * `out` at `at`; returns the offset after them.
   */
  write(out: Buffer, at: number, first: string, src: Buffer, tail: string): number {
    let o = first.length > 0 ? at + latin1Write(out, first, at) : at;
    const r = this.runs;
    for (let i = 0; i < this.n; i += 2) o = copyBytes(src, r[i]!, r[i + 1]!, out, o);
    if (tail.length > 0) o += latin1Write(out, tail, o);
    return o;
  }
}

/** Copy src[start, end) to out at `o`; returns the offset after. Short runs by hand: cheaper than Buffer#copy's call (~50 ns). */
export function copyBytes(src: Buffer, start: number, end: number, out: Buffer, o: number): number {
  if (end - start <= 40) {
    for (let i = start; i < end; i++) out[o++] = src[i]!;
    return o;
  }
  return o + src.copy(out, o, start, end);
}

type Latin1Writer = (out: Buffer, s: string, at: number) => number;
/**
 * `s` (every character one byte) into `out` at `at`. Node's Buffer has had
 * a `latin1Write` method since v0.x (what `write(s, at, 'latin1')` calls after
 * looking the encoding up, ~60 ns per call in a micro-benchmark); the public
 * call is the fallback should a Node.js version drop it.
 */
export const latin1Write: Latin1Writer =
  typeof (Buffer.prototype as { latin1Write?: unknown }).latin1Write === 'function'
    ? (out, s, at) => (out as unknown as { latin1Write(s: string, at: number): number }).latin1Write(s, at)
    : (out, s, at) => out.write(s, at, 'latin1');

/** Hop-by-hop by name (RFC 9110 §7.6.1), for fields held as text (HTTP/2 conversion). */
const HOP_BY_HOP = new Set(FIELD_NAMES.filter((_, id) => HOP_BY_HOP_ID[id] === 1));

export function isHopByHop(name: string, connectionTokens: readonly string[]): boolean {
  return HOP_BY_HOP.has(name) || (connectionTokens.length > 0 && connectionTokens.includes(name));
}

const enum ChunkState {
  Size,
  Ext,
  SizeLF,
  Data,
  DataCR,
  DataLF,
  TrailerLineStart,
  TrailerLine,
  TrailerLF,
  FinalLF,
  Done,
}

const MAX_CHUNK_SIZE_DIGITS = 15;
const MAX_TRAILER_BYTES = 16 * 1024;

/**
 * Streaming validator/decoder for chunked bodies. `feed` consumes bytes of
 * this message only and returns how many it consumed (the rest belongs to
 * the next message); it throws ParseError on any deviation from RFC 9112
 * §7.1: chunk sizes are hex without sign/whitespace, extensions contain no
 * CTLs, every line ends in CRLF, trailers are well-formed fields.
 */
export class ChunkedParser {
  private state = ChunkState.Size;
  private size = 0;
  private digits = 0;
  private remaining = 0;
  private trailerBytes = 0;
  private readonly err: ErrorDef;
  /** Receives decoded payload slices when set (for de-chunking). */
  onData: ((buf: Buffer, start: number, end: number) => void) | undefined;
  /** Receives each trailer field line (without CRLF, latin1) when set (HTTP/2 trailers). */
  onTrailer: ((line: string) => void) | undefined;
  private trailerLine = '';

  constructor(err: ErrorDef) {
    this.err = err;
  }

  get done(): boolean {
    return this.state === ChunkState.Done;
  }

  private fail(detail: string): never {
    throw new ParseError(this.err, detail);
  }

  feed(buf: Buffer, start: number, end: number): number {
    let i = start;
    while (i < end) {
      switch (this.state) {
        case ChunkState.Size: {
          const c = buf[i]!;
          const v = hexVal(c);
          if (v !== -1) {
            if (++this.digits > MAX_CHUNK_SIZE_DIGITS) this.fail('chunk size too large');
            this.size = this.size * 16 + v;
            i++;
          } else if (this.digits === 0) {
            this.fail('chunk size missing or not hex');
          } else if (c === 0x3b /* ; */) {
            this.state = ChunkState.Ext;
            i++;
          } else if (c === 0x0d) {
            this.state = ChunkState.SizeLF;
            i++;
          } else {
            this.fail('invalid character after chunk size');
          }
          break;
        }
        case ChunkState.Ext: {
          const c = buf[i]!;
          if (c === 0x0d) this.state = ChunkState.SizeLF;
          else if ((c < 0x20 && c !== 0x09) || c === 0x7f) this.fail('control character in chunk extension');
          i++;
          break;
        }
        case ChunkState.SizeLF:
          if (buf[i] !== 0x0a) this.fail('chunk size line not ended by CRLF');
          i++;
          if (this.size === 0) {
            this.state = ChunkState.TrailerLineStart;
          } else {
            this.remaining = this.size;
            this.state = ChunkState.Data;
          }
          this.size = 0;
          this.digits = 0;
          break;
        case ChunkState.Data: {
          const take = Math.min(this.remaining, end - i);
          if (this.onData) this.onData(buf, i, i + take);
          this.remaining -= take;
          i += take;
          if (this.remaining === 0) this.state = ChunkState.DataCR;
          break;
        }
        case ChunkState.DataCR:
          if (buf[i] !== 0x0d) this.fail('chunk data not followed by CRLF');
          this.state = ChunkState.DataLF;
          i++;
          break;
        case ChunkState.DataLF:
          if (buf[i] !== 0x0a) this.fail('chunk data not followed by CRLF');
          this.state = ChunkState.Size;
          i++;
          break;
        case ChunkState.TrailerLineStart: {
          const c = buf[i]!;
          if (c === 0x0d) {
            this.state = ChunkState.FinalLF;
            i++;
          } else if (c === 0x20 || c === 0x09) {
            this.fail('obs-fold in trailer');
          } else {
            this.state = ChunkState.TrailerLine;
          }
          break;
        }
        case ChunkState.TrailerLine: {
          const c = buf[i]!;
          if (++this.trailerBytes > MAX_TRAILER_BYTES) this.fail('trailer too large');
          if (c === 0x0d) {
            this.state = ChunkState.TrailerLF;
            if (this.onTrailer) {
              const line = this.trailerLine;
              this.trailerLine = '';
              this.onTrailer(line);
            }
          } else if ((c < 0x20 && c !== 0x09) || c === 0x7f) {
            this.fail('control character in trailer');
          } else if (this.onTrailer) {
            this.trailerLine += String.fromCharCode(c);
          }
          i++;
          break;
        }
        case ChunkState.TrailerLF:
          if (buf[i] !== 0x0a) this.fail('trailer line not ended by CRLF');
          this.state = ChunkState.TrailerLineStart;
          i++;
          break;
        case ChunkState.FinalLF:
          if (buf[i] !== 0x0a) this.fail('chunked body not ended by CRLF');
          this.state = ChunkState.Done;
          return i + 1 - start;
        case ChunkState.Done:
          return i - start;
      }
    }
    return i - start;
  }
}

function hexVal(c: number): number {
  if (c >= 0x30 && c <= 0x39) return c - 0x30;
  if (c >= 0x61 && c <= 0x66) return c - 0x57;
  if (c >= 0x41 && c <= 0x46) return c - 0x37;
  return -1;
}
