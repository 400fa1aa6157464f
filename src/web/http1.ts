/**
 * HTTP/1.1 message heads and chunked framing, hand-written for the proxy's
 * hot path (see BENCHMARKS.md: node:http plus an HTTP client costs two full
 * HTTP stacks per request). Parsing is deliberately strict (RFC 9112): the
 * first ambiguity is an error, never a guess, because a proxy that guesses
 * differently from its backend is how request smuggling happens.
 */
import { Errors, type ErrorDef } from '../core/errors.js';

export interface Header {
  /** Lower-case name. */
  readonly name: string;
  /** Name as the peer sent it (forwarded unchanged). */
  readonly rawName: string;
  readonly value: string;
}

export interface RequestHead {
  readonly method: string;
  /** Target as sent (origin-form after absolute-form was checked and reduced). */
  readonly target: string;
  readonly version: 0 | 1; // HTTP/1.0 or HTTP/1.1
  readonly headers: Header[];
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
   * Where each header line lies in the parsed buffer: start and end (after
   * its CRLF) of `headers[i]` at [2i] and [2i+1]. Meaningful only with that
   * buffer, and only while it holds the head (see HeadRuns).
   */
  readonly spans: readonly number[];
}

export interface ResponseHead {
  readonly status: number;
  readonly reason: string;
  readonly version: 0 | 1;
  readonly headers: Header[];
  readonly headLength: number;
  /** -1 = none declared (close-delimited unless no-body status), -2 = chunked, else Content-Length. */
  readonly bodyLength: number;
  readonly connectionTokens: readonly string[];
  /** As RequestHead.spans. */
  readonly spans: readonly number[];
}

export interface HeadLimits {
  readonly headerBytes: number;
  readonly headerCount: number;
  readonly uriLength: number;
}

export class ParseError extends Error {
  constructor(
    readonly def: ErrorDef,
    readonly detail: string,
  ) {
    super(detail);
  }
}

export const NEED_MORE = 0;

const CRLFCRLF = Buffer.from('\r\n\r\n');
const LFLF = Buffer.from('\n\n');

/** Request target: visible ASCII only. */
const TARGET = /^[\x21-\x7e]+$/;
const DIGITS = /^[0-9]{1,15}$/;
const HOST_CHARS = /^(?:\[[0-9a-fA-F:.]+\]|[a-zA-Z0-9._~!$&'()*+,;=%-]*)(?::[0-9]{1,5})?$/;

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

/** tchar (RFC 9110 §5.6.2) by character code: a token is 1*tchar. Scanned by hand, not by regexp (cheaper per header). */
const TCHAR = new Uint8Array(128);
for (const c of "!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ") TCHAR[c.charCodeAt(0)] = 1;

/** head[start, end) is a non-empty token. */
function isToken(head: string, start: number, end: number): boolean {
  if (end <= start) return false;
  for (let i = start; i < end; i++) {
    const c = head.charCodeAt(i);
    if (c >= 128 || TCHAR[c] === 0) return false;
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

/** True if head[start, end) has an upper-case ASCII letter. */
function hasUpper(head: string, start: number, end: number): boolean {
  for (let i = start; i < end; i++) {
    const c = head.charCodeAt(i);
    if (c >= 0x41 && c <= 0x5a) return true;
  }
  return false;
}

/** `base`: where head[0] lies in the buffer, for `spans`. */
function splitHeaderLines(head: string, base: number, headers: Header[], spans: number[], maxCount: number, tooMany: ErrorDef): void {
  // head has no trailing CRLFCRLF; lines after the start line. Indices into
  // `head` throughout: the only strings made are a field's name and value.
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
    headers.push({ name: hasUpper(head, start, colon) ? rawName.toLowerCase() : rawName, rawName, value: head.slice(vs, ve) });
    spans.push(base + start, base + eol + 2);
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

/** Parse a complete request head of `len` bytes at `buf[start]`. */
export function parseRequestHead(buf: Buffer, start: number, len: number, limits: HeadLimits): RequestHead {
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
  const spans: number[] = [];
  splitHeaderLines(head, base, headers, spans, limits.headerCount, Errors.HEADERS_TOO_LARGE);

  let hostHeader: string | undefined;
  let contentLength = -1;
  let chunked = false;
  let sawTE = false;
  const connectionTokens: string[] = [];
  let upgrade = '';
  let expectContinue = false;
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
        upgrade = h.value;
        break;
      case 'expect':
        if (h.value.toLowerCase() === '100-continue') expectContinue = true;
        else throw new ParseError(Errors.BAD_REQUEST, 'unsupported Expect value');
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

  let upgradeToken = '';
  if (upgrade && connectionTokens.includes('upgrade')) upgradeToken = upgrade;
  return {
    method,
    target,
    version,
    headers,
    headLength: len,
    host: normalizeHost(hostHeader),
    hostHeader,
    bodyLength: chunked ? -2 : contentLength === -1 ? -1 : contentLength === 0 ? -1 : contentLength,
    connectionTokens,
    upgrade: upgradeToken,
    expectContinue,
    spans,
  };
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

/** Parse a complete response head. Errors are the backend's fault (502). */
export function parseResponseHead(buf: Buffer, start: number, len: number, maxHeaders: number): ResponseHead {
  const head = buf.toString('latin1', start, start + len - 4);
  if (head.indexOf('\0') !== -1) throw new ParseError(Errors.UPSTREAM_PROTOCOL, 'NUL in response head');
  try {
    checkLineEndings(head);
  } catch {
    throw new ParseError(Errors.UPSTREAM_PROTOCOL, 'bad line ending in response head');
  }
  let eol = head.indexOf('\r\n');
  if (eol === -1) eol = head.length;
  // HTTP/1.[01] SP 3DIGIT [SP reason]: by hand (a regexp per response showed in profiles).
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
  const spans: number[] = [];
  try {
    splitHeaderLines(head, start, headers, spans, maxHeaders, Errors.UPSTREAM_PROTOCOL);
  } catch (e) {
    throw new ParseError(Errors.UPSTREAM_PROTOCOL, e instanceof ParseError ? e.detail : 'bad header');
  }
  const status = (head.charCodeAt(9) - 0x30) * 100 + (head.charCodeAt(10) - 0x30) * 10 + (head.charCodeAt(11) - 0x30);
  let contentLength = -1;
  let chunked = false;
  let sawTE = false;
  const connectionTokens: string[] = [];
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
      if (v === 'chunked') chunked = true;
      else if (!/(^|,)\s*chunked\s*$/.test(v)) {
        // e.g. "gzip" alone: close-delimited (RFC 9112 §6.3 rule 4 for responses).
        chunked = false;
      } else chunked = true;
    } else if (h.name === 'connection') {
      splitTokens(h.value, connectionTokens);
    }
  }
  let bodyLength: number;
  if (sawTE) bodyLength = chunked ? -2 : -1; // TE overrides CL (§6.3 rule 3)
  else bodyLength = contentLength;
  return { status, reason: eol > 12 ? head.slice(13, eol) : '', version: minor === 0x31 ? 1 : 0, headers, headLength: len, bodyLength, connectionTokens, spans };
}

/**
 * The header lines of a received head that a forwarded head keeps, as runs
 * of bytes to copy. A forwarded head is a new first line, these runs, then
 * the fields perimeter adds: received fields are copied byte for byte and
 * never become one big string to encode again. One scratch instance serves
 * every head: building one is synchronous.
 */
export class HeadRuns {
  private readonly runs: number[] = [];
  /** Bytes in the runs. */
  bytes = 0;

  reset(): this {
    this.runs.length = 0;
    this.bytes = 0;
    return this;
  }

  /** Keep header line `i` of a head parsed with `spans`. */
  keep(spans: readonly number[], i: number): void {
    const start = spans[2 * i]!;
    const end = spans[2 * i + 1]!;
    const r = this.runs;
    const n = r.length;
    if (n > 0 && r[n - 1] === start) r[n - 1] = end;
    else r.push(start, end);
    this.bytes += end - start;
  }

  /**
   * Write `first` (latin1), the kept runs of `src`, then `tail` (latin1) into
   * `out` at `at`; returns the offset after them.
   */
  write(out: Buffer, at: number, first: string, src: Buffer, tail: string): number {
    let o = at + out.write(first, at, 'latin1');
    const r = this.runs;
    for (let i = 0; i < r.length; i += 2) o += src.copy(out, o, r[i]!, r[i + 1]!);
    if (tail.length > 0) o += out.write(tail, o, 'latin1');
    return o;
  }
}

/** True for hop-by-hop fields a proxy must not forward (RFC 9110 §7.6.1). */
const HOP_BY_HOP = new Set([
  'connection',
  'keep-alive',
  'proxy-connection',
  'te',
  'trailer',
  'transfer-encoding',
  'upgrade',
  'proxy-authenticate',
  'proxy-authorization',
]);

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
